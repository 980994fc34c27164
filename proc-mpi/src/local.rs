//! A [`Transport`] over channels between threads of one process: ranks 1.. are node agents on
//! threads, each with a real local pool. It stands in for MPI where MPI is not built in (the
//! default build's tests, and macOS's), and is what [`crate::testing`] gives tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;

use crate::transport::{LinkError, Message, Transport};

/// One rank's end of an in-process job.
pub(crate) struct Local {
    rank: u32,
    host: String,
    peers: Vec<Sender<(u32, Vec<Vec<u8>>)>>,
    inbox: Receiver<(u32, Vec<Vec<u8>>)>,
    /// Per rank: whether its end still exists (cleared when it is dropped).
    alive: Arc<Vec<AtomicBool>>,
    /// Per rank: its link is cut (a test's stand-in for a lost host).
    cut: Arc<Vec<AtomicBool>>,
}

/// Cuts the link of a rank of an in-process job: its next receive fails.
#[derive(Clone, Debug)]
pub(crate) struct Cutter(Arc<Vec<AtomicBool>>);

impl Cutter {
    pub(crate) fn cut(&self, rank: u32) {
        if let Some(flag) = self.0.get(rank as usize) {
            flag.store(true, Ordering::SeqCst);
        }
    }
}

impl Local {
    /// The ends of a job of `size` ranks, rank 0 first; rank `i` calls itself `hosts(i)`.
    pub(crate) fn job(size: u32, hosts: impl Fn(u32) -> String) -> (Vec<Local>, Cutter) {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..size).map(|_| mpsc::channel()).unzip();
        let alive: Arc<Vec<AtomicBool>> = Arc::new((0..size).map(|_| AtomicBool::new(true)).collect());
        let cut: Arc<Vec<AtomicBool>> = Arc::new((0..size).map(|_| AtomicBool::new(false)).collect());
        let ends = rxs
            .into_iter()
            .enumerate()
            .map(|(i, inbox)| Local {
                rank: i as u32,
                host: hosts(i as u32),
                peers: txs.clone(),
                inbox,
                alive: alive.clone(),
                cut: cut.clone(),
            })
            .collect();
        (ends, Cutter(cut))
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(flag) = self.alive.get(self.rank as usize) {
            flag.store(false, Ordering::SeqCst);
        }
    }
}

impl Transport for Local {
    fn rank(&self) -> u32 {
        self.rank
    }

    fn size(&self) -> u32 {
        self.peers.len() as u32
    }

    fn host(&self) -> String {
        self.host.clone()
    }

    fn send(&mut self, to: u32, parts: Vec<Vec<u8>>) -> Result<(), LinkError> {
        let peer = self
            .peers
            .get(to as usize)
            .ok_or_else(|| LinkError { rank: Some(to), message: "no such rank".into() })?;
        peer.send((self.rank, parts))
            .map_err(|_| LinkError { rank: Some(to), message: "the rank is gone".into() })
    }

    fn try_recv(&mut self) -> Result<Option<Message>, LinkError> {
        if self.cut.get(self.rank as usize).is_some_and(|c| c.load(Ordering::SeqCst)) {
            return Err(LinkError { rank: None, message: "the link was cut".into() });
        }
        match self.inbox.try_recv() {
            Ok(m) => Ok(Some(m)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => {
                Err(LinkError { rank: None, message: "every rank is gone".into() })
            }
        }
    }

    fn flush(&mut self) -> Result<bool, LinkError> {
        Ok(true)
    }

    fn lost_peers(&mut self) -> Vec<u32> {
        (0..self.alive.len() as u32).filter(|&r| !self.alive[r as usize].load(Ordering::SeqCst)).collect()
    }
}
