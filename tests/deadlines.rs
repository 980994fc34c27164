//! The `*_deadline(Instant)` variants next to the `*_timeout` ones: a deadline in the past gives
//! up at once where nothing is ready, and one in the future waits for what comes in time.

use std::time::{Duration, Instant};

use multiproc::sync::{Event, Lock, Semaphore};
use multiproc::{pipe, Pool, Process, Queue};

fn double(x: u32) -> u32 {
    x * 2
}

#[test]
fn deadlines_in_the_past_give_up_at_once_and_later_ones_wait() -> multiproc::Result<()> {
    let past = Instant::now();
    let soon = || Instant::now() + Duration::from_secs(30);

    let q = Queue::<u8>::new(1)?;
    assert!(q.get_deadline(past).is_err());
    q.put_deadline(1, soon())?;
    assert!(q.put_deadline(2, past).is_err(), "full");
    assert_eq!(q.get_deadline(soon())?, 1);

    let lock = Lock::new()?;
    let held = lock.acquire_deadline(soon())?;
    assert!(held.is_some());
    assert!(matches!(lock.acquire_deadline(past), Ok(None)), "held");
    drop(held);

    let sem = Semaphore::new(1)?;
    assert!(sem.acquire_deadline(soon()));
    assert!(!sem.acquire_deadline(past));

    let event = Event::new()?;
    assert!(!event.wait_deadline(past));
    event.set();
    assert!(event.wait_deadline(soon()));

    let (a, b) = pipe::<u8>()?;
    assert!(b.recv_deadline(past).is_err());
    a.send(&5)?;
    assert_eq!(b.recv_deadline(soon())?, 5);

    let p = Process::new(double, (21,)).start()?;
    assert_eq!(p.join_deadline(soon())?, Some(42));

    let pool = Pool::new(1)?;
    let r = pool.apply_async(double, (4,))?;
    assert_eq!(r.get_deadline(soon())?, 8);
    Ok(())
}
