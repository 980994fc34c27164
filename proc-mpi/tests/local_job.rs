//! The cluster pool's logic on an in-process job: node agents on threads of the test, each with a
//! real local pool of worker processes, linked to the front end by channels instead of MPI (the
//! default build has no MPI; `mpi.rs` runs the same scenarios under `mpiexec`).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use proc_mpi::testing::LocalJob;
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn the_pool_api_runs_end_to_end_on_two_agents() {
    let _g = serial();
    let _w = Watchdog::new("local_job_api", LIMIT);
    let job = LocalJob::start(2).unwrap();
    common::api(&|b| job.pool(b), 2, true);
}

#[test]
fn a_task_past_its_timeout_fails_alone() {
    let _g = serial();
    let _w = Watchdog::new("local_job_timeout", LIMIT);
    let job = LocalJob::start(2).unwrap();
    common::timeout(&|b| job.pool(b), true);
}

#[test]
fn pools_run_one_after_another_and_terminate_fails_what_is_left() {
    let _g = serial();
    let _w = Watchdog::new("local_job_sessions", LIMIT);
    let job = LocalJob::start(2).unwrap();
    common::sessions(&|b| job.pool(b), true);
}

#[test]
fn without_a_launcher_a_cluster_pool_is_a_local_pool() {
    let _g = serial();
    let _w = Watchdog::new("local_fallback", LIMIT);
    assert_eq!(proc_mpi::Cluster::rank(), None);
    common::api(&|b| b.build(), 1, false);
    common::timeout(&|b| b.build(), false);
}

#[test]
fn a_lost_agent_fails_its_tasks_naming_its_host_and_the_pool_goes_on() {
    let _g = serial();
    let _w = Watchdog::new("local_job_agent_lost", LIMIT);
    let job = LocalJob::start(2).unwrap();
    let pool = job.pool(proc_mpi::Cluster::builder().processes_per_host(2)).unwrap();
    // One task that never ends on each agent (each goes to the agent with the most room).
    let stuck: Vec<_> = (0..2).map(|_| pool.apply_async(common::forever, ()).unwrap()).collect();
    assert_eq!(pool.apply(common::square, (5,)).unwrap(), 25);
    job.lose_agent(1);
    let mut lost = 0;
    for r in &stuck {
        match r.get_timeout(Duration::from_secs(5)) {
            Err(proc_mpi::Error::AgentLost { host, rank }) => {
                assert_eq!((host.as_str(), rank), ("host-1", 1));
                lost += 1;
            }
            Err(proc_mpi::Error::Timeout) => {}
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(lost, 1, "exactly the lost agent's task fails");
    // The other agent goes on.
    assert_eq!(pool.map(common::square, 0..20).unwrap(), (0..20).map(|i| i * i).collect::<Vec<u64>>());
    pool.terminate();
    pool.join().unwrap();
}
