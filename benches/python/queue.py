"""Python's multiprocessing queues and pipes: the counterparts of benches/queue.rs.

Prints one JSON object of mean nanoseconds per item (per round trip for the ping-pongs):
- "small_queue", "small_simplequeue", "small_pipe": one child (fork start method) puts 0..n
  ints into a Queue / SimpleQueue / Pipe (send); the parent gets them;
- "small_2to2_queue": two producer children put n ints into one Queue, each followed by a stop
  mark; the parent and a consumer child get until each has seen one;
- "bytes_64k_queue", "bytes_64k_pipe", "bytes_4m_queue", "bytes_4m_pipe": the same with bytes
  objects of 64 KiB / 4 MiB (Queue put/get, Pipe send_bytes/recv_bytes);
- "pingpong_queue", "pingpong_pipe": one round trip of an int between the parent and a child,
  through two Queues or a duplex Pipe.
All producers and consumers start together at a spin gate; the time runs from the gate until the
parent (and the consumer child) have every item.
With --pinned, the interpreter (and so its children) is pinned to CPU 0 first.
MULTIPROC_BENCH_SECONDS sets the time per measurement (default 1).
"""
import os
import sys

# This file is named queue.py, like the standard library's `queue` that multiprocessing imports:
# take its own directory off the module path first.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import time  # noqa: E402

BOUND = 10  # seconds: the longest any wait may take
STOP = -1


def spin_until(cond):
    deadline = time.monotonic() + BOUND
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("the other process never came")
        os.sched_yield()


class Gate:
    """ready count, go flag, done count in shared memory."""

    def __init__(self, ctx, parties):
        self.flags = ctx.RawArray("i", 3)
        self.parties = parties
        self.lock = ctx.Lock()

    def arrive(self):
        with self.lock:
            self.flags[0] += 1
        spin_until(lambda: self.flags[1] == 1)

    def finish(self):
        with self.lock:
            self.flags[2] += 1

    def open(self):
        spin_until(lambda: self.flags[0] >= self.parties)
        start = time.perf_counter()
        self.flags[1] = 1
        return start

    def wait_finished(self):
        spin_until(lambda: self.flags[2] >= self.parties)


def join(procs):
    for p in procs:
        p.join(BOUND)
        if p.is_alive():
            p.kill()
            p.join()
            raise RuntimeError("a child did not end")


def produce_queue(gate, q, n, item, stop):
    gate.arrive()
    put = q.put
    for _ in range(n):
        put(item)
    if stop:
        put(STOP)
    gate.finish()


def produce_pipe(gate, conn, n, item):
    gate.arrive()
    send = conn.send_bytes if isinstance(item, bytes) else conn.send
    for _ in range(n):
        send(item)
    gate.finish()


def one_to_one(ctx, kind, n, item):
    gate = Gate(ctx, 1)
    if kind == "pipe":
        rx, tx = ctx.Pipe(duplex=False)
        p = ctx.Process(target=produce_pipe, args=(gate, tx, n, item))
        recv = rx.recv_bytes if isinstance(item, bytes) else rx.recv
    else:
        q = ctx.Queue() if kind == "queue" else ctx.SimpleQueue()
        p = ctx.Process(target=produce_queue, args=(gate, q, n, item, False))
        recv = q.get
    p.start()
    try:
        start = gate.open()
        for _ in range(n):
            recv()
        elapsed = time.perf_counter() - start
    finally:
        join([p])
    return elapsed


def consume_until_stop(gate, q, got):
    gate.arrive()
    count = 0
    while q.get(timeout=BOUND) != STOP:
        count += 1
    got.value = count
    gate.finish()


def two_to_two(ctx, n, item):
    gate = Gate(ctx, 3)
    q = ctx.Queue()
    got = ctx.RawValue("q", 0)
    procs = [ctx.Process(target=produce_queue, args=(gate, q, c, item, True)) for c in (n // 2, n - n // 2)]
    procs.append(ctx.Process(target=consume_until_stop, args=(gate, q, got)))
    for p in procs:
        p.start()
    try:
        start = gate.open()
        mine = 0
        while q.get(timeout=BOUND) != STOP:
            mine += 1
        gate.wait_finished()
        elapsed = time.perf_counter() - start
    finally:
        join(procs)
    assert mine + got.value == n, "lost items"
    return elapsed


def measure(run, seconds, n=1000):
    """Mean ns per item: a first run to estimate, then one of about `seconds`."""
    elapsed = run(n)
    n = max(n, int(n * seconds / max(elapsed, 1e-9)))
    return run(n) / n * 1e9


def queue_echo(ping, pong):
    while True:
        v = ping.get(timeout=BOUND)
        if v == STOP:
            return
        pong.put(v + 1)


def pipe_echo(conn):
    while True:
        v = conn.recv()
        if v == STOP:
            return
        conn.send(v + 1)


def pingpong(ctx, kind, seconds):
    if kind == "queue":
        ping, pong = ctx.Queue(), ctx.Queue()
        p = ctx.Process(target=queue_echo, args=(ping, pong))

        def trip(v):
            ping.put(v)
            assert pong.get(timeout=BOUND) == v + 1

        def stop():
            ping.put(STOP)
    else:
        mine, theirs = ctx.Pipe()
        p = ctx.Process(target=pipe_echo, args=(theirs,))

        def trip(v):
            mine.send(v)
            assert mine.recv() == v + 1

        def stop():
            mine.send(STOP)
    p.start()
    try:
        for v in range(100):  # warm up, and the child's start is not timed
            trip(v)
        n = 0
        start = time.perf_counter()
        while True:
            for v in range(100):
                trip(v)
            n += 100
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        stop()
    finally:
        join([p])
    return elapsed / n * 1e9


def main():
    if "--pinned" in sys.argv and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    seconds = float(os.environ.get("MULTIPROC_BENCH_SECONDS", "1"))
    ctx = mp.get_context("fork")
    k64, m4 = bytes(64 << 10), bytes(4 << 20)
    out = {
        "small_queue": measure(lambda n: one_to_one(ctx, "queue", n, 7), seconds),
        "small_simplequeue": measure(lambda n: one_to_one(ctx, "simplequeue", n, 7), seconds),
        "small_pipe": measure(lambda n: one_to_one(ctx, "pipe", n, 7), seconds),
        "small_2to2_queue": measure(lambda n: two_to_two(ctx, n, 7), seconds),
        "bytes_64k_queue": measure(lambda n: one_to_one(ctx, "queue", n, k64), seconds, 100),
        "bytes_64k_pipe": measure(lambda n: one_to_one(ctx, "pipe", n, k64), seconds, 100),
        "bytes_4m_queue": measure(lambda n: one_to_one(ctx, "queue", n, m4), seconds, 4),
        "bytes_4m_pipe": measure(lambda n: one_to_one(ctx, "pipe", n, m4), seconds, 4),
        "pingpong_queue": pingpong(ctx, "queue", seconds),
        "pingpong_pipe": pingpong(ctx, "pipe", seconds),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
