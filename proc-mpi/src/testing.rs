//! An in-process job for tests (not a stable API): node agents on threads, each with a real local
//! pool of worker processes, linked to the front end by channels instead of MPI. It runs the
//! front end's and the agents' logic as an MPI job does, in the default build and on macOS.

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::local::{Cutter, Local};
use crate::world::World;
use crate::{Builder, Pool, Result};

/// Node agents on threads of this process, and rank 0's world linked to them.
#[derive(Debug)]
pub struct LocalJob {
    world: Arc<World>,
    agents: Vec<JoinHandle<()>>,
    cutter: Cutter,
}

impl LocalJob {
    /// A job of rank 0 and `agents` node agents, named `host-1`, `host-2`, ...
    ///
    /// # Errors
    ///
    /// When an agent's thread cannot be started (the agents started are stopped).
    pub fn start(agents: u32) -> std::io::Result<LocalJob> {
        let (ends, cutter) = Local::job(agents + 1, |r| format!("host-{r}"));
        let mut ends = ends.into_iter();
        let Some(front) = ends.next() else { return Err(std::io::ErrorKind::InvalidInput.into()) };
        let mut job = LocalJob { world: World::new(Box::new(front)), agents: Vec::new(), cutter };
        for mut end in ends {
            let rank = crate::transport::Transport::rank(&end);
            let agent = std::thread::Builder::new().name(format!("agent-{rank}")).spawn(move || {
                if let Err(e) = crate::agent::serve(&mut end) {
                    eprintln!("test agent: {e}");
                }
            })?;
            job.agents.push(agent);
        }
        Ok(job)
    }

    /// Cuts agent `rank` off, as a lost host: it stops (terminating its pool) and its end of
    /// the job goes away.
    pub fn lose_agent(&self, rank: u32) {
        self.cutter.cut(rank);
    }

    /// Builds a cluster pool on this job.
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn pool(&self, builder: Builder) -> Result<Pool> {
        builder.build_in(&self.world)
    }
}

impl Drop for LocalJob {
    fn drop(&mut self) {
        self.world.end();
        for a in self.agents.drain(..) {
            let _ = a.join();
        }
    }
}
