"""Review 3: the ``async with`` fast paths of RWMutex, ``rlocker()`` and Semaphore
(``__aenter__``/``__aexit__`` return the shared finished Future ``READY`` when they
need not wait, else the ``lock()``/``acquire()`` coroutine) keep the slow path's
fairness and cancellation rules.

Every test runs with the contenders as goroutines and as plain Tasks, on both loops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from conftest import reference_task

import csp
from csp._waiter import READY

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


def _spawner(kind: str) -> Spawn:
    if kind == "go":
        return csp.go  # type: ignore[return-value]
    if kind == "ref":
        return reference_task
    return asyncio.create_task


async def _settle(n: int = 10) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


KINDS = ["go", "task", "ref"]  # ref: a Task that asyncio alone steps


@pytest.mark.parametrize("kind", KINDS)
def test_rlocker_async_with_waits_behind_queued_writer(arun: Any, kind: str) -> None:
    """Invariant (writer preference): while a writer is queued, a new reader's
    ``async with rw.rlocker()`` does not enter (its ``__aenter__`` is not READY and
    takes no read lock); it enters after the writer, in the reader phase that follows."""

    async def main() -> list[Any]:
        spawn = _spawner(kind)
        rw = csp.RWMutex()
        trace: list[Any] = []
        await rw.rlock()  # main reads

        async def writer() -> None:
            async with rw:
                trace.append(("w", repr(rw)))
                await asyncio.sleep(0)

        async def reader(i: int) -> None:
            async with rw.rlocker():
                trace.append(("r", i, rw._readers))

        tw = spawn(writer())
        await _settle()
        assert len(rw._wq) == 1
        aw = rw.rlocker().__aenter__()  # what a reader's async with would await
        assert aw is not READY
        assert rw._readers == 1
        aw.close()  # type: ignore[attr-defined]
        tr = [spawn(reader(i)) for i in range(2)]
        await _settle()
        trace.append(("queued", repr(rw)))
        rw.runlock()
        await asyncio.wait([tw, *tr])
        trace.append(repr(rw))
        return trace

    assert arun(main) == [
        ("queued", "<csp.RWMutex read-locked readers=1 reader_waiters=2 writer_waiters=1>"),
        ("w", "<csp.RWMutex write-locked reader_waiters=2 writer_waiters=0>"),
        ("r", 0, 2), ("r", 1, 1),  # both admitted together; the first left already
        "<csp.RWMutex unlocked reader_waiters=0 writer_waiters=0>",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_rw_async_with_phases_alternate_fifo(arun: Any, kind: str) -> None:
    """Invariant: with ``async with`` on both sides, a writer's unlock admits the
    readers queued meanwhile before the next writer; writers go FIFO; a reader that
    arrives while readers hold and a writer waits queues (no barging via READY)."""

    async def main() -> list[Any]:
        spawn = _spawner(kind)
        rw = csp.RWMutex()
        trace: list[Any] = []
        gate = csp.Chan[None]()

        async def writer(name: str, hold: bool) -> None:
            async with rw:
                trace.append(name)
                if hold:
                    await gate.recv()

        async def reader(name: str, hold: bool) -> None:
            async with rw.rlocker():
                trace.append((name, rw._readers))
                if hold:
                    await gate.recv()

        tasks = [spawn(writer("W1", True))]
        await _settle()
        for name, fn, hold in [("W2", writer, False), ("R1", reader, True),
                               ("W3", writer, False)]:
            tasks.append(spawn(fn(name, hold)))
            await _settle()
        trace.append(repr(rw))
        await gate.send(None)  # W1 leaves: R1 enters (reader phase), W2/W3 wait
        await _settle()
        tasks.append(spawn(reader("R2", False)))  # W2 waits: R2 must queue
        await _settle()
        trace.append(repr(rw))
        await gate.send(None)  # R1 leaves: W2, then R2's phase, then W3
        await asyncio.wait(tasks)
        trace.append(repr(rw))
        return trace

    assert arun(main) == [
        "W1",
        "<csp.RWMutex write-locked reader_waiters=1 writer_waiters=2>",
        ("R1", 1),
        "<csp.RWMutex read-locked readers=1 reader_waiters=1 writer_waiters=2>",
        "W2", ("R2", 1), "W3",
        "<csp.RWMutex unlocked reader_waiters=0 writer_waiters=0>",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_semaphore_async_with_does_not_barge_past_queued_request(arun: Any,
                                                                 kind: str) -> None:
    """Invariant (FIFO): a newcomer's ``async with sem`` while a larger request is
    queued does not take the free token (``__aenter__`` is not READY); the queued
    request is granted first, then the newcomer."""

    async def main() -> list[Any]:
        spawn = _spawner(kind)
        sem = csp.Semaphore(3)
        trace: list[Any] = []
        await sem.acquire(2)

        async def big() -> None:
            await sem.acquire(2)
            trace.append(("big", repr(sem)))
            sem.release(2)

        async def small(i: int) -> None:
            async with sem:
                trace.append(("small", i, repr(sem)))

        tb = spawn(big())
        await _settle()
        aw = sem.__aenter__()
        assert aw is not READY
        assert sem._cur == 2
        aw.close()  # type: ignore[attr-defined]
        ts = [spawn(small(i)) for i in range(2)]
        await _settle()
        trace.append(repr(sem))
        sem.release(2)
        await asyncio.wait([tb, *ts])
        trace.append(repr(sem))
        return trace

    assert arun(main) == [
        "<csp.Semaphore held=2/3 waiters=3>",
        ("big", "<csp.Semaphore held=3/3 waiters=1>"),
        # small 0 was granted with big (3/3), small 1 when big released
        ("small", 0, "<csp.Semaphore held=2/3 waiters=0>"),
        ("small", 1, "<csp.Semaphore held=1/3 waiters=0>"),
        "<csp.Semaphore held=0/3 waiters=0>",
    ]


def _locks() -> dict[str, Callable[[], tuple[Any, Any, Callable[[Any], str]]]]:
    def mutex() -> tuple[Any, Any, Callable[[Any], str]]:
        m = csp.Mutex()
        return m, m, repr

    def rw_w() -> tuple[Any, Any, Callable[[Any], str]]:
        rw = csp.RWMutex()
        return rw, rw, repr

    def rw_r() -> tuple[Any, Any, Callable[[Any], str]]:
        rw = csp.RWMutex()
        return rw, rw.rlocker(), repr

    def sem() -> tuple[Any, Any, Callable[[Any], str]]:
        s = csp.Semaphore(1)
        return s, s, repr

    return {"mutex": mutex, "rw": rw_w, "rlocker": rw_r, "sem": sem}


LOCKS = _locks()

FREE = {
    "mutex": "<csp.Mutex unlocked>",
    "rw": "<csp.RWMutex unlocked reader_waiters=0 writer_waiters=0>",
    "rlocker": "<csp.RWMutex unlocked reader_waiters=0 writer_waiters=0>",
    "sem": "<csp.Semaphore held=0/1 waiters=0>",
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lock", list(LOCKS))
def test_async_with_body_exception_releases_and_propagates(arun: Any, kind: str,
                                                           lock: str) -> None:
    """Invariant: an exception (or a cancellation) leaving the body of a fast-path
    ``async with`` propagates unchanged (``__aexit__``'s READY is falsy: it does not
    swallow), and the lock is released once, or handed to the queued contender."""

    async def main() -> list[Any]:
        spawn = _spawner(kind)
        obj, cm, rep = LOCKS[lock]()
        trace: list[Any] = []

        async def raiser() -> None:
            async with cm:
                raise KeyError("k")

        t = spawn(raiser())
        await asyncio.wait([t])
        trace.append((repr(t.exception()), rep(obj)))

        never = csp.Chan[None]()

        async def holder() -> None:
            async with cm:
                trace.append(("holder in", rep(obj)))
                await never.recv()

        async def next_one() -> None:
            # a writer behind a reader for rlocker, else the same kind of lock
            if lock == "rlocker":
                async with obj:
                    trace.append(("next in", rep(obj)))
            else:
                async with cm:
                    trace.append(("next in", rep(obj)))

        h = spawn(holder())
        await _settle()
        n = spawn(next_one())
        await _settle()
        h.cancel("stop")
        await asyncio.wait([h, n])
        trace.append((h.cancelled(), rep(obj)))
        return trace

    got = arun(main)
    held = {
        "mutex": "<csp.Mutex locked waiters=0>",
        "rw": "<csp.RWMutex write-locked reader_waiters=0 writer_waiters=0>",
        "rlocker": "<csp.RWMutex read-locked readers=1 reader_waiters=0 writer_waiters=0>",
        "sem": "<csp.Semaphore held=1/1 waiters=0>",
    }[lock]
    nxt = ("<csp.RWMutex write-locked reader_waiters=0 writer_waiters=0>"
           if lock == "rlocker" else held)
    assert got == [
        ("KeyError('k')", FREE[lock]),
        ("holder in", held),
        ("next in", nxt),
        (True, FREE[lock]),
    ]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lock", list(LOCKS))
def test_async_with_raises_owed_cancellation_before_taking_lock(arun: Any, kind: str,
                                                                lock: str) -> None:
    """Invariant: a task that owes itself a cancellation (its recv completed and it was
    cancelled in the same step) raises it at ``async with`` on a free lock, before the
    lock is taken: the fast path must not hand out READY then."""

    async def main() -> list[Any]:
        spawn = _spawner(kind)
        obj, cm, rep = LOCKS[lock]()
        ch = csp.Chan[int]()
        trace: list[Any] = []

        async def victim() -> None:
            v = await ch.recv()
            trace.append(("recv", v))
            try:
                async with cm:
                    trace.append("entered")
            except asyncio.CancelledError as e:
                trace.append(("cancelled", e.args, rep(obj)))
                raise

        t = spawn(victim())
        await _settle()
        await ch.send(5)  # completes the parked recv
        t.cancel("c")  # same step
        await asyncio.wait([t])
        trace.append((t.cancelled(), rep(obj)))
        return trace

    assert arun(main) == [("recv", 5), ("cancelled", ("c",), FREE[lock]),
                          (True, FREE[lock])]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lock", list(LOCKS))
def test_another_tasks_owed_cancellation_does_not_affect_async_with(arun: Any, kind: str,
                                                                    lock: str) -> None:
    """Invariant: a cancellation owed by task A (pending re-delivery) sends task B's
    ``async with`` down the slow path in the same drain, but B takes the free lock
    normally; A gets its cancellation at its next suspension."""

    async def main() -> list[Any]:
        spawn = _spawner(kind)
        obj, cm, rep = LOCKS[lock]()
        a_ch, b_ch = csp.Chan[int](), csp.Chan[int]()
        trace: list[Any] = []

        async def a() -> None:
            trace.append(("a recv", await a_ch.recv()))
            try:
                await asyncio.sleep(0)
                trace.append("a slept")
            except asyncio.CancelledError:
                trace.append("a cancelled")
                raise

        async def b() -> None:
            trace.append(("b recv", await b_ch.recv()))
            async with cm:
                trace.append(("b in", rep(obj)))

        ta, tb = spawn(a()), spawn(b())
        await _settle()
        await a_ch.send(1)
        ta.cancel()
        await b_ch.send(2)  # a and b run in the same drain, a first
        await asyncio.wait([ta, tb])
        trace.append((ta.cancelled(), tb.cancelled(), rep(obj)))
        return trace

    held = {
        "mutex": "<csp.Mutex locked waiters=0>",
        "rw": "<csp.RWMutex write-locked reader_waiters=0 writer_waiters=0>",
        "rlocker": "<csp.RWMutex read-locked readers=1 reader_waiters=0 writer_waiters=0>",
        "sem": "<csp.Semaphore held=1/1 waiters=0>",
    }[lock]
    assert arun(main) == [("a recv", 1), ("b recv", 2), ("b in", held), "a cancelled",
                          (True, False, FREE[lock])]


@pytest.mark.parametrize("kind", KINDS)
def test_rlocker_async_with_nested_counts(arun: Any, kind: str) -> None:
    """Invariant: nested ``async with rw.rlocker()`` takes one read lock per level and
    releases them one by one; a writer queued in between blocks a *new* reader but the
    nested holder is not affected by what it already holds (only new entries wait)."""

    async def main() -> list[Any]:
        spawn = _spawner(kind)
        rw = csp.RWMutex()
        rl = rw.rlocker()
        trace: list[Any] = []

        async def writer() -> None:
            async with rw:
                trace.append(("w", repr(rw)))

        async with rl:
            async with rl:
                trace.append(rw._readers)
                tw = spawn(writer())
                await _settle()
                trace.append(repr(rw))
            trace.append(rw._readers)
        await asyncio.wait([tw])
        trace.append(repr(rw))
        return trace

    assert arun(main) == [
        2,
        "<csp.RWMutex read-locked readers=2 reader_waiters=0 writer_waiters=1>",
        1,
        ("w", "<csp.RWMutex write-locked reader_waiters=0 writer_waiters=0>"),
        "<csp.RWMutex unlocked reader_waiters=0 writer_waiters=0>",
    ]
