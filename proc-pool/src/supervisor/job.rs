//! What a submitter hands the supervisor: a [`Job`] (the function, the encoded chunk, and what
//! to do with its [`Outcome`]).

use std::sync::mpsc;

use proc_core::handle::CodeAddr;

use crate::error::Error;

/// A task's outcome as the supervisor hands it over: the postcard bytes of the chunk's results,
/// or the error.
pub(crate) type Outcome = Result<Vec<u8>, Error>;

/// Work for the callback thread.
pub(crate) type Callback = Box<dyn FnOnce() + Send>;

/// What to do with a task's outcome. Called exactly once, on the supervisor thread; slow work
/// (user callbacks) goes to the callback thread through the sender.
pub(crate) type Done = Box<dyn FnOnce(Outcome, &mpsc::Sender<Callback>) + Send>;

/// A task on its way to a worker.
pub(crate) struct Job {
    pub(crate) func: CodeAddr,
    pub(crate) args: Vec<u8>,
    pub(crate) done: Done,
}
