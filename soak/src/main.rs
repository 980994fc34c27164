//! The soak under chaos, `cargo xtask soak [--minutes N] [--seed S] [--cycles N]`: workloads on
//! queues, a pool and a manager while participants, and now and then a whole round parent, are
//! SIGKILLed at random moments; after every round, every message and task is accounted for and
//! nothing may be left behind. RELIABILITY.md at the workspace root describes the checks and
//! holds the figures of a long run.
//!
//! One binary, three roles:
//! - `soak run [--minutes N] [--seed S] [--cycles N] [--no-isolate]`: the orchestrator
//!   (`run.rs`), a plain program that starts the others;
//! - `soak round --seed S --dir D`: one round (`round.rs`), a multiproc program of its own;
//! - `soak cycles --method M --count N`: start/exit cycles under one start method (`cycles.rs`).
//!
//! Its own crate (`publish = false`) rather than a binary of `benches/`: it is no benchmark, and
//! it needs none of criterion's or rayon's build.
//!
//! Linux only: it reads `/proc` and signals through pidfds. Elsewhere it says so and succeeds.

#[cfg(target_os = "linux")]
mod cli;
#[cfg(target_os = "linux")]
mod cycles;
#[cfg(target_os = "linux")]
mod probe;
#[cfg(target_os = "linux")]
mod rng;
#[cfg(target_os = "linux")]
mod round;
#[cfg(target_os = "linux")]
mod run;

fn main() {
    #[cfg(target_os = "linux")]
    cli::main();
    #[cfg(not(target_os = "linux"))]
    println!("soak: skipped: the soak needs Linux (it reads /proc and signals through pidfds)");
}
