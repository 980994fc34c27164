//! tokio runtimes for the tests of the async APIs (feature `tokio`).

/// A current-thread and a multi-thread (2 workers) runtime, both with I/O and time enabled: an
/// async test runs its body on each.
///
/// # Panics
///
/// If a runtime cannot be built (out of threads or descriptors).
pub fn runtimes() -> [tokio::runtime::Runtime; 2] {
    [
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a current-thread runtime"),
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a multi-thread runtime"),
    ]
}
