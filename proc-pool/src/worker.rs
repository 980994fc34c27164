//! The worker side: what travels between the pool and its workers, the trampolines that run a
//! task's function, and the worker's loop.
//!
//! Each worker reads orders from a queue of its own (so the pool knows which tasks each worker
//! holds: they are run in the order they were put) and puts replies in a queue shared by all
//! workers. A task is a chunk of argument values; its reply is the chunk's results, or the first
//! failure.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};

use proc_core::handle::CodeAddr;
use proc_core::Target;
use proc_queue::{PutError, Queue};

use crate::board::Board;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
            Failure::Arguments(m) => crate::Error::Arguments(m),
            Failure::Return(m) => crate::Error::Return(m),
        }
    }
}

/// A monomorphized trampoline: runs a chunk (postcard bytes) and writes its results (postcard
/// `Vec<R>`) into the buffer.
pub(crate) type TaskFn = fn(&[u8], &mut Vec<u8>) -> Result<(), Failure>;

/// The initializer's trampoline.
pub(crate) type InitFn = fn(&[u8]) -> Result<(), Failure>;

/// Produces the zero-sized function value `F`.
fn conjure<F>() -> F {
    const { assert!(std::mem::size_of::<F>() == 0) };
    // SAFETY: `F` is zero-sized (checked at compile time above, and by the pool's methods that
    // take the function), so reading one from a dangling, aligned pointer reads no bytes.
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

/// The initializer's trampoline.
pub(crate) fn run_init<F, A>(args: &[u8]) -> Result<(), Failure>
where
    F: Target<A, Output = ()> + Copy,
    A: DeserializeOwned,
{
    let args: A = proc_core::codec::from_bytes(args).map_err(|e| Failure::Arguments(e.to_string()))?;
    let f: F = conjure();
    f.call(args);
    Ok(())
}

fn encode<R: Serialize>(results: &[R], out: &mut Vec<u8>) -> Result<(), Failure> {
    out.clear();
    let buf = std::mem::take(out);
    *out = proc_core::codec::to_extend(results, buf).map_err(|e| Failure::Return(e.to_string()))?;
    Ok(())
}

/// The initializer a worker runs first: a trampoline and its postcard-encoded arguments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Init {
    pub(crate) func: CodeAddr,
    #[serde(with = "serde_bytes")]
    pub(crate) args: Vec<u8>,
}

thread_local! {
    /// The message and location of the last panic on this thread.
    static LAST_PANIC: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

/// Records panics instead of printing them: the task's caller gets them as its error.
fn quiet_panics() {
    panic::set_hook(Box::new(|info| {
        let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_string()
        };
        let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        LAST_PANIC.with(|p| *p.borrow_mut() = Some((message, location)));
    }));
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
        let outcome = resolve(&mut cache, init.func).and_then(|addr| {
            // SAFETY: the pool made `init.func` from a function of type `InitFn` of this binary
            // (`Builder::initializer`), and `resolve` checked that the code there is the same.
            let f = unsafe { std::mem::transmute::<usize, InitFn>(addr) };
            guarded(|| f(&init.args))
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
