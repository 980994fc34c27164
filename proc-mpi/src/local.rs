//! A [`Transport`] over channels between threads of one process: ranks 1.. are node agents on
//! threads, each with a real local pool. It stands in for MPI where MPI is not built in (the
//! default build's tests, and macOS's), and is what [`crate::testing`] gives tests.

use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

use crate::transport::{LinkError, Transport};

/// One rank's end of an in-process job.
pub(crate) struct Local {
    rank: u32,
    host: String,
    peers: Vec<Sender<(u32, Vec<u8>)>>,
    inbox: Receiver<(u32, Vec<u8>)>,
}

impl Local {
    /// The ends of a job of `size` ranks, rank 0 first; rank `i` calls itself `hosts(i)`.
    pub(crate) fn job(size: u32, hosts: impl Fn(u32) -> String) -> Vec<Local> {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..size).map(|_| mpsc::channel()).unzip();
        rxs.into_iter()
            .enumerate()
            .map(|(i, inbox)| Local { rank: i as u32, host: hosts(i as u32), peers: txs.clone(), inbox })
            .collect()
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

    fn send(&mut self, to: u32, bytes: Vec<u8>) -> Result<(), LinkError> {
        let peer = self
            .peers
            .get(to as usize)
            .ok_or_else(|| LinkError { rank: Some(to), message: "no such rank".into() })?;
        peer.send((self.rank, bytes))
            .map_err(|_| LinkError { rank: Some(to), message: "the rank is gone".into() })
    }

    fn try_recv(&mut self) -> Result<Option<(u32, Vec<u8>)>, LinkError> {
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
}
