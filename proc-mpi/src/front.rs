//! The front end: rank 0's engine of a cluster pool. It runs on the pool's engine thread in place
//! of a local supervisor: it takes the tasks submitted to the [`Pool`](proc_pool::Pool), sends
//! each to the node agent with the most room (credits: each agent holds at most `capacity` tasks,
//! so a slow host gets fewer and none stalls the rest), and hands each outcome back to its task.
//! It is the only thread that talks MPI while the pool runs, polling with back-off
//! ([`Pace`]), and sleeping on the pool's doorbell when nothing is in flight.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proc_pool::remote::{Engine, Link, State, Task};
use proc_pool::Error;

use crate::pace::{Pace, MAX};
use crate::transport::{LinkError, Transport, BATCH_BYTES, MAX_MESSAGE};
use crate::wire::{self, DoneMsg, Down, Payload, TaskMsg, Up};
use crate::world::World;

/// A node agent in a session.
pub(crate) struct Agent {
    pub(crate) rank: u32,
    pub(crate) host: String,
    /// How many tasks it may hold now: from `base`, doubled (up to 64 times) each time it ran
    /// out of tasks while more were waiting (short tasks: the round trip, not the work, is what
    /// a bigger window hides), and back to `base` when its outcomes come seldom (long tasks: a
    /// small window keeps a slow host from hoarding them).
    pub(crate) capacity: usize,
    base: usize,
    /// When its last outcomes came.
    last_done: Instant,
    /// Its tasks, by id.
    inflight: HashMap<u64, Task>,
    /// Its link failed: it gets no more tasks.
    lost: bool,
}

impl Agent {
    pub(crate) fn new(rank: u32, host: String, capacity: usize) -> Self {
        Agent {
            rank,
            host,
            capacity,
            base: capacity,
            last_done: Instant::now(),
            inflight: HashMap::new(),
            lost: false,
        }
    }

    /// Adapts the window after outcomes came; `starved`: it holds no task while some wait.
    fn adapt(&mut self, starved: bool) {
        let now = Instant::now();
        if now.duration_since(self.last_done) > SLOW {
            self.capacity = self.base;
        } else if starved {
            self.capacity = (self.capacity * 2).min(self.base * 64);
        }
        self.last_done = now;
    }
}

/// Outcomes further apart than this mean long tasks: the window goes back to its base.
const SLOW: Duration = Duration::from_millis(2);

/// How long the agents have to stop their pools.
const STOP_WITHIN: Duration = Duration::from_secs(60);

/// Tasks bound for one agent: their messages, the parts those name, and the message's bytes so
/// far.
type Batch = (Vec<TaskMsg>, Vec<Vec<u8>>, usize);

/// The engine of a cluster pool.
pub(crate) struct Front {
    transport: Option<Box<dyn Transport>>,
    world: Arc<World>,
    /// Indexed by rank; `None` for rank 0 and the agents left out of this session.
    agents: Vec<Option<Agent>>,
    pending: VecDeque<Task>,
    /// How the engine polls (it learns the tasks' run times from their outcomes).
    pace: Pace,
}

impl Front {
    pub(crate) fn new(transport: Box<dyn Transport>, world: Arc<World>, agents: Vec<Agent>) -> Self {
        let size = transport.size() as usize;
        let mut by_rank: Vec<Option<Agent>> = (0..size).map(|_| None).collect();
        for a in agents {
            let r = a.rank as usize;
            if r < size {
                by_rank[r] = Some(a);
            }
        }
        Front {
            transport: Some(transport),
            world,
            agents: by_rank,
            pending: VecDeque::new(),
            pace: Pace::new(),
        }
    }

    fn t(&mut self) -> &mut dyn Transport {
        // Present until `run` returns it to the world.
        self.transport.as_deref_mut().expect("the front end's transport is present while it runs")
    }

    fn in_flight(&self) -> usize {
        self.agents.iter().flatten().map(|a| a.inflight.len()).sum()
    }

    /// Sends pending tasks to the agents with room, each to the one with the most room, in one
    /// message per agent. True if it sent any.
    fn dispatch(&mut self, link: &Link) -> bool {
        // Per agent: the tasks, the parts they name, and the bytes of the message so far.
        let mut batches: HashMap<u32, Batch> = HashMap::new();
        let mut any = false;
        while !self.pending.is_empty() {
            let best = self
                .agents
                .iter()
                .flatten()
                .filter(|a| !a.lost && a.inflight.len() < a.capacity)
                .max_by_key(|a| a.capacity - a.inflight.len())
                .map(|a| a.rank);
            let Some(rank) = best else { break };
            let Some(mut task) = self.pending.pop_front() else { break };
            any = true;
            if task.args.len() > MAX_MESSAGE - 1024 {
                let message = format!(
                    "the task is {} bytes, more than the 2 GiB one MPI message carries",
                    task.args.len()
                );
                link.finish(task, Err(Error::Arguments { message, source: None }));
                continue;
            }
            let batch = batches.entry(rank).or_default();
            let args = Payload::put(std::mem::take(&mut task.args), &mut batch.1);
            batch.2 += args.inline_len() + 32;
            batch.0.push(TaskMsg { id: task.id, func: task.func, args });
            let full = batch.2 > BATCH_BYTES;
            if let Some(a) = self.agents[rank as usize].as_mut() {
                a.inflight.insert(task.id, task);
            }
            if full {
                if let Some((tasks, parts, _)) = batches.remove(&rank) {
                    self.send_tasks(link, rank, tasks, parts);
                }
            }
        }
        for (rank, (tasks, parts, _)) in batches {
            if !tasks.is_empty() {
                self.send_tasks(link, rank, tasks, parts);
            }
        }
        any
    }

    /// Sends tasks (already counted in flight) and the parts they name to `rank`; a failure
    /// loses the agent.
    fn send_tasks(&mut self, link: &Link, rank: u32, tasks: Vec<TaskMsg>, parts: Vec<Vec<u8>>) {
        let sent = wire::encode_parts(&Down::Tasks(tasks), parts)
            .map_err(|e| LinkError { rank: Some(rank), message: e.to_string() })
            .and_then(|message| self.t().send(rank, message));
        if let Err(e) = sent {
            self.lose(link, rank, &e);
        }
    }

    /// Takes every message that has arrived. True if there was one.
    fn receive(&mut self, link: &Link) -> bool {
        let mut any = false;
        loop {
            let message = match self.t().try_recv() {
                Ok(Some(m)) => m,
                Ok(None) => return any,
                Err(e) => {
                    tracing::error!(error = %e, "the cluster pool cannot receive");
                    match e.rank {
                        Some(rank) => self.lose(link, rank, &e),
                        None => self.lose_all(link, &e),
                    }
                    return true;
                }
            };
            any = true;
            let (from, parts) = message;
            let mut parts = parts.into_iter();
            let head = parts.next().unwrap_or_default();
            match wire::decode::<Up>(&head) {
                Ok(Up::Done(done)) => {
                    let waiting = !self.pending.is_empty() || link.submitted();
                    let Some(Some(agent)) = self.agents.get_mut(from as usize) else { continue };
                    for DoneMsg { id, ran_us, outcome } in done {
                        self.pace.observe(Duration::from_micros(ran_us));
                        // The payload first: a part is taken even for a task no longer here, so
                        // that the next outcomes get their own parts.
                        let outcome = outcome.map(|payload| payload.take(&mut parts));
                        let Some(task) = agent.inflight.remove(&id) else { continue };
                        let outcome = match outcome {
                            Ok(bytes) => bytes.ok_or_else(|| Error::Os {
                                message: "a task's result was missing from its message".into(),
                                source: None,
                            }),
                            Err(e) => Err(Error::Remote {
                                host: agent.host.clone(),
                                rank: agent.rank,
                                error: Box::new(e.into()),
                            }),
                        };
                        link.finish(task, outcome);
                    }
                    agent.adapt(waiting && agent.inflight.is_empty());
                }
                Ok(other) => tracing::debug!(from, ?other, "a message out of place; ignored"),
                Err(e) => tracing::error!(from, error = %e, "a message the front end cannot read"),
            }
        }
    }

    /// The link to `rank` failed: its tasks fail with [`Error::AgentLost`] and it gets no more.
    fn lose(&mut self, link: &Link, rank: u32, e: &LinkError) {
        let Some(Some(agent)) = self.agents.get_mut(rank as usize) else { return };
        if !agent.lost {
            tracing::error!(rank, host = %agent.host, error = %e, "a node agent was lost");
        }
        agent.lost = true;
        let (host, rank) = (agent.host.clone(), agent.rank);
        for (_, task) in agent.inflight.drain() {
            link.finish(task, Err(Error::AgentLost { host: host.clone(), rank }));
        }
        if self.agents.iter().flatten().all(|a| a.lost) {
            let error = Error::AgentLost { host, rank };
            link.break_pool(error.clone());
            for task in self.pending.drain(..) {
                link.finish(task, Err(error.clone()));
            }
        }
    }

    fn lose_all(&mut self, link: &Link, e: &LinkError) {
        let ranks: Vec<u32> = self.agents.iter().flatten().map(|a| a.rank).collect();
        for rank in ranks {
            self.lose(link, rank, e);
        }
    }

    /// Fails every task not done with `error`.
    fn fail_all(&mut self, link: &Link, error: &Error) {
        for task in self.pending.drain(..) {
            link.finish(task, Err(error.clone()));
        }
        for agent in self.agents.iter_mut().flatten() {
            for (_, task) in agent.inflight.drain() {
                link.finish(task, Err(error.clone()));
            }
        }
    }

    /// Tells every agent to stop its pool (`Close` or `Terminate`) and waits, a bounded time, for
    /// each to say it did.
    fn stop_agents(&mut self, message: &Down) {
        let Ok(bytes) = wire::encode(message) else { return };
        let mut waiting: Vec<u32> = Vec::new();
        let ranks: Vec<u32> = self.agents.iter().flatten().filter(|a| !a.lost).map(|a| a.rank).collect();
        for rank in ranks {
            if self.t().send(rank, vec![bytes.clone()]).is_ok() {
                waiting.push(rank);
            }
        }
        let deadline = Instant::now() + STOP_WITHIN;
        let mut pace = Pace::new();
        while !waiting.is_empty() {
            match crate::world::receive(self.t(), &mut pace, deadline) {
                Ok(Some((from, Up::Closed))) => waiting.retain(|&r| r != from),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "the cluster pool cannot receive while stopping");
                    break;
                }
            }
        }
        if !waiting.is_empty() {
            tracing::warn!(?waiting, "node agents did not stop their pools in time");
        }
    }
}

impl Engine for Front {
    fn run(mut self: Box<Self>, link: Link) {
        loop {
            let state = link.take(&mut self.pending);
            if state == State::Terminating {
                self.fail_all(&link, &Error::Terminated);
                self.stop_agents(&Down::Terminate);
                break;
            }
            let mut progress = self.dispatch(&link);
            progress |= self.receive(&link);
            for rank in self.t().lost_peers() {
                let gone = LinkError { rank: Some(rank), message: "the rank is gone".into() };
                self.lose(&link, rank, &gone);
            }
            if let Err(e) = self.t().flush() {
                match e.rank {
                    Some(rank) => self.lose(&link, rank, &e),
                    None => self.lose_all(&link, &e),
                }
            }
            let idle = self.pending.is_empty() && self.in_flight() == 0;
            if state == State::Closed && idle && !link.imaps_live() {
                self.stop_agents(&Down::Close);
                break;
            }
            if progress || link.submitted() {
                self.pace.reset();
                continue;
            }
            if idle {
                // Nothing in flight, so no message is coming: sleep until a submission or a
                // change of mode rings the pool's bell.
                link.sleep(Duration::from_millis(100));
                self.pace.reset();
            } else if let Some(pause) = self.pace.next() {
                if pause < MAX {
                    std::thread::sleep(pause);
                } else {
                    link.sleep(pause);
                }
            }
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        // Also when the engine unwinds: the next pool, and the program's end, need the link.
        if let Some(t) = self.transport.take() {
            self.world.give_back(t);
        }
    }
}
