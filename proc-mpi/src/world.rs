//! Rank 0's world: the one link to the node agents, which a cluster pool takes for its session
//! and gives back when it ends, and the end of the job at the program's exit (the agents are told
//! to exit, then MPI is finalized).

use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use proc_pool::{Error, Pool};

use crate::agent::build_id;
use crate::front::{Agent, Front};
use crate::pace::Pace;
use crate::transport::Transport;
use crate::wire::{self, Down, Hello, Open, Up};

/// How long the agents have to say hello, and to start a session's pools.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(120);

/// Rank 0's link to the agents, between sessions.
pub(crate) struct World {
    inner: Mutex<Inner>,
    returned: Condvar,
    size: u32,
}

struct Inner {
    /// The link, while no session holds it.
    transport: Option<Box<dyn Transport>>,
    /// What each agent said when it joined, by rank, once heard.
    hellos: Option<Vec<(u32, Hello)>>,
    /// The job has ended: no more sessions.
    ended: bool,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("size", &self.size).finish_non_exhaustive()
    }
}

impl World {
    pub(crate) fn new(transport: Box<dyn Transport>) -> Arc<World> {
        let size = transport.size();
        Arc::new(World {
            inner: Mutex::new(Inner { transport: Some(transport), hellos: None, ended: false }),
            returned: Condvar::new(),
            size,
        })
    }

    /// The number of ranks, this one included.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A session's end: the link is free again.
    pub(crate) fn give_back(&self, transport: Box<dyn Transport>) {
        self.lock().transport = Some(transport);
        self.returned.notify_all();
    }

    /// Starts a session: each agent starts a local pool with `open`'s options, and the returned
    /// pool's engine sends them its tasks.
    pub(crate) fn open(self: &Arc<Self>, builder: proc_pool::Builder, open: Open) -> proc_pool::Result<Pool> {
        let (mut t, hellos) = {
            let mut inner = self.lock();
            if inner.ended {
                return Err(os("the MPI job has ended: no more cluster pools"));
            }
            let Some(t) = inner.transport.take() else {
                return Err(Error::InvalidArgument(
                    "a cluster pool is open already in this program: join or drop it before making another"
                        .into(),
                ));
            };
            (t, inner.hellos.clone())
        };
        let started = handshake(&mut *t, hellos, &open);
        let (hellos, agents) = match started {
            Ok(v) => v,
            Err(e) => {
                self.give_back(t);
                return Err(e);
            }
        };
        self.lock().hellos = Some(hellos);
        let processes = agents.iter().map(|(_, workers)| *workers).sum::<usize>();
        // Per worker: the task it runs and those its local pool holds ahead (at least one); the
        // window grows while tasks are short.
        let window = open.prefetch.max(2);
        let agents = agents.into_iter().map(|(a, workers)| Agent::new(a.0, a.1, workers * window)).collect();
        tracing::debug!(processes, "cluster pool started");
        builder.build_with(processes, Box::new(Front::new(t, self.clone(), agents)))
    }

    /// Ends the job: waits (a bounded time) for a session to give the link back, tells every
    /// agent to exit, and closes the link (for MPI, `MPI_Finalize`).
    pub(crate) fn end(&self) {
        let mut inner = self.lock();
        if inner.ended {
            return;
        }
        inner.ended = true;
        let deadline = Instant::now() + Duration::from_secs(5);
        while inner.transport.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::error!("a cluster pool still runs at the program's end; its node agents are left to the launcher");
                return;
            }
            inner = self.returned.wait_timeout(inner, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        let Some(mut t) = inner.transport.take() else { return };
        drop(inner);
        if let Ok(bytes) = wire::encode(&Down::Exit) {
            for rank in 1..t.size() {
                let _ = t.send(rank, vec![bytes.clone()]);
            }
        }
        t.close();
    }
}

/// The agents' hellos (heard now, or before) and, for each agent of this build, the number of
/// workers its local pool started.
type Started = (Vec<(u32, Hello)>, Vec<((u32, String), usize)>);

/// Hears every agent (the first time), sends each of this build `Open`, and waits for its pool.
fn handshake(
    t: &mut dyn Transport,
    hellos: Option<Vec<(u32, Hello)>>,
    open: &Open,
) -> proc_pool::Result<Started> {
    let deadline = Instant::now() + HANDSHAKE_WITHIN;
    let hellos = match hellos {
        Some(h) => h,
        None => {
            let mut heard: Vec<(u32, Hello)> = Vec::new();
            let mut pace = Pace::new();
            while heard.len() + 1 < t.size() as usize {
                match receive(t, &mut pace, deadline)? {
                    Some((from, Up::Hello(h))) if !heard.iter().any(|(r, _)| *r == from) => {
                        heard.push((from, h))
                    }
                    Some(_) => {}
                    None => {
                        let missing: Vec<u32> =
                            (1..t.size()).filter(|r| !heard.iter().any(|(h, _)| h == r)).collect();
                        return Err(os(&format!(
                            "the node agents of ranks {missing:?} did not report within {HANDSHAKE_WITHIN:?}"
                        )));
                    }
                }
            }
            heard.sort_by_key(|(r, _)| *r);
            heard
        }
    };
    let own = build_id();
    let (ours, foreign): (Vec<_>, Vec<_>) = hellos.iter().partition(|(_, h)| h.build == own);
    for (rank, h) in &foreign {
        tracing::error!(rank, host = %h.host, "this node agent runs another build of the program: it gets no tasks");
    }
    if ours.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no node agent runs this build of the program (ranks {:?} run another binary)",
            foreign.iter().map(|(r, _)| *r).collect::<Vec<_>>()
        )));
    }
    let bytes = wire::encode(&Down::Open(open.clone())).map_err(|e| os(&e.to_string()))?;
    let mut waiting: Vec<u32> = Vec::new();
    for (rank, _) in &ours {
        t.send(*rank, vec![bytes.clone()])
            .map_err(|e| os(&format!("cannot start the node agents' pools: {e}")))?;
        waiting.push(*rank);
    }
    let mut started = Vec::new();
    let mut failure: Option<Error> = None;
    let mut pace = Pace::new();
    while !waiting.is_empty() {
        let host = |rank: u32| {
            hellos.iter().find(|(r, _)| *r == rank).map_or_else(String::new, |(_, h)| h.host.clone())
        };
        match receive(t, &mut pace, deadline)? {
            Some((from, Up::Opened { workers })) if waiting.contains(&from) => {
                waiting.retain(|&r| r != from);
                started.push(((from, host(from)), workers as usize));
            }
            Some((from, Up::Failed(e))) if waiting.contains(&from) => {
                waiting.retain(|&r| r != from);
                let error = Error::Remote { host: host(from), rank: from, error: Box::new(e.into()) };
                tracing::error!(rank = from, error = %error, "a node agent could not start its pool");
                failure.get_or_insert(error);
            }
            Some(_) => {}
            None => {
                return Err(os(&format!(
                    "the node agents of ranks {waiting:?} did not start their pools in time"
                )))
            }
        }
    }
    if started.is_empty() {
        return Err(failure.unwrap_or_else(|| os("no node agent started a pool")));
    }
    Ok((hellos, started))
}

/// The next message from an agent, polling until `deadline`; `None` when it passed.
pub(crate) fn receive(
    t: &mut dyn Transport,
    pace: &mut Pace,
    deadline: Instant,
) -> proc_pool::Result<Option<(u32, Up)>> {
    loop {
        let _ = t.flush();
        match t.try_recv().map_err(|e| os(&e.to_string()))? {
            Some((from, parts)) => {
                pace.reset();
                match wire::decode::<Up>(parts.first().map_or(&[][..], Vec::as_slice)) {
                    Ok(m) => return Ok(Some((from, m))),
                    Err(e) => tracing::error!(from, error = %e, "a message the front end cannot read"),
                }
            }
            None => {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                if let Some(pause) = pace.next() {
                    std::thread::sleep(pause);
                }
            }
        }
    }
}

fn os(message: &str) -> Error {
    Error::Os { message: message.to_string(), source: None }
}

/// This process' rank, read once (before a rank marks its environment for its children).
static RANK: OnceLock<Option<u32>> = OnceLock::new();

/// This process' rank in an MPI job, if a launcher started it as one.
pub(crate) fn rank() -> Option<u32> {
    *RANK.get_or_init(crate::launch::rank)
}

/// Rank 0's world, once made: `None` when this process is not a rank of an MPI job of two or
/// more ranks.
static GLOBAL: OnceLock<Result<Option<Arc<World>>, String>> = OnceLock::new();

/// Rank 0's world, joining MPI the first time.
///
/// # Errors
///
/// When this process is a rank but cannot join MPI.
pub(crate) fn global() -> proc_pool::Result<Option<Arc<World>>> {
    GLOBAL
        .get_or_init(|| match rank() {
            None => Ok(None),
            Some(_) => join_mpi(),
        })
        .clone()
        .map_err(|m| os(&m))
}

#[cfg(feature = "mpi")]
fn join_mpi() -> Result<Option<Arc<World>>, String> {
    let mpi = crate::mpi::Mpi::init().map_err(|e| format!("cannot join the MPI job: {e}"))?;
    Ok(Some(World::new(Box::new(mpi))))
}

#[cfg(not(feature = "mpi"))]
fn join_mpi() -> Result<Option<Arc<World>>, String> {
    Ok(None)
}

/// At the program's exit on rank 0: the agents are told to exit (joining MPI first if no cluster
/// pool did), and MPI is finalized.
pub(crate) extern "C" fn end_job() {
    match global() {
        Ok(Some(world)) => world.end(),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "the node agents cannot be told to exit"),
    }
}
