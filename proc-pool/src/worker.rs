//! The worker side: what travels between the pool and its workers, the trampolines that run a
//! task's function, and the worker's loop.
//!
//! Each worker reads orders from a queue of its own (so the pool knows which tasks each worker
//! holds: they are run in the order they were put) and puts replies in a queue shared by all
//! workers. A task is a chunk of argument values; its reply is the chunk's results, or the first
//! failure.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};

use proc_core::handle::{deserialize_with_fds, serialize_with_fds, CodeAddr};
use proc_core::Target;
use proc_queue::{PutError, Queue};
use serde::de::DeserializeOwned;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::board::Board;

/// What the pool sends a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Order {
    /// Run `func` (a [`TaskFn`]) on the postcard-encoded chunk `args`.
    Run {
        id: u64,
        func: CodeAddr,
        #[serde(with = "serde_bytes")]
        args: Vec<u8>,
    },
    /// Exit once the orders before this one are done.
    Stop,
}

/// What a worker sends back.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    /// The task's id, or [`INIT_FAILED`] (then `outcome` is the initializer's failure).
    pub(crate) id: u64,
    pub(crate) outcome: Result<ByteBuf, Failure>,
}

/// A byte vector that serializes as bytes (one copy, not one call per byte).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ByteBuf(#[serde(with = "serde_bytes")] pub(crate) Vec<u8>);

/// The reply id that reports a failed initializer.
pub(crate) const INIT_FAILED: u64 = u64::MAX;

/// Why a task (or the initializer) failed in the worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Failure {
    Panicked { message: String, location: Option<String> },
    Arguments(String),
    Return(String),
}

impl From<Failure> for crate::Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Panicked { message, location } => crate::Error::Panicked { message, location },
            Failure::Arguments(m) => crate::Error::arguments(m),
            Failure::Return(m) => crate::Error::return_value(m),
        }
    }
}

/// A monomorphized trampoline: runs a chunk (postcard bytes) and writes its results (postcard
/// `Vec<R>`) into the buffer.
pub(crate) type TaskFn = fn(&[u8], &mut Vec<u8>) -> Result<(), Failure>;

/// The initializer's trampoline: decodes its arguments (inside the decoding of the worker's start
/// arguments, so handles among them find their descriptors) and returns the call, ready to run.
pub(crate) type InitFn = fn(&[u8]) -> Result<PreparedInit, Failure>;

/// The initializer with its decoded arguments.
pub(crate) type PreparedInit = Box<dyn FnOnce() + Send>;

/// Produces the zero-sized function value `F`.
fn conjure<F>() -> F {
    // The pool's public methods that take a function check at compile time that it is zero-sized,
    // with a message that says what to do instead. This check is made at run time (and folded away
    // for a zero-sized `F`) so that such a build error is reported once, at the caller's line.
    assert!(
        std::mem::size_of::<F>() == 0,
        "pool tasks must be fn items or non-capturing closures: a capturing closure cannot be a \
         pool task"
    );
    // SAFETY: `F` is zero-sized (checked just above, and at compile time by the pool's methods
    // that take the function), so reading one from a dangling, aligned pointer reads no bytes.
    // Zero-sized function types are fn items and non-capturing closures, which carry no invariant
    // beyond their type, so this value is what the caller's copy is.
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

/// `map`'s trampoline: `f(a)` for each `a` of the chunk.
pub(crate) fn run_map<F, A, R>(args: &[u8], out: &mut Vec<u8>) -> Result<(), Failure>
where
    F: Fn(A) -> R,
    A: DeserializeOwned,
    R: Serialize,
{
    let items: Vec<A> = proc_core::codec::from_bytes(args).map_err(|e| Failure::Arguments(e.to_string()))?;
    let f: F = conjure();
    let results: Vec<R> = items.into_iter().map(&f).collect();
    encode(&results, out)
}

/// `starmap`'s (and `apply`'s) trampoline: `f(a1, ..., an)` for each tuple of the chunk.
pub(crate) fn run_star<F, A>(args: &[u8], out: &mut Vec<u8>) -> Result<(), Failure>
where
    F: Target<A> + Copy,
    A: DeserializeOwned,
    F::Output: Serialize,
{
    let items: Vec<A> = proc_core::codec::from_bytes(args).map_err(|e| Failure::Arguments(e.to_string()))?;
    let f: F = conjure();
    let results: Vec<F::Output> = items.into_iter().map(|a| f.call(a)).collect();
    encode(&results, out)
}

/// The initializer's trampoline: decodes `A` and returns the call of `F` with it.
pub(crate) fn run_init<F, A>(args: &[u8]) -> Result<PreparedInit, Failure>
where
    F: Target<A, Output = ()> + Copy,
    A: DeserializeOwned + Send + 'static,
{
    let args: A = proc_core::codec::from_bytes(args).map_err(|e| Failure::Arguments(e.to_string()))?;
    let f: F = conjure();
    Ok(Box::new(move || f.call(args)))
}

fn encode<R: Serialize>(results: &[R], out: &mut Vec<u8>) -> Result<(), Failure> {
    out.clear();
    let buf = std::mem::take(out);
    *out = proc_core::codec::to_extend(results, buf)
        .map_err(|e| Failure::Return(why_not(results, &e, HANDLE_IN_RESULT)))?;
    Ok(())
}

/// Why task arguments that hold a handle with descriptors are refused.
pub(crate) const HANDLE_IN_ARGS: &str = "they hold a handle (a queue, connection, lock, event, \
     shared value or the like), and a task cannot carry one: tasks travel over the pool's queues, \
     which carry bytes, while a handle's descriptors travel only with a process start; give handles \
     to the workers through the pool's initializer (Builder::initializer)";

/// Why a result that holds a handle is refused.
pub(crate) const HANDLE_IN_RESULT: &str = "it holds a handle (a queue, connection, lock, event, \
     shared value or the like), and a result cannot carry one: results travel back over the \
     pool's queue, which carries bytes, while a handle's descriptors travel only with a process \
     start";

/// Why `value` did not serialize: `error`, or `handle` when the value holds a handle (it then
/// serializes inside a transfer, with descriptors).
pub(crate) fn why_not<T: Serialize + ?Sized>(
    value: &T,
    error: &proc_core::codec::Error,
    handle: &str,
) -> String {
    match serialize_with_fds(value) {
        Ok((_, fds)) if !fds.is_empty() => handle.to_string(),
        _ => error.to_string(),
    }
}

/// The initializer a worker runs first: a trampoline ([`InitFn`]) and its arguments.
///
/// The pool keeps the arguments as the typed value the caller gave, and serializes them afresh
/// into each worker's start arguments (replacement workers included): handles among them (queues,
/// locks, shared values, connections, manager proxies) serialize only inside a process start,
/// where their descriptors join the start's side table. The worker decodes them while it decodes
/// its start arguments, into the prepared call. A worker made by fork gets the value itself and
/// decodes a copy of it the same way, so each worker owns its handles whatever the start method.
#[derive(Clone)]
pub(crate) struct Init {
    func: CodeAddr,
    payload: Payload,
    /// Why the arguments did not serialize, from the last start that tried.
    failure: Arc<Mutex<Option<String>>>,
}

#[derive(Clone)]
enum Payload {
    /// In the pool (and in a worker made by fork): the caller's value.
    Typed(Arc<dyn InitArgs>),
    /// Decoded in a worker: the call, ready (taken once), or why it could not be decoded.
    Decoded(Arc<Mutex<Option<Result<PreparedInit, Failure>>>>),
}

/// The initializer's arguments, typed, behind a trait object.
trait InitArgs: Send + Sync {
    fn encode(&self) -> Result<Vec<u8>, proc_core::codec::Error>;
}

/// The caller's value (behind a lock only so that it need not be `Sync`; only the pool's
/// supervisor, which starts the workers, encodes it).
struct Typed<A>(Mutex<A>);

impl<A: Serialize + Send> InitArgs for Typed<A> {
    fn encode(&self) -> Result<Vec<u8>, proc_core::codec::Error> {
        proc_core::codec::to_vec(&*self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Arguments another process encoded: sent on as they are.
struct Encoded(Vec<u8>);

impl InitArgs for Encoded {
    fn encode(&self) -> Result<Vec<u8>, proc_core::codec::Error> {
        Ok(self.0.clone())
    }
}

impl Init {
    /// The initializer `F` with its arguments.
    pub(crate) fn new<F, A>(args: A) -> Self
    where
        F: Target<A, Output = ()> + Copy,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        Init {
            func: CodeAddr::of(run_init::<F, A> as InitFn as usize),
            payload: Payload::Typed(Arc::new(Typed(Mutex::new(args)))),
            failure: Arc::new(Mutex::new(None)),
        }
    }

    /// An initializer another process encoded ([`crate::remote::EncodedInit`]).
    pub(crate) fn encoded(init: crate::remote::EncodedInit) -> Self {
        Init {
            func: init.func,
            payload: Payload::Typed(Arc::new(Encoded(init.args))),
            failure: Arc::new(Mutex::new(None)),
        }
    }

    /// The initializer as plain bytes, for another host: a handle among its arguments fails (its
    /// descriptors cannot travel there).
    pub(crate) fn encode_plain(&self) -> Result<crate::remote::EncodedInit, String> {
        let args = match &self.payload {
            Payload::Typed(args) => args.encode().map_err(|e| e.to_string())?,
            Payload::Decoded(_) => return Err("a worker's initializer cannot be sent on".into()),
        };
        Ok(crate::remote::EncodedInit { func: self.func, args })
    }

    /// Why the arguments did not serialize at the last start, if they did not.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The call to run in the worker.
    fn prepare(self) -> Result<PreparedInit, Failure> {
        match self.payload {
            Payload::Decoded(cell) => cell
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .unwrap_or_else(|| Err(Failure::Arguments("the initializer ran already".into()))),
            Payload::Typed(_) => {
                // A worker made by fork: decode a copy of the value, as a started worker does, so
                // that its handles are its own.
                let fail = |e: proc_core::Error| Failure::Arguments(e.to_string());
                let (bytes, fds) = serialize_with_fds(&self).map_err(fail)?;
                let init: Init = deserialize_with_fds(&bytes, fds).map_err(fail)?;
                init.prepare()
            }
        }
    }
}

impl fmt::Debug for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Init").field("func", &self.func).finish_non_exhaustive()
    }
}

impl Serialize for Init {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Payload::Typed(args) = &self.payload else {
            return Err(S::Error::custom("a worker's initializer cannot be sent on"));
        };
        // Inside a process start: the handles among the arguments put their descriptors in the
        // start's side table.
        let encoded = args.encode().map_err(|e| e.to_string());
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = encoded.as_ref().err().cloned();
        let bytes = encoded.map_err(S::Error::custom)?;
        (self.func, ByteBuf(bytes)).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Init {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (func, bytes) = <(CodeAddr, ByteBuf)>::deserialize(deserializer)?;
        // Decoded here, while the start's descriptors are at hand. A failure is the worker's to
        // report (the pool then learns why the initializer failed).
        let prepared = func.resolve().map_err(|e| Failure::Arguments(e.to_string())).and_then(|addr| {
            // SAFETY: the pool made `func` from a function of type `InitFn` of this binary
            // (`Init::new`), and `resolve` checked that the code there is the same.
            let f = unsafe { std::mem::transmute::<usize, InitFn>(addr) };
            // A `Deserialize` that panics fails the initializer (as a panic in it would), rather
            // than the worker's start.
            panic::catch_unwind(AssertUnwindSafe(|| f(&bytes.0))).unwrap_or_else(|payload| {
                Err(Failure::Panicked { message: payload_message(&*payload), location: None })
            })
        });
        Ok(Init {
            func,
            payload: Payload::Decoded(Arc::new(Mutex::new(Some(prepared)))),
            failure: Arc::new(Mutex::new(None)),
        })
    }
}

thread_local! {
    /// The message and location of the last panic on this thread.
    static LAST_PANIC: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

/// Records panics instead of printing them: the task's caller gets them as its error.
fn quiet_panics() {
    panic::set_hook(Box::new(|info| {
        let message = payload_message(info.payload());
        let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        LAST_PANIC.with(|p| *p.borrow_mut() = Some((message, location)));
    }));
}

/// A panic's message, from its payload.
fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// Runs `f`, turning a panic into a failure.
fn guarded(f: impl FnOnce() -> Result<(), Failure>) -> Result<(), Failure> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            let (message, location) = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| ("the task panicked".to_string(), None));
            Err(Failure::Panicked { message, location })
        }
    }
}

/// Resolves a trampoline's address, once per distinct address.
fn resolve(cache: &mut HashMap<CodeAddr, usize>, func: CodeAddr) -> Result<usize, Failure> {
    if let Some(&addr) = cache.get(&func) {
        return Ok(addr);
    }
    let addr = func.resolve().map_err(|e| Failure::Arguments(e.to_string()))?;
    cache.insert(func, addr);
    Ok(addr)
}

/// A worker's life: the initializer, then orders until `Stop`, the queue's end, or
/// `max_tasks` tasks (0: no limit). It posts each task it runs on the board, at `slot`.
pub(crate) fn worker_main(
    orders: Queue<Order>,
    replies: Queue<Reply>,
    board: Board,
    slot: usize,
    init: Option<Init>,
    max_tasks: u64,
) {
    quiet_panics();
    let mut cache = HashMap::new();
    if let Some(init) = init {
        let outcome = init.prepare().and_then(|call| {
            guarded(|| {
                call();
                Ok(())
            })
        });
        if let Err(failure) = outcome {
            // The pool learns why, then sees this worker end.
            let _ = replies.put(Reply { id: INIT_FAILED, outcome: Err(failure) });
            std::process::exit(3);
        }
    }
    let mut out = Vec::new();
    let mut done = 0u64;
    while let Ok(order) = orders.get() {
        let Order::Run { id, func, args } = order else { break };
        board.set_running(slot, id);
        let outcome = resolve(&mut cache, func).and_then(|addr| {
            // SAFETY: the pool made `func` from a function of type `TaskFn` of this binary (the
            // `submit` paths take `run_map`/`run_star` instances only), and `resolve` checked that
            // the code there is the same.
            let f = unsafe { std::mem::transmute::<usize, TaskFn>(addr) };
            guarded(|| f(&args, &mut out))
        });
        let outcome = outcome.map(|()| ByteBuf(std::mem::take(&mut out)));
        match replies.put(Reply { id, outcome }) {
            Ok(()) => {}
            Err(PutError::Closed(_) | PutError::ShutDown(_)) => break,
            Err(e) => {
                // Too large, or no shared memory for it: the task fails with the reason.
                let failure = Failure::Return(format!("the result cannot be sent back: {e}"));
                if replies.put(Reply { id, outcome: Err(failure) }).is_err() {
                    break;
                }
            }
        }
        board.clear(slot);
        done += 1;
        if max_tasks != 0 && done >= max_tasks {
            break;
        }
    }
}
