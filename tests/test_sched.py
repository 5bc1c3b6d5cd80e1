"""csp/_sched.py: the run queue every csp wake-up goes through, and its one drain.

Invariants under test (the Scheduler's): ``scheduled`` is True iff a drain is queued on
the loop, also after SystemExit/KeyboardInterrupt escaped a drain (what is queued still
runs when the loop runs again); a drain runs at most ``DRAIN_BUDGET`` wake-ups before it
lets the loop poll for I/O and run its callbacks; a goroutine's bare yield
(``gosched()``, ``sleep(0)``) goes behind every goroutine runnable at that moment and
behind the loop's ready callbacks (the barrier); a plain Task's wake-up (TaskWake)
keeps nothing alive once it ran.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import socket
import sys
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from conftest import loop_factory
from differential import SubclassTask

import csp
from csp import _sched
from csp._sched import DRAIN_BUDGET

# -- the drain budget and the order of bare yields ----------------------------------


def test_drain_runs_at_most_its_budget_and_a_yield_goes_behind_the_runnable(
        run: Callable[..., Any]) -> None:
    """Invariant: each loop iteration's drain runs at most DRAIN_BUDGET (64) wake-ups,
    so 150 woken goroutines (and a yielder ahead of them) take three iterations; a
    goroutine that yields goes behind every goroutine runnable at that moment (all
    150), and then resumes once per iteration."""
    async def main() -> list[tuple[tuple[str, int], int]]:
        loop = asyncio.get_running_loop()
        ch, start = csp.Chan[int](), csp.Chan[int]()
        trace: list[tuple[str, int]] = []
        iteration = [0]

        def count() -> None:
            iteration[0] += 1
            loop.call_soon(count)

        async def waiter() -> None:
            await ch.recv()
            trace.append(("w", iteration[0]))

        async def yielder() -> None:
            await start.recv()
            for _ in range(5):
                trace.append(("Y", iteration[0]))
                await asyncio.sleep(0)

        for _ in range(150):
            csp.go(waiter)
        csp.go(yielder)
        for _ in range(5):
            await asyncio.sleep(0)
        loop.call_soon(count)
        await start.send(0)
        await asyncio.sleep(0)  # the yielder ran once and is queued behind its barrier
        sched = _sched.scheduler()
        assert list(sched.runq) == [sched.goroutines[t] for t in sched.goroutines
                                    if t.get_coro().__qualname__.endswith("yielder")]
        ch.close()  # 150 wake-ups, behind the yielder
        for _ in range(10):
            await asyncio.sleep(0)
        sched._invariants()
        return [(k, len(list(g))) for k, g in itertools.groupby(trace)]

    assert DRAIN_BUDGET == 64
    assert run(main) == [
        (("Y", 1), 1), (("Y", 2), 1),  # its yield is behind the 150 woken meanwhile
        (("w", 2), 63), (("w", 3), 64), (("w", 4), 23),  # 64 per drain, Y included
        (("Y", 5), 1), (("Y", 6), 1), (("Y", 7), 1),  # then once per iteration
    ]


def _ticks(kind: str, loop_name: str, n: int) -> list[list[int]]:
    """n tasks, each records the loop-iteration number at each of 6 resumptions from
    ``sleep(0)``; returns the gaps."""
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
            await gate.recv()  # a goroutine is resumed by csp from here
            for _ in range(6):
                seen[i].append(tick[0])
                await asyncio.sleep(0)

        spawn = {"go": csp.go, "task": asyncio.ensure_future, "subclass":
                 lambda c: SubclassTask(c, loop=loop)}[kind]
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


@pytest.mark.parametrize("n", [1, 3, 64, 100])
def test_yielders_resume_once_per_round_of_the_run_queue(loop_name: str, n: int) -> None:
    """Invariant: n goroutines looping on ``sleep(0)`` are each resumed once per
    round of the run queue, every round alike, and a round takes
    ``ceil(n / DRAIN_BUDGET)`` loop iterations: the budget bounds csp's share of each
    iteration (100 yielders take two), and the round ends at the yield barrier (64
    yielders fill one drain, which then drops the barrier it reached). A plain Task
    (or a subclass) is resumed once per loop iteration, as asyncio's call_soon does."""
    rounds = -(-n // DRAIN_BUDGET)
    assert _ticks("go", loop_name, n) == [[rounds] * 5] * n
    assert _ticks("task", loop_name, n) == _ticks("subclass", loop_name, n) == [[1] * 5] * n


def test_many_yielders_do_not_starve_io(loop_name: str) -> None:
    """Invariant: 200 goroutines spinning on gosched() leave the loop polling I/O every
    iteration: a socket read completes within a few rounds, and every spinner
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
    assert before <= 10  # a handful of rounds, not starved
    assert len(counts) == 1  # every spinner ran the same number of times


# -- SystemExit / KeyboardInterrupt escaping a drain --------------------------------


def _cleanup(loop: asyncio.AbstractEventLoop) -> None:
    rest = asyncio.all_tasks(loop)
    for t in rest:
        t.cancel()
    if rest:
        loop.run_until_complete(asyncio.wait(rest, timeout=0.5))
    asyncio.set_event_loop(None)
    loop.close()


def test_wakeups_still_run_after_systemexit_escaped_a_drain(loop_name: str) -> None:
    """Invariant: ``scheduled`` is True iff a drain callback is queued, also after
    ``sys.exit()`` in a goroutine csp resumed escaped the drain (the Task's step
    re-raises it, as asyncio does): once the loop runs again, cancelling a parked
    goroutine (what asyncio.Runner.close() and csp.run's clean-up do) wakes it, and
    nothing stays queued."""
    loop = loop_factory(loop_name)()
    asyncio.set_event_loop(loop)
    ch, d = csp.Chan[int](), csp.Chan[int]()
    holder: dict[str, asyncio.Task[Any]] = {}

    async def blocked() -> None:
        await ch.recv()

    async def exiter() -> None:
        await d.recv()
        await d.recv()  # resumed by csp
        sys.exit(3)

    async def start() -> None:
        holder["blocked"] = csp.go(blocked)
        csp.go(exiter)
        await d.send(1)
        await d.send(2)
        await asyncio.get_running_loop().create_future()  # until SystemExit escapes

    try:
        with pytest.raises(SystemExit):
            loop.run_until_complete(start())
        b = holder["blocked"]
        b.cancel()
        done, _ = loop.run_until_complete(asyncio.wait([b], timeout=0.5))
        assert done == {b}
        assert b.cancelled()
        sched = _sched.schedulers[loop]
        assert sched.scheduled is False and not sched.runq
    finally:
        _cleanup(loop)


def test_yielders_keep_running_after_systemexit_escaped_a_drain(loop_name: str) -> None:
    """Invariant: the same when a goroutine spinning on ``sleep(0)`` is queued (behind
    its barrier) as SystemExit escapes the drain: running the loop again resumes the
    spinner, it ends when cancelled, and the run queue ends empty, with no barrier."""
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
        await d.recv()  # resumed by csp
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
        assert not sched.runq and not sched.barrier and sched.scheduled is False
        sched._invariants()
    finally:
        _cleanup(loop)


# -- TaskWake ------------------------------------------------------------------------


@pytest.mark.parametrize("task_class", [asyncio.Task, SubclassTask])
def test_task_woken_by_csp_is_freed_without_the_cycle_collector(
        run: Callable[..., Any], task_class: type[asyncio.Task[Any]]) -> None:
    """A plain Task (or a subclass) that parked on a csp channel, was woken through the
    run queue (a TaskWake) and finished is freed at once, as asyncio frees it: the
    waiter and its TaskWake do not keep each other, or the Task, alive."""
    async def main() -> list[bool]:
        ch = csp.Chan[int]()

        async def g() -> int:
            return await ch.recv() or 0

        out: list[bool] = []
        gc.disable()
        try:
            for _ in range(2):
                t = task_class(g(), loop=asyncio.get_running_loop())
                await asyncio.sleep(0)
                await ch.send(5)
                assert await t == 5
                for _ in range(3):  # let done callbacks run
                    await asyncio.sleep(0)
                ref = weakref.ref(t)
                del t
                out.append(ref() is None)
        finally:
            gc.enable()
        return out

    assert run(main) == [True, True]


def test_plain_task_wakeup_runs_in_its_own_context(arun: Callable[..., Any]) -> None:
    """A TaskWake calls the Task's wake-up callback in the context the Task gave the
    waiter (its own): the Task resumes seeing its context variables, and the waker's
    are untouched."""
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> tuple[str, str]:
        ch = csp.Chan[int]()

        async def parked() -> str:
            var.set("parked")
            await ch.recv()
            return var.get()

        t = asyncio.create_task(parked())
        await asyncio.sleep(0)
        var.set("waker")
        await ch.send(1)
        return await t, var.get()

    assert arun(main) == ("parked", "waker")


def test_a_loop_closed_by_hand_is_let_go_by_the_next_loop(loop_name: str) -> None:
    """Invariant: the schedulers of closed loops are dropped when csp first runs on
    another loop, so a goroutine left pending on a loop closed by hand is destroyed
    as a pending asyncio Task is (nothing in csp keeps it alive)."""
    loop = loop_factory(loop_name)()

    async def start() -> asyncio.Task[Any]:
        t = csp.go(csp.Chan[int]().recv)
        await asyncio.sleep(0)
        return t

    task_ref = weakref.ref(loop.run_until_complete(start()))
    loop.close()
    assert loop in _sched.schedulers

    async def other() -> None:
        await csp.go(asyncio.sleep, 0)  # csp's first use on this loop

    asyncio.run(other())
    assert loop not in _sched.schedulers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        del loop
        gc.collect()
    assert task_ref() is None
