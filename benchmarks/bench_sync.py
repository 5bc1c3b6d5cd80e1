"""csp.Mutex / csp.Semaphore against asyncio.Lock / asyncio.Semaphore.

Standalone: ``python benchmarks/bench_sync.py [--reps N] [--scale F]``. Runs every
case on both loops (asyncio and uvloop) in this one process, several repetitions each
(csp and asyncio alternating), and prints a Markdown table of medians (ns per
lock/unlock pair) with the ratio csp / asyncio (below 1.0: csp is faster).

Cases:
  * uncontended: one task, ``await lock(); unlock()`` in a loop;
  * 8-way contended: 8 tasks, each ``await lock(); await sleep(0); unlock()`` in a
    loop, so every unlock finds waiters and hands the lock on (the sleep(0) is the
    same for both sides and included in the figure);
  * the same two for a semaphore (contended: 8 tasks on a semaphore of 2).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import csp  # (imported after the sys.path line above)

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


# -- one measurement: returns seconds for `ops` lock/unlock pairs ------------------------


async def uncontended_csp_mutex(ops: int) -> float:
    mu = csp.Mutex()
    t0 = time.perf_counter()
    for _ in range(ops):
        await mu.lock()
        mu.unlock()
    return time.perf_counter() - t0


async def uncontended_asyncio_lock(ops: int) -> float:
    lk = asyncio.Lock()
    t0 = time.perf_counter()
    for _ in range(ops):
        await lk.acquire()
        lk.release()
    return time.perf_counter() - t0


async def uncontended_csp_sem(ops: int) -> float:
    s = csp.Semaphore(4)
    t0 = time.perf_counter()
    for _ in range(ops):
        await s.acquire()
        s.release()
    return time.perf_counter() - t0


async def uncontended_asyncio_sem(ops: int) -> float:
    s = asyncio.Semaphore(4)
    t0 = time.perf_counter()
    for _ in range(ops):
        await s.acquire()
        s.release()
    return time.perf_counter() - t0


async def _contended(
    acquire: Callable[[], Awaitable[Any]], release: Callable[[], None], ops: int, ntasks: int
) -> float:
    per = ops // ntasks
    sleep = asyncio.sleep

    async def worker() -> None:
        for _ in range(per):
            await acquire()
            await sleep(0)
            release()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(ntasks)))
    return time.perf_counter() - t0


async def contended_csp_mutex(ops: int) -> float:
    mu = csp.Mutex()
    return await _contended(mu.lock, mu.unlock, ops, 8)


async def contended_asyncio_lock(ops: int) -> float:
    lk = asyncio.Lock()
    return await _contended(lk.acquire, lk.release, ops, 8)


async def contended_csp_sem(ops: int) -> float:
    s = csp.Semaphore(2)
    return await _contended(s.acquire, s.release, ops, 8)


async def contended_asyncio_sem(ops: int) -> float:
    s = asyncio.Semaphore(2)
    return await _contended(s.acquire, s.release, ops, 8)


Bench = Callable[[int], Coroutine[Any, Any, float]]

CASES: list[tuple[str, Bench, Bench, int]] = [
    ("Mutex vs Lock, uncontended", uncontended_csp_mutex, uncontended_asyncio_lock, 100_000),
    ("Mutex vs Lock, 8-way contended", contended_csp_mutex, contended_asyncio_lock, 24_000),
    ("Semaphore, uncontended", uncontended_csp_sem, uncontended_asyncio_sem, 100_000),
    ("Semaphore(2), 8-way contended", contended_csp_sem, contended_asyncio_sem, 24_000),
]


def loops() -> list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]]:
    out: list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]] = [
        ("asyncio", asyncio.new_event_loop)
    ]
    if uvloop is not None:
        out.append(("uvloop", uvloop.new_event_loop))
    return out


def measure(
    factory: Callable[[], asyncio.AbstractEventLoop],
    csp_fn: Bench,
    aio_fn: Bench,
    ops: int,
    reps: int,
) -> tuple[float, float]:
    """Median ns per operation of each side over ``reps`` runs.

    The two sides run alternately (csp first on even repetitions, asyncio first on
    odd ones) on one loop, after a warm-up run each, so that a load change on the
    machine affects both alike.
    """
    c_times: list[float] = []
    a_times: list[float] = []
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(csp_fn(max(8, ops // 10)))  # warm-up
        runner.run(aio_fn(max(8, ops // 10)))
        for i in range(reps):
            order = [(csp_fn, c_times), (aio_fn, a_times)]
            for fn, out in order if i % 2 == 0 else order[::-1]:
                out.append(runner.run(fn(ops)) / ops * 1e9)
    return statistics.median(c_times), statistics.median(a_times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=9, help="repetitions per case (median)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply operation counts")
    args = ap.parse_args()
    print(f"Python {sys.version.split()[0]}, csp {csp.__version__}, "
          f"uvloop {getattr(uvloop, '__version__', 'absent')}, "
          f"{os.cpu_count()} CPUs, {args.reps} reps, medians\n")
    print("| case | loop | csp ns/op | asyncio ns/op | csp/asyncio |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, csp_fn, aio_fn, ops in CASES:
        n = max(8, int(ops * args.scale))
        for loop_name, factory in loops():
            c, a = measure(factory, csp_fn, aio_fn, n, args.reps)
            print(f"| {name} | {loop_name} | {c:.0f} | {a:.0f} | {c / a:.2f} |", flush=True)


if __name__ == "__main__":
    main()
