"""Python's multiprocessing synchronization: the counterparts of benches/sync.rs.

Prints one JSON object of mean nanoseconds per iteration:
- "lock", "rlock": acquire + release of an uncontended multiprocessing.Lock / RLock;
- "value_update": `with v.get_lock(): v.value += 1` on an uncontended Value("Q");
- "pingpong_semaphore", "pingpong_event": one round trip between parent and a child started with
  the fork start method, through two Semaphores / two Events (set, wait, clear);
- "counter": parent and child each increment one Value("Q") under its lock once per iteration
  (two increments per iteration, as in the Rust benchmark).
With --pinned, the interpreter (and so its children) is pinned to CPU 0 first.
MULTIPROC_BENCH_SECONDS sets the time per measurement (default 1).
"""
import json
import multiprocessing as mp
import os
import sys
import time

BOUND = 10  # seconds: the longest any wait may take


def uncontended(body, seconds):
    body(1000)  # warm up
    n = 0
    start = time.perf_counter()
    while True:
        body(1000)
        n += 1000
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / n * 1e9


def lock_body(lock):
    def body(n):
        for _ in range(n):
            lock.acquire()
            lock.release()
    return body


def value_body(value):
    def body(n):
        for _ in range(n):
            with value.get_lock():
                value.value += 1
    return body


def semaphore_child(ping, pong, stop):
    while True:
        if not ping.acquire(timeout=BOUND):
            return
        if stop.value:
            return
        pong.release()


def event_child(ping, pong, stop):
    while True:
        if not ping.wait(timeout=BOUND):
            return
        ping.clear()
        if stop.value:
            return
        pong.set()


def pingpong(ctx, kind, seconds):
    stop = ctx.RawValue("b", 0)
    if kind == "semaphore":
        ping, pong = ctx.Semaphore(0), ctx.Semaphore(0)

        def trip():
            ping.release()
            assert pong.acquire(timeout=BOUND), "the child stopped answering"

        def wake_child():
            ping.release()

        target = semaphore_child
    else:
        ping, pong = ctx.Event(), ctx.Event()

        def trip():
            ping.set()
            assert pong.wait(timeout=BOUND), "the child stopped answering"
            pong.clear()

        def wake_child():
            ping.set()

        target = event_child
    p = ctx.Process(target=target, args=(ping, pong, stop))
    p.start()
    try:
        for _ in range(100):  # warm up, and the child's start is not timed
            trip()
        n = 0
        start = time.perf_counter()
        while True:
            for _ in range(100):
                trip()
            n += 100
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        stop.value = 1
        wake_child()
    finally:
        p.join(BOUND)
        if p.is_alive():
            p.kill()
            p.join()
    return elapsed / n * 1e9


def spin_until(cond):
    deadline = time.monotonic() + BOUND
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("the other process never came")
        os.sched_yield()


def counter_child(value, flags, n):
    flags[0] = 1
    spin_until(lambda: flags[1] == 1)
    for _ in range(n):
        with value.get_lock():
            value.value += 1
    flags[2] = 1


def counter_run(ctx, n):
    value = ctx.Value("Q", 0)
    flags = ctx.RawArray("b", 3)  # ready, go, done
    p = ctx.Process(target=counter_child, args=(value, flags, n))
    p.start()
    try:
        spin_until(lambda: flags[0] == 1)
        start = time.perf_counter()
        flags[1] = 1
        for _ in range(n):
            with value.get_lock():
                value.value += 1
        spin_until(lambda: flags[2] == 1)
        elapsed = time.perf_counter() - start
    finally:
        p.join(BOUND)
        if p.is_alive():
            p.kill()
            p.join()
    assert value.value == 2 * n, "lost increments"
    return elapsed


def counter(ctx, seconds):
    n = 20_000
    elapsed = counter_run(ctx, n)  # warm up, and a first estimate
    n = max(n, int(n * seconds / max(elapsed, 1e-9)))
    return counter_run(ctx, n) / n * 1e9


def main():
    if "--pinned" in sys.argv and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    seconds = float(os.environ.get("MULTIPROC_BENCH_SECONDS", "1"))
    ctx = mp.get_context("fork")
    out = {
        "lock": uncontended(lock_body(ctx.Lock()), seconds),
        "rlock": uncontended(lock_body(ctx.RLock()), seconds),
        "value_update": uncontended(value_body(ctx.Value("Q", 0)), seconds),
        "pingpong_semaphore": pingpong(ctx, "semaphore", seconds),
        "pingpong_event": pingpong(ctx, "event", seconds),
        "counter": counter(ctx, seconds),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
