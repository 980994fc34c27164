//! [`SharedMemoryManager`], Python's `multiprocessing.managers.SharedMemoryManager`: a manager
//! server that keeps the names of the shared-memory segments made through it, and unlinks them all
//! when it shuts down.
//!
//! As in Python, a segment is made by the process that asks for it (so it is mapped there at
//! once) and its name is then recorded by the server; [`SharedMemoryManager::shutdown`] (or
//! dropping the manager) has the server unlink every recorded name before it stops. A segment
//! whose name the server could not record is unlinked again at once, so none escapes the
//! bookkeeping. Should the whole program be killed first, the resource tracker unlinks the
//! segments at its end, as it does for every named segment (proc-core's `shm` module).

use proc_core::shm::{Item, ShareableList, SharedMemory};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manager::Manager;
use crate::proxy::Proxy;
use crate::registry::Shared;

/// The name the segment book is registered under.
const BOOK: &str = "multiproc.SharedMemoryManager";

/// The server's record of the segments made through it.
#[derive(Debug, Default)]
pub(crate) struct Book {
    names: Vec<String>,
}

/// The requests a [`Book`] answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum BookOp {
    /// Records a segment's name.
    Track(String),
    /// Unlinks every recorded segment and forgets them; answers how many it unlinked.
    UnlinkAll,
    /// Answers how many names are recorded.
    Count,
}

impl Shared for Book {
    type Init = ();
    type Request = BookOp;
    type Response = u64;

    fn new((): ()) -> Self {
        Book::default()
    }

    fn handle(&mut self, op: BookOp) -> u64 {
        match op {
            BookOp::Track(name) => {
                self.names.push(name);
                self.names.len() as u64
            }
            BookOp::UnlinkAll => {
                let mut unlinked = 0;
                for name in self.names.drain(..) {
                    // Gone already (its maker unlinked it) is fine; any other failure is logged.
                    match SharedMemory::open_unverified(&name).and_then(|shm| shm.unlink()) {
                        Ok(()) => unlinked += 1,
                        Err(e) if e.is_not_found() => {}
                        Err(e) => tracing::warn!(name = %name, error = %e, "cannot unlink a managed segment"),
                    }
                }
                unlinked
            }
            BookOp::Count => self.names.len() as u64,
        }
    }
}

/// A manager that hands out shared memory and unlinks all of it when it shuts down (Python's
/// `SharedMemoryManager`).
///
/// # Examples
///
/// ```
/// use proc_core::shm::{Item, SharedMemory};
/// use proc_manager::SharedMemoryManager;
///
/// let smm = SharedMemoryManager::start()?;
/// let block = smm.shared_memory(1024)?;
/// let list = smm.shareable_list([Item::Int(1), Item::from("two")])?;
/// block.write(0, b"data").unwrap();
/// let (block_name, list_name) = (block.name().to_owned(), list.name().to_owned());
/// assert_eq!(smm.tracked()?, 2);
/// smm.shutdown()?;
/// // Both names are gone (the mappings stay valid for whoever holds them).
/// assert!(SharedMemory::open(&block_name).unwrap_err().is_not_found());
/// assert!(SharedMemory::open(&list_name).unwrap_err().is_not_found());
/// assert_eq!(list.get(1).unwrap(), Item::from("two"));
/// # Ok::<(), proc_manager::Error>(())
/// ```
#[derive(Debug)]
pub struct SharedMemoryManager {
    /// `None` once shut down.
    manager: Option<Manager>,
    book: Proxy<Book>,
}

impl SharedMemoryManager {
    /// Starts the server (a manager on a private Unix socket, as [`Manager::start`]).
    ///
    /// # Errors
    ///
    /// As [`Manager::start`]; [`Error::Connection`] when the new server cannot be reached.
    pub fn start() -> Result<Self> {
        let manager = Manager::builder().register::<Book>(BOOK).start()?;
        let book = manager.create_object::<Book>(BOOK, ())?;
        Ok(SharedMemoryManager { manager: Some(manager), book })
    }

    /// A new segment of `size` zero bytes (Python's `smm.SharedMemory(size)`), unlinked when the
    /// manager shuts down.
    ///
    /// # Errors
    ///
    /// [`Error::SharedMemory`] when the segment cannot be made (`size` zero, the system refuses);
    /// [`Error::Connection`] or [`Error::ShutDown`] when the server cannot record it (the segment
    /// is then unlinked again).
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory> {
        let shm = SharedMemory::create(size).map_err(Error::SharedMemory)?;
        self.track(shm.name(), || shm.unlink())?;
        Ok(shm)
    }

    /// A new [`ShareableList`] of `items` (Python's `smm.ShareableList(sequence)`), unlinked when
    /// the manager shuts down.
    ///
    /// # Errors
    ///
    /// As [`shared_memory`](Self::shared_memory); also [`Error::SharedMemory`] when the items need
    /// more than 4 GiB.
    pub fn shareable_list<I: Into<Item>>(&self, items: impl IntoIterator<Item = I>) -> Result<ShareableList> {
        let list = ShareableList::create(items).map_err(Error::SharedMemory)?;
        self.track(list.name(), || list.unlink())?;
        Ok(list)
    }

    /// How many segments the server has recorded and not yet unlinked.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the server is gone, [`Error::ShutDown`] when it is shutting down.
    pub fn tracked(&self) -> Result<u64> {
        self.book.call(&BookOp::Count)
    }

    /// The manager underneath, for its other objects (dicts, queues, locks, ...) and its address.
    pub fn manager(&self) -> Option<&Manager> {
        self.manager.as_ref()
    }

    /// Unlinks every segment made through this manager, then stops the server (Python's
    /// `shutdown()`, or leaving its `with` block). Dropping the manager does the same, and ignores
    /// errors.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] when the server was gone already: its segments are then left to the
    /// resource tracker, which unlinks them at the program's end.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let Some(manager) = self.manager.take() else { return Ok(()) };
        let unlinked = self.book.call(&BookOp::UnlinkAll);
        let stopped = manager.shutdown();
        unlinked.map(drop).and(stopped)
    }

    /// Records `name`; if that fails, unlinks it with `unlink` so it does not escape.
    fn track(&self, name: &str, unlink: impl FnOnce() -> proc_core::Result<()>) -> Result<()> {
        match self.book.call(&BookOp::Track(name.to_owned())) {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = unlink();
                Err(e)
            }
        }
    }
}

impl Drop for SharedMemoryManager {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
