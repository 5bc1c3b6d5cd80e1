"""Review 2: the drain after bare yields started sharing the inline resume path
(``runq.extendleft(reversed(yieldq))``, budget += len(yieldq)).

The semantics kept (docs/internals.md, "Yields go through the drain"): a goroutine
that yields bare is resumed at the *next* drain, a loop iteration later, exactly once
per iteration, never in the drain that is running, and ahead of the wake-ups that
drain inherits; a drain runs at most DRAIN_BUDGET wake-ups besides the yielders.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import sys
from collections.abc import Callable
from typing import Any

import pytest
from conftest import loop_factory, reference_task

import csp
from csp import _sched


def test_yielder_heads_every_drain_and_wakeups_respect_the_budget(
        run: Callable[..., Any]) -> None:
    """Invariant: a yielder runs once per drain, first; each drain then runs at most
    DRAIN_BUDGET (64) wake-ups; 150 wake-ups take three drains."""
    async def main() -> list[tuple[bool, int]]:
        ch, start = csp.Chan[int](), csp.Chan[int]()
        trace: list[str] = []

        async def waiter() -> None:
            await ch.recv()
            trace.append("w")

        async def yielder() -> None:
            await start.recv()
            for _ in range(5):
                trace.append("Y")
                await asyncio.sleep(0)

        for _ in range(150):
            csp.go(waiter)
        csp.go(yielder)
        for _ in range(5):
            await asyncio.sleep(0)
        await start.send(0)
        await asyncio.sleep(0)  # the yielder ran once and sits in the yield queue
        assert len(_sched.scheduler().yieldq) == 1
        ch.close()  # 150 wake-ups
        for _ in range(10):
            await asyncio.sleep(0)
        return [(k, len(list(g))) for k, g in itertools.groupby(trace, key=lambda t: t == "Y")]

    assert run(main) == [(True, 2), (False, 64), (True, 1), (False, 64), (True, 1),
                         (False, 22), (True, 1)]


def _ticks(kind: str, loop_name: str, n: int) -> list[list[int]]:
    """n yielders, each records the loop-iteration number at each of 6 resumptions."""
    async def main() -> list[list[int]]:
        loop = asyncio.get_running_loop()
        tick = [0]
        stop = [False]

        def count() -> None:
            tick[0] += 1
            if not stop[0]:
                loop.call_soon(count)

        gate = csp.Chan[int]()
        seen: list[list[int]] = [[] for _ in range(n)]

        async def y(i: int) -> None:
            await gate.recv()  # parks through its Task: from now on resumed directly
            for _ in range(6):
                seen[i].append(tick[0])
                await asyncio.sleep(0)

        spawn = {"go": csp.go, "task": asyncio.ensure_future, "ref": reference_task}[kind]
        tasks = [spawn(y(i)) for i in range(n)]
        for _ in range(3):
            await asyncio.sleep(0)
        loop.call_soon(count)
        gate.close()
        await asyncio.wait(tasks)
        stop[0] = True
        return [[b - a for a, b in itertools.pairwise(s)] for s in seen]

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as r:
        return r.run(main())


@pytest.mark.parametrize("n", [1, 3, 100])
def test_yielders_resume_once_per_loop_iteration(loop_name: str, n: int) -> None:
    """Invariant: a goroutine looping on ``sleep(0)`` is resumed exactly once per loop
    iteration, as a plain Task is, also when there are more yielders than the drain's
    budget (100 > 64)."""
    go = _ticks("go", loop_name, n)
    task = _ticks("task", loop_name, n)
    ref = _ticks("ref", loop_name, n)  # a Task that asyncio alone steps
    assert ref == [[1] * 5] * n
    assert go == task == ref


def test_many_yielders_do_not_starve_io(loop_name: str) -> None:
    """Invariant: 200 goroutines spinning on gosched() leave the loop polling I/O once
    per iteration: a socket read completes within a few iterations, and every spinner
    advances by the same count (fairness)."""
    async def main() -> tuple[bytes, int, set[int]]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        stop = [False]
        counts = [0] * 200

        async def spin(i: int) -> None:
            await csp.gosched()
            while not stop[0]:
                counts[i] += 1
                await csp.gosched()

        tasks = [csp.go(spin, i) for i in range(200)]
        for _ in range(3):
            await asyncio.sleep(0)
        try:
            loop.call_soon(b.send, b"ping")
            data = await asyncio.wait_for(loop.sock_recv(a, 4), 1)
            before = counts[0]
            stop[0] = True
            await asyncio.wait(tasks)
            return data, before, set(counts)
        finally:
            a.close()
            b.close()

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as r:
        data, before, counts = r.run(main())
    assert data == b"ping"
    assert before <= 10  # a handful of iterations, not starved
    assert len(counts) == 1  # every spinner ran the same number of times


def test_gosched_loops_then_finish_is_no_deadlock(run: Callable[..., Any]) -> None:
    """Invariant (no false DeadlockError): 100 goroutines gosched 50 times each while
    main is blocked in csp; then each sends its count to main."""
    async def main() -> int:
        out = csp.Chan[int]()

        async def w() -> None:
            n = 0
            for _ in range(50):
                await csp.gosched()
                n += 1
            await out.send(n)

        for _ in range(100):
            csp.go(w)
        return sum([await out.recv() for _ in range(100)])

    assert run(main) == 5000


def test_yielders_then_everyone_blocks_is_a_deadlock(run: Callable[..., Any]) -> None:
    """Invariant: 100 goroutines that yield a few times and then all block (main too)
    are reported as a deadlock naming main's operation."""
    async def main() -> None:
        never = csp.Chan[int]()

        async def w() -> None:
            for _ in range(5):
                await csp.gosched()
            await never.send(1)

        for _ in range(100):
            csp.go(w)
        await csp.Chan[int]().recv()

    with pytest.raises(csp.DeadlockError) as ei:
        run(main)
    lines = str(ei.value).splitlines()
    assert lines[0] == "all goroutines are asleep - deadlock!"
    assert lines[2] == "goroutine 1 [chan receive]:"
    assert sum(1 for ln in lines if ln.endswith("[chan send]:")) == 100


def test_yielders_keep_running_after_systemexit_escaped_a_drain(loop_name: str) -> None:
    """Invariant (Scheduler): ``scheduled`` is True iff a drain is queued, also when
    SystemExit escapes a drain while yielders were moved to the run queue: running the
    loop again resumes the spinning goroutine, and it ends when cancelled."""
    loop = loop_factory(loop_name)()
    counts = [0]
    d = csp.Chan[int]()
    holder: dict[str, asyncio.Task[Any]] = {}

    async def spinner() -> None:
        await d.recv()
        while True:
            counts[0] += 1
            await asyncio.sleep(0)

    async def exiter() -> None:
        await d.recv()
        await d.recv()  # resumed directly
        sys.exit(3)

    async def start() -> None:
        holder["spin"] = csp.go(spinner)
        csp.go(exiter)
        for _ in range(3):
            await asyncio.sleep(0)
        for i in range(3):
            await d.send(i)
        await asyncio.get_running_loop().create_future()

    try:
        with pytest.raises(SystemExit):
            loop.run_until_complete(start())
        sched = _sched.schedulers[loop]
        before = counts[0]

        async def later() -> tuple[int, bool]:
            for _ in range(5):
                await asyncio.sleep(0)
            spin = holder["spin"]
            spin.cancel()
            await asyncio.wait([spin], timeout=0.5)
            return counts[0] - before, spin.cancelled()

        advanced, cancelled = loop.run_until_complete(later())
        assert advanced >= 4
        assert cancelled
        assert not sched.runq and not sched.yieldq and sched.scheduled is False
    finally:
        rest = asyncio.all_tasks(loop)
        for t in rest:
            t.cancel()
        if rest:
            loop.run_until_complete(asyncio.wait(rest, timeout=0.5))
        loop.close()
