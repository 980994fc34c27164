//! The one seam between the pool's logic and MPI: a [`Transport`] moves byte messages between
//! ranks without ever blocking. `mpi.rs` implements it on MPI (feature `mpi`); `local.rs` on
//! channels between threads of one process, so the front end and the agent are tested in the
//! default build too (with real local pools; only the link between them is in-process).

use std::fmt;

/// A failure to move a message.
#[derive(Debug, Clone)]
pub(crate) struct LinkError {
    /// The rank the failure concerns, when known.
    pub(crate) rank: Option<u32>,
    pub(crate) message: String,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rank {
            Some(r) => write!(f, "rank {r}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Byte messages between the ranks of one job. Never blocks: sends are queued and moved on by
/// [`flush`](Transport::flush), receives return `None` when nothing has arrived.
///
/// A message is one or more parts: the first (which starts with [`HEAD`] bytes the transport
/// owns) says what it is, the others are large payloads that travel as they are, never copied
/// into the first (over MPI, as messages of their own right after it: MPI keeps the order of the
/// messages between two ranks).
pub(crate) trait Transport: Send {
    /// This process' rank.
    fn rank(&self) -> u32;
    /// The number of ranks.
    fn size(&self) -> u32;
    /// This host's name.
    fn host(&self) -> String;
    /// Queues a message for rank `to`.
    fn send(&mut self, to: u32, parts: Vec<Vec<u8>>) -> Result<(), LinkError>;
    /// The next whole message that has arrived, with its sender's rank.
    fn try_recv(&mut self) -> Result<Option<Message>, LinkError>;
    /// Moves queued sends on. True when none is left.
    fn flush(&mut self) -> Result<bool, LinkError>;
    /// Leaves the job, after the queued sends went (a bounded wait).
    fn close(self: Box<Self>) {}
    /// Ranks known to be gone. MPICH cannot tell (its launcher ends the job when a rank dies), so
    /// for MPI this is empty; the in-process job knows.
    fn lost_peers(&mut self) -> Vec<u32> {
        Vec::new()
    }
}

/// The largest message: MPI counts bytes in a C `int`.
pub(crate) const MAX_MESSAGE: usize = i32::MAX as usize;

/// Messages carry several tasks or outcomes; one stops growing past this many bytes.
pub(crate) const BATCH_BYTES: usize = 16 << 20;

/// A message that arrived: its sender's rank and its parts.
pub(crate) type Message = (u32, Vec<Vec<u8>>);

/// Bytes at the start of a message's first part that belong to the transport (the MPI one writes
/// the number of parts that follow there).
pub(crate) const HEAD: usize = 4;
