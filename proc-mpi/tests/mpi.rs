//! The cluster pool under a real MPI launcher: each test runs `mpiexec -n 3` on this test binary
//! (rank 0 runs one `#[ignore]`d scenario; ranks 1 and 2 become node agents before the harness
//! starts), under `timeout`, then checks that no process of the job and no shared memory it made
//! is left.
//!
//! Built with the `mpi` feature only (`cargo test -p proc-mpi --features mpi`); `.ci/run` installs
//! MPICH for it.

#![cfg(feature = "mpi")]
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(300);

/// Marks the job's processes (their environment), to find any left behind.
const TAG: &str = "MULTIPROC_MPI_TEST_TAG";

/// Every name in `/dev/shm`: not only multiproc's (`test_support::shm_names` lists `mp_*` only),
/// so that what MPI itself makes there is checked too.
fn shm_names() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned())).collect())
        .unwrap_or_default()
}

/// Pids of live processes whose environment holds `tag`.
fn tagged(tag: &str) -> Vec<u32> {
    let needle = format!("{TAG}={tag}");
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/environ"))
                        .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `scenario` under `mpiexec -n <ranks>` and checks it passed and left nothing behind.
fn run_job(scenario: &str, ranks: u32, extra_env: &[(&str, &str)]) -> String {
    run_job_expecting(scenario, ranks, extra_env, true)
}

/// Another test binary of this crate built with it (so it links MPI too): as a rank, it is a node
/// agent of another build.
fn other_build() -> Option<std::path::PathBuf> {
    let dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // Built with the `mpi` feature (another build may be there from a plain `cargo test`).
            name.starts_with("local_job-")
                && !name.contains('.')
                && std::fs::read(e.path()).is_ok_and(|b| b.windows(15).any(|w| w == b"MPI_Init_thread"))
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// As [`run_job`]; `succeeds`: whether the job is to succeed (else the launcher ends it).
fn run_job_expecting(scenario: &str, ranks: u32, extra_env: &[(&str, &str)], succeeds: bool) -> String {
    let exe = std::env::current_exe().unwrap();
    let tag = format!("{}-{scenario}", std::process::id());
    let shm_before = shm_names();
    let other_build = other_build();
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "240", "mpiexec", "-n", &ranks.to_string()])
        .arg(&exe)
        .args(["--ignored", "--exact", scenario, "--nocapture", "--test-threads", "1"])
        .env(TAG, &tag);
    if let Some(other) = other_build.filter(|_| scenario == "scenario_foreign") {
        // MPMD: one more rank runs another binary (another build of an agent).
        cmd.args([":", "-n", "1"]).arg(other);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("mpiexec runs (is MPICH installed?)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("rank 0 of an MPI job"), "{scenario} did not run as rank 0:\n{text}");
    if succeeds {
        assert!(out.status.success(), "{scenario} under mpiexec failed ({}):\n{text}", out.status);
        assert!(text.contains("test result: ok. 1 passed"), "{scenario} did not run:\n{text}");
    } else {
        // Ended by the launcher, not by `timeout` (which kills with SIGKILL: no exit code).
        assert!(out.status.code().is_some_and(|c| c != 0), "{scenario}: {}:\n{text}", out.status);
    }
    nothing_left(&tag, &shm_before);
    text
}

/// Checks that every process of the job tagged `tag` ends (the ranks when mpiexec returns, their
/// pools' workers and fork servers as they see their parent gone: a bounded wait for those exits,
/// looking every 50 ms) and that no `/dev/shm` name was added since `shm_before`.
fn nothing_left(tag: &str, shm_before: &BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = tagged(tag);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes of the job left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let new: Vec<String> = shm_names().difference(shm_before).cloned().collect();
    assert!(new.is_empty(), "shared memory left behind: {new:?}");
}

/// Whether this is rank 0 of an MPI job (the scenarios run only there).
fn in_job() -> bool {
    if proc_mpi::Cluster::rank() == Some(0) {
        println!("rank 0 of an MPI job");
        return true;
    }
    // Run by its test, the scenario must be rank 0.
    assert!(std::env::var_os(TAG).is_none(), "a scenario under mpiexec is not rank 0");
    eprintln!("not under mpiexec: the scenario is run by its test");
    false
}

#[test]
fn the_pool_api_runs_end_to_end_on_two_node_agents() {
    let _g = serial();
    let _w = Watchdog::new("mpi_api", LIMIT);
    run_job("scenario_api", 3, &[]);
}

#[test]
#[ignore = "run by the_pool_api_runs_end_to_end_on_two_node_agents under mpiexec"]
fn scenario_api() {
    if in_job() {
        common::api(&|b| b.build(), 2, true);
    }
}

#[test]
fn a_task_past_its_timeout_fails_alone_on_its_host() {
    let _g = serial();
    let _w = Watchdog::new("mpi_timeout", LIMIT);
    run_job("scenario_timeout", 3, &[]);
}

#[test]
#[ignore = "run by a_task_past_its_timeout_fails_alone_on_its_host under mpiexec"]
fn scenario_timeout() {
    if in_job() {
        common::timeout(&|b| b.build(), true);
    }
}

#[test]
fn pools_run_one_after_another_in_one_job() {
    let _g = serial();
    let _w = Watchdog::new("mpi_sessions", LIMIT);
    run_job("scenario_sessions", 3, &[]);
}

#[test]
#[ignore = "run by pools_run_one_after_another_in_one_job under mpiexec"]
fn scenario_sessions() {
    if in_job() {
        common::sessions(&|b| b.build(), true);
    }
}

#[test]
fn a_job_whose_main_makes_no_pool_still_ends() {
    let _g = serial();
    let _w = Watchdog::new("mpi_unused", LIMIT);
    run_job("scenario_unused", 3, &[]);
}

#[test]
#[ignore = "run by a_job_whose_main_makes_no_pool_still_ends under mpiexec"]
fn scenario_unused() {
    // Rank 0 never makes a pool: at its exit the agents are still told to exit.
    let _ = in_job();
}

#[test]
fn a_single_rank_job_runs_a_local_pool() {
    let _g = serial();
    let _w = Watchdog::new("mpi_single", LIMIT);
    run_job("scenario_single", 1, &[]);
}

#[test]
#[ignore = "run by a_single_rank_job_runs_a_local_pool under mpiexec"]
fn scenario_single() {
    if in_job() {
        let pool = proc_mpi::Cluster::builder().processes_per_host(2).build().unwrap();
        assert_eq!(pool.map(common::square, 0..4).unwrap(), [0, 1, 4, 9]);
        let err = pool.apply(common::fails_on_odd, (1,)).unwrap_err();
        assert_eq!(err.host(), None, "a local pool's error names no host: {err}");
    }
}

/// Kills the node agent that runs this task (the worker's parent).
fn kill_agent() -> u64 {
    let agent = proc_core::parent_process().expect("a pool worker has a parent").pid();
    // SAFETY: kill with a pid and a valid signal.
    unsafe { libc::kill(agent as libc::pid_t, libc::SIGKILL) };
    std::thread::sleep(Duration::from_secs(60));
    0
}

#[test]
fn a_killed_node_agent_ends_the_job_and_leaves_nothing_behind() {
    let _g = serial();
    let _w = Watchdog::new("mpi_agent_killed", LIMIT);
    let text = run_job_expecting("scenario_agent_killed", 3, &[], false);
    assert!(!text.contains("test result: ok"), "rank 0 was to be ended by the launcher:\n{text}");
}

#[test]
#[ignore = "run by a_killed_node_agent_ends_the_job_and_leaves_nothing_behind under mpiexec"]
fn scenario_agent_killed() {
    if in_job() {
        let pool = proc_mpi::Cluster::builder().processes_per_host(1).build().unwrap();
        // MPICH's launcher ends the whole job when a rank dies: this call never returns.
        let outcome = pool.apply(kill_agent, ());
        // With an MPI that lets a job outlive a rank, the task fails naming the host instead.
        let err = outcome.unwrap_err();
        assert!(matches!(err, proc_mpi::Error::AgentLost { .. }), "{err:?}");
        std::process::exit(3);
    }
}

#[test]
fn an_agent_of_another_build_gets_no_tasks() {
    let _g = serial();
    let _w = Watchdog::new("mpi_foreign", LIMIT);
    assert!(other_build().is_some(), "the local_job test binary is built alongside, with the mpi feature");
    // Ranks 0 and 1 run this binary; rank 2 runs the local_job test binary.
    run_job("scenario_foreign", 2, &[]);
}

#[test]
#[ignore = "run by an_agent_of_another_build_gets_no_tasks under mpiexec"]
fn scenario_foreign() {
    if in_job() {
        let pool = proc_mpi::Cluster::builder().processes_per_host(2).build().unwrap();
        // Only rank 1's pool: rank 2 runs another build.
        assert_eq!(pool.processes(), 2);
        let hosts: Vec<Result<u64, proc_mpi::Error>> = pool.imap(common::square, 0..50).collect();
        assert!(hosts.iter().all(Result::is_ok));
        pool.close();
        pool.join().unwrap();
    }
}

/// Pids of this job's processes, by tag, with the hostname each sees (its UTS namespace's).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

fn host_of(_: u32) -> String {
    hostname()
}

/// Tears the namespaces down, also when the test fails.
struct Namespaces(std::path::PathBuf);

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = Command::new(self.0.join("netns.sh")).arg("down").status();
    }
}

#[test]
fn the_pool_runs_across_three_hosts_over_tcp() {
    let _g = serial();
    let _w = Watchdog::new("mpi_hosts", LIMIT);
    let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let up = Command::new(scripts.join("netns.sh")).args(["up", "3"]).output().unwrap();
    let _down = Namespaces(scripts.clone());
    if up.status.code() == Some(77) {
        eprintln!("skipping: cannot make network namespaces here: {}", String::from_utf8_lossy(&up.stderr));
        return;
    }
    assert!(up.status.success(), "netns.sh up 3: {}", String::from_utf8_lossy(&up.stderr));
    let exe = std::env::current_exe().unwrap();
    let launcher = scripts.join("netns-launcher.sh");
    let tag = format!("{}-hosts", std::process::id());
    let shm_before = shm_names();
    // mpiexec on node0 (10.77.0.10), one rank per host; ranks talk TCP over the veths.
    let out = Command::new("timeout")
        .args(["-s", "KILL", "240"])
        .arg(&launcher)
        .arg("node0")
        .args(["mpiexec", "-launcher", "ssh", "-launcher-exec"])
        .arg(&launcher)
        .args(["-iface", "eth0", "-hosts", "10.77.0.10,10.77.0.11,10.77.0.12", "-ppn", "1", "-n", "3"])
        .arg(&exe)
        .args(["--ignored", "--exact", "scenario_hosts", "--nocapture", "--test-threads", "1"])
        .env(TAG, &tag)
        .env("UCX_TLS", "tcp,self")
        .env("UCX_NET_DEVICES", "eth0")
        // MPICH 4.0's finalize over TCP can hang: leave after the final barrier.
        .env("MULTIPROC_MPI_FINALIZE", "skip")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the job failed ({}):\n{text}", out.status);
    assert!(text.contains("test result: ok. 1 passed"), "{text}");
    assert!(text.contains("tasks ran on [\"node1\", \"node2\"]"), "{text}");
    nothing_left(&tag, &shm_before);
}

#[test]
#[ignore = "run by the_pool_runs_across_three_hosts_over_tcp under mpiexec"]
fn scenario_hosts() {
    if in_job() {
        assert_eq!(hostname(), "node0");
        common::api(&|b| b.build(), 2, true);
        let pool = proc_mpi::Cluster::builder().processes_per_host(2).build().unwrap();
        let hosts: BTreeSet<String> =
            pool.map_with(host_of, 0..64, proc_pool::Opts::new().chunksize(1)).unwrap().into_iter().collect();
        println!("tasks ran on {:?}", hosts.iter().collect::<Vec<_>>());
        let err = pool.apply(common::fails_on_odd, (1,)).unwrap_err();
        assert!(err.host().is_some_and(|h| h == "node1" || h == "node2"), "{err}");
        pool.close();
        pool.join().unwrap();
    }
}
