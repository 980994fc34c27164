//! Results of asynchronous submissions: [`AsyncResult`], [`Callbacks`], and the lazy [`IMap`]
//! iterator.
//!
//! - `async_result`: [`AsyncResult`], [`Callbacks`], and the closures that set a result from its
//!   tasks' outcomes.
//! - `imap`: [`IMap`] and [`ExactIMap`].

mod async_result;
mod imap;

pub(crate) use async_result::{gather, resolve, single};
pub use async_result::{AsyncResult, Callbacks};
pub(crate) use imap::Source;
pub use imap::{ExactIMap, IMap};
