"""mpi4py.futures: the Python counterpart of the proc-mpi pool benchmarks.

Run from the repository root, with MPICH's mpiexec and mpi4py built against it:

    timeout 600 mpiexec -n 3 python3 -m mpi4py.futures benches/python/mpi.py

Rank 0 runs this script (the front end); ranks 1..2 are the pool's workers (the static model
of mpi4py.futures: MPI_Comm_spawn does not work with this MPICH build, so the workers are
started by mpiexec, not spawned). MPIPoolExecutor() uses them.

Prints one JSON object of mean nanoseconds per item:
- "map_chunk1": executor.map(work, range(n), chunksize=1), consumed fully;
- "map_default": the same with chunksize = ceil(n / (4 * workers)), multiprocessing.Pool's
  default heuristic (workers = 2 here);
- "submit": one executor.submit(work, x) per item, then every .result();
- "cpu_map": executor.map(cpu, range(n), chunksize=1), cpu(x) being 200_000 xorshift64 steps
  (see `cpu`: the Rust side does the same work);
and "frontend_cpu_pct_waiting": rank 0's process CPU time (all its threads, time.process_time)
while it waits for 2 tasks that sleep 2 s each, as a percentage of the wall time of the wait.
`work` is the same trivial function as in pool.py. Pools are started and warmed up outside the
timed region. MULTIPROC_BENCH_SECONDS sets the time per measurement (default 1).
With --pinned, every rank is pinned to CPU 0 first.
Run as a plain `python3 benches/python/mpi.py [--pinned]` (not under mpiexec: no PMI_RANK in
the environment), it re-executes itself as the command line above, without the timeout.
"""
import os
import sys

# benches/python holds a queue.py, like the standard library's `queue` that concurrent.futures
# imports: take this directory off the module path first.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

if "PMI_RANK" not in os.environ and "PMI_SIZE" not in os.environ:
    # not started by mpiexec: become `mpiexec -n 3 python3 -m mpi4py.futures this-file ARGS`
    args = [sys.executable, "-m", "mpi4py.futures", os.path.abspath(__file__)] + sys.argv[1:]
    os.execvp("mpiexec", ["mpiexec", "-n", "3"] + args)

if "--pinned" in sys.argv and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {0})

import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

from mpi4py import MPI  # noqa: E402
from mpi4py.futures import MPIPoolExecutor  # noqa: E402

MASK = (1 << 64) - 1
CPU_STEPS = 200_000


def work(x):
    return ((x * 0x9E3779B97F4A7C15) & MASK) ^ (x >> 7)


def cpu(x):
    """200_000 xorshift64 steps (13, 7, 17) from the seed x + 1, on u64 (wrapping shifts).

    Rust: let mut s = x.wrapping_add(1); for _ in 0..200_000 { s ^= s << 13; s ^= s >> 7;
    s ^= s << 17; } s
    """
    s = (x + 1) & MASK
    for _ in range(CPU_STEPS):
        s ^= (s << 13) & MASK
        s ^= s >> 7
        s ^= (s << 17) & MASK
    return s


def nap(seconds):
    time.sleep(seconds)
    return seconds


def measure(run, seconds, n=100):
    """Mean ns per item of run(n), growing n until one call takes a tenth of the budget."""
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


def frontend_cpu_pct_waiting(ex, tasks=2, sleep_s=2.0):
    """Rank 0's CPU use (% of one core) while `tasks` tasks sleep `sleep_s` seconds each."""
    c = time.process_time()
    t = time.perf_counter()
    fs = [ex.submit(nap, sleep_s) for _ in range(tasks)]
    for f in fs:
        f.result()
    wall = time.perf_counter() - t
    return (time.process_time() - c) / wall * 100.0


def main():
    seconds = float(os.environ.get("MULTIPROC_BENCH_SECONDS", "1"))
    out = {}
    with MPIPoolExecutor() as ex:
        workers = ex.num_workers
        list(ex.map(work, range(1000), chunksize=1))  # start the pool and warm up
        list(ex.map(cpu, range(workers), chunksize=1))
        out["map_chunk1"] = measure(lambda n: list(ex.map(work, range(n), chunksize=1)), seconds)
        out["map_default"] = measure(
            lambda n: list(ex.map(work, range(n), chunksize=math.ceil(n / (4 * workers)))),
            seconds,
        )

        def submit(n):
            fs = [ex.submit(work, x) for x in range(n)]
            for f in fs:
                f.result()

        out["submit"] = measure(submit, seconds)
        out["cpu_map"] = measure(lambda n: list(ex.map(cpu, range(n), chunksize=1)), seconds, n=4)
        out["frontend_cpu_pct_waiting"] = frontend_cpu_pct_waiting(ex)
    # stdout carries only the JSON object of numbers (xtask reads it as a map of f64)
    print(f"{MPI.Get_library_version().splitlines()[0].strip()}, {workers} workers", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
