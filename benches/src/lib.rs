//! Helpers for the multiproc benchmarks: CPU pinning and the raw floors the benchmarks compare with
//! (process starts; a process-shared pthread mutex and a futex ping-pong for synchronization; a
//! shared-memory SPSC ring, a byte ring, `memcpy` and a socket-pair ping-pong for queues and pipes).
//!
//! Modules, each depending only on those above it:
//! - `shared`: memory a child made by `fork` shares with its parent ([`SharedPage`], [`SharedMutex`]).
//! - `gate`: the bound on every wait ([`BOUND`]), the start [`Gate`], [`join_bounded`], and the raw
//!   `fork` child the floors run.
//! - `floors`: the floors, by job: `start` (process starts), `sync`, `queue` and `pipe`.
//! - [`pingpong`]: multiproc's own round trips, which the benchmarks and `spin` share.
//!
//! This file holds the pinning and group-naming helpers every benchmark uses, and [`cpu_time`].

mod floors;
mod gate;
pub mod pingpong;
mod shared;

pub use floors::pipe::{floor_socketpair_pingpong, floor_socketpair_pingpong_polling};
pub use floors::queue::{
    floor_byte_ring, floor_memcpy, floor_spsc_ring, BacklogFloor, BYTE_RING, RING_SLOTS,
};
pub use floors::start::{raw_fork_waitpid, reexec_self};
#[cfg(target_os = "linux")]
pub use floors::sync::floor_futex_pingpong;
pub use floors::sync::floor_pthread_counter;
pub use gate::{join_bounded, Gate, BOUND};
pub use shared::{SharedMutex, SharedPage};

/// Whether this run pins itself to one CPU (`MULTIPROC_BENCH_PIN=1`); set by `cargo xtask bench`.
pub fn pinned() -> bool {
    std::env::var_os("MULTIPROC_BENCH_PIN").is_some_and(|v| v == "1")
}

/// A criterion group name with the pinning mode appended: `name_free` or `name_pinned`.
pub fn group_name(name: &str) -> String {
    format!("{name}_{}", if pinned() { "pinned" } else { "free" })
}

/// Pins this process to one CPU when the run asks for it ([`pinned`]).
pub fn pin_if_asked() {
    if pinned() {
        pin_to_one_cpu();
    }
}

/// Pins this process (and the children it starts from now on) to CPU 0, where the OS allows.
pub fn pin_to_one_cpu() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `set` is a zeroed cpu_set_t, a valid empty set, that CPU_SET fills; the call
        // reads exactly `size_of::<cpu_set_t>()` bytes from it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

/// CPU time (user + system) that `getrusage(who)` reports: `libc::RUSAGE_SELF` for this process,
/// `libc::RUSAGE_CHILDREN` for its children that have been reaped; zero if the call fails.
pub fn cpu_time(who: libc::c_int) -> std::time::Duration {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return std::time::Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64) + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A criterion group name with proc-sync's wait/wake backend and the pinning mode appended:
/// `name_futex_free`, `name_polling_pinned`, ...
pub fn backend_group_name(name: &str) -> String {
    group_name(&format!("{name}_{}", multiproc::sync::backend()))
}
