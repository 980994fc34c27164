"""Python's process pools: the counterparts of benches/pool.rs.

Prints one JSON object of mean nanoseconds per task:
- "map_chunk1", "map_default", "apply_async", "imap_unordered": multiprocessing.Pool(2) (fork
  context) running `work` (a few arithmetic operations on an int) over range(n): map with
  chunksize=1, map with the default chunk size, one apply_async per item then every get(),
  imap_unordered with chunksize=1;
- "executor_submit", "executor_map": concurrent.futures.ProcessPoolExecutor(2) (fork context),
  one submit per item then every result(); map with the default chunksize (1);
Pools are started and warmed up outside the timed region.
With --pinned, the interpreter (and so its children) is pinned to CPU 0 first.
MULTIPROC_BENCH_SECONDS sets the time per measurement (default 1).
"""
import os
import sys

# benches/python holds a queue.py, like the standard library's `queue` that multiprocessing
# imports: take this directory off the module path first.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import concurrent.futures as cf  # noqa: E402
import json
import multiprocessing as mp  # noqa: E402
import time  # noqa: E402

MASK = (1 << 64) - 1


def work(x):
    return ((x * 0x9E3779B97F4A7C15) & MASK) ^ (x >> 7)


def measure(run, seconds):
    """Mean ns per item of run(n), growing n until one call takes a tenth of the budget."""
    n = 100
    while True:
        t = time.perf_counter()
        run(n)
        dt = time.perf_counter() - t
        if dt > seconds / 10 or n >= 10_000_000:
            break
        n *= 4
    total, items = 0.0, 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        run(n)
        total += time.perf_counter() - t
        items += n
    return total / items * 1e9


def main():
    if "--pinned" in sys.argv and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    seconds = float(os.environ.get("MULTIPROC_BENCH_SECONDS", "1"))
    ctx = mp.get_context("fork")
    out = {}
    with ctx.Pool(2) as pool:
        pool.map(work, range(1000))
        out["map_chunk1"] = measure(lambda n: pool.map(work, range(n), chunksize=1), seconds)
        out["map_default"] = measure(lambda n: pool.map(work, range(n)), seconds)

        def apply_async(n):
            rs = [pool.apply_async(work, (x,)) for x in range(n)]
            for r in rs:
                r.get()

        out["apply_async"] = measure(apply_async, seconds)
        out["imap_unordered"] = measure(lambda n: sum(pool.imap_unordered(work, range(n))), seconds)
    with cf.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        list(ex.map(work, range(100)))

        def submit(n):
            fs = [ex.submit(work, x) for x in range(n)]
            for f in fs:
                f.result()

        out["executor_submit"] = measure(submit, seconds)
        out["executor_map"] = measure(lambda n: list(ex.map(work, range(n))), seconds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
