//! `?` works across crates in a function that returns `multiproc::Result`, and each crate's
//! error lands in its own variant of `multiproc::Error`.

#![allow(clippy::unwrap_used)]

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use multiproc::{Error, GetError, Lock, Manager, Pool, Process, PutError, Queue, QueueError};

/// One test at a time: they fork, which is best done with no other test thread around.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn square(x: u32) -> u32 {
    x * x
}

fn fails(_: u32) -> u32 {
    panic!("no good")
}

fn exits(code: i32) -> u32 {
    std::process::exit(code)
}

fn dies_holding(lock: Lock) {
    std::mem::forget(lock.acquire().unwrap());
    std::process::exit(0)
}

/// What a user's `main` looks like: every crate, one error type.
fn main_like() -> multiproc::Result<()> {
    let p = Process::new(square, (7,)).start()?;
    let q = Queue::new(4)?;
    q.put(p.join()?)?;
    assert_eq!(q.get()?, 49);

    let lock = Lock::new()?;
    let held = lock.acquire()?;
    assert!(lock.acquire_timeout(Duration::from_millis(20))?.is_none(), "a held lock times out");
    drop(held);
    assert!(lock.acquire_timeout(Duration::from_millis(20))?.is_some());

    let pool = Pool::new(2)?;
    assert_eq!(pool.map(square, [1, 2, 3])?, [1, 4, 9]);

    let manager = Manager::start()?;
    let d = manager.dict::<String, u32>()?;
    d.insert("answer".into(), 42)?;
    assert_eq!(d.get("answer")?, Some(42));
    let mq = manager.queue::<u32>(1)?;
    mq.put(1)?;
    assert_eq!(mq.get()?, 1);
    manager.shutdown()?;
    Ok(())
}

#[test]
fn question_mark_works_across_crates() {
    let _g = serial();
    main_like().unwrap();
}

#[test]
fn each_crate_has_its_variant() {
    let _g = serial();

    let q = Queue::<u32>::new(1).unwrap();
    let empty = (|| -> multiproc::Result<u32> { Ok(q.get_nowait()?) })().unwrap_err();
    assert!(matches!(empty, Error::Queue(QueueError::Get(GetError::Empty))), "{empty:?}");
    q.put(1).unwrap();
    let full = (|| -> multiproc::Result<()> { Ok(q.put_nowait(2)?) })().unwrap_err();
    assert!(matches!(full, Error::Queue(QueueError::Put(PutError::Full(())))), "{full:?}");
    assert_eq!(full.to_string(), "the queue is full");

    let pool = Pool::new(1).unwrap();
    let panicked = (|| -> multiproc::Result<u32> { Ok(pool.apply(fails, (1,))?) })().unwrap_err();
    assert!(matches!(&panicked, Error::Pool(e) if e.is_panic()), "{panicked:?}");
    assert!(panicked.to_string().contains("no good"), "{panicked}");

    let manager = Manager::start().unwrap();
    let mq = manager.queue::<u32>(1).unwrap();
    mq.put(1).unwrap();
    let full = mq.put_nowait(2).unwrap_err();
    assert_eq!(full.into_inner(), 2, "the manager's queue hands the value back");
    let full = (|| -> multiproc::Result<()> { Ok(mq.put_nowait(3)?) })().unwrap_err();
    assert!(matches!(full, Error::Manager(multiproc::manager::Error::Full)), "{full:?}");
    manager.shutdown().unwrap();

    let code = (|| -> multiproc::Result<()> {
        Process::new(exits, (3,)).start()?.join()?;
        Ok(())
    })()
    .unwrap_err();
    assert!(matches!(&code, Error::Process(e) if e.exit_code() == Some(3)), "{code:?}");
}

#[test]
fn owner_died_converts_and_releases() {
    let _g = serial();
    let lock = Lock::new().unwrap();
    let dies = Process::new(dies_holding, (lock.clone(),)).start().unwrap();
    let _ = dies.join();
    let died = (|| -> multiproc::Result<()> {
        let _guard = lock.acquire()?;
        Ok(())
    })()
    .unwrap_err();
    assert!(matches!(died, Error::Sync(multiproc::sync::Error::OwnerDied { .. })), "{died:?}");
    assert!(lock.acquire_timeout(Duration::from_millis(100)).unwrap().is_some(), "the guard was dropped");
}

#[test]
fn the_error_boxes() {
    fn boxes<E: std::error::Error + Send + Sync + 'static>() {}
    boxes::<Error>();
    boxes::<QueueError>();
    boxes::<multiproc::sync::Error>();
    boxes::<multiproc::manager::PutError<u8>>();
    let e: Box<dyn std::error::Error + Send + Sync> = Error::from(GetError::Empty).into();
    assert_eq!(e.to_string(), "the queue is empty");
}
