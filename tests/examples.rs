//! The examples run and print what the tutorials print.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|d| d.parent()).expect("target dir").join("examples").join(name)
}

/// Runs the example `name` (with `envs`) and returns its standard output, having checked that it
/// succeeded; `None` (the test skips) when it was not built, which `why` explains.
fn run_example(name: &str, envs: &[(&str, &str)], why: &str) -> Option<String> {
    let exe = example(name);
    if !exe.exists() {
        eprintln!("skipping: {} was not built ({why})", exe.display());
        return None;
    }
    let out = Command::new(exe).envs(envs.iter().copied()).output().expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    Some(stdout)
}

#[test]
fn tour_runs_every_demo() {
    let Some(stdout) = run_example("tour", &[("MULTIPROC_TOUR_SCALE", "0.01")], "run `cargo test`") else {
        return;
    };
    for expected in [
        "== start:",
        "hkw\n",
        "current process name: squad-2",
        "main (sequential)",
        "main (parallel)",
        "func 2\nmain 1\n",
        "false (exit code Some(-15))",
        "worker is over",
        "active children after join: 0",
        "port = 8080",
        "error: child process panicked at",
        "with the lock: 1 ticket(s) sold for 1 seat",
        "without the lock:",
        "counter = 4000",
        "squares = [0.0, 1.0, 4.0, 9.0]",
        "consumer: all 3 items are there",
        "party 0: passed round 2",
        "party 2: passed round 2",
        "full: false\nempty: true\n0\n1\n2\n3\n4\nfull: false\nempty: true\n\nqueue.Empty",
        "empty: false, full: true, qsize: 3\nfirst get: 1",
        "== ipc: parent to child and child to child through a Queue ==\n111\n111\n",
        "all eaten, consumers stopped",
        "queue joined: 0 unfinished",
        "main start\n",
        "main end\n",
        "== results: apply_async results of p*p on two processes ==\n0\n1\n4\n9\n16\n25\n36\n49\n64\n81\n",
        "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n[8, 9, 1000]\n",
        "sum of squares below 500: 41541750",
        "same results on 1 and",
        "speed-up",
        "[(\"1\", \"1\"), (\"2\", \"2\")]\n[10, 1, 2, 3, 4]\n",
        "counter = 400\n",
        "1 * 1 = 1\n2 * 2 = 4\n3 * 3 = 9\n",
        "10 * 10 = 100\nmaster done",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("daemon is over"), "{stdout}");
    // The semaphore never let more than three in (how many overlapped depends on scheduling).
    let most =
        stdout.split("at most ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse::<u32>().ok());
    assert!(matches!(most, Some(1..=3)), "{stdout}");
    // The waiter wakes only after the event is set.
    let set = stdout.find("main: setting the event");
    let woke = stdout.find("waiter: the event is set");
    assert!(set.is_some() && woke.is_some() && set < woke, "{stdout}");
    assert_eq!(stdout.matches("(barrier action: every party arrived)").count(), 3, "{stdout}");
    // Every item made is eaten exactly once, in both producer-consumer demos.
    let made = stdout.lines().filter(|l| l.starts_with("Jon made ") || l.starts_with("Lin made ")).count();
    let eaten =
        stdout.lines().filter(|l| l.contains(" ate Jon made ") || l.contains(" ate Lin made ")).count();
    assert_eq!((made, eaten), (20, 20), "{stdout}");
    // The nine pool tasks each started and ended once.
    for i in 1..10 {
        assert_eq!(stdout.matches(&format!("start hello {i}\n")).count(), 1, "{stdout}");
        assert_eq!(stdout.matches(&format!("end hello {i}\n")).count(), 1, "{stdout}");
    }
}

/// The bytes example: frames of `ByteBuf` through a queue, replies through a pipe.
#[test]
fn bytes_example_round_trips_frames() {
    let Some(stdout) = run_example("bytes", &[], "run `cargo test`") else { return };
    assert!(stdout.contains("frame 7: 1048576 bytes back, first byte 0xff\n"), "{stdout}");
    assert!(stdout.contains("8 frames of 1024 KiB, checksum 1063256064\n"), "{stdout}");
}

/// The shared-memory example: a `ShareableList` set in place, and a `SharedMemoryManager`'s list
/// that two processes fill and that is gone after the manager's shutdown.
#[test]
fn shared_memory_example_sets_items_and_cleans_up() {
    let Some(stdout) = run_example("shared_memory", &[], "run `cargo test`") else { return };
    for line in [
        "a[2] = Float(-78.5)\n",
        "a[2] = Str(\"dry ice\")\n",
        "refused: item 2 has 8 bytes of storage, too few for 46 bytes\n",
        "a[3] = Int(100), count(42) = 1, len = 7\n",
        "sum of squares of 0..2000 = 2664667000\n",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    assert!(stdout.contains("exists: false\n"), "{stdout}");
}

/// The async example (feature `tokio`): workers fed through a queue, results awaited.
#[test]
fn async_pipeline_example_sums_the_squares() {
    let Some(stdout) = run_example("async_pipeline", &[], "it needs `--features tokio`") else { return };
    assert!(stdout.contains("200 jobs by 3 processes, sum of squares 2686700\n"), "{stdout}");
}

/// The cluster example under `mpiexec -n 3` (rank 0 and two node agents), and without a launcher
/// (a local pool): the same program and the same results.
#[cfg(feature = "mpi")]
#[test]
fn cluster_map_runs_across_node_agents_and_alone() {
    let exe = example("cluster_map");
    assert!(exe.exists(), "{} was not built (run `cargo test --features mpi`)", exe.display());
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("run the cluster example");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    let mpi = run(Command::new("timeout").args(["-s", "KILL", "120", "mpiexec", "-n", "3"]).arg(&exe));
    assert!(mpi.contains("rank 0 of an MPI job: 4 workers across the node agents"), "{mpi}");
    let alone = run(Command::new("timeout").args(["-s", "KILL", "120"]).arg(&exe));
    assert!(alone.contains("no MPI launcher: a local pool of 2 workers"), "{alone}");
    let checksum = |text: &str| {
        text.lines().find(|l| l.contains("checksum")).map(|l| l.split("checksum").nth(1).map(str::to_owned))
    };
    assert_eq!(checksum(&mpi), checksum(&alone), "{mpi}\n{alone}");
    assert!(checksum(&mpi).is_some(), "{mpi}");
}
