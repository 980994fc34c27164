//! Every re-export path of the facade reaches its item.

#![allow(clippy::unwrap_used)]

#[test]
fn reexports() {
    let _ = multiproc::process::cpu_count();
    let _ = multiproc::cpu_count();
    let _ = multiproc::process_cpu_count();
    let _ = multiproc::shared_memory::Segment::new(1).unwrap();
    let _: fn(std::os::fd::OwnedFd) -> multiproc::handle::Fd = multiproc::handle::Fd::from;
    assert_eq!(multiproc::current_process().name(), "MainProcess");
    assert!(multiproc::parent_process().is_none());
    assert_eq!(multiproc::get_all_start_methods().len(), 3);
    let _: multiproc::Context = multiproc::get_context(multiproc::StartMethod::Spawn);
    let p: multiproc::Process<u8> = multiproc::Process::new(|| 1u8, ()).start().unwrap();
    assert_eq!(p.join().unwrap(), 1);
    let _ = multiproc::active_children();
    let _ = multiproc::sync::Lock::new().unwrap();
    let _ = multiproc::Lock::new().unwrap();
    let _ = multiproc::RLock::new().unwrap();
    let _ = multiproc::Semaphore::new(1).unwrap();
    let _ = multiproc::BoundedSemaphore::new(1).unwrap();
    let _ = multiproc::Event::new().unwrap();
    let _ = multiproc::Value::new(0u8).unwrap();
    let _ = multiproc::Array::<u8>::zeroed(1).unwrap();
    assert!(!multiproc::sync::backend().is_empty());
    let pool: multiproc::Pool = multiproc::pool::Pool::new(1).unwrap();
    let r: multiproc::AsyncResult<u8> = pool.apply_async(|x: u8| x + 1, (1,)).unwrap();
    assert_eq!(r.get().unwrap(), 2);
    let _: multiproc::pool::Builder = multiproc::Pool::builder();
    let squares = pool.map_with(|x: u8| x * x, [1, 2, 3], multiproc::Opts::new().chunksize(2)).unwrap();
    assert_eq!(squares, [1, 4, 9]);
    let m: multiproc::Manager = multiproc::manager::Manager::start().unwrap();
    let d: multiproc::manager::Dict<u8, u8> = m.dict().unwrap();
    assert_eq!(d.insert(1, 2).unwrap(), None);
    let e: multiproc::Result<()> = Err(multiproc::queue::GetError::Empty.into());
    assert!(matches!(e, Err(multiproc::Error::Queue(multiproc::QueueError::Get(_)))));
    let _: multiproc::sync::Result<()> = Err(multiproc::sync::ReleaseError::NotHeld.into());
}

/// The cluster pool's paths (feature `mpi`): without a launcher it is a local pool.
#[cfg(feature = "mpi")]
#[test]
fn cluster_reexports() {
    assert_eq!(multiproc::Cluster::rank(), None);
    let pool: multiproc::Pool = multiproc::mpi::Cluster::builder().processes_per_host(1).build().unwrap();
    assert_eq!(pool.apply(|x: u8| x + 1, (1,)).unwrap(), 2);
    let r: multiproc::Result<multiproc::Pool> = multiproc::Cluster::pool().map_err(Into::into);
    assert!(r.is_ok());
}
