//! Helpers shared by the integration tests (from `test_support`), plus the list of methods.

#![allow(dead_code, unreachable_pub)]

pub mod forkserver;

pub use test_support::{serial, Watchdog};

/// Runs one `#[ignore]`d helper test of this binary in a fresh process.
pub fn run_helper(name: &str, envs: &[(&str, &str)]) -> std::process::Output {
    test_support::run_helper(name, envs).expect("run helper")
}

/// The path of an example binary of this package.
pub fn example(name: &str) -> std::path::PathBuf {
    test_support::example(name).expect("example path")
}

/// The start methods every test runs under.
pub fn methods() -> Vec<proc_core::StartMethod> {
    proc_core::get_all_start_methods()
}
