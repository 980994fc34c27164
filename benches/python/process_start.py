"""Start and join of a no-op process per start method in Python's multiprocessing.

Prints one JSON object: {"fork": mean_ns, "forkserver": mean_ns, "spawn": mean_ns}.
With --pinned, the interpreter (and so its fork server and children) is pinned to CPU 0 first.
"""
import json
import multiprocessing as mp
import os
import sys
import time


def noop():
    pass


def measure(method, seconds):
    ctx = mp.get_context(method)
    # Warm up: starts the fork server, imports, caches.
    for _ in range(3):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
    n = 0
    start = time.perf_counter()
    while True:
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 10:
            return elapsed / n * 1e9


def main():
    if "--pinned" in sys.argv and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    seconds = float(os.environ.get("MULTIPROC_BENCH_SECONDS", "3"))
    out = {}
    for method in ("fork", "forkserver", "spawn"):
        if method in mp.get_all_start_methods():
            out[method] = measure(method, seconds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
