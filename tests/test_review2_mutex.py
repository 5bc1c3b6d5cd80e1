"""Review 2: Mutex.lock() builds its waiter inline, __aexit__ completes the next waiter
inline, and a cancelled lock() unlinks itself with ``_unlink`` (the deque's remove,
bound once). Each scenario runs with the waiters as goroutines (resumed directly by
the drain after their first park) and as plain Tasks: same trace expected.

Invariants (API.md, cancellation guarantee): a cancelled lock() holds nothing and
leaves nothing queued; a lock handed to a waiter cancelled in the same instant is kept
by it (lock() returns normally, CancelledError at its next suspension); a cancellation
owed by a task is raised by its next ``async with`` before it locks.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest
from conftest import loop_factory

import csp
from csp import _waiter


def _on(loop_name: str, kind: str, main: Callable[[str], Any]) -> Any:
    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as r:
        return r.run(main(kind))


def _spawn(kind: str, coro: Any) -> asyncio.Task[Any]:
    return csp.go(coro) if kind == "go" else asyncio.ensure_future(coro)


async def _warm(gate: csp.Chan[int]) -> None:
    """Park once on ``gate`` so that a goroutine is resumed directly afterwards."""
    await gate.recv()


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def m_cancel_parked_lock(kind: str) -> list[Any]:
    """A, B, C queue on a held mutex; B is cancelled: A then C get it, FIFO."""
    mu = csp.Mutex()
    gate = csp.Chan[int]()
    trace: list[Any] = []

    async def w(name: str) -> None:
        await _warm(gate)
        try:
            async with mu:
                trace.append(f"{name} holds")
                await asyncio.sleep(0)
            trace.append(f"{name} released")
        except asyncio.CancelledError:
            trace.append((f"{name} cancelled", len(mu._waiters)))
            raise

    await mu.lock()
    ts = {n: _spawn(kind, w(n)) for n in "ABC"}
    await _settle()
    for _ in "ABC":
        await gate.send(0)
        await _settle()
    trace.append(repr(mu))
    ts["B"].cancel()
    await _settle()
    trace.append(repr(mu))
    mu._invariants()
    mu.unlock()
    await asyncio.wait(ts.values())
    trace.append(repr(mu))
    trace.append([ts[n].cancelled() for n in "ABC"])
    return trace


async def m_handoff_then_cancel(kind: str) -> list[Any]:
    """The holder's ``async with`` exits (handing the mutex to W) and cancels W in
    the same step: W keeps the lock, runs its body, and is cancelled at its next
    suspension inside the body; the mutex ends unlocked."""
    mu = csp.Mutex()
    gate = csp.Chan[int]()
    trace: list[Any] = []

    async def w() -> None:
        await _warm(gate)
        try:
            async with mu:
                trace.append(("W holds", repr(mu)))
                await asyncio.sleep(0)
                trace.append("W slept")
        except asyncio.CancelledError:
            trace.append(("W cancelled", repr(mu)))
            raise

    t = _spawn(kind, w())
    await _settle()
    async with mu:
        await gate.send(0)
        await _settle()  # W parked in lock()
        trace.append(repr(mu))
    t.cancel()  # same step as the hand-off in __aexit__
    trace.append(("after exit", "queued" if mu._waiters else "none", repr(mu)))
    await asyncio.wait([t])
    trace.append((t.cancelled(), repr(mu)))
    return trace


async def m_owed_cancel_at_async_with(kind: str) -> list[Any]:
    """W is handed mu and cancelled in the same instant; without suspending it then
    enters ``async with mu2`` (free): the owed cancellation is raised there, before
    mu2 is locked. mu is unlocked by W's outer ``async with``."""
    mu, mu2 = csp.Mutex(), csp.Mutex()
    gate = csp.Chan[int]()
    trace: list[Any] = []

    async def w() -> None:
        await _warm(gate)
        async with mu:
            trace.append("W holds mu")
            try:
                async with mu2:
                    trace.append("W holds mu2?!")
            except asyncio.CancelledError:
                trace.append(("W cancelled at mu2", repr(mu2)))
                raise

    t = _spawn(kind, w())
    await _settle()
    await mu.lock()
    await gate.send(0)
    await _settle()
    mu.unlock()  # hands it to W (plain unlock(), not the inlined __aexit__)
    t.cancel()
    await asyncio.wait([t])
    trace.append((t.cancelled(), repr(mu), repr(mu2)))
    return trace


SCENARIOS = {
    "cancel_parked_lock": (m_cancel_parked_lock, [
        "<csp.Mutex locked waiters=3>", ("B cancelled", 2), "<csp.Mutex locked waiters=2>",
        "A holds", "A released", "C holds", "C released", "<csp.Mutex unlocked>",
        [False, True, False]]),
    "handoff_then_cancel": (m_handoff_then_cancel, [
        "<csp.Mutex locked waiters=1>",
        ("after exit", "none", "<csp.Mutex locked waiters=0>"),
        ("W holds", "<csp.Mutex locked waiters=0>"),
        ("W cancelled", "<csp.Mutex unlocked>"),
        (True, "<csp.Mutex unlocked>")]),
    "owed_cancel_at_async_with": (m_owed_cancel_at_async_with, [
        "W holds mu", ("W cancelled at mu2", "<csp.Mutex unlocked>"),
        (True, "<csp.Mutex unlocked>", "<csp.Mutex unlocked>")]),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_mutex_cancellation_goroutine_matches_task(loop_name: str, name: str) -> None:
    """See the module docstring; each scenario's docstring states its trace."""
    fn, expected = SCENARIOS[name]
    go = _on(loop_name, "go", fn)
    task = _on(loop_name, "task", fn)
    assert task == expected
    assert go == task


def test_mutex_cancel_storm_keeps_exclusion_and_unlinks(loop_name: str) -> None:
    """Seeded: 8 goroutines lock/unlock 200 times with a yield inside the lock while a
    canceller cancels random ones (they catch it and go on). Invariants: never two
    holders; every completed critical section counted once; no waiter left queued;
    the mutex ends unlocked."""
    async def main() -> tuple[int, int, int, str, bool]:
        rng = random.Random(1234)
        mu = csp.Mutex()
        inside = [0]
        done = [0]
        cancelled = [0]
        stop = [False]

        async def worker() -> None:
            t = asyncio.current_task()
            assert t is not None
            n = 0
            while n < 200:
                try:
                    async with mu:
                        inside[0] += 1
                        try:
                            assert inside[0] == 1
                            await asyncio.sleep(0)
                            n += 1
                            done[0] += 1
                        finally:
                            inside[0] -= 1
                except asyncio.CancelledError:
                    cancelled[0] += 1
                    while t.uncancel():
                        pass

        ws = [csp.go(worker) for _ in range(8)]

        async def canceller() -> None:
            while not stop[0]:
                live = [w for w in ws if not w.done()]
                if live:
                    rng.choice(live).cancel()
                for _ in range(rng.randrange(1, 4)):
                    await asyncio.sleep(0)

        c = asyncio.ensure_future(canceller())
        await asyncio.wait(ws)
        stop[0] = True
        await c
        mu._invariants()
        for w in ws:
            assert w.result() is None
        return (done[0], len(mu._waiters), len(_waiter.owed), repr(mu),
                cancelled[0] > 50)

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as r:
        got = r.run(main())
    assert got == (1600, 0, 0, "<csp.Mutex unlocked>", True)
