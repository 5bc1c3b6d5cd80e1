"""Tests for csp's sync primitives: Mutex, RWMutex, WaitGroup, Once, Cond, Semaphore.

The ``test_go_*`` tests port Go's ``src/sync/*_test.go`` and
``golang.org/x/sync/semaphore/semaphore_test.go``. Each cancellation race has its own
regression test whose docstring states the invariant; the randomized cancellation
stress at the end checks every primitive ends free and no acquisition is lost.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from conftest import LOOPS, loop_factory
from differential import Program, differential, start

import csp
from csp._waiter import READY

both = pytest.mark.csp(loop=tuple(LOOPS))
"""Run an async test as main under csp.run, once per loop (the csp pytest plugin)."""


async def until(pred: Callable[[], bool], limit: int = 1000) -> None:
    """Yield to the loop until ``pred()`` holds (at most ``limit`` times)."""
    for _ in range(limit):
        if pred():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def spin(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_exports() -> None:
    names = ("Mutex", "RWMutex", "WaitGroup", "Once", "Cond", "Semaphore", "ErrGroup")
    for name in names:
        assert name in csp.__all__
        cls = getattr(csp, name)
        assert cls.__module__ == "csp._sync"
        assert cls.__doc__ and "(Go: " in cls.__doc__
        assert getattr(cls, "__final__", False) is True
    objs = [csp.Mutex(), csp.RWMutex(), csp.WaitGroup(), csp.Once(), csp.Cond(csp.Mutex()),
            csp.Semaphore(1), csp.ErrGroup(), csp.RWMutex().rlocker()]
    for obj in objs:
        assert not hasattr(obj, "__dict__"), obj  # slotted


def test_created_before_any_loop(run: Callable[..., Any]) -> None:
    """Objects made outside any loop (Go's zero values) work in later runs."""
    mu, rw, wg = csp.Mutex(), csp.RWMutex(), csp.WaitGroup()
    once, sem = csp.Once(), csp.Semaphore(2)
    cond = csp.Cond(mu)
    calls: list[int] = []

    async def main() -> int:
        await mu.lock()
        cond.signal()
        mu.unlock()
        async with rw.rlocker():
            pass
        async with rw:
            pass
        wg.add(1)
        wg.done()
        await wg.wait()
        await once.do(lambda: calls.append(1))
        async with sem:
            pass
        return 7

    assert run(main) == 7
    assert run(main) == 7  # a second loop: nothing was bound to the first
    assert calls == [1]


# -- Mutex ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_mutex_lock_unlock_try_lock_repr() -> None:
    mu = csp.Mutex()
    assert repr(mu) == "<csp.Mutex unlocked>"
    assert mu.try_lock() is True
    assert mu.try_lock() is False
    assert repr(mu) == "<csp.Mutex locked waiters=0>"
    mu.unlock()
    await mu.lock()
    t1 = asyncio.create_task(mu.lock())
    t2 = asyncio.create_task(mu.lock())
    await until(lambda: len(mu._waiters) == 2)
    assert repr(mu) == "<csp.Mutex locked waiters=2>"
    mu._invariants()
    mu.unlock()
    await t1
    assert repr(mu) == "<csp.Mutex locked waiters=1>"
    mu.unlock()
    await t2
    mu.unlock()
    assert repr(mu) == "<csp.Mutex unlocked>"


@both
async def test_mutex_lock_is_an_operation_like_a_coroutine() -> None:
    """``mu.lock()`` (a ChanOp when compiled, a coroutine when pure): nothing happens
    until it is awaited; closed while parked, it leaves nothing queued; ``async with``
    on a free mutex awaits a finished Future, never a coroutine."""
    import gc

    mu = csp.Mutex()
    with pytest.warns(RuntimeWarning, match="was never awaited"):
        op = mu.lock()
        del op
        gc.collect()
    assert not mu._locked
    from csp._threads import shared

    if shared.on:  # (shared mode: every operation takes the guard's slow branch)
        await mu.lock()
    else:
        assert mu.__aenter__() is READY
    assert mu._locked
    op = mu.lock()
    w = op.send(None)  # parks: yields its waiter
    assert w.reason == "sync.Mutex.Lock" and mu._waiters.count() == 1
    op.close()
    assert mu._waiters.count() == 0
    assert mu.__aexit__(None, None, None) is READY and not mu._locked  # (either mode)
    t = csp.go(mu.lock)  # a bound lock is a coroutine function to csp.go
    await t
    assert mu._locked
    mu.unlock()


@pytest.mark.asyncio
async def test_mutex_unlock_of_unlocked_raises() -> None:
    mu = csp.Mutex()
    with pytest.raises(RuntimeError, match=r"^sync: unlock of unlocked mutex$"):
        mu.unlock()
    await mu.lock()
    mu.unlock()
    with pytest.raises(RuntimeError, match=r"^sync: unlock of unlocked mutex$"):
        mu.unlock()
    assert mu.try_lock() is True


@pytest.mark.asyncio
async def test_mutex_not_owned_any_task_may_unlock() -> None:
    mu = csp.Mutex()
    await mu.lock()

    async def other() -> None:
        mu.unlock()

    await asyncio.create_task(other())
    assert repr(mu) == "<csp.Mutex unlocked>"


@pytest.mark.asyncio
async def test_mutex_fifo_handoff_no_barging() -> None:
    """Unlock hands the mutex to the longest waiter; a newcomer cannot barge in."""
    mu = csp.Mutex()
    trace: list[int] = []

    async def locker(i: int) -> None:
        await mu.lock()
        trace.append(i)
        await asyncio.sleep(0)
        mu.unlock()

    await mu.lock()
    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(locker(i)))
        await until(lambda i=i: len(mu._waiters) == i + 1)  # type: ignore[misc]
    mu.unlock()
    # Waiter 0 owns the mutex now, although it has not run yet.
    assert mu.try_lock() is False
    late = asyncio.create_task(locker(99))
    await asyncio.gather(*tasks, late)
    assert trace == [0, 1, 2, 3, 4, 99]
    assert repr(mu) == "<csp.Mutex unlocked>"


@both
async def test_go_mutex_hammer() -> None:
    """Go: TestMutex / HammerMutex: a counter updated under the lock across awaits."""
    mu = csp.Mutex()
    wg = csp.WaitGroup()
    state = {"counter": 0, "inside": 0}

    async def hammer(seed: int) -> None:
        for i in range(200):
            await mu.lock()
            state["inside"] += 1
            assert state["inside"] == 1
            v = state["counter"]
            if (i + seed) % 3 == 0:
                await csp.gosched()
            state["counter"] = v + 1
            state["inside"] -= 1
            mu.unlock()

    for s in range(10):
        wg.go(hammer, s)
    await wg.wait()
    assert mu.try_lock()
    assert state["counter"] == 2000


@pytest.mark.asyncio
async def test_mutex_async_with_unlocks_on_exception() -> None:
    mu = csp.Mutex()
    with pytest.raises(KeyError):
        async with mu:
            assert repr(mu) == "<csp.Mutex locked waiters=0>"
            raise KeyError
    assert repr(mu) == "<csp.Mutex unlocked>"


@pytest.mark.asyncio
async def test_mutex_cancelled_lock_leaves_no_waiter() -> None:
    """A lock() cancelled while queued holds nothing and leaves no waiter behind: the
    next unlock frees the mutex instead of handing it to the departed task."""
    mu = csp.Mutex()
    await mu.lock()
    t = asyncio.create_task(mu.lock())
    await until(lambda: len(mu._waiters) == 1)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert repr(mu) == "<csp.Mutex locked waiters=0>"
    mu.unlock()
    assert repr(mu) == "<csp.Mutex unlocked>"
    assert mu.try_lock()


@pytest.mark.asyncio
async def test_mutex_cancel_middle_waiter_keeps_order() -> None:
    """Cancelling a queued waiter removes only it; the others keep their FIFO order."""
    mu = csp.Mutex()
    trace: list[int] = []

    async def locker(i: int) -> None:
        await mu.lock()
        trace.append(i)
        mu.unlock()

    await mu.lock()
    tasks = []
    for i in range(3):
        tasks.append(asyncio.create_task(locker(i)))
        await until(lambda i=i: len(mu._waiters) == i + 1)  # type: ignore[misc]
    tasks[1].cancel()
    await until(lambda: len(mu._waiters) == 2)
    mu.unlock()
    res = await asyncio.gather(*tasks, return_exceptions=True)
    assert trace == [0, 2]
    assert isinstance(res[1], asyncio.CancelledError)
    assert repr(mu) == "<csp.Mutex unlocked>"


@pytest.mark.asyncio
async def test_mutex_handoff_to_waiter_cancelled_in_same_instant() -> None:
    """unlock hands the mutex to a waiter that is cancelled in the same instant: the
    waiter returns holding it, and its next await raises CancelledError."""
    mu = csp.Mutex()
    trace: list[str] = []

    async def waiter() -> None:
        await mu.lock()
        trace.append("locked")
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            trace.append("cancelled at next await")
            mu.unlock()
            raise
        trace.append("not cancelled")  # pragma: no cover

    await mu.lock()
    t = asyncio.create_task(waiter())
    await until(lambda: len(mu._waiters) == 1)
    mu.unlock()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert trace == ["locked", "cancelled at next await"]
    assert mu.try_lock()


@pytest.mark.asyncio
async def test_mutex_handoff_cancel_raised_by_next_csp_op_before_effect() -> None:
    """A cancellation that arrived after the lock was handed over is raised by the
    task's next csp operation before that operation takes effect."""
    mu = csp.Mutex()
    ch = csp.Chan[int](1)
    trace: list[str] = []

    async def waiter() -> None:
        await mu.lock()
        trace.append("locked")
        try:
            await ch.send(1)
        finally:
            mu.unlock()
        trace.append("sent")  # pragma: no cover

    await mu.lock()
    t = asyncio.create_task(waiter())
    await until(lambda: len(mu._waiters) == 1)
    mu.unlock()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert trace == ["locked"]
    assert len(ch) == 0
    assert repr(mu) == "<csp.Mutex unlocked>"


@pytest.mark.asyncio
async def test_mutex_granted_as_timeout_expires_is_kept() -> None:
    """A lock granted in the same instant as its asyncio.timeout() expires is kept: the
    block exits normally holding the mutex, and the withdrawn cancellation is not
    raised later."""
    mu = csp.Mutex()
    cms: list[asyncio.Timeout] = []
    trace: list[str] = []

    async def waiter() -> None:
        async with asyncio.timeout(None) as cm:
            cms.append(cm)
            await mu.lock()
        trace.append(f"locked expired={cm.expired()}")
        await spin(3)
        trace.append("no cancellation")
        mu.unlock()

    await mu.lock()
    t = asyncio.create_task(waiter())
    await until(lambda: len(mu._waiters) == 1)
    cms[0].reschedule(asyncio.get_running_loop().time() - 1)  # fires next iteration
    mu.unlock()  # grants the lock before the timeout callback runs
    await t
    assert trace == ["locked expired=True", "no cancellation"]
    assert repr(mu) == "<csp.Mutex unlocked>"


@pytest.mark.asyncio
async def test_mutex_timeout_and_anyio_scope_leave_nothing() -> None:
    """lock() under asyncio.timeout / anyio move_on_after that expire holds nothing."""
    mu = csp.Mutex()
    await mu.lock()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await mu.lock()
    with anyio.move_on_after(0) as scope:
        await mu.lock()
    assert scope.cancelled_caught
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(mu.lock(), 0.001)
    assert repr(mu) == "<csp.Mutex locked waiters=0>"
    mu.unlock()
    assert mu.try_lock()


@pytest.mark.asyncio
async def test_mutex_granted_to_anyio_scope_cancelled_in_same_instant() -> None:
    """A lock granted to a task whose anyio scope is cancelled in the same instant is
    kept; once the scope has exited, the cancellation is not re-delivered."""
    mu = csp.Mutex()
    scopes: list[anyio.CancelScope] = []
    trace: list[str] = []

    async def waiter() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await mu.lock()
            trace.append("locked")
        trace.append(f"caught={scope.cancelled_caught}")
        await spin(3)
        trace.append("no cancellation")
        mu.unlock()

    await mu.lock()
    t = asyncio.create_task(waiter())
    await until(lambda: len(mu._waiters) == 1)
    mu.unlock()
    scopes[0].cancel()
    await t
    assert trace == ["locked", "caught=False", "no cancellation"]
    assert repr(mu) == "<csp.Mutex unlocked>"


def test_mutex_relock_deadlock_is_reported(run: Callable[..., Any]) -> None:
    """Go M1: a Mutex is not reentrant; locking it twice is a deadlock that csp.run
    reports, naming the wait."""

    async def main() -> None:
        mu = csp.Mutex()
        await mu.lock()
        await mu.lock()

    with pytest.raises(csp.DeadlockError) as info:
        run(main)
    assert str(info.value).startswith("all goroutines are asleep - deadlock!")
    assert "goroutine 1 [sync.Mutex.Lock]:" in str(info.value)


@pytest.mark.xfail(
    sys.version_info < (3, 12),
    strict=True,
    reason="CPython 3.11 wait_for() discards its inner task's result when the outer task"
    " is cancelled (it re-raises CancelledError after the inner task completed)",
)
@pytest.mark.asyncio
async def test_wait_for_outer_cancel_at_grant_keeps_lock() -> None:
    """Documents a 3.11 limitation outside csp: a lock granted inside wait_for() in the
    instant its *caller* is cancelled is held by the inner task, which returns
    normally, but 3.11's wait_for raises CancelledError anyway, so the caller does
    not know it holds the lock. (The timeout path of wait_for is fine.) From 3.12 on
    there is no inner task: the cancellation wins, and no lock is held."""
    mu = csp.Mutex()
    await mu.lock()
    outcome: list[str] = []

    async def caller() -> None:
        try:
            await asyncio.wait_for(mu.lock(), 10)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        outcome.append("locked")
        mu.unlock()

    t = asyncio.create_task(caller())
    await until(lambda: len(mu._waiters) == 1)
    t.cancel()  # the caller's wake-up is queued first...
    mu.unlock()  # ...then the lock is granted to the inner task
    await asyncio.gather(t, return_exceptions=True)
    leaked = outcome == ["cancelled"] and not mu.try_lock()
    if leaked:
        mu.unlock()
    if sys.version_info >= (3, 12):
        # 3.12's wait_for runs lock() in the caller's own task: the cancel reached the
        # still-pending waiter first, so it took no effect and nothing is held.
        assert (outcome, leaked) == (["cancelled"], False)
    else:
        assert outcome == ["locked"]


# -- RWMutex ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rwmutex_basics_and_repr() -> None:
    rw = csp.RWMutex()
    assert repr(rw) == "<csp.RWMutex unlocked reader_waiters=0 writer_waiters=0>"
    assert rw.try_rlock() and rw.try_rlock()
    assert repr(rw) == "<csp.RWMutex read-locked readers=2 reader_waiters=0 writer_waiters=0>"
    assert rw.try_lock() is False
    rw.runlock()
    rw.runlock()
    assert rw.try_lock() is True
    assert rw.try_rlock() is False
    assert rw.try_lock() is False
    assert repr(rw) == "<csp.RWMutex write-locked reader_waiters=0 writer_waiters=0>"
    rw.unlock()
    async with rw:
        assert rw._writer
    async with rw.rlocker():
        assert rw._readers == 1
    assert repr(rw) == "<csp.RWMutex unlocked reader_waiters=0 writer_waiters=0>"


@pytest.mark.asyncio
async def test_rwmutex_misuse_raises_go_text() -> None:
    rw = csp.RWMutex()
    with pytest.raises(RuntimeError, match=r"^sync: RUnlock of unlocked RWMutex$"):
        rw.runlock()
    with pytest.raises(RuntimeError, match=r"^sync: Unlock of unlocked RWMutex$"):
        rw.unlock()
    await rw.rlock()
    with pytest.raises(RuntimeError, match=r"^sync: Unlock of unlocked RWMutex$"):
        rw.unlock()
    rw.runlock()
    await rw.lock()
    with pytest.raises(RuntimeError, match=r"^sync: RUnlock of unlocked RWMutex$"):
        rw.runlock()
    rw.unlock()
    assert rw.try_lock()


@both
async def test_go_parallel_readers() -> None:
    """Go: TestParallelReaders: n readers hold the read lock at the same time."""
    rw = csp.RWMutex()
    n = 8
    clocked, cunlock, cdone = csp.Chan[bool](), csp.Chan[bool](), csp.Chan[bool]()

    async def reader() -> None:
        await rw.rlock()
        await clocked.send(True)
        await cunlock.recv()
        rw.runlock()
        await cdone.send(True)

    for _ in range(n):
        csp.go(reader)
    for _ in range(n):  # would deadlock unless all n hold the lock together
        await clocked.recv()
    assert rw._readers == n
    for _ in range(n):
        await cunlock.send(True)
    for _ in range(n):
        await cdone.recv()
    assert rw.try_lock()


@both
async def test_go_rwmutex_hammer() -> None:
    """Go: TestRWMutex / HammerRWMutex: readers add 1 and writers 10000 to an activity
    counter inside the lock, across awaits; readers never see a writer, a writer sees
    nobody else."""
    rw = csp.RWMutex()
    wg = csp.WaitGroup()
    st = {"activity": 0, "reads": 0, "writes": 0, "max_readers": 0}

    async def reader(k: int) -> None:
        for i in range(60):
            await rw.rlock()
            st["activity"] += 1
            n = st["activity"]
            assert 1 <= n < 10000, n
            st["max_readers"] = max(st["max_readers"], n)
            if (i + k) % 2 == 0:
                await csp.gosched()
            assert st["activity"] < 10000
            st["activity"] -= 1
            st["reads"] += 1
            rw.runlock()
            await csp.gosched()

    async def writer(k: int) -> None:
        for i in range(30):
            await rw.lock()
            st["activity"] += 10000
            assert st["activity"] == 10000
            if (i + k) % 2 == 0:
                await csp.gosched()
            assert st["activity"] == 10000
            st["activity"] -= 10000
            st["writes"] += 1
            rw.unlock()
            await csp.gosched()

    for k in range(3):
        wg.go(writer, k)
    for k in range(8):
        wg.go(reader, k)
    await wg.wait()
    rw._invariants()
    assert rw.try_lock()
    assert (st["reads"], st["writes"]) == (8 * 60, 3 * 30)
    assert st["max_readers"] > 1


@pytest.mark.asyncio
async def test_rwmutex_writer_preference_blocks_new_readers() -> None:
    """Go R1: R holds a read lock; W waits in lock(); R's second rlock() must block
    (so recursive read locking deadlocks, as in Go). W gets the lock when R leaves,
    then the blocked reader gets in when W unlocks."""
    rw = csp.RWMutex()
    trace: list[str] = []
    await rw.rlock()  # R

    async def w() -> None:
        await rw.lock()
        trace.append("W locked")
        rw.unlock()
        trace.append("W unlocked")

    async def r2() -> None:
        await rw.rlock()
        trace.append("R2 rlocked")
        rw.runlock()

    tw = asyncio.create_task(w())
    await until(lambda: len(rw._wq) == 1)
    assert rw.try_rlock() is False
    tr = asyncio.create_task(r2())
    await until(lambda: len(rw._rq) == 1)
    await spin()
    assert trace == []
    rw._invariants()
    rw.runlock()  # R leaves: the writer is next
    await asyncio.gather(tw, tr)
    assert trace == ["W locked", "W unlocked", "R2 rlocked"]
    assert rw.try_lock()


@pytest.mark.asyncio
async def test_rwmutex_readers_admitted_before_next_writer() -> None:
    """Go R2: when a writer unlocks, every reader that queued meanwhile is admitted
    before the next queued writer, which then waits for all of them."""
    rw = csp.RWMutex()
    trace: list[str] = []
    release = asyncio.Event()

    async def reader(name: str) -> None:
        await rw.rlock()
        trace.append(f"{name} in")
        await release.wait()
        trace.append(f"{name} out")
        rw.runlock()

    async def writer(name: str) -> None:
        await rw.lock()
        trace.append(f"{name} in")
        rw.unlock()

    await rw.lock()  # W1
    r1 = asyncio.create_task(reader("R1"))
    await until(lambda: len(rw._rq) == 1)
    w2 = asyncio.create_task(writer("W2"))
    await until(lambda: len(rw._wq) == 1)
    r2 = asyncio.create_task(reader("R2"))
    await until(lambda: len(rw._rq) == 2)
    rw.unlock()  # W1 out: R1 and R2 in, W2 still waits
    await until(lambda: len(trace) == 2)
    await spin()
    assert trace == ["R1 in", "R2 in"]
    assert rw._readers == 2 and len(rw._wq) == 1
    # A reader arriving now queues behind the waiting W2 (writer preference).
    r3 = asyncio.create_task(reader("R3"))
    await until(lambda: len(rw._rq) == 1)
    release.set()
    await asyncio.gather(r1, r2, w2, r3)
    assert trace == ["R1 in", "R2 in", "R1 out", "R2 out", "W2 in", "R3 in", "R3 out"]
    assert rw.try_lock()


def test_rwmutex_recursive_rlock_with_waiting_writer_deadlocks(
    run: Callable[..., Any]
) -> None:
    """Go R1: recursive read locking deadlocks once a writer waits; csp.run says so."""

    async def main() -> None:
        rw = csp.RWMutex()
        await rw.rlock()
        csp.go(rw.lock)
        await csp.gosched()
        await rw.rlock()

    with pytest.raises(csp.DeadlockError) as info:
        run(main)
    msg = str(info.value)
    assert "goroutine 1 [sync.RWMutex.RLock]:" in msg
    assert "goroutine 2 [sync.RWMutex.Lock]:" in msg


@pytest.mark.asyncio
async def test_rwmutex_writers_fifo() -> None:
    rw = csp.RWMutex()
    trace: list[int] = []

    async def writer(i: int) -> None:
        async with rw:
            trace.append(i)
            await asyncio.sleep(0)

    await rw.rlock()
    tasks = []
    for i in range(4):
        tasks.append(asyncio.create_task(writer(i)))
        await until(lambda i=i: len(rw._wq) == i + 1)  # type: ignore[misc]
    rw.runlock()
    await asyncio.gather(*tasks)
    assert trace == [0, 1, 2, 3]


@pytest.mark.asyncio
async def test_rwmutex_rlocker_reusable_nestable() -> None:
    rw = csp.RWMutex()
    rl = rw.rlocker()
    assert rw.rlocker() is rl
    async with rl:
        async with rl:
            assert rw._readers == 2
            assert rw.try_lock() is False
        assert rw._readers == 1
    async with rl:
        assert rw._readers == 1
    await rl.lock()
    assert rw._readers == 1
    rl.unlock()
    assert rw._readers == 0
    assert repr(rl) == (
        "<csp.RWMutex.rlocker of <csp.RWMutex unlocked reader_waiters=0 writer_waiters=0>>"
    )
    with pytest.raises(RuntimeError, match="RUnlock of unlocked RWMutex"):
        rl.unlock()


@pytest.mark.asyncio
async def test_rwmutex_cancelled_writer_admits_held_back_readers() -> None:
    """A writer cancelled while waiting lets in at once the readers it was holding
    back, instead of leaving them queued behind a writer that is gone."""
    rw = csp.RWMutex()
    await rw.rlock()
    tw = asyncio.create_task(rw.lock())
    await until(lambda: len(rw._wq) == 1)
    tr = asyncio.create_task(rw.rlock())
    await until(lambda: len(rw._rq) == 1)
    tw.cancel()
    with pytest.raises(asyncio.CancelledError):
        await tw
    await tr  # admitted although the first reader still holds its read lock
    assert rw._readers == 2 and not rw._wq and not rw._rq
    rw._invariants()
    rw.runlock()
    rw.runlock()
    assert rw.try_lock()


@pytest.mark.asyncio
async def test_rwmutex_cancelled_second_writer_keeps_readers_queued() -> None:
    """A cancelled writer that is not the last waiting writer leaves readers queued
    (the other writer still has preference)."""
    rw = csp.RWMutex()
    await rw.rlock()
    w1 = asyncio.create_task(rw.lock())
    await until(lambda: len(rw._wq) == 1)
    w2 = asyncio.create_task(rw.lock())
    await until(lambda: len(rw._wq) == 2)
    r = asyncio.create_task(rw.rlock())
    await until(lambda: len(rw._rq) == 1)
    w2.cancel()
    await spin()
    assert len(rw._rq) == 1 and not r.done()
    rw._invariants()
    rw.runlock()
    await w1
    assert rw._writer and not r.done()
    rw.unlock()
    await r
    rw.runlock()
    assert rw.try_lock()
    with pytest.raises(asyncio.CancelledError):
        await w2


@pytest.mark.asyncio
async def test_rwmutex_cancelled_reader_leaves_no_waiter() -> None:
    """A cancelled rlock() holds no read lock and is not admitted later."""
    rw = csp.RWMutex()
    await rw.lock()
    tr = asyncio.create_task(rw.rlock())
    await until(lambda: len(rw._rq) == 1)
    tr.cancel()
    with pytest.raises(asyncio.CancelledError):
        await tr
    assert not rw._rq
    rw.unlock()
    assert rw._readers == 0
    assert rw.try_lock()


@pytest.mark.asyncio
async def test_rwmutex_grants_to_tasks_cancelled_in_same_instant_are_kept() -> None:
    """A write lock handed to a writer cancelled in the same instant, and read locks
    handed to readers cancelled in the same instant, are kept by them (the calls
    return normally); the cancellation is raised at their next await."""
    rw = csp.RWMutex()
    got: list[str] = []

    async def take(kind: str) -> None:
        if kind == "w":
            await rw.lock()
        else:
            await rw.rlock()
        got.append(kind)
        try:
            await asyncio.sleep(0)
        finally:
            rw.unlock() if kind == "w" else rw.runlock()

    await rw.rlock()
    tw = asyncio.create_task(take("w"))
    await until(lambda: len(rw._wq) == 1)
    rw.runlock()  # hands the write lock to tw
    tw.cancel()
    with pytest.raises(asyncio.CancelledError):
        await tw
    assert got == ["w"]
    await rw.lock()
    readers = [asyncio.create_task(take("r")) for _ in range(3)]
    await until(lambda: len(rw._rq) == 3)
    rw.unlock()  # admits all three readers
    for t in readers:
        t.cancel()
    res = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in res)
    assert got == ["w", "r", "r", "r"]
    assert rw._readers == 0 and rw.try_lock()


# -- WaitGroup --------------------------------------------------------------------------


@both
async def test_go_waitgroup() -> None:
    """Go: TestWaitGroup: a barrier made of two groups, reused eight times."""
    wg1, wg2 = csp.WaitGroup(), csp.WaitGroup()
    n = 16
    for _ in range(8):
        wg1.add(n)
        wg2.add(n)
        exited = csp.Chan[bool](n)

        async def worker(exited: csp.Chan[bool]) -> None:
            wg1.done()
            await wg2.wait()
            await exited.send(True)

        for _ in range(n):
            csp.go(worker, exited)
        await wg1.wait()
        for i in range(n):
            await csp.gosched()
            idx, _ = await csp.select(exited.recv, default=True)
            assert idx == -1, "WaitGroup released group too soon"
            wg2.done()
            if i < n - 1:
                assert len(wg2._waiters) == n
        for _ in range(n):
            await exited.recv()  # deadlocks if the barrier failed to release someone
        assert repr(wg1) == repr(wg2) == "<csp.WaitGroup counter=0 waiters=0>"


@pytest.mark.asyncio
async def test_waitgroup_negative_counter() -> None:
    """Go: TestWaitGroupMisuse."""
    wg = csp.WaitGroup()
    wg.add(1)
    wg.done()
    with pytest.raises(RuntimeError, match=r"^sync: negative WaitGroup counter$"):
        wg.done()
    with pytest.raises(RuntimeError, match=r"^sync: negative WaitGroup counter$"):
        wg.add(-5)
    assert repr(wg) == "<csp.WaitGroup counter=0 waiters=0>"
    wg.add(3)
    wg.add(-2)
    assert repr(wg) == "<csp.WaitGroup counter=1 waiters=0>"


@pytest.mark.asyncio
async def test_waitgroup_wait_at_zero_returns_without_yielding() -> None:
    wg = csp.WaitGroup()
    ran: list[int] = []

    async def other() -> None:
        ran.append(1)

    t = asyncio.create_task(other())
    await wg.wait()
    assert ran == []  # wait() did not suspend
    await t


@pytest.mark.asyncio
async def test_waitgroup_releases_all_waiters_together() -> None:
    """Reaching zero completes every waiter in the same step (Go H5: atomically)."""
    wg = csp.WaitGroup()
    wg.add(2)
    trace: list[int] = []

    async def waiter(i: int) -> None:
        await wg.wait()
        trace.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(4)]
    await until(lambda: len(wg._waiters) == 4)
    wg.done()
    await spin()
    assert trace == []
    wg.done()
    assert repr(wg) == "<csp.WaitGroup counter=0 waiters=0>"  # all released at once
    await asyncio.gather(*tasks)
    assert trace == [0, 1, 2, 3]


@pytest.mark.asyncio
async def test_waitgroup_cancelled_wait_unlinks() -> None:
    """A cancelled wait() leaves no waiter; the group keeps working."""
    wg = csp.WaitGroup()
    wg.add(1)
    t = asyncio.create_task(wg.wait())
    await until(lambda: len(wg._waiters) == 1)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert repr(wg) == "<csp.WaitGroup counter=1 waiters=0>"
    t2 = asyncio.create_task(wg.wait())
    await until(lambda: len(wg._waiters) == 1)
    wg.done()
    await t2
    wg._invariants()


@both
async def test_waitgroup_go() -> None:
    wg = csp.WaitGroup()
    out: list[int] = []
    gate = csp.Chan[None]()

    async def work(i: int) -> int:
        await gate.recv()
        out.append(i)
        return i * 10

    tasks = [wg.go(work, i) for i in range(5)]
    assert repr(wg) == "<csp.WaitGroup counter=5 waiters=0>"  # counted in the caller
    gate.close()
    await wg.wait()
    assert [t.result() for t in tasks] == [0, 10, 20, 30, 40]
    assert sorted(out) == [0, 1, 2, 3, 4]


@pytest.mark.asyncio
async def test_waitgroup_go_rejects_non_coroutine_function() -> None:
    wg = csp.WaitGroup()
    with pytest.raises(TypeError):
        wg.go(lambda: None)  # type: ignore[arg-type, return-value]
    assert repr(wg) == "<csp.WaitGroup counter=0 waiters=0>"


def test_waitgroup_go_needs_a_loop() -> None:
    async def f() -> None:
        pass

    wg = csp.WaitGroup()
    with pytest.raises(RuntimeError, match="event loop"):
        wg.go(f)
    assert repr(wg) == "<csp.WaitGroup counter=0 waiters=0>"


def test_waitgroup_go_exception_does_not_release_wait(arun: Callable[..., Any]) -> None:
    """Go W4: if fn raises, done() is not called, so wait() is not released; the
    exception escapes the goroutine (here: to the loop's exception handler)."""

    async def main() -> tuple[str, list[str]]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        loop.set_exception_handler(lambda _l, ctx: seen.append(repr(ctx.get("exception"))))
        wg = csp.WaitGroup()

        async def boom() -> None:
            raise ValueError("boom")

        t = wg.go(boom)
        await until(t.done)
        await spin()
        w = asyncio.create_task(wg.wait())
        await spin()
        assert not w.done()
        w.cancel()
        return repr(wg), seen

    state, seen = arun(main)
    assert state == "<csp.WaitGroup counter=1 waiters=0>"
    assert seen == ["ValueError('boom')"]


def test_waitgroup_go_panic_ends_run(run: Callable[..., Any]) -> None:
    async def main() -> None:
        wg = csp.WaitGroup()

        async def boom() -> None:
            raise ValueError("boom")

        wg.go(boom)
        await wg.wait()

    with pytest.raises(ValueError, match="boom"):
        run(main)


@pytest.mark.asyncio
async def test_waitgroup_go_cancelled_goroutine_is_done() -> None:
    """A wg.go goroutine that is cancelled counts as done, also when it is cancelled
    before its first step (so wait() cannot hang on it)."""
    wg = csp.WaitGroup()
    gate = asyncio.Event()

    async def f() -> None:
        await gate.wait()

    t1 = wg.go(f)
    t2 = wg.go(f)
    t2.cancel()  # before it ever ran
    await until(lambda: wg._n == 1)
    t1.cancel()
    await wg.wait()
    assert t1.cancelled() and t2.cancelled()
    assert repr(wg) == "<csp.WaitGroup counter=0 waiters=0>"


# -- Once -------------------------------------------------------------------------------


@both
async def test_go_once() -> None:
    """Go: TestOnce: ten concurrent callers; f runs once and every caller returns only
    after it has finished."""
    once = csp.Once()
    o = [0]
    c = csp.Chan[bool]()

    async def increment() -> None:
        await csp.gosched()  # callers arrive while f runs
        o[0] += 1

    async def caller() -> None:
        await once.do(increment)
        assert o[0] == 1, "once failed inside run"
        await c.send(True)

    for _ in range(10):
        csp.go(caller)
    for _ in range(10):
        await c.recv()
    assert repr(once) == "<csp.Once done>"
    assert o[0] == 1


@pytest.mark.asyncio
async def test_go_once_panic() -> None:
    """Go: TestOncePanic: f's exception reaches the first caller; the Once is done."""
    once = csp.Once()

    def fail() -> None:
        raise ValueError("failed")

    with pytest.raises(ValueError, match="failed"):
        await once.do(fail)
    called: list[int] = []
    await once.do(lambda: called.append(1))
    assert called == []
    assert repr(once) == "<csp.Once done>"


@pytest.mark.asyncio
async def test_once_exception_reaches_first_caller_only() -> None:
    once = csp.Once()
    gate = asyncio.Event()
    results: list[str] = []

    async def fail() -> None:
        await gate.wait()
        raise ValueError("first")

    async def caller(name: str) -> None:
        try:
            await once.do(fail)
            results.append(f"{name} ok")
        except ValueError as e:
            results.append(f"{name} {e}")

    t1 = asyncio.create_task(caller("a"))
    await until(lambda: once._running)
    others = [asyncio.create_task(caller(n)) for n in "bc"]
    await until(lambda: len(once._waiters) == 2)
    assert repr(once) == "<csp.Once running waiters=2>"
    gate.set()
    await asyncio.gather(t1, *others)
    assert results == ["a first", "b ok", "c ok"]
    assert repr(once) == "<csp.Once done>"


@pytest.mark.asyncio
async def test_once_first_call_cancelled_next_caller_runs() -> None:
    """If the call running fn is cancelled, the Once is not done: the longest waiting
    caller runs fn instead (and if nobody waits, the next caller does)."""
    once = csp.Once()
    runs: list[str] = []
    gate = asyncio.Event()

    def make(name: str) -> Callable[[], Any]:
        async def f() -> None:
            runs.append(f"{name} start")
            await gate.wait()
            runs.append(f"{name} end")

        return f

    t1 = asyncio.create_task(once.do(make("a")))
    await until(lambda: runs == ["a start"])
    t2 = asyncio.create_task(once.do(make("b")))
    t3 = asyncio.create_task(once.do(make("c")))
    await until(lambda: len(once._waiters) == 2)
    t1.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t1
    await until(lambda: len(runs) == 2)
    assert runs == ["a start", "b start"]
    assert repr(once) == "<csp.Once running waiters=1>"
    gate.set()
    await asyncio.gather(t2, t3)
    assert runs == ["a start", "b start", "b end"]
    assert repr(once) == "<csp.Once done>"

    once2 = csp.Once()
    gate.clear()
    t = asyncio.create_task(once2.do(make("x")))
    await until(lambda: runs[-1] == "x start")
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert repr(once2) == "<csp.Once not done>"
    calls: list[int] = []
    await once2.do(lambda: calls.append(1))
    assert calls == [1]
    assert repr(once2) == "<csp.Once done>"


@pytest.mark.asyncio
async def test_once_cancelled_waiter_unlinks() -> None:
    """A caller cancelled while waiting for fn leaves no waiter behind."""
    once = csp.Once()
    gate = asyncio.Event()

    async def f() -> None:
        await gate.wait()

    t1 = asyncio.create_task(once.do(f))
    await until(lambda: once._running)
    t2 = asyncio.create_task(once.do(f))
    await until(lambda: len(once._waiters) == 1)
    t2.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t2
    assert repr(once) == "<csp.Once running waiters=0>"
    gate.set()
    await t1
    assert repr(once) == "<csp.Once done>"


@pytest.mark.asyncio
async def test_once_run_handed_to_waiter_cancelled_in_same_instant() -> None:
    """When the running call is cancelled, the run passes to the longest waiter; a
    waiter cancelled in the same instant keeps it: its do() runs fn (a sync fn
    completes and the Once is done) rather than raising with the Once undone."""
    loop = asyncio.get_running_loop()
    once = csp.Once()
    calls: list[str] = []
    accepted: list[bool] = []
    t2: asyncio.Task[None] | None = None

    async def slow() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # Queued now, it runs after do() has handed the run to t2 (in this
            # step) and before t2 resumes.
            loop.call_soon(lambda: accepted.append(t2 is not None and t2.cancel()))
            raise

    t1 = asyncio.create_task(once.do(slow))
    await until(lambda: once._running)
    t2 = asyncio.create_task(once.do(lambda: calls.append("b")))
    await until(lambda: len(once._waiters) == 1)
    t1.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t1
    await t2  # finished without suspending again: returns normally
    assert accepted == [True]
    assert calls == ["b"]
    assert repr(once) == "<csp.Once done>"


# -- Cond -------------------------------------------------------------------------------


@both
async def test_go_cond_signal() -> None:
    """Go: TestCondSignal, with the wake order checked: Signal wakes the longest
    waiter, one at a time."""
    m = csp.Mutex()
    c = csp.Cond(m)
    n = 4
    running = csp.Chan[int](n)
    awake = csp.Chan[int](n)

    async def waiter(i: int) -> None:
        await m.lock()
        await running.send(i)
        await c.wait()
        await awake.send(i)
        m.unlock()

    for i in range(n):
        csp.go(waiter, i)
        # let i enter wait() before i+1 starts, so the queue order is known
        await csp.gosched()
    for _ in range(n):
        await running.recv()
    order = []
    while n > 0:
        idx, _ = await csp.select(awake.recv, default=True)
        assert idx == -1, "goroutine not asleep"
        await m.lock()
        c.signal()
        m.unlock()
        order.append(await awake.recv())
        await csp.gosched()
        idx, _ = await csp.select(awake.recv, default=True)
        assert idx == -1, "too many goroutines awake"
        n -= 1
    c.signal()  # nobody waits: nothing happens
    assert order == [0, 1, 2, 3]


@both
async def test_go_cond_broadcast() -> None:
    """Go: TestCondBroadcast (shortened): Broadcast wakes every waiter; they take the
    lock again in the order they waited."""
    m = csp.Mutex()
    c = csp.Cond(m)
    n = 5
    running = csp.Chan[int](n)
    awake = csp.Chan[int](n)
    exit_ = [False]
    rounds = []

    async def waiter(i: int) -> None:
        await m.lock()
        while not exit_[0]:
            await running.send(i)
            await c.wait()
            await awake.send(i)
        m.unlock()

    for i in range(n):
        csp.go(waiter, i)
        await csp.gosched()
    for r in range(3):
        for _ in range(n):
            await running.recv()
        if r == 2:
            await m.lock()
            exit_[0] = True
            m.unlock()
        idx, _ = await csp.select(awake.recv, default=True)
        assert idx == -1
        await m.lock()
        c.broadcast()
        m.unlock()
        rounds.append([await awake.recv() for _ in range(n)])
    assert rounds == [[0, 1, 2, 3, 4]] * 3


@both
async def test_go_cond_signal_stealing() -> None:
    """Go: TestCondSignalStealing: a Broadcast racing with a new Wait still wakes the
    waiter that was already waiting (a hang here is reported as a deadlock)."""
    async def one_round() -> None:
        # a function per round: Go's loop body declares fresh variables each time
        m = csp.Mutex()
        cond = csp.Cond(m)
        ch = csp.Chan[None]()
        done = [False]

        async def first() -> None:
            await m.lock()
            await ch.send(None)
            await cond.wait()
            m.unlock()
            await ch.send(None)

        async def bcast() -> None:
            cond.broadcast()

        async def second() -> None:
            await m.lock()
            while not done[0]:
                await cond.wait()
            m.unlock()

        csp.go(first)
        await ch.recv()
        await m.lock()
        m.unlock()
        csp.go(bcast)
        csp.go(second)
        await ch.recv()  # the first waiter must get the broadcast
        await m.lock()
        done[0] = True
        m.unlock()
        cond.broadcast()
    for _ in range(50):
        await one_round()


@pytest.mark.asyncio
async def test_cond_signal_is_not_remembered() -> None:
    m = csp.Mutex()
    c = csp.Cond(m)
    c.signal()
    c.broadcast()
    await m.lock()
    t = asyncio.create_task(c.wait())
    await until(lambda: len(c._waiters) == 1)
    await spin()
    assert not t.done()
    assert repr(c) == "<csp.Cond waiters=1 L=<csp.Mutex unlocked>>"
    c.signal()
    await t
    assert repr(c) == "<csp.Cond waiters=0 L=<csp.Mutex locked waiters=0>>"
    m.unlock()


@pytest.mark.asyncio
async def test_cond_wait_without_lock_raises() -> None:
    """Go K1: Wait without holding a Mutex-based lock fails (Go: fatal error); it
    raises at once and leaves no waiter."""
    m = csp.Mutex()
    c = csp.Cond(m)
    with pytest.raises(RuntimeError, match=r"^sync: unlock of unlocked mutex$"):
        await c.wait()
    assert not c._waiters
    c2 = csp.Cond(csp.RWMutex())
    with pytest.raises(RuntimeError, match=r"^sync: Unlock of unlocked RWMutex$"):
        await c2.wait()
    assert not c2._waiters


@pytest.mark.asyncio
async def test_cond_cancelled_wait_reacquires_lock_before_raising() -> None:
    """A cancelled wait() holds the lock again when CancelledError propagates; it
    waits for the lock (FIFO behind other lockers) and leaves no Cond waiter."""
    m = csp.Mutex()
    c = csp.Cond(m)
    trace: list[str] = []

    async def waiter() -> None:
        await m.lock()
        try:
            await c.wait()
        except asyncio.CancelledError:
            trace.append(f"cancelled, lock held={not m.try_lock()}")
            m.unlock()
            raise

    t = asyncio.create_task(waiter())
    await until(lambda: len(c._waiters) == 1)
    await m.lock()  # main holds the lock: the cancelled waiter must wait for it
    t.cancel()
    await spin()
    assert trace == [] and not t.done() and not c._waiters
    t.cancel()  # cancelling again while it re-acquires changes nothing
    await spin()
    assert trace == [] and not t.done()
    m.unlock()  # hands the lock to the waiter
    with pytest.raises(asyncio.CancelledError):
        await t
    assert trace == ["cancelled, lock held=True"]
    assert repr(m) == "<csp.Mutex unlocked>"


@pytest.mark.asyncio
async def test_cond_signalled_and_cancelled_in_same_step_returns() -> None:
    """A wait that was signalled and cancelled in the same step returns normally
    holding the lock (the signal is not lost); the cancellation is raised at the
    task's next await."""
    m = csp.Mutex()
    c = csp.Cond(m)
    trace: list[str] = []

    async def waiter(name: str) -> None:
        await m.lock()
        try:
            await c.wait()
            trace.append(f"{name} woke holding={not m.try_lock()}")
            await asyncio.sleep(0)
            trace.append(f"{name} not cancelled")
        except asyncio.CancelledError:
            trace.append(f"{name} cancelled")
            raise
        finally:
            m.unlock()

    t1 = asyncio.create_task(waiter("a"))
    await until(lambda: len(c._waiters) == 1)
    t2 = asyncio.create_task(waiter("b"))
    await until(lambda: len(c._waiters) == 2)
    c.signal()  # goes to a
    t1.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t1
    await spin()
    assert trace == ["a woke holding=True", "a cancelled"]
    assert len(c._waiters) == 1  # b still waits: the signal went to a, not lost
    c.signal()
    await t2
    assert trace[2:] == ["b woke holding=True", "b not cancelled"]
    assert repr(m) == "<csp.Mutex unlocked>"


@pytest.mark.asyncio
async def test_cond_signalled_then_cancelled_while_relocking_returns() -> None:
    """A wait that was signalled and is cancelled while it waits to re-acquire the
    lock still returns normally once it holds the lock (the signal took effect);
    the cancellation is raised at the next await."""
    m = csp.Mutex()
    c = csp.Cond(m)
    trace: list[str] = []

    async def waiter() -> None:
        await m.lock()
        try:
            await c.wait()
            trace.append("returned")
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            trace.append("cancelled later")
            raise
        finally:
            m.unlock()

    t = asyncio.create_task(waiter())
    await until(lambda: len(c._waiters) == 1)
    await m.lock()
    c.signal()
    await until(lambda: len(m._waiters) == 1)  # woke, now queued for the lock
    t.cancel()
    await spin()
    assert trace == [] and len(m._waiters) == 1
    m.unlock()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert trace == ["returned", "cancelled later"]
    assert repr(m) == "<csp.Mutex unlocked>"


@pytest.mark.asyncio
async def test_cond_with_rwmutex_and_rlocker() -> None:
    rw = csp.RWMutex()
    cw = csp.Cond(rw)
    cr = csp.Cond(rw.rlocker())
    trace: list[str] = []

    async def writer_waiter() -> None:
        async with rw:
            await cw.wait()
            trace.append(f"writer woke writer={rw._writer}")

    async def reader_waiter() -> None:
        async with rw.rlocker():
            await cr.wait()
            trace.append(f"reader woke readers={rw._readers}")

    t1 = asyncio.create_task(writer_waiter())
    await until(lambda: len(cw._waiters) == 1)
    t2 = asyncio.create_task(reader_waiter())
    await until(lambda: len(cr._waiters) == 1)
    assert rw._readers == 0 and not rw._writer
    cr.signal()
    await t2
    cw.signal()
    await t1
    assert trace == ["reader woke readers=1", "writer woke writer=True"]
    assert rw.try_lock()


# -- Semaphore --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_semaphore_basics_and_repr() -> None:
    s = csp.Semaphore(3)
    assert repr(s) == "<csp.Semaphore held=0/3 waiters=0>"
    await s.acquire(2)
    assert s.try_acquire(1) is True
    assert s.try_acquire(1) is False
    assert s.try_acquire(0) is True
    assert repr(s) == "<csp.Semaphore held=3/3 waiters=0>"
    s.release(3)
    async with s:
        assert repr(s) == "<csp.Semaphore held=1/3 waiters=0>"
    assert repr(s) == "<csp.Semaphore held=0/3 waiters=0>"
    with pytest.raises(ValueError):
        csp.Semaphore(-1)
    with pytest.raises(TypeError):
        csp.Semaphore(1.5)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_go_weighted_try_acquire() -> None:
    """Go: TestWeightedTryAcquire."""
    sem = csp.Semaphore(2)
    tries = []
    await sem.acquire(1)
    tries.append(sem.try_acquire(1))
    tries.append(sem.try_acquire(1))
    sem.release(2)
    tries.append(sem.try_acquire(1))
    await sem.acquire(1)
    tries.append(sem.try_acquire(1))
    assert tries == [True, False, True, False]


@pytest.mark.asyncio
async def test_semaphore_misuse() -> None:
    """Go: TestWeightedPanic (release without acquire), plus size checks."""
    s = csp.Semaphore(2)
    with pytest.raises(RuntimeError, match=r"^semaphore: released more than held$"):
        s.release(1)
    await s.acquire(1)
    with pytest.raises(RuntimeError, match=r"^semaphore: released more than held$"):
        s.release(2)
    assert repr(s) == "<csp.Semaphore held=1/2 waiters=0>"  # unchanged
    with pytest.raises(ValueError):
        await s.acquire(3)
    with pytest.raises(ValueError):
        s.try_acquire(3)
    with pytest.raises(ValueError):
        await s.acquire(-1)
    with pytest.raises(ValueError):
        s.release(-1)
    s.release(1)
    z = csp.Semaphore(0)
    await z.acquire(0)
    assert z.try_acquire(0)
    with pytest.raises(ValueError):
        await z.acquire(1)


@pytest.mark.asyncio
async def test_semaphore_fifo_large_request_not_starved() -> None:
    """A large request at the head of the queue is not overtaken by smaller later
    ones, even when they would fit (and try_acquire fails while anyone is queued)."""
    s = csp.Semaphore(10)
    trace: list[str] = []

    async def take(name: str, k: int) -> None:
        await s.acquire(k)
        trace.append(f"{name}+{k}")

    await s.acquire(5)
    big = asyncio.create_task(take("big", 10))
    await until(lambda: len(s._waiters) == 1)
    small = asyncio.create_task(take("small", 1))
    zero = asyncio.create_task(take("zero", 0))
    await until(lambda: len(s._waiters) == 3)
    assert s.try_acquire(1) is False  # 5 tokens free, but someone is queued
    assert s.try_acquire(0) is False
    await spin()
    assert trace == []
    s._invariants()
    s.release(5)
    await big
    assert trace == ["big+10"] and repr(s) == "<csp.Semaphore held=10/10 waiters=2>"
    s.release(10)
    await asyncio.gather(small, zero)
    assert trace == ["big+10", "small+1", "zero+0"]
    assert repr(s) == "<csp.Semaphore held=1/10 waiters=0>"


@both
async def test_go_weighted_hammer() -> None:
    """Go: TestWeighted: many tasks acquire random weights; never more than n held."""
    n = 8
    s = csp.Semaphore(n)
    rng = random.Random(7)
    held = [0, 0]  # now, max
    wg = csp.WaitGroup()

    async def worker(ks: list[int]) -> None:
        for k in ks:
            await s.acquire(k)
            held[0] += k
            held[1] = max(held[1], held[0])
            assert held[0] <= n
            await csp.gosched()
            held[0] -= k
            s.release(k)

    for _ in range(12):
        wg.go(worker, [rng.randint(1, n) for _ in range(30)])
    await wg.wait()
    assert s.try_acquire(n)
    assert held[0] == 0 and 1 < held[1] <= 8  # (now, peak)


@both
async def test_go_large_acquire_doesnt_starve() -> None:
    """Go: TestLargeAcquireDoesntStarve: a full-size acquire gets in although small
    acquirers keep cycling."""
    n = 4
    s = csp.Semaphore(n)
    running = [True]
    cycles = [0]
    wg = csp.WaitGroup()

    async def small() -> None:
        try:
            while running[0]:
                await csp.gosched()
                s.release(1)
                await s.acquire(1)
                cycles[0] += 1
                assert cycles[0] < 10_000, "large acquire starved"
        finally:
            s.release(1)

    for _ in range(n):
        await s.acquire(1)
        wg.go(small)
    await s.acquire(n)
    running[0] = False
    s.release(n)
    await wg.wait()
    assert cycles[0] < 50


@pytest.mark.asyncio
async def test_go_alloc_cancel_doesnt_starve() -> None:
    """Go: TestAllocCancelDoesntStarve: cancelling a large queued request at the head
    grants the small request queued behind it (the withdrawal passes tokens on)."""
    s = csp.Semaphore(10)
    await s.acquire(1)
    big = asyncio.create_task(s.acquire(10))
    while s.try_acquire(1):  # until the large request is queued
        s.release(1)
        await asyncio.sleep(0)
    small = asyncio.create_task(s.acquire(1))
    await until(lambda: len(s._waiters) == 2)
    big.cancel()
    await small
    with pytest.raises(asyncio.CancelledError):
        await big
    assert repr(s) == "<csp.Semaphore held=2/10 waiters=0>"
    s.release(2)
    assert s.try_acquire(10)


@pytest.mark.asyncio
async def test_semaphore_cancelled_non_head_waiter_unlinks() -> None:
    """A cancelled acquire that is not at the head leaves the queue untouched
    otherwise and holds nothing."""
    s = csp.Semaphore(2)
    await s.acquire(2)
    a = asyncio.create_task(s.acquire(2))
    b = asyncio.create_task(s.acquire(1))
    await until(lambda: len(s._waiters) == 2)
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    assert [w.value for w in s._waiters] == [2]  # each waiter holds the weight it asks
    s.release(2)
    await a
    assert repr(s) == "<csp.Semaphore held=2/2 waiters=0>"


@pytest.mark.asyncio
async def test_semaphore_tokens_granted_to_task_cancelled_in_same_instant_kept() -> None:
    """Tokens granted to a waiter cancelled in the same instant are kept by it:
    acquire() returns normally and its next await raises CancelledError."""
    s = csp.Semaphore(3)
    trace: list[str] = []

    async def take() -> None:
        await s.acquire(3)
        trace.append("acquired")
        try:
            await asyncio.sleep(0)
        finally:
            s.release(3)
            trace.append("released")

    await s.acquire(1)
    t = asyncio.create_task(take())
    await until(lambda: len(s._waiters) == 1)
    s.release(1)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert trace == ["acquired", "released"]
    assert s.try_acquire(3)


# -- randomized cancellation stress ---------------------------------------------------

MODES = ("task.cancel", "asyncio.timeout", "wait_for", "anyio.CancelScope", "none")


class Stats:
    def __init__(self) -> None:
        self.returned = 0  # acquisitions (lock()/rlock()/acquire()) that returned
        self.entries = 0  # critical-section entries
        self.failed = 0  # acquisitions that raised CancelledError / TimeoutError
        self.cancelled_inside = 0  # cancellations that hit a holder
        self.finished = 0


async def _stress(kind: str, seed: int, n_tasks: int) -> Stats:
    """Run ``n_tasks`` acquisition attempts on one primitive while a chaos task cancels
    them at random moments through five different mechanisms; check exclusion inside
    the critical section and that the primitive ends free."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    mu, rw, sem = csp.Mutex(), csp.RWMutex(), csp.Semaphore(5)
    st = Stats()
    writer_share = (0.05, 0.15, 0.3)[seed % 3]  # RWMutex: few or many writers
    inside = {"writers": 0, "readers": 0, "tokens": 0}
    handles: dict[int, Callable[[], object]] = {}
    tasks: dict[int, asyncio.Task[None]] = {}

    async def acquire(i: int, r: random.Random) -> tuple[str, int]:
        if kind == "mutex":
            await mu.lock()
            return "w", 1
        if kind == "rwmutex":
            if r.random() < writer_share:
                await rw.lock()
                return "w", 1
            await rw.rlock()
            return "r", 1
        k = r.randint(0, 5)
        await sem.acquire(k)
        return "s", k

    def release(what: str, k: int) -> None:
        if kind == "mutex":
            mu.unlock()
        elif kind == "rwmutex":
            rw.unlock() if what == "w" else rw.runlock()
        else:
            sem.release(k)

    async def critical(what: str, k: int, r: random.Random) -> None:
        st.entries += 1
        try:
            if what == "w":
                inside["writers"] += 1
                assert inside["writers"] == 1 and inside["readers"] == 0
            elif what == "r":
                inside["readers"] += 1
                assert inside["writers"] == 0
            else:
                inside["tokens"] += k
                assert inside["tokens"] <= 5
            for _ in range(r.randint(0, 2)):
                await asyncio.sleep(0)
            assert inside["writers"] == (1 if what == "w" else 0)
        except asyncio.CancelledError:
            st.cancelled_inside += 1
            raise
        finally:
            if what == "w":
                inside["writers"] -= 1
            elif what == "r":
                inside["readers"] -= 1
            else:
                inside["tokens"] -= k
            release(what, k)
            # Cancel someone in the very step that handed the lock on: often the
            # oldest waiter (the one just granted), so grant and cancel coincide.
            x = r.random()
            if handles and x < 0.5:
                j = next(iter(handles)) if x < 0.3 else r.choice(sorted(handles))
                handles.pop(j)()

    async def attempt(i: int) -> None:
        r = random.Random(seed * 1_000_003 + i)
        mode = r.choice(MODES)
        for _ in range(r.randint(0, 60)):  # staggered arrivals
            await asyncio.sleep(0)
        got: tuple[str, int] | None = None
        try:
            if mode == "asyncio.timeout":
                async with asyncio.timeout(None) as cm:
                    handles[i] = lambda: cm.reschedule(loop.time() - 1)
                    try:
                        got = await acquire(i, r)
                    finally:
                        handles.pop(i, None)
            elif mode == "anyio.CancelScope":
                with anyio.CancelScope() as scope:
                    handles[i] = scope.cancel
                    try:
                        got = await acquire(i, r)
                    finally:
                        handles.pop(i, None)
            elif mode == "wait_for":
                got = await asyncio.wait_for(acquire(i, r), r.choice([0, 1e-5, 1e-4, 1]))
            else:
                if mode == "task.cancel":
                    handles[i] = tasks[i].cancel
                got = await acquire(i, r)
        except (asyncio.CancelledError, TimeoutError):
            st.failed += 1
            raise
        finally:
            if mode != "task.cancel":
                handles.pop(i, None)
        if got is None:  # an anyio scope swallowed its cancellation
            st.failed += 1
            return
        st.returned += 1
        try:
            await critical(got[0], got[1], r)
        finally:
            handles.pop(i, None)
            st.finished += 1

    prim: Any = {"mutex": mu, "rwmutex": rw, "semaphore": sem}[kind]

    async def chaos() -> None:
        while any(not t.done() for t in tasks.values()):
            await asyncio.sleep(0)
            prim._invariants()  # e.g. nobody queued who could be served now
            for _ in range(rng.randint(0, 3)):
                if handles:
                    j = rng.choice(sorted(handles))
                    h = handles.pop(j)
                    h()
                    prim._invariants()

    for i in range(n_tasks):
        tasks[i] = asyncio.create_task(attempt(i))
    await chaos()
    results = await asyncio.gather(*tasks.values(), return_exceptions=True)
    for res in results:
        assert res is None or isinstance(res, (asyncio.CancelledError, TimeoutError)), res

    # Everything ended: the primitive is free and nothing is queued.
    assert inside == {"writers": 0, "readers": 0, "tokens": 0}
    assert st.entries == st.returned
    assert st.returned + st.failed == n_tasks
    if kind == "mutex":
        mu._invariants()
        assert not mu._waiters and mu.try_lock()
    elif kind == "rwmutex":
        rw._invariants()
        assert not rw._rq and not rw._wq and rw.try_lock()
    else:
        sem._invariants()
        assert not sem._waiters and sem.try_acquire(5)
    return st


@pytest.mark.parametrize("kind", ["mutex", "rwmutex", "semaphore"])
def test_cancellation_stress_small(kind: str, srun: Callable[..., Any]) -> None:
    """Randomized cancellation (seeded): afterwards the primitive is free and the
    critical-section entries equal the acquisitions that returned normally."""
    total = Stats()
    for seed in range(3):
        st = srun(seed, _stress, kind, seed, 150)
        total.returned += st.returned
        total.failed += st.failed
        total.cancelled_inside += st.cancelled_inside
    assert total.returned > 0 and total.failed > 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mutex", "rwmutex", "semaphore"])
def test_cancellation_stress_big(kind: str, srun: Callable[..., Any]) -> None:
    total = Stats()
    for seed in range(100, 150):
        st = srun(seed, _stress, kind, seed, 1000)
        total.returned += st.returned
        total.failed += st.failed
        total.cancelled_inside += st.cancelled_inside
    assert total.returned > 0 and total.failed > 0 and total.cancelled_inside > 0


# -- ``async with`` without a coroutine ----------------------------------------------------


def _lock_cms() -> list[tuple[str, Any]]:
    rw = csp.RWMutex()
    return [
        ("Mutex", csp.Mutex()),
        ("RWMutex", rw),
        ("RWMutex.rlocker", rw.rlocker()),
        ("Semaphore", csp.Semaphore(1)),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("name", [n for n, _ in _lock_cms()])
async def test_async_with_free_lock_neither_suspends_nor_yields(name: str) -> None:
    """A free lock's ``async with`` returns the shared finished future (no coroutine),
    never yields to the loop, and the lock is free again afterwards."""
    if csp._threads.shared.on:
        pytest.skip("shared mode (csp._threads): the locks' fast paths are not taken")
    cm = dict(_lock_cms())[name]
    ran = 0

    async def other() -> None:
        nonlocal ran
        ran += 1

    await csp.gosched()  # a suspension: the cooperative budget starts again
    t = asyncio.create_task(other())
    entered = 0
    for _ in range(100):
        async with cm:
            entered += 1
    assert (entered, ran) == (100, 0)  # other() never got the loop
    assert cm.__aenter__() is csp._waiter.READY  # free after 100 rounds
    assert cm.__aexit__(None, None, None) is csp._waiter.READY
    await t
    assert ran == 1
    assert repr(cm).count("unlocked") == 1 or "held=0/1 waiters=0" in repr(cm)


@pytest.mark.asyncio
async def test_async_with_busy_lock_waits_in_fifo_order() -> None:
    """When it must wait, ``async with`` parks like lock(): FIFO, then unlocks on exit."""
    mu = csp.Mutex()
    order: list[int] = []

    async def user(i: int) -> None:
        async with mu:
            order.append(i)
            await asyncio.sleep(0)

    await mu.lock()
    ts = [csp.go(user, i) for i in range(4)]
    await until(lambda: len(mu._waiters) == 4)
    mu.unlock()
    for t in ts:
        await t
    assert order == [0, 1, 2, 3]
    assert repr(mu) == "<csp.Mutex unlocked>"


@pytest.mark.asyncio
async def test_async_with_exit_of_unlocked_raises_go_message() -> None:
    """Leaving ``async with`` on a lock someone else already unlocked raises Go's
    message at the block's end."""
    mu = csp.Mutex()
    with pytest.raises(RuntimeError, match="sync: unlock of unlocked mutex"):
        async with mu:
            mu.unlock()
    sem = csp.Semaphore(2)
    with pytest.raises(RuntimeError, match="semaphore: released more than held"):
        async with sem:
            sem.release()


@pytest.mark.asyncio
async def test_async_with_raises_owed_cancellation_before_locking() -> None:
    """A cancellation swallowed after an earlier operation took effect is raised by the
    next ``async with`` before it locks, even though the lock is free."""
    ch = csp.Chan[int]()
    mu = csp.Mutex()
    got: list[int] = []
    entered = False

    async def receiver() -> None:
        nonlocal entered
        got.append(await ch.recv())  # completed and cancelled in the same instant
        async with mu:
            entered = True  # pragma: no cover

    t = asyncio.create_task(receiver())
    await until(lambda: len(ch._recvq) == 1)
    await ch.send(7)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert got == [7]
    assert entered is False
    assert repr(mu) == "<csp.Mutex unlocked>"


@pytest.mark.asyncio
async def test_ready_future_is_a_finished_future_on_any_loop() -> None:
    """The shared finished future works with asyncio's helpers on the running loop."""
    ready = csp._waiter.READY
    assert ready.done() and ready.result() is None
    assert await ready is None
    assert await asyncio.wait_for(csp.Mutex().__aenter__(), 1) is None
    assert await asyncio.gather(csp.Mutex().__aenter__(), ready) == [None, None]
    assert ready.get_loop() is asyncio.get_running_loop()
    assert await asyncio.shield(ready) is None
    assert asyncio.ensure_future(ready) is ready
    seen: list[bool] = []
    done = asyncio.Event()
    ready.add_done_callback(lambda f: (seen.append(f is ready), done.set()))
    await done.wait()
    assert seen == [True]


# -- Mutex cancellation, goroutines (driven by csp) vs plain Tasks ------------------
#
# Invariants (API.md, cancellation guarantee): a cancelled lock() holds nothing and
# leaves nothing queued; a lock handed to a waiter cancelled in the same instant is
# kept by it (lock() returns normally, CancelledError at its next suspension); a
# cancellation owed by a task is raised by its next ``async with`` before it locks.
# Each scenario's waiters first park once on a gate, so that goroutines are resumed by
# csp from then on; the trace must be asyncio's (tests/differential.py).


async def _warm(gate: csp.Chan[int]) -> None:
    """Park once on ``gate`` so that a goroutine is resumed directly afterwards."""
    await gate.recv()


async def _settle() -> None:
    await spin(10)


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
    ts = {n: start(kind, w(n)) for n in "ABC"}
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

    t = start(kind, w())
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

    t = start(kind, w())
    await _settle()
    await mu.lock()
    await gate.send(0)
    await _settle()
    mu.unlock()  # hands it to W (plain unlock(), not the inlined __aexit__)
    t.cancel()
    await asyncio.wait([t])
    trace.append((t.cancelled(), repr(mu), repr(mu2)))
    return trace


MUTEX_CANCEL: dict[str, tuple[Program, list[Any]]] = {
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




@pytest.mark.parametrize("name", list(MUTEX_CANCEL))
def test_mutex_cancellation_matches_asyncio(loop_name: str, name: str) -> None:
    """See the section comment; each scenario's docstring states its trace."""
    program, expected = MUTEX_CANCEL[name]
    assert differential(loop_name, program) == expected


def test_mutex_cancel_storm_keeps_exclusion_and_leaves_nothing_queued(
        loop_name: str) -> None:
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
        return (done[0], len(mu._waiters), len(csp._waiter.owed), repr(mu),
                cancelled[0] > 50)

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as r:
        got = r.run(main())
    assert got == (1600, 0, 0, "<csp.Mutex unlocked>", True)


# -- the ``async with`` fast paths of RWMutex, rlocker() and Semaphore ---------------
#
# ``__aenter__``/``__aexit__`` return the shared finished Future ``READY`` when they
# need not wait, else the ``lock()``/``acquire()`` coroutine: they keep the slow
# path's fairness and cancellation rules. Every test runs its contenders as goroutines
# and as plain Tasks (tests/differential.py).


def test_rlocker_async_with_waits_behind_queued_writer(loop_name: str) -> None:
    """Invariant (writer preference): while a writer is queued, a new reader's
    ``async with rw.rlocker()`` does not enter (its ``__aenter__`` is not READY and
    takes no read lock); it enters after the writer, in the reader phase that follows."""

    async def main(kind: str) -> list[Any]:
        def spawn(coro: Any) -> asyncio.Task[Any]:
            return start(kind, coro)

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

    assert differential(loop_name, main) == [
        ("queued", "<csp.RWMutex read-locked readers=1 reader_waiters=2 writer_waiters=1>"),
        ("w", "<csp.RWMutex write-locked reader_waiters=2 writer_waiters=0>"),
        ("r", 0, 2), ("r", 1, 1),  # both admitted together; the first left already
        "<csp.RWMutex unlocked reader_waiters=0 writer_waiters=0>",
    ]


def test_rw_async_with_phases_alternate_fifo(loop_name: str) -> None:
    """Invariant: with ``async with`` on both sides, a writer's unlock admits the
    readers queued meanwhile before the next writer; writers go FIFO; a reader that
    arrives while readers hold and a writer waits queues (no barging via READY)."""

    async def main(kind: str) -> list[Any]:
        def spawn(coro: Any) -> asyncio.Task[Any]:
            return start(kind, coro)

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

    assert differential(loop_name, main) == [
        "W1",
        "<csp.RWMutex write-locked reader_waiters=1 writer_waiters=2>",
        ("R1", 1),
        "<csp.RWMutex read-locked readers=1 reader_waiters=1 writer_waiters=2>",
        "W2", ("R2", 1), "W3",
        "<csp.RWMutex unlocked reader_waiters=0 writer_waiters=0>",
    ]


def test_semaphore_async_with_does_not_barge_past_queued_request(loop_name: str) -> None:
    """Invariant (FIFO): a newcomer's ``async with sem`` while a larger request is
    queued does not take the free token (``__aenter__`` is not READY); the queued
    request is granted first, then the newcomer."""

    async def main(kind: str) -> list[Any]:
        def spawn(coro: Any) -> asyncio.Task[Any]:
            return start(kind, coro)

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

    assert differential(loop_name, main) == [
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


@pytest.mark.parametrize("lock", list(LOCKS))
def test_async_with_body_exception_releases_and_propagates(loop_name: str, lock: str) -> None:
    """Invariant: an exception (or a cancellation) leaving the body of a fast-path
    ``async with`` propagates unchanged (``__aexit__``'s READY is falsy: it does not
    swallow), and the lock is released once, or handed to the queued contender."""

    async def main(kind: str) -> list[Any]:
        def spawn(coro: Any) -> asyncio.Task[Any]:
            return start(kind, coro)

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

    got = differential(loop_name, main)
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


@pytest.mark.parametrize("lock", list(LOCKS))
def test_async_with_raises_owed_cancellation_before_taking_lock(loop_name: str, lock: str) -> None:
    """Invariant: a task that owes itself a cancellation (its recv completed and it was
    cancelled in the same step) raises it at ``async with`` on a free lock, before the
    lock is taken: the fast path must not hand out READY then."""

    async def main(kind: str) -> list[Any]:
        def spawn(coro: Any) -> asyncio.Task[Any]:
            return start(kind, coro)

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

    assert differential(loop_name, main) == [("recv", 5), ("cancelled", ("c",), FREE[lock]),
                          (True, FREE[lock])]


@pytest.mark.parametrize("lock", list(LOCKS))
def test_another_tasks_owed_cancellation_does_not_affect_async_with(loop_name: str,
                                                                    lock: str) -> None:
    """Invariant: a cancellation owed by task A (pending re-delivery) sends task B's
    ``async with`` down the slow path in the same drain, but B takes the free lock
    normally; A gets its cancellation at its next suspension."""

    async def main(kind: str) -> list[Any]:
        def spawn(coro: Any) -> asyncio.Task[Any]:
            return start(kind, coro)

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
    assert differential(loop_name, main) == [
        ("a recv", 1), ("b recv", 2), ("b in", held), "a cancelled",
        (True, False, FREE[lock])]


def test_rlocker_async_with_nested_counts(loop_name: str) -> None:
    """Invariant: nested ``async with rw.rlocker()`` takes one read lock per level and
    releases them one by one; a writer queued in between blocks a *new* reader but the
    nested holder is not affected by what it already holds (only new entries wait)."""

    async def main(kind: str) -> list[Any]:
        def spawn(coro: Any) -> asyncio.Task[Any]:
            return start(kind, coro)

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

    assert differential(loop_name, main) == [
        2,
        "<csp.RWMutex read-locked readers=2 reader_waiters=0 writer_waiters=1>",
        1,
        ("w", "<csp.RWMutex write-locked reader_waiters=0 writer_waiters=0>"),
        "<csp.RWMutex unlocked reader_waiters=0 writer_waiters=0>",
    ]


# -- bad input: a clear error at the call (issue 13 item 9) ----------------------------


class Three:
    """Not an int, but an integer all the same (``operator.index``)."""

    def __index__(self) -> int:
        return 3


@pytest.mark.asyncio
async def test_counts_refuse_non_integers_naming_the_argument() -> None:
    """``WaitGroup.add``, ``Semaphore(n)`` and its weights are integers: a float, a
    string, None or a bool (not a count) is a ``TypeError`` naming the call and the
    argument, and changes nothing (``add(0.5)`` used to make the counter 0.5)."""
    wg = csp.WaitGroup()
    s = csp.Semaphore(2)
    calls: list[tuple[str, Callable[[Any], object]]] = [
        ("WaitGroup.add: delta", wg.add),
        ("Semaphore: n", csp.Semaphore),
        ("Semaphore.try_acquire: k", s.try_acquire),
        ("Semaphore.release: k", s.release),
    ]
    msgs = []
    for bad in (0.5, "1", None, True):
        for _, call in calls:
            with pytest.raises(TypeError) as e:
                call(bad)
            msgs.append(str(e.value))
        with pytest.raises(TypeError) as e:
            await s.acquire(bad)
        msgs.append(str(e.value))
    assert msgs == [
        f"{who} must be an integer, got {bad!r}"
        for bad in (0.5, "1", None, True)
        for who in [w for w, _ in calls] + ["Semaphore.acquire: k"]
    ]
    assert repr(wg) == "<csp.WaitGroup counter=0 waiters=0>"
    assert repr(s) == "<csp.Semaphore held=0/2 waiters=0>"


@pytest.mark.asyncio
async def test_counts_accept_index_objects() -> None:
    """A count has ``operator.index`` semantics: an object with ``__index__`` is one."""
    wg = csp.WaitGroup()
    wg.add(Three())  # type: ignore[arg-type]
    s = csp.Semaphore(Three())  # type: ignore[arg-type]
    await s.acquire(Three())  # type: ignore[arg-type]
    assert s.try_acquire(Three()) is False  # type: ignore[arg-type]
    s.release(Three())  # type: ignore[arg-type]
    assert (repr(wg), repr(s)) == (
        "<csp.WaitGroup counter=3 waiters=0>", "<csp.Semaphore held=0/3 waiters=0>"
    )


def test_cond_refuses_a_locker_without_lock_and_unlock() -> None:
    """``Cond(locker)`` checks its locker at construction (``Cond(None)`` used to fail
    only at ``wait()``, with AttributeError; a class is not a locker: ``Cond(Mutex)``);
    every csp locker is accepted."""

    class HalfLock:
        async def lock(self) -> None:
            pass

    msgs = []
    for bad in (None, 42, HalfLock(), csp.Mutex):
        with pytest.raises(TypeError) as e:
            csp.Cond(bad)  # type: ignore[arg-type]
        msgs.append(str(e.value).split(", got ")[0])
    assert msgs == ["Cond: locker must have lock() and unlock()"] * 4
    rw = csp.RWMutex()
    for ok in (csp.Mutex(), rw, rw.rlocker()):
        assert csp.Cond(ok).L is ok


@pytest.mark.asyncio
async def test_once_do_refuses_a_non_callable_and_stays_not_done() -> None:
    """``once.do(42)`` is a ``TypeError`` at the call that does not count as the call:
    it used to raise from inside ``do`` and leave the Once done, so ``fn`` never ran."""
    once = csp.Once()
    with pytest.raises(TypeError) as e:
        await once.do(42)  # type: ignore[arg-type]
    calls: list[int] = []
    await once.do(lambda: calls.append(1))
    assert (str(e.value), calls) == ("Once.do: fn must be callable, got 42", [1])


# -- dead waiters (issue 13 item 10): a hand-off never goes to a task that cannot run ---


def test_hand_offs_skip_waiters_whose_loop_was_closed(
        run: Callable[..., Any], park_dead: Callable[..., Any]) -> None:
    """A waiter left parked by a loop closed by hand is withdrawn when a hand-off
    reaches it, and the hand-off goes to the next live waiter, or is kept: a Mutex is
    not handed to a dead task (before, it stayed locked forever), a Semaphore's tokens
    are not counted as taken by it, a Cond signal and a Once's call reach a live
    task, an RWMutex writer grant passes on to the readers it held back."""
    mu, sem, rw, cond_mu = csp.Mutex(), csp.Semaphore(2), csp.RWMutex(), csp.Mutex()
    cond, once = csp.Cond(cond_mu), csp.Once()
    mu.try_lock()
    park_dead(mu.lock)
    assert sem.try_acquire(2)
    park_dead(sem.acquire, 2)
    assert rw.try_rlock()
    park_dead(rw.lock)  # a writer waits behind the reader...

    async def cond_wait() -> None:
        await cond_mu.lock()
        await cond.wait()

    park_dead(cond_wait)

    async def runner() -> None:
        await once.do(csp.Chan[int]().recv)  # runs forever: its do() is parked

    park_dead(runner, go=True)
    park_dead(once.do, lambda: None)  # a waiter behind the runner

    async def main() -> list[Any]:
        out: list[Any] = []
        read = csp.go(rw.rlock)  # ...and a reader behind the writer
        await spin(3)
        mu.unlock()  # to nobody live: unlocked
        out.append(mu.try_lock())
        sem.release(2)  # the dead request takes nothing
        out.append(repr(sem))
        rw.runlock()  # the dead writer is skipped; the reader it held back enters
        await read
        out.append(repr(rw))
        cond.signal()  # to nobody live: remembered by nobody, as in Go
        out.append(repr(cond.L))
        once._hand_on()  # (what the dead runner's cancellation would do): the call
        # is handed on to no live waiter, so the Once is not running any more
        out.append(repr(once))
        mu._invariants()
        sem._invariants()
        rw._invariants()
        return out

    assert run(main) == [
        True,
        "<csp.Semaphore held=0/2 waiters=0>",
        "<csp.RWMutex read-locked readers=1 reader_waiters=0 writer_waiters=0>",
        "<csp.Mutex unlocked>",
        "<csp.Once not done>",
    ]
