"""Instructions per hand-off, counted by callgrind: a figure independent of machine load.

``python -m benchmarks.instructions [pattern ...]`` runs each pattern under
``valgrind --tool=callgrind`` at two sizes and prints the difference per round (start-up
and shutdown cancel out), for the build that is active (``csp.compiled``; set
``CSP_NO_EXTENSIONS=1`` for the pure one). Patterns: ``pingpong`` (an unbuffered round
trip: two sends, two receives), ``stream`` (one unbuffered send and receive),
``buffered`` (the same through a buffer of 64),
``select`` (a ready 4-way select), ``mutex`` (an uncontended lock and unlock).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

import csp

PATTERNS = ("pingpong", "stream", "buffered", "select", "mutex")
SIZES = (2_000, 12_000)


async def _pingpong(n: int) -> None:
    a, b = csp.Chan[int](), csp.Chan[int]()

    async def echo() -> None:
        for _ in range(n):
            await b.send(await a.recv())

    csp.go(echo)
    for i in range(n):
        await a.send(i)
        await b.recv()


async def _through(n: int, cap: int) -> None:
    ch = csp.Chan[int](cap)

    async def produce() -> None:
        for i in range(n):
            await ch.send(i)

    csp.go(produce)
    for _ in range(n):
        await ch.recv()


async def _stream(n: int) -> None:
    await _through(n, 0)


async def _buffered(n: int) -> None:
    await _through(n, 64)


async def _select(n: int) -> None:
    a, b, c, d = chans = [csp.Chan[int](1) for _ in range(4)]
    for i in range(n):
        chans[i & 3].send_nowait(i)
        await csp.select(a.recv, b.recv, c.recv, d.recv)


async def _mutex(n: int) -> None:
    mu = csp.Mutex()
    for _ in range(n):
        await mu.lock()
        mu.unlock()


def _run_one(pattern: str, n: int) -> None:
    csp.run(globals()["_" + pattern](n))


def _count(pattern: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, "-m", "benchmarks.instructions", "--child", pattern, str(n)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(out) as f:
            m = re.search(r"^summary:\s+(\d+)", f.read(), re.M)
    if m is None:
        raise RuntimeError("callgrind wrote no summary")
    return int(m.group(1))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        _run_one(argv[1], int(argv[2]))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind not found (apt-get install valgrind)", file=sys.stderr)
        return 2
    patterns = argv or list(PATTERNS)
    for p in patterns:
        if p not in PATTERNS:
            print(f"unknown pattern {p!r}; choose from {', '.join(PATTERNS)}",
                  file=sys.stderr)
            return 2
    mode = "compiled" if csp.compiled else "pure"
    print(f"instructions per round, {mode} core, Python {sys.version.split()[0]}")
    for p in patterns:
        lo, hi = (_count(p, n) for n in SIZES)
        print(f"  {p:<10} {(hi - lo) / (SIZES[1] - SIZES[0]):>10,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
