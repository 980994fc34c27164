//! Benchmarks of multiproc.
