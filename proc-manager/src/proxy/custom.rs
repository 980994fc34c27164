//! The proxy of an object of a registered type: [`Proxy`] (see [`Shared`]).

use super::handle::enc;
use super::lookup::{FromObject, KindRef, ObjectHandle};
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::registry::Shared;
use crate::wire::{Kind, Method};

proxy! {
    /// A proxy of a registered type `T` (see [`Shared`]): only `T`'s declared requests can be
    /// sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use proc_manager::{Manager, Shared};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Default)]
    /// struct Tally(Vec<String>);
    ///
    /// #[derive(Serialize, Deserialize)]
    /// enum Op {
    ///     Add(String),
    ///     Count,
    /// }
    ///
    /// impl Shared for Tally {
    ///     type Init = ();
    ///     type Request = Op;
    ///     type Response = usize;
    ///     fn new(_: ()) -> Self {
    ///         Tally::default()
    ///     }
    ///     fn handle(&mut self, op: Op) -> usize {
    ///         if let Op::Add(name) = op {
    ///             self.0.push(name);
    ///         }
    ///         self.0.len()
    ///     }
    /// }
    ///
    /// let manager = Manager::builder().register::<Tally>("Tally").start()?;
    /// let tally = manager.create_object::<Tally>("Tally", ())?;
    /// tally.call(&Op::Add("ann".into()))?;
    /// assert_eq!(tally.call(&Op::Count)?, 1);
    /// # Ok::<(), proc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Connection`], [`Error::Serialize`], [`Error::Remote`] when the method panicked
    /// on the server, [`Error::MethodNotAllowed`] when the server's `T` does not declare the
    /// request (another program's type of the same name).
    Proxy<T>
}

impl<T: Shared> Proxy<T> {
    /// Calls a method of the object on the server.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the manager is gone or unreachable, [`Error::ShutDown`] when it is shutting
    /// down, [`Error::Protocol`] for an answer this client cannot read; [`Error::Serialize`] when a value
    /// does not serialize (nothing is sent) or the answer does not deserialize as the proxy's type,
    /// [`Error::TooLarge`] when a value exceeds the manager's frame limit; [`Error::Remote`] when the method
    /// panicked on the server; [`Error::MethodNotAllowed`] when the server's type does not declare the
    /// request.
    pub fn call(&self, request: &T::Request) -> Result<T::Response> {
        self.handle.value(Method::Custom { method: String::new(), args: enc(request)? })
    }
}

/// The async [`call`](Proxy::call) (feature `tokio`).
#[cfg(feature = "tokio")]
impl<T: Shared> Proxy<T> {
    /// The async [`call`](Self::call): the method runs on the server while this task waits
    /// without blocking the runtime's thread. A future dropped before it is done may or may not
    /// have had its effect (the server runs a method it received to its end).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> proc_manager::Result<()> {
    /// use proc_manager::{Manager, Shared};
    ///
    /// #[derive(Default)]
    /// struct Counter(u64);
    ///
    /// impl Shared for Counter {
    ///     type Init = u64;
    ///     type Request = u64;
    ///     type Response = u64;
    ///     fn new(start: u64) -> Self {
    ///         Counter(start)
    ///     }
    ///     fn handle(&mut self, add: u64) -> u64 {
    ///         self.0 += add;
    ///         self.0
    ///     }
    /// }
    ///
    /// let manager = Manager::builder().register::<Counter>("Counter").start()?;
    /// let counter = manager.create_object::<Counter>("Counter", 40)?;
    /// assert_eq!(counter.call_async(&2).await?, 42);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call); also [`Error::Connection`] when there is no tokio runtime here.
    pub async fn call_async(&self, request: &T::Request) -> Result<T::Response> {
        let method = Method::Custom { method: String::new(), args: enc(request)? };
        self.handle.value_async(method, crate::client::Undo::Nothing).await
    }
}

impl<T: Shared> FromObject for Proxy<T> {
    /// An object of a registered type, of type `T` (compared by the Rust type's name).
    fn fits(kind: &KindRef<'_>) -> bool {
        matches!(kind.0, Kind::Custom { type_name, .. } if type_name == std::any::type_name::<T>())
    }
    fn from_object(handle: ObjectHandle) -> Self {
        Proxy::from_handle(handle.0)
    }
}
