//! multiproc's [`Pool`] across machines: the same pool, whose workers run on the hosts of an MPI
//! job (Python's `mpi4py.futures.MPIPoolExecutor`, with the local pool's API and its crash
//! isolation).
//!
//! The same binary runs on every rank, one rank per host, started by the launcher
//! (`mpiexec -n 1+H ./app`, or Slurm's `srun`). Rank 0 runs `main`, and a [`Cluster`] pool there
//! sends its tasks to the other ranks. Every other rank is a *node agent*: it never reaches
//! `main` (a constructor that runs before it turns the process into the agent, as multiproc's
//! children are), and runs each task on a local [`Pool`] of its host, so a task that panics, is
//! killed (the OOM killer's SIGKILL, a segfault) or runs past its timeout fails alone, with
//! [`Error::Remote`] naming the host, and never takes an MPI rank down.
//!
//! Without a launcher (a plain `./app`), or with the `mpi` feature off, [`Cluster::builder`]
//! builds a local pool: the same code runs on a laptop and on a cluster.
//!
//! # Examples
//!
//! ```
//! use proc_mpi::Cluster;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! // Under `mpiexec -n 3` the tasks run on ranks 1 and 2; here, on a local pool.
//! let pool = Cluster::builder().processes_per_host(2).build()?;
//! assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
//! pool.close();
//! pool.join()?;
//! # Ok::<(), proc_mpi::Error>(())
//! ```
//!
//! # Running it
//!
//! | where | command |
//! |---|---|
//! | one host | `mpiexec -n 3 ./app` (rank 0 and two agents) |
//! | many hosts | `mpiexec -f hosts -ppn 1 -n 1+H ./app` (one rank per host; the first host runs rank 0 as well as an agent if listed twice) |
//! | Slurm | `srun --mpi=pmi2 --ntasks-per-node=1 -N H ./app` (or `--mpi=pmix`) |
//!
//! Each agent's pool has as many workers as its host's usable CPUs, or
//! [`processes_per_host`](Builder::processes_per_host).
//!
//! # Faults
//!
//! - A worker that dies, a task that panics or runs past the task timeout: that task fails with
//!   [`Error::Remote`] (host, rank and the local error: [`Error::WorkerLost`],
//!   [`Error::Panicked`], [`Error::TaskTimeout`]), the agent's pool replaces the worker, and the
//!   pool goes on.
//! - A whole rank lost (its host down, the agent killed): MPICH's launcher then ends the whole
//!   job, rank 0 included; nothing can be done about it from inside. Nothing is left behind: an
//!   agent's workers and fork server exit when the agent dies, and its shared memory is
//!   anonymous. With an MPI library that lets a job outlive a rank and reports the failure, the
//!   lost agent's tasks fail with [`Error::AgentLost`] naming the host, and the pool goes on with
//!   the others.
//! - A host running another build of the program gets no tasks (its agent says which build it
//!   runs when it joins), and a task whose function a host cannot find fails there with a clear
//!   error, never running other code.
//!
//! # Features
//!
//! `mpi` (off by default, so that the workspace builds without an MPI library): links MPI through
//! rsmpi's bindings (MPICH or Open MPI, found by `mpicc`/pkg-config; libclang for bindgen).

#![warn(missing_docs)]

mod agent;
mod front;
mod launch;
mod local;
#[cfg(feature = "mpi")]
mod mpi;
mod pace;
mod transport;
mod wire;
mod world;

use std::time::Duration;

use proc_core::{StartMethod, Target};
pub use proc_pool::{Error, Pool, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A cluster pool: a [`Pool`] whose workers are on the hosts of an MPI job (see the crate's docs).
#[derive(Debug, Clone, Copy)]
pub struct Cluster;

impl Cluster {
    /// A cluster pool with the default options (every usable CPU of every host).
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn pool() -> Result<Pool> {
        Cluster::builder().build()
    }

    /// A builder for the options: those of [`proc_pool::Builder`], per host.
    pub fn builder() -> Builder {
        Builder { pool: Pool::builder(), per_host: None }
    }

    /// This process' rank in its MPI job, if a launcher started it as a rank (on rank 0, where
    /// `main` runs: `Some(0)`); `None` for a program run without a launcher.
    pub fn rank() -> Option<u32> {
        world::rank()
    }
}

/// Options of a [`Cluster`] pool: [`proc_pool::Builder`]'s, applied to each host's local pool.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use proc_mpi::Cluster;
///
/// fn setup(greeting: String) {
///     assert_eq!(greeting, "hi");
/// }
///
/// fn id(x: u32) -> u32 {
///     x
/// }
///
/// let pool = Cluster::builder()
///     .processes_per_host(2)
///     .initializer(setup, ("hi".to_string(),))
///     .task_timeout(Duration::from_secs(60))
///     .build()?;
/// assert_eq!(pool.map(id, [1, 2, 3])?, [1, 2, 3]);
/// # Ok::<(), proc_mpi::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "a cluster pool builder does nothing until `build` is called"]
pub struct Builder {
    pool: proc_pool::Builder,
    per_host: Option<usize>,
}

impl Builder {
    /// Workers on each host (default: the host's usable CPUs).
    pub fn processes_per_host(mut self, n: usize) -> Self {
        self.per_host = Some(n);
        self
    }

    /// A function every worker on every host runs once when it starts, with `args`
    /// ([`proc_pool::Builder::initializer`]). The arguments travel to the hosts as bytes, so
    /// they cannot hold a handle (a queue, a lock): [`build`](Self::build) refuses those.
    pub fn initializer<F, A>(mut self, f: F, args: A) -> Self
    where
        F: Target<A, Output = ()> + Copy,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        self.pool = self.pool.initializer(f, args);
        self
    }

    /// Each worker exits after this many tasks and is replaced (Python's `maxtasksperchild`).
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.pool = self.pool.maxtasksperchild(n);
        self
    }

    /// The start method of every host's workers.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.pool = self.pool.start_method(method);
        self
    }

    /// The longest a task may run on its worker ([`proc_pool::Builder::task_timeout`]); it
    /// counts from the task's start on its host.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.pool = self.pool.task_timeout(timeout);
        self
    }

    /// Tasks each worker holds ([`proc_pool::Builder::prefetch`]); each host holds this many
    /// per worker (at least 2), the credits by which the front end hands out work.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.pool = self.pool.prefetch(n);
        self
    }

    /// Starts the pool: on rank 0 of an MPI job of two or more ranks, every node agent starts a
    /// local pool and the returned pool sends them its tasks; otherwise a local pool.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a setting of zero, when another cluster pool of this
    /// program is still open (join or drop it first), or when no agent runs this build;
    /// [`Error::Arguments`] when the initializer's arguments do not serialize as plain bytes;
    /// [`Error::Os`] when MPI cannot be joined, an agent does not answer within two minutes, or
    /// no agent could start its pool ([`Error::Remote`] with its reason when one said why).
    pub fn build(self) -> Result<Pool> {
        match world::global()? {
            Some(world) if world.size() > 1 => self.build_in(&world),
            _ => self.build_local(),
        }
    }

    fn build_local(self) -> Result<Pool> {
        let mut b = self.pool;
        if let Some(n) = self.per_host {
            b = b.processes(n);
        }
        b.build()
    }

    fn build_in(self, world: &std::sync::Arc<world::World>) -> Result<Pool> {
        let mut b = self.pool;
        if let Some(n) = self.per_host {
            b = b.processes(n);
        }
        let s = b.settings()?;
        let open = wire::Open {
            processes: s.processes,
            init: s.init,
            max_tasks: s.max_tasks,
            start_method: s.start_method.map(|m| m.as_str().to_string()),
            timeout: s.timeout,
            prefetch: s.prefetch,
        };
        world.open(b, open)
    }
}

/// Before `main`: a node agent serves and exits; rank 0 arranges for the agents to be told to
/// exit when the program ends. Either marks the environment so that processes it starts are not
/// taken for ranks.
#[ctor::ctor(unsafe)]
fn enter_role() {
    let Some(rank) = world::rank() else { return };
    if !cfg!(feature = "mpi") {
        return;
    }
    // Single-threaded still: nothing else reads the environment now.
    std::env::set_var(launch::MARK, std::process::id().to_string());
    if rank == 0 {
        proc_os::child::at_exit(world::end_job);
        return;
    }
    let code = agent_main(rank);
    // `exit` flushes std's buffers and runs other libraries' exit handlers; MPI is finalized.
    std::process::exit(code);
}

#[cfg(feature = "mpi")]
fn agent_main(rank: u32) -> i32 {
    // A multiproc process: mark the dispatcher ready, as its constructor does after this one.
    proc_core::init();
    // Start the fork server before MPI is joined, so that the workers are forked from a process
    // that never held MPI state.
    warm_up();
    let mut mpi = match mpi::Mpi::init() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("multiproc: node agent of rank {rank} cannot join MPI: {e}");
            return 1;
        }
    };
    let outcome = agent::serve(&mut mpi);
    let code = match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("multiproc: node agent of rank {rank} lost its link to rank 0: {e}");
            1
        }
    };
    mpi.finalize();
    code
}

#[cfg(not(feature = "mpi"))]
fn agent_main(_rank: u32) -> i32 {
    0
}

/// Starts and joins a no-op process: the fork server (the default start method's) is then
/// running.
#[cfg(feature = "mpi")]
fn warm_up() {
    fn noop() {}
    if proc_core::get_start_method() == StartMethod::ForkServer {
        if let Ok(p) = proc_core::Process::new(noop, ()).start() {
            let _ = p.join();
        }
    }
}

#[doc(hidden)]
pub mod testing;

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;
