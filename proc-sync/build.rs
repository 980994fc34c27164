//! Declares the crate's own cfg, `proc_sync_loom` (the loom models), so that `check-cfg` knows it.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(proc_sync_loom)");
}
