//! The raw floors the benchmarks compare with, one module per bench family: process starts, synchronization,
//! queues and pipes. Each is the least the OS lets that job cost, measured the way the benchmark measures
//! multiproc.

pub(crate) mod pipe;
pub(crate) mod queue;
pub(crate) mod start;
pub(crate) mod sync;
