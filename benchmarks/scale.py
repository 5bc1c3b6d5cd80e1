"""Scale and memory: N tasks parked on channel receives, then all woken.

For each implementation: start N tasks that each block receiving from one shared
channel (csp: ``Chan()`` unbuffered; asyncio: ``Queue()``; anyio: a memory stream with
no buffer), wait until all are parked, read the process's RSS, then send N values (each
wakes one parked task, which adds its value to a total and ends) and wait until the
last one has finished. Reported: time to spawn and park them all, RSS growth and bytes
per parked task, time to wake all and finish, and peak RSS. A second, smaller pass
under ``tracemalloc`` gives the Python-heap bytes per parked task, which RSS rounding
and allocator reuse do not blur.

Each measurement runs in a fresh subprocess (``python -m benchmarks.scale ...``), so
memory freed by one run cannot hide the growth of the next.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

import csp
from benchmarks.runner import loop_factory

IMPLS = ("csp", "asyncio", "anyio")
LABELS = {
    "csp": "goroutine in Chan.recv()",
    "asyncio": "task in Queue.get()",
    "anyio": "task in MemoryObjectReceiveStream.receive()",
}
# Targets (issue 6), for 1M csp goroutines.
GOAL_RSS_BYTES = 2 * 1024**3
GOAL_WAKE_S = 15.0

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size now."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # not Linux: fall back to the peak, the best we have
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb if sys.platform == "darwin" else kb * 1024


def _tri(n: int) -> int:
    return n * (n - 1) // 2


Measure = Callable[[], int]


async def _csp(n: int, mem: Measure, out: dict[str, Any]) -> None:
    ch = csp.Chan[int]()
    done = csp.Chan[None](1)
    state = [0, 0, 0]  # parked, finished, sum

    async def g() -> None:
        state[0] += 1  # the recv below parks within this same step
        v = await ch.recv()
        state[2] += v  # type: ignore[operator]
        state[1] += 1
        if state[1] == n:
            await done.send(None)

    t0 = time.perf_counter()
    for _ in range(n):
        csp.go(g)
    while state[0] < n:  # each yield lets every started goroutine run its first step
        await asyncio.sleep(0)
    out["spawn_s"] = time.perf_counter() - t0
    out["mem_parked"] = mem()
    t1 = time.perf_counter()
    for i in range(n):
        await ch.send(i)
    await done.recv()
    out["wake_s"] = time.perf_counter() - t1
    out["count"], out["checksum"] = state[1], state[2]


async def _asyncio(n: int, mem: Measure, out: dict[str, Any]) -> None:
    q: asyncio.Queue[int] = asyncio.Queue()
    done = asyncio.Event()
    state = [0, 0, 0]
    tasks: set[asyncio.Task[None]] = set()

    async def g() -> None:
        state[0] += 1
        v = await q.get()
        state[2] += v
        state[1] += 1
        if state[1] == n:
            done.set()

    t0 = time.perf_counter()
    for _ in range(n):
        t = asyncio.create_task(g())
        tasks.add(t)  # a strong reference, as csp.go and task groups keep
        t.add_done_callback(tasks.discard)
    while state[0] < n:
        await asyncio.sleep(0)
    out["spawn_s"] = time.perf_counter() - t0
    out["mem_parked"] = mem()
    t1 = time.perf_counter()
    for i in range(n):
        q.put_nowait(i)
    await done.wait()
    out["wake_s"] = time.perf_counter() - t1
    out["count"], out["checksum"] = state[1], state[2]


async def _anyio(n: int, mem: Measure, out: dict[str, Any]) -> None:
    send, recv = anyio.create_memory_object_stream[int](0)
    done = anyio.Event()
    state = [0, 0, 0]

    async def g() -> None:
        state[0] += 1
        v = await recv.receive()
        state[2] += v
        state[1] += 1
        if state[1] == n:
            done.set()

    with send, recv:
        async with anyio.create_task_group() as tg:
            t0 = time.perf_counter()
            for _ in range(n):
                tg.start_soon(g)
            while state[0] < n:
                await asyncio.sleep(0)
            out["spawn_s"] = time.perf_counter() - t0
            out["mem_parked"] = mem()
            t1 = time.perf_counter()
            for i in range(n):
                await send.send(i)
            await done.wait()
            out["wake_s"] = time.perf_counter() - t1
    out["count"], out["checksum"] = state[1], state[2]


_RUNS = {"csp": _csp, "asyncio": _asyncio, "anyio": _anyio}


def _run(impl: str, loop: str, n: int, mem: Measure) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fn = _RUNS[impl]

    async def main() -> None:
        await fn(n, mem, out)

    if impl == "csp":
        csp.run(main, loop=loop)
    elif impl == "anyio":
        anyio.run(main, backend="asyncio", backend_options={"loop_factory": loop_factory(loop)})
    else:
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            runner.run(main())
    if (out.get("count"), out.get("checksum")) != (n, _tri(n)):
        raise AssertionError(
            f"scale {impl}/{loop}: expected (count, checksum) = {(n, _tri(n))}, "
            f"got {(out.get('count'), out.get('checksum'))}"
        )
    return out


def measure(impl: str, loop: str, n: int, trace_n: int) -> dict[str, Any]:
    """Measure in this process: the RSS pass with ``n`` tasks, then tracemalloc with ``trace_n``."""
    gc.collect()
    rss0 = rss_bytes()
    out = _run(impl, loop, n, rss_bytes)
    rss_growth = out.pop("mem_parked") - rss0
    result: dict[str, Any] = {
        "impl": impl,
        "loop": loop,
        "n": n,
        "parked": LABELS[impl],
        "spawn_s": out["spawn_s"],
        "wake_s": out["wake_s"],
        "rss_growth_bytes": rss_growth,
        "rss_bytes_per_task": rss_growth / n,
        "peak_rss_bytes": peak_rss_bytes(),
        "count": out["count"],
        "checksum": out["checksum"],
    }
    if trace_n > 0:
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            out = _run(impl, loop, trace_n, lambda: tracemalloc.get_traced_memory()[0])
            result["trace_n"] = trace_n
            result["traced_bytes_per_task"] = (out["mem_parked"] - base) / trace_n
        finally:
            tracemalloc.stop()
    return result


def measure_subprocess(impl: str, loop: str, n: int, trace_n: int,
                       timeout: float = 600.0) -> dict[str, Any]:
    """Run :func:`measure` in a fresh interpreter and return its result."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "benchmarks.scale", "--impl", impl, "--loop", loop,
           "--n", str(n), "--trace-n", str(trace_n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"scale {impl}/{loop} failed: {tail[0]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale",
                                description="one scale/memory measurement, as JSON")
    p.add_argument("--impl", choices=IMPLS, required=True)
    p.add_argument("--loop", choices=("asyncio", "uvloop"), required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--trace-n", type=int, default=10_000)
    a = p.parse_args(argv)
    print(json.dumps(measure(a.impl, a.loop, a.n, a.trace_n)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
