//! `cargo xtask ci` and `cargo xtask check-macos`: the one list of checks (the one-minute soak
//! last), and the clippy run for macOS from a Linux host.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::run;

pub(crate) fn ci() -> Result<()> {
    run("cargo", &["fmt", "--all", "--check"], &[])?;
    run("cargo", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--features",
            "multiproc/force-portable",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    run("cargo", &["doc", "--workspace", "--no-deps"], &[("RUSTDOCFLAGS", "-D warnings")])?;
    check_macos()?;
    publish_dry_run()?;
    // The README's test command.
    run("cargo", &["test", "--workspace"], &[])?;
    prune_test_binaries()?;
    // The portable backend, as macOS runs it.
    run("cargo", &["test", "--workspace", "--features", "multiproc/force-portable"], &[])?;
    prune_test_binaries()?;
    tokio()?;
    // The manager over TLS (feature `tls`).
    run(
        "cargo",
        &["clippy", "-p", "proc-manager", "--all-targets", "--features", "tls", "--", "-D", "warnings"],
        &[],
    )?;
    run("cargo", &["test", "-p", "proc-manager", "--features", "tls", "--test", "tls"], &[])?;
    run("cargo", &["test", "-p", "proc-manager", "--features", "tls", "--doc", "tls"], &[])?;
    mpi()?;
    loom()?;
    no_shared_memory_left()?;
    // The one-minute soak under chaos (RELIABILITY.md), after the tests: it fails on any message
    // or task not accounted for and on anything left behind. It reads /proc: Linux only.
    if cfg!(target_os = "linux") {
        crate::soak::soak(&[])
    } else {
        eprintln!("ci: skipping the soak: it needs Linux (/proc, pidfds)");
        Ok(())
    }
}

/// Removes the test and example executables of the debug profile once their run is over: each
/// test run below builds with other features, so it links executables of its own and never reuses
/// these, and the two workspace runs' executables together took most of a full run's disk (a CI
/// machine once ran out). Cargo rebuilds whatever a later command asks for and finds missing.
fn prune_test_binaries() -> Result<()> {
    let debug = crate::bench::target_dir()?.join("debug");
    let mut freed = 0u64;
    for dir in [debug.join("deps"), debug.join("examples")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            // Executables have no extension there; libraries (`.rlib`, `.rmeta`, `.so`, `.d`) do.
            let name = entry.file_name();
            if name.to_string_lossy().contains('.') {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() && is_executable(&meta) {
                let path = entry.path();
                std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
                freed += meta.len();
            }
        }
    }
    eprintln!("ci: removed {} MiB of test executables already run", freed >> 20);
    Ok(())
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

/// The async APIs (feature `tokio` of the facade, proc-core and proc-queue): lints, their tests
/// and doctests, and the async example (which `tests/examples.rs` runs once it is built).
fn tokio() -> Result<()> {
    run(
        "cargo",
        &["clippy", "--workspace", "--all-targets", "--features", "multiproc/tokio", "--", "-D", "warnings"],
        &[],
    )?;
    run("cargo", &["test", "-p", "proc-core", "--features", "tokio", "--test", "process_async"], &[])?;
    run("cargo", &["test", "-p", "proc-queue", "--features", "tokio", "--test", "async_io"], &[])?;
    // The manager's async calls, over a Unix socket, TCP and TLS (the last needs `tls`).
    run("cargo", &["test", "-p", "proc-manager", "--features", "tokio,tls", "--test", "async_proxies"], &[])?;
    run(
        "cargo",
        &[
            "test",
            "-p",
            "proc-core",
            "-p",
            "proc-queue",
            "-p",
            "proc-manager",
            "--features",
            "proc-core/tokio,proc-queue/tokio,proc-manager/tokio",
            "--doc",
            "async",
        ],
        &[],
    )?;
    run("cargo", &["test", "-p", "multiproc", "--features", "tokio", "--test", "examples", "async"], &[])
}

/// `cargo publish --dry-run` of every published crate, in dependency order: `--workspace` packages
/// them together and builds each from its package against the others' packages (so none needs
/// `--no-verify`, although none is on crates.io yet).
///
/// The verification builds in a target directory of its own, emptied before and after: cargo takes
/// a registry package of the same version as built already, so a build of an earlier run's
/// packages would stand in for this one's (and the directory would only take disk after).
fn publish_dry_run() -> Result<()> {
    forget_verified_packages()?;
    let dir = crate::bench::target_dir()?.join("publish-dry-run");
    let empty = |dir: &std::path::Path| -> Result<()> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", dir.display()))
            }
            _ => Ok(()),
        }
    };
    empty(&dir)?;
    let target = dir.to_string_lossy().into_owned();
    run(
        "cargo",
        &["publish", "--workspace", "--dry-run", "--allow-dirty"],
        &[("CARGO_TARGET_DIR", &target)],
    )?;
    empty(&dir)
}

/// Removes what an earlier dry run left in cargo's cache: `--workspace` verifies each crate against
/// the others' packages through a temporary local registry, whose sources cargo extracts under
/// `$CARGO_HOME/registry/src/-<hash>/<crate>-<version>/` and reuses as long as the version is the
/// same, so a later run would build against the sources of an earlier commit.
fn forget_verified_packages() -> Result<()> {
    let home = match std::env::var_os("CARGO_HOME") {
        Some(h) => std::path::PathBuf::from(h),
        None => match std::env::var_os("HOME") {
            Some(h) => std::path::PathBuf::from(h).join(".cargo"),
            None => return Ok(()),
        },
    };
    let ours = [
        "proc-os-",
        "proc-core-",
        "proc-sync-",
        "proc-queue-",
        "proc-pool-",
        "proc-manager-",
        "proc-mpi-",
        "multiproc-",
    ];
    for kind in ["src", "cache"] {
        let Ok(registries) = std::fs::read_dir(home.join("registry").join(kind)) else { continue };
        // Local registries only (their directory names start with `-`), never crates.io's.
        for registry in registries.flatten().filter(|r| r.file_name().to_string_lossy().starts_with('-')) {
            let Ok(entries) = std::fs::read_dir(registry.path()) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if ours.iter().any(|p| name.starts_with(p)) {
                    let path = entry.path();
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    removed.with_context(|| format!("cannot remove {}", path.display()))?;
                }
            }
        }
    }
    Ok(())
}

/// The loom model checks of the shared-memory protocols (release, each cfg in a target directory of
/// its own, so that no build undoes another's): the queue ring's models (`--cfg loom`) and
/// proc-sync's (`--cfg proc_sync_loom`, a cfg of its own: under proc-queue's models proc-sync runs
/// as usual). Each model's bounds are set in its code to fit a few minutes.
fn loom() -> Result<()> {
    let envs = [("RUSTFLAGS", "--cfg loom"), ("CARGO_TARGET_DIR", "target/loom")];
    run("cargo", &["test", "-p", "proc-queue", "--release", "--lib", "queue::model"], &envs)?;
    let envs = [("RUSTFLAGS", "--cfg proc_sync_loom"), ("CARGO_TARGET_DIR", "target/loom-sync")];
    run("cargo", &["test", "-p", "proc-sync", "--release", "--test", "loom"], &envs)
}

/// The features that link MPI, for every package that has one.
const MPI_FEATURES: &str = "proc-mpi/mpi,multiproc/mpi,multiproc-benches/mpi";

/// The cluster pool on a real MPI library (proc-mpi's `mpi` feature, which the workspace's
/// default build leaves off): lints, docs, proc-mpi's tests (`mpiexec -n 3` jobs) and the cluster
/// example's. Skipped with a note where `mpiexec` is missing, unless `MULTIPROC_CI_MPI=required`
/// (`.ci/run`, which installs MPICH).
fn mpi() -> Result<()> {
    let required = std::env::var("MULTIPROC_CI_MPI").is_ok_and(|v| v == "required");
    if !has_program("mpiexec") {
        if required {
            bail!("MULTIPROC_CI_MPI=required, but mpiexec is not installed");
        }
        eprintln!("ci: skipping the MPI checks: mpiexec not found (Debian: apt-get install mpich libmpich-dev libclang-dev)");
        return Ok(());
    }
    run(
        "cargo",
        &[
            "clippy",
            "-p",
            "proc-mpi",
            "-p",
            "multiproc",
            "-p",
            "multiproc-benches",
            "--all-targets",
            "--features",
            MPI_FEATURES,
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    run(
        "cargo",
        &["doc", "-p", "proc-mpi", "--features", "mpi", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    run("cargo", &["test", "-p", "proc-mpi", "--features", "mpi"], &[])?;
    // `--test` alone builds no example: build the one the test runs first.
    run("cargo", &["build", "-p", "multiproc", "--features", "mpi", "--example", "cluster_map"], &[])?;
    run("cargo", &["test", "-p", "multiproc", "--features", "mpi", "--test", "examples", "cluster_map"], &[])
}

/// The Apple target that `check-macos` compiles for.
const MACOS_TARGET: &str = "aarch64-apple-darwin";

/// `cargo clippy` (so `cargo check` and the lints the macOS runner applies) of the whole
/// workspace, every target, for macOS, on both backends' features, warnings denied. On macOS
/// itself the native build already does this.
pub(crate) fn check_macos() -> Result<()> {
    if cfg!(target_os = "macos") {
        eprintln!("check-macos: skipped on macOS, whose own build checks the same");
        return Ok(());
    }
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    if !installed.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == MACOS_TARGET))
    {
        run("rustup", &["target", "add", MACOS_TARGET], &[])
            .with_context(|| format!("check-macos needs the {MACOS_TARGET} standard library"))?;
    }
    if Command::new("clang").arg("--version").output().is_err() {
        bail!("check-macos needs clang, to compile criterion's one C file for {MACOS_TARGET}");
    }
    // That file includes only freestanding headers, so clang needs no macOS SDK for it.
    let envs = [
        ("CC_aarch64_apple_darwin", "clang"),
        ("CFLAGS_aarch64_apple_darwin", "-ffreestanding"),
        ("AR_aarch64_apple_darwin", if has_program("llvm-ar") { "llvm-ar" } else { "ar" }),
    ];
    for features in [&[][..], &["--features", "multiproc/force-portable"][..]] {
        let mut args = vec!["clippy", "--workspace", "--all-targets", "--target", MACOS_TARGET];
        args.extend_from_slice(features);
        args.extend(["--", "-D", "warnings"]);
        run("cargo", &args, &envs)?;
    }
    Ok(())
}

fn has_program(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok()
}

/// The prefixes of the shared-memory names the crates create (queues' spill segments, named
/// `SharedMemory`, the tests' own).
const SHM_PREFIXES: [&str; 3] = ["mp_", "mpa", "mpt_"];

/// Fails if the tests left shared-memory names in `/dev/shm` (where the system lists them).
fn no_shared_memory_left() -> Result<()> {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else { return Ok(()) };
    let left: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| SHM_PREFIXES.iter().any(|p| name.starts_with(p)))
        .collect();
    if !left.is_empty() {
        bail!("the tests left shared memory behind in /dev/shm: {}", left.join(" "));
    }
    Ok(())
}
