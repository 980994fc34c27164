//! Ping-pongs of multiproc's own (a round trip between the parent and a child started with the
//! fork start method): through two `Semaphore`s, two `Event`s, a duplex pipe and two `Queue`s.
//! Each runs `rounds` round trips after an untimed first one and returns their wall time; the
//! benchmark files and `src/bin/spin.rs` share them.

use std::time::{Duration, Instant};

use multiproc::sync::{Event, Semaphore};
use multiproc::{pipe, Process, Queue};

use crate::gate::{join_bounded, BOUND};

/// `rounds` semaphore round trips after an untimed first one.
pub fn semaphore_pingpong(rounds: u64) -> Duration {
    let (ping, pong) = (Semaphore::new(0).expect("semaphore"), Semaphore::new(0).expect("semaphore"));
    let child = {
        let (ping, pong) = (ping.clone(), pong.clone());
        Process::fork(
            move || {
                (0..=rounds).all(|_| {
                    let ok = ping.acquire_timeout(BOUND);
                    pong.release();
                    ok
                })
            },
            (),
        )
        .start()
        .expect("start")
    };
    timed(rounds, child, |_| {
        ping.release();
        assert!(pong.acquire_timeout(BOUND), "the ping-pong child stopped answering");
    })
}

/// `rounds` event round trips after an untimed first one.
pub fn event_pingpong(rounds: u64) -> Duration {
    let (ping, pong) = (Event::new().expect("event"), Event::new().expect("event"));
    let child = {
        let (ping, pong) = (ping.clone(), pong.clone());
        Process::fork(
            move || {
                (0..=rounds).all(|_| {
                    let ok = ping.wait_timeout(BOUND);
                    ping.clear();
                    pong.set();
                    ok
                })
            },
            (),
        )
        .start()
        .expect("start")
    };
    timed(rounds, child, |_| {
        ping.set();
        assert!(pong.wait_timeout(BOUND), "the ping-pong child stopped answering");
        pong.clear();
    })
}

/// `rounds` round trips of a `u64` through a duplex pipe after an untimed first one.
pub fn pipe_pingpong(rounds: u64) -> Duration {
    let (mine, theirs) = pipe::<u64>().expect("pipe");
    let child = Process::fork(
        move || (0..=rounds).all(|_| theirs.recv_timeout(BOUND).is_ok_and(|v| theirs.send(&(v + 1)).is_ok())),
        (),
    )
    .start()
    .expect("start");
    timed(rounds, child, |round| {
        mine.send(&round).expect("send");
        assert_eq!(mine.recv_timeout(BOUND).expect("the ping-pong child stopped answering"), round + 1);
    })
}

/// `rounds` round trips of a `u64` through two queues after an untimed first one.
pub fn queue_pingpong(rounds: u64) -> Duration {
    let (ping, pong) = (Queue::<u64>::unbounded().expect("queue"), Queue::<u64>::unbounded().expect("queue"));
    let child = {
        let (ping, pong) = (ping.clone(), pong.clone());
        Process::fork(
            move || (0..=rounds).all(|_| ping.get_timeout(BOUND).is_ok_and(|v| pong.put(v + 1).is_ok())),
            (),
        )
        .start()
        .expect("start")
    };
    timed(rounds, child, |round| {
        ping.put(round).expect("put");
        assert_eq!(pong.get_timeout(BOUND).expect("the ping-pong child stopped answering"), round + 1);
    })
}

/// Runs `trip(round)` for rounds `0..=rounds`, timing all but the first, then joins `child`.
fn timed(rounds: u64, child: multiproc::Process<bool>, mut trip: impl FnMut(u64)) -> Duration {
    let mut start = Instant::now();
    for round in 0..=rounds {
        if round == 1 {
            start = Instant::now();
        }
        trip(round);
    }
    let elapsed = start.elapsed();
    join_bounded(child);
    elapsed
}
