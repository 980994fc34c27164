//! Registered types: Python's `BaseManager.register`, typed. A type declares its requests and
//! responses; the server decodes a request as that type or refuses it, so only the declared
//! methods can be called.

use std::collections::HashMap;

use proc_core::handle::CodeAddr;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::wire::WireError;

/// A type the manager's server keeps and clients call through a [`Proxy`](crate::Proxy) (Python's
/// `register`ed class). `Request` is the set of methods a client may call: anything that does not
/// decode as a `Request` is refused with [`Error::MethodNotAllowed`](crate::Error::MethodNotAllowed).
///
/// The server decodes requests from any authenticated client on a 1 MiB stack: keep `Init` and
/// `Request` free of unbounded recursion (a `Box<Self>` chain a client makes deep enough would
/// overflow it), and keep `handle`'s own recursion shallow.
///
/// # Examples
///
/// ```
/// use proc_manager::{Manager, Shared};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default)]
/// struct Counter(u64);
///
/// #[derive(Serialize, Deserialize)]
/// enum Op {
///     Add(u64),
///     Get,
/// }
///
/// impl Shared for Counter {
///     type Init = u64;
///     type Request = Op;
///     type Response = u64;
///     fn new(init: u64) -> Self {
///         Counter(init)
///     }
///     fn handle(&mut self, op: Op) -> u64 {
///         if let Op::Add(n) = op {
///             self.0 += n;
///         }
///         self.0
///     }
/// }
///
/// let manager = Manager::builder().register::<Counter>("Counter").start()?;
/// let counter = manager.create_object::<Counter>("Counter", 40)?;
/// assert_eq!(counter.call(&Op::Add(2))?, 42);
/// # Ok::<(), proc_manager::Error>(())
/// ```
pub trait Shared: Send + 'static {
    /// The value a new object is made from.
    type Init: Serialize + DeserializeOwned;
    /// The methods: usually an enum.
    type Request: Serialize + DeserializeOwned;
    /// What the methods return.
    type Response: Serialize + DeserializeOwned;

    /// Makes the object on the server.
    fn new(init: Self::Init) -> Self;

    /// Runs one method on the server.
    fn handle(&mut self, request: Self::Request) -> Self::Response;
}

/// A registered object, type-erased on the server.
pub(crate) trait Erased: Send {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, WireError>;
}

struct Typed<T>(T);

impl<T: Shared> Erased for Typed<T> {
    fn call(&mut self, _method: &str, args: &[u8]) -> Result<Vec<u8>, WireError> {
        let request: T::Request = proc_core::codec::from_bytes(args)
            .map_err(|e| WireError::MethodNotAllowed(format!("not a declared method of this type ({e})")))?;
        let response = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.handle(request)))
            .map_err(|_| WireError::Remote("the method panicked".into()))?;
        proc_core::codec::to_vec(&response).map_err(|e| WireError::Remote(format!("the response: {e}")))
    }
}

/// Makes a registered object from its serialized `Init`.
pub(crate) type Factory = fn(&[u8]) -> Result<Box<dyn Erased>, WireError>;

fn factory<T: Shared>(init: &[u8]) -> Result<Box<dyn Erased>, WireError> {
    let init: T::Init = proc_core::codec::from_bytes(init)
        .map_err(|e| WireError::Remote(format!("the initial value: {e}")))?;
    let object = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| T::new(init)))
        .map_err(|_| WireError::Remote("new panicked".into()))?;
    Ok(Box::new(Typed(object)))
}

/// The registered types of a server: names and factories.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Registry {
    /// Name → the factory's place in the binary (the server runs the same program) and the
    /// Rust type's name.
    types: Vec<(String, CodeAddr, String)>,
}

impl Registry {
    pub(crate) fn register<T: Shared>(&mut self, name: &str) {
        let addr = CodeAddr::of(factory::<T> as Factory as usize);
        self.types.retain(|(n, _, _)| n != name);
        self.types.push((name.to_string(), addr, std::any::type_name::<T>().to_string()));
    }

    /// Resolves the factories in this process: name → (factory, Rust type name).
    pub(crate) fn resolve(&self) -> HashMap<String, (Factory, String)> {
        let mut out = HashMap::new();
        for (name, addr, type_name) in &self.types {
            match addr.resolve() {
                Ok(a) => {
                    // SAFETY: `register` made the address from a `Factory` of this binary and
                    // `resolve` checked that the code there is the same.
                    let f = unsafe { std::mem::transmute::<usize, Factory>(a) };
                    out.insert(name.clone(), (f, type_name.clone()));
                }
                Err(e) => tracing::error!(%name, error = %e, "cannot resolve a registered type"),
            }
        }
        out
    }
}
