"""Python's Manager: the counterparts of benches/manager.rs.

Prints one JSON object of mean nanoseconds per operation:
- "dict_set_get": d[k] = i; d[k] on a manager dict (two round trips);
- "list_append": l.append(1);
- "value_get": v.value on a manager Value;
- "lock_acquire_release": acquire() and release() of a manager Lock (two round trips);
- "dict_update_100": d.update() of 100 pairs, per pair.
With --pinned, the interpreter (and so its children) is pinned to CPU 0 first.
MULTIPROC_BENCH_SECONDS sets the time per measurement (default 1).
"""
import os
import sys

# benches/python holds a queue.py, like the standard library's `queue` that multiprocessing
# imports: take this directory off the module path first.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import time  # noqa: E402


def measure(op, seconds, per=1):
    n, total = 0, 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        for _ in range(100):
            op()
        total += time.perf_counter() - t
        n += 100 * per
    return total / n * 1e9


def main():
    if "--pinned" in sys.argv and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    seconds = float(os.environ.get("MULTIPROC_BENCH_SECONDS", "1"))
    out = {}
    with mp.get_context("fork").Manager() as m:
        d, lst, v, lock = m.dict(), m.list(), m.Value("Q", 7), m.Lock()
        state = {"i": 0}

        def dict_pair():
            state["i"] += 1
            d[state["i"] % 64] = state["i"]
            d[state["i"] % 64]

        def lock_pair():
            lock.acquire()
            lock.release()

        pairs = {i: i for i in range(100)}
        out["dict_set_get"] = measure(dict_pair, seconds)
        out["list_append"] = measure(lambda: lst.append(1), seconds)
        out["value_get"] = measure(lambda: v.value, seconds)
        out["lock_acquire_release"] = measure(lock_pair, seconds)
        out["dict_update_100"] = measure(lambda: d.update(pairs), seconds, per=100)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
