"""The cancellation guarantee for send, recv, recv_ok and select.

Invariant under test: an operation that returned normally took effect; one that raised
CancelledError (or TimeoutError from a timeout around it) took no effect. So every
value whose send returned is received exactly once, no value whose send raised is ever
received, and a cancelled select commits nothing. Cancellation comes from
``task.cancel()``, ``asyncio.timeout()``, ``asyncio.wait_for()``, TaskGroup shutdown
and anyio cancel scopes, at random moments (seeded, reproducible).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from schedfuzz import FuzzLoop, Hang, fuzzed, run_watched

import csp
import csp._runtime

# -- targeted regression tests ------------------------------------------------------
# Each runs with the parked party as a plain asyncio Task and as a goroutine
# (csp.go), whose csp wake-ups bypass the Task machinery.


Spawn = Callable[[Any], "asyncio.Task[Any]"]


@pytest.fixture(params=["task", "goroutine"])
def spawn(request: pytest.FixtureRequest) -> Spawn:
    if request.param == "task":
        return asyncio.create_task
    return csp.go


@pytest.mark.asyncio
async def test_recv_cancelled_after_handoff_keeps_value(spawn: Spawn) -> None:
    """Cancelling recv after a sender handed it a value neither loses nor duplicates
    it: recv returns the value, and the cancellation is raised at the next await."""
    ch = csp.Chan[int]()
    trace: list[object] = []

    async def receiver() -> None:
        v = await ch.recv()
        trace.append(v)
        await asyncio.sleep(0)
        trace.append("not reached")

    t = spawn(receiver())
    await asyncio.sleep(0)
    await ch.send(1)  # handed over: the receiver owns 1 from now on
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert trace == [1]


@pytest.mark.asyncio
async def test_send_cancelled_after_handoff_returns(spawn: Spawn) -> None:
    """A parked sender whose value was taken, then cancelled before it resumed, returns
    normally (the send took effect); its next csp operation raises CancelledError
    before taking effect."""
    ch = csp.Chan[int]()
    other = csp.Chan[int](1)
    trace: list[object] = []

    async def sender() -> None:
        await ch.send(1)
        trace.append("sent")
        try:
            await other.send(2)
        except asyncio.CancelledError:
            trace.append("cancelled before second send")
            raise

    t = spawn(sender())
    await asyncio.sleep(0)
    assert await ch.recv() == 1
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert trace == ["sent", "cancelled before second send"]
    assert len(other) == 0  # the second send took no effect


@pytest.mark.asyncio
async def test_cancelled_parked_recv_takes_nothing(spawn: Spawn) -> None:
    """A receiver cancelled while parked takes no value: the next send goes to the
    next receiver."""
    ch = csp.Chan[int]()
    t = spawn(ch.recv())
    await asyncio.sleep(0)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    r2 = spawn(ch.recv())
    await asyncio.sleep(0)
    await ch.send(5)
    assert await r2 == 5


@pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="3.12's wait_for runs the operation in the caller's"
    " task: there is no inner task to cancel"
)
@pytest.mark.asyncio
async def test_wait_for_send_returns_once_effective(spawn: Spawn) -> None:
    """``await asyncio.wait_for(ch.send(v), t)`` returns once the send took effect,
    even when the inner task is cancelled in the same instant (as wait_for's timeout
    does): the inner task finishes normally instead of ending cancelled."""
    ch = csp.Chan[int]()
    outer = spawn(asyncio.wait_for(ch.send(3), 30))
    for _ in range(3):
        await asyncio.sleep(0)
    me = asyncio.current_task()
    (inner,) = [t for t in asyncio.all_tasks() if t is not me and t is not outer]
    assert await ch.recv() == 3  # the parked send took effect ...
    inner.cancel()  # ... and is cancelled before it resumed
    assert await outer is None
    assert not inner.cancelled()


@pytest.mark.asyncio
async def test_timeout_withdrawn_after_effect(spawn: Spawn) -> None:
    """A timeout that expires after the operation took effect is withdrawn when its
    block exits: no TimeoutError, no stray cancellation later, cancelling() back to 0."""
    ch = csp.Chan[int]()
    loop = asyncio.get_running_loop()

    async def sender() -> str:
        async with asyncio.timeout(loop.time()):  # already expired: cancel on entry
            await ch.send(7)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        task = asyncio.current_task()
        assert task is not None
        return f"ok {task.cancelling()}"

    r = spawn(ch.recv())
    await asyncio.sleep(0)
    t = spawn(sender())
    assert await r == 7
    assert await t == "ok 0"


@pytest.mark.asyncio
async def test_cancelled_select_commits_nothing(spawn: Spawn) -> None:
    """A select cancelled while parked commits no case: the values sent afterwards
    reach later receivers."""
    a, b = csp.Chan[int](), csp.Chan[int]()
    t = spawn(csp.select(a.recv, b.recv))
    await asyncio.sleep(0)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    r = spawn(a.recv())
    await asyncio.sleep(0)
    await a.send(1)
    assert await r == 1
    assert (await csp.select(a.recv, b.recv, default=True)) == (-1, None)


@pytest.mark.asyncio
async def test_select_handoff_then_cancel_keeps_case(spawn: Spawn) -> None:
    """A parked select completed by a partner and then cancelled returns that case."""
    a, b = csp.Chan[int](), csp.Chan[int]()
    t = spawn(csp.select(a.recv, (b.send, 9)))
    await asyncio.sleep(0)
    assert await b.recv() == 9
    t.cancel()
    assert await t == (1, None)


@pytest.mark.asyncio
async def test_anyio_scope_cancel_after_handoff(spawn: Spawn) -> None:
    """Inside an anyio cancel scope cancelled right after the hand-off, recv returns the
    value and the scope swallows its own cancellation at exit."""
    ch = csp.Chan[int]()
    got: list[int | None] = []
    scope_ref: list[anyio.CancelScope] = []

    async def receiver() -> str:
        with anyio.CancelScope() as scope:
            scope_ref.append(scope)
            got.append(await ch.recv())
            await asyncio.sleep(0)
            got.append(-1)
        return "exited"

    t = spawn(receiver())
    await asyncio.sleep(0)
    await ch.send(4)
    scope_ref[0].cancel()
    assert await t == "exited"
    assert got == [4]


# -- randomized stress ----------------------------------------------------------------

Mech = str
MECHS: tuple[Mech, ...] = ("plain", "timeout", "wait_for", "anyio_move_on", "anyio_scope")


class Ledger:
    """Every value's fate: sent (send returned), failed (send raised), received."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.failed: list[int] = []
        self.received: list[int] = []
        self.select_commits = 0
        self.select_cancels = 0

    def check(self) -> None:
        dup = [v for v, n in Counter(self.received).items() if n > 1]
        assert not dup, f"values received twice: {dup[:10]}"
        lost = set(self.sent) - set(self.received)
        assert not lost, f"sent but never received: {sorted(lost)[:10]}"
        ghost = set(self.received) - set(self.sent)
        assert not ghost, f"received but send did not return: {sorted(ghost)[:10]}"
        assert not set(self.failed) & set(self.received)


async def _attempt(
    rng: random.Random,
    mech: Mech,
    op: Callable[[], Awaitable[Any]],
    on_ok: Callable[[Any], None],
    scopes: list[anyio.CancelScope],
) -> bool:
    """Run ``op`` under ``mech``; call on_ok(result) right after it returned normally,
    with no await in between. Returns whether it took effect."""
    loop = asyncio.get_running_loop()
    delay = rng.choice([0.0, 0.0, 1e-5, 5e-5, 2e-4])
    if mech == "plain":
        on_ok(await op())
        return True
    if mech == "timeout":
        done = False
        try:
            async with asyncio.timeout(loop.time() + delay):
                on_ok(await op())
                done = True
        except TimeoutError:
            assert not done
        return done
    if mech == "wait_for":
        try:
            res = await asyncio.wait_for(op(), delay)
        except TimeoutError:
            return False
        on_ok(res)
        return True
    if mech == "anyio_move_on":
        done = False
        with anyio.move_on_after(delay):
            on_ok(await op())
            done = True
        return done
    assert mech == "anyio_scope"
    done = False
    with anyio.CancelScope() as scope:
        scopes.append(scope)
        try:
            on_ok(await op())
            done = True
        finally:
            scopes.remove(scope)
    return done


async def _flush_cancel(me: asyncio.Task[Any]) -> None:
    """Suspend once, absorbing a cancellation re-delivered after an operation that took
    effect. (Python 3.11's wait_for loses a result when a cancellation lands in it, so
    the actors never carry one into the next operation.)"""
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        me.uncancel()


async def _stress(seed: int, cap: int, nvalues: int, with_select: bool) -> Ledger:
    rng = random.Random(seed)
    ch = csp.Chan[int](cap)
    side = csp.Chan[int](rng.choice([0, 1, 3]))  # second channel for selects
    ledger = Ledger()
    scopes: list[anyio.CancelScope] = []
    plain_actors: set[asyncio.Task[Any]] = set()
    values = list(range(nvalues))
    nsenders = rng.randint(1, 5)
    chunks = [values[i::nsenders] for i in range(nsenders)]

    async def sender(vals: list[int], arng: random.Random) -> None:
        me = asyncio.current_task()
        assert me is not None
        for v in vals:
            mech = arng.choice(MECHS)
            use_select = with_select and arng.random() < 0.4
            if use_select:
                # send v on ch or on side, whichever happens first
                def op(v: int = v) -> Awaitable[Any]:
                    return csp.select((ch.send, v), (side.send, v))
            else:

                def op(v: int = v) -> Awaitable[Any]:
                    return ch.send(v)

            if mech == "plain":
                plain_actors.add(me)
            try:
                ok = await _attempt(arng, mech, op, lambda _r, v=v: ledger.sent.append(v), scopes)
            except asyncio.CancelledError:
                me.uncancel()
                ok = False
            finally:
                plain_actors.discard(me)
            if not ok:
                ledger.failed.append(v)
            await _flush_cancel(me)

    async def receiver(arng: random.Random) -> None:
        me = asyncio.current_task()
        assert me is not None
        while True:
            mech = arng.choice(MECHS)
            use_select = with_select and arng.random() < 0.4
            result: list[Any] = []
            if use_select:

                def op() -> Awaitable[Any]:
                    return csp.select(ch.recv_ok, side.recv_ok)

                def on_ok(r: Any, result: list[Any] = result) -> None:
                    _, (v, ok) = r
                    result.append((v, ok))
                    if ok:
                        ledger.received.append(v)
                        ledger.select_commits += 1

            else:

                def op() -> Awaitable[Any]:
                    return ch.recv_ok()

                def on_ok(r: Any, result: list[Any] = result) -> None:
                    v, ok = r
                    result.append((v, ok))
                    if ok:
                        ledger.received.append(v)

            if mech == "plain":
                plain_actors.add(me)
            try:
                await _attempt(arng, mech, op, on_ok, scopes)
            except asyncio.CancelledError:
                me.uncancel()
            finally:
                plain_actors.discard(me)
            if result and not result[0][1]:
                if not use_select or (ch._closed and side._closed):
                    return
            if ch._closed and side._closed and not len(ch) and not len(side):
                return
            await _flush_cancel(me)

    stop = asyncio.Event()

    async def chaos(arng: random.Random) -> None:
        while not stop.is_set():
            for _ in range(arng.randint(0, 3)):
                await asyncio.sleep(0)
            r = arng.random()
            if r < 0.5 and plain_actors:
                arng.choice(sorted(plain_actors, key=id)).cancel()
            elif r < 0.8 and scopes:
                arng.choice(scopes).cancel()

    def spawn(coro: Any) -> asyncio.Task[Any]:
        # half the actors are goroutines (direct wake-ups), half plain tasks
        return csp.go(coro) if rng.random() < 0.5 else asyncio.create_task(coro)

    receivers = [spawn(receiver(random.Random(rng.random()))) for _ in range(rng.randint(1, 4))]
    chaos_task = asyncio.create_task(chaos(random.Random(rng.random())))
    senders = [
        spawn(sender(chunk, random.Random(rng.random()))) for chunk in chunks
    ]
    await asyncio.gather(*senders)
    stop.set()
    await chaos_task
    ch.close()
    side.close()
    await asyncio.gather(*receivers)
    # receivers may have left values in buffers if they stopped early: drain
    for c in (ch, side):
        async for v in c:
            ledger.received.append(v)
    assert len(ledger.sent) + len(ledger.failed) == nvalues
    ledger.check()
    return ledger


async def _taskgroup_stress(seed: int, cap: int) -> Ledger:
    """TaskGroup shutdown: a failing sibling cancels senders and receivers mid-flight."""
    rng = random.Random(seed)
    ch = csp.Chan[int](cap)
    ledger = Ledger()

    class Boom(Exception):
        pass

    async def sender(base: int) -> None:
        for i in range(1000):
            v = base + i
            try:
                await ch.send(v)
            except asyncio.CancelledError:
                ledger.failed.append(v)
                raise
            ledger.sent.append(v)

    async def receiver() -> None:
        while True:
            v = await ch.recv()
            assert v is not None
            ledger.received.append(v)

    async def bomb(n: int) -> None:
        for _ in range(n):
            await asyncio.sleep(0)
        raise Boom

    with pytest.raises(ExceptionGroup) as ei:
        async with asyncio.TaskGroup() as tg:
            for s in range(rng.randint(1, 4)):
                tg.create_task(sender(s * 10_000))
            for _ in range(rng.randint(1, 4)):
                tg.create_task(receiver())
            tg.create_task(bomb(rng.randint(0, 40)))
    assert ei.group_contains(Boom)
    while len(ch):
        v = await ch.recv()
        assert v is not None
        ledger.received.append(v)
    ledger.check()
    return ledger


def _loop_seeds(n: int, base: int) -> list[int]:
    return [base + i for i in range(n)]


@pytest.mark.parametrize("cap", [0, 1, 4])
def test_stress_channel_small(arun: Callable[..., Any], cap: int) -> None:
    """Seeded stress, small: every value sent is received once; failed sends never."""
    totals = Counter[str]()
    for seed in _loop_seeds(3, 1000 * cap):
        led = arun(_stress, seed, cap, 300, False)
        totals["sent"] += len(led.sent)
        totals["failed"] += len(led.failed)
    # the mechanisms really did cancel something, and most sends got through
    assert totals["failed"] > 0
    assert totals["sent"] > 0


@pytest.mark.parametrize("cap", [0, 2])
def test_stress_select_small(arun: Callable[..., Any], cap: int) -> None:
    """Seeded stress with selects on both sides: a cancelled select commits nothing."""
    commits = 0
    for seed in _loop_seeds(3, 77 + cap):
        led = arun(_stress, seed, cap, 300, True)
        commits += led.select_commits
    assert commits > 0


@pytest.mark.parametrize("cap", [0, 3])
def test_taskgroup_shutdown_small(arun: Callable[..., Any], cap: int) -> None:
    for seed in _loop_seeds(4, 500 + cap):
        arun(_taskgroup_stress, seed, cap)


@pytest.mark.slow
@pytest.mark.parametrize("cap", [0, 1, 7])
@pytest.mark.parametrize("with_select", [False, True])
def test_stress_channel_slow(arun: Callable[..., Any], cap: int, with_select: bool) -> None:
    for seed in _loop_seeds(25, 10_000 + cap * 100 + with_select):
        arun(_stress, seed, cap, 2000, with_select)


@pytest.mark.slow
@pytest.mark.parametrize("cap", [0, 1, 5])
def test_taskgroup_shutdown_slow(arun: Callable[..., Any], cap: int) -> None:
    for seed in _loop_seeds(40, 20_000 + cap):
        arun(_taskgroup_stress, seed, cap)


# == Cancellation after the effect: merged requests, storms ===========================
#
# The rule (API.md, "Cancellation guarantee"): a cancellation that arrives after the
# operation took effect is raised at the task's next csp operation or suspension, unless
# its canceller withdrew it; when several requests merged into one CancelledError (an
# outside ``task.cancel()`` and a firing ``asyncio.timeout()``), withdrawing one (the
# timeout block exits) leaves the others owed: a cancellation is owed while
# ``task.cancelling()`` is above its value just before the first request the operation
# absorbed.
#
# First one deterministic test per window and primitive, then seeded storms that aim
# every cancellation source at once at goroutines, plain Tasks and TaskGroup children,
# on asyncio under the schedule fuzzer (tests/schedfuzz.py) and on uvloop.

PY311 = sys.version_info < (3, 12)


# -- deterministic windows ---------------------------------------------------------------
#
# The worker parks in the operation inside ``asyncio.timeout(0)``. Just before, it wakes a
# partner task: the partner's step is queued before the timeout's expiry (both run in
# the next loop iteration, in that order), so the partner completes the operation (hands
# a value over, grants the lock) and then calls ``task.cancel()`` (count 1); the timeout
# fires right after (count 2); only then does the worker resume. Both loops run
# ``call_soon`` callbacks in FIFO order, so this is the same schedule on each.


class _Prim:
    """A blocking operation that a partner can complete without suspending."""

    async def setup(self) -> None:
        """Main, before the worker starts (e.g. take the lock the worker will wait for)."""

    async def before(self) -> None:
        """The worker, before it parks (e.g. hold the Cond's lock)."""

    def op(self) -> Awaitable[Any]:
        raise NotImplementedError

    async def complete(self) -> None:
        """The partner: complete the parked operation (must not suspend)."""
        raise NotImplementedError

    async def took_effect(self, result: Any) -> None:
        """Main, after the worker ended: assert the operation took effect."""


class _ChanRecv(_Prim):
    def __init__(self, cap: int) -> None:
        self.ch = csp.Chan[int](cap)

    def op(self) -> Awaitable[Any]:
        return self.ch.recv()

    async def complete(self) -> None:
        await self.ch.send(42)  # straight to the parked receiver

    async def took_effect(self, result: Any) -> None:
        assert result == 42
        assert len(self.ch) == 0
        assert await csp.select(self.ch.recv, default=True) == (-1, None)


class _ChanSend(_Prim):
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.ch = csp.Chan[int](cap)
        self.got: list[int | None] = []

    async def setup(self) -> None:
        for i in range(self.cap):  # fill the buffer: the worker's send parks
            await self.ch.send(100 + i)

    def op(self) -> Awaitable[Any]:
        return self.ch.send(7)

    async def complete(self) -> None:
        self.got.append(await self.ch.recv())  # takes the value or admits it to the buffer

    async def took_effect(self, result: Any) -> None:
        assert result is None
        if self.cap == 0:
            assert self.got == [7]
        else:
            assert self.got == [100]
            rest = [await self.ch.recv() for _ in range(self.cap)]
            assert rest == [*range(101, 100 + self.cap), 7]  # 7 is in the buffer, once
        assert await csp.select(self.ch.recv, default=True) == (-1, None)


class _SelectRecv(_Prim):
    def __init__(self) -> None:
        self.a, self.b = csp.Chan[int](), csp.Chan[int]()

    def op(self) -> Awaitable[Any]:
        return csp.select(self.a.recv, self.b.recv)

    async def complete(self) -> None:
        await self.b.send(5)

    async def took_effect(self, result: Any) -> None:
        assert result == (1, 5)
        assert await csp.select(self.a.recv, self.b.recv, default=True) == (-1, None)


class _SelectSend(_Prim):
    def __init__(self) -> None:
        self.a, self.b = csp.Chan[int](), csp.Chan[int]()
        self.got: list[int | None] = []

    def op(self) -> Awaitable[Any]:
        return csp.select((self.a.send, 1), (self.b.send, 2))

    async def complete(self) -> None:
        self.got.append(await self.b.recv())

    async def took_effect(self, result: Any) -> None:
        assert result == (1, None)
        assert self.got == [2]
        assert await csp.select(self.a.recv, self.b.recv, default=True) == (-1, None)


class _MutexLock(_Prim):
    def __init__(self) -> None:
        self.mu = csp.Mutex()

    async def setup(self) -> None:
        assert self.mu.try_lock()

    def op(self) -> Awaitable[Any]:
        return self.mu.lock()

    async def complete(self) -> None:
        self.mu.unlock()  # hands the mutex to the parked worker

    async def took_effect(self, result: Any) -> None:
        assert not self.mu.try_lock(), "the worker does not hold the mutex"
        self.mu.unlock()
        assert self.mu.try_lock()


class _RWLock(_Prim):
    def __init__(self) -> None:
        self.rw = csp.RWMutex()

    async def setup(self) -> None:
        assert self.rw.try_rlock()

    def op(self) -> Awaitable[Any]:
        return self.rw.lock()

    async def complete(self) -> None:
        self.rw.runlock()  # the last reader out hands the lock to the writer

    async def took_effect(self, result: Any) -> None:
        assert not self.rw.try_rlock() and not self.rw.try_lock(), "the worker is no writer"
        self.rw.unlock()
        assert self.rw.try_lock()


class _RWRLock(_Prim):
    def __init__(self) -> None:
        self.rw = csp.RWMutex()

    async def setup(self) -> None:
        assert self.rw.try_lock()

    def op(self) -> Awaitable[Any]:
        return self.rw.rlock()

    async def complete(self) -> None:
        self.rw.unlock()  # admits the queued reader

    async def took_effect(self, result: Any) -> None:
        assert not self.rw.try_lock(), "the worker holds no read lock"
        self.rw.runlock()
        assert self.rw.try_lock()


class _SemAcquire(_Prim):
    def __init__(self) -> None:
        self.sem = csp.Semaphore(3)

    async def setup(self) -> None:
        assert self.sem.try_acquire(3)

    def op(self) -> Awaitable[Any]:
        return self.sem.acquire(2)

    async def complete(self) -> None:
        self.sem.release(2)  # granted to the parked acquire(2) at once

    async def took_effect(self, result: Any) -> None:
        assert not self.sem.try_acquire(1), "the worker holds no tokens"
        self.sem.release(3)
        assert self.sem.try_acquire(3)


class _CondWait(_Prim):
    def __init__(self) -> None:
        self.mu = csp.Mutex()
        self.cond = csp.Cond(self.mu)

    async def before(self) -> None:
        await self.mu.lock()  # free: no suspension

    def op(self) -> Awaitable[Any]:
        return self.cond.wait()

    async def complete(self) -> None:
        self.cond.signal()

    async def took_effect(self, result: Any) -> None:
        assert not self.mu.try_lock(), "wait returned without the lock"
        self.mu.unlock()
        assert self.mu.try_lock()


class _WGWait(_Prim):
    def __init__(self) -> None:
        self.wg = csp.WaitGroup()

    async def setup(self) -> None:
        self.wg.add(1)

    def op(self) -> Awaitable[Any]:
        return self.wg.wait()

    async def complete(self) -> None:
        self.wg.done()

    async def took_effect(self, result: Any) -> None:
        assert result is None
        with pytest.raises(RuntimeError, match="negative WaitGroup counter"):
            self.wg.done()  # the counter is 0


WINDOW_PRIMS: dict[str, Callable[[], _Prim]] = {
    "chan_recv_cap0": lambda: _ChanRecv(0),
    "chan_recv_buffered": lambda: _ChanRecv(2),
    "chan_send_cap0": lambda: _ChanSend(0),
    "chan_send_buffered": lambda: _ChanSend(2),
    "select_recv": _SelectRecv,
    "select_send": _SelectSend,
    "mutex_lock": _MutexLock,
    "rwmutex_lock": _RWLock,
    "rwmutex_rlock": _RWRLock,
    "semaphore_acquire": _SemAcquire,
    "cond_wait": _CondWait,
    "waitgroup_wait": _WGWait,
}


@pytest.fixture(params=list(WINDOW_PRIMS))
def prim_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _window(
    prim: _Prim, spawn_kind: str, outside: bool, timeout: bool, nxt: str
) -> list[Any]:
    """Run the window (see above) and return the worker's trace. ``outside``: the
    partner calls ``task.cancel()`` after completing; ``timeout``: the operation runs
    in ``asyncio.timeout(0)`` (else ``timeout(None)``); ``nxt``: what the worker does
    next, ``"csp"`` (a send that would complete at once) or ``"suspend"``
    (``asyncio.sleep(0)``). If a CancelledError is raised there, the worker records it,
    withdraws it (``uncancel()``) and checks that nothing more is owed."""
    loop = asyncio.get_running_loop()
    trace: list[Any] = []
    probe = csp.Chan[int](2)
    go = loop.create_future()
    await prim.setup()
    result: list[Any] = []

    async def partner() -> None:
        await go
        await prim.complete()
        trace.append("completed")
        if outside:
            trace.append(("cancel()", t.cancel()))

    async def worker() -> str:
        me = asyncio.current_task()
        assert me is not None
        await prim.before()
        go.set_result(None)  # the partner runs next iteration, before the timeout fires
        cm = asyncio.timeout(0 if timeout else None)
        try:
            async with cm:
                result.append(await prim.op())
        except BaseException as exc:
            trace.append(("op raised", type(exc).__name__))
            raise
        trace.append(("returned", me.cancelling(), cm.expired()))
        try:
            if nxt == "csp":
                await probe.send(1)
            else:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            trace.append(("raised at next", me.cancelling(), len(probe)))
            me.uncancel()
        else:
            trace.append(("next not cancelled", me.cancelling(), len(probe)))
        # nothing further may be owed: a suspension and a csp operation go through
        await asyncio.sleep(0)
        await probe.send(2)
        trace.append(("end", me.cancelling()))
        return "done"

    p = asyncio.create_task(partner())
    t = csp.go(worker()) if spawn_kind == "goroutine" else asyncio.create_task(worker())
    res = await t
    await p
    assert res == "done"
    assert result, trace
    await prim.took_effect(result[0])
    return trace


def test_merged_cancel_after_effect_is_raised_at_next_csp_op(
    run: Callable[..., Any], prim_name: str, spawn: Spawn
) -> None:
    """Completed, then cancelled from outside (count 1), then its ``timeout(0)`` fired
    (count 2) before the task resumed: the operation returns normally (it took effect),
    the timeout block exits without TimeoutError and withdraws only its own request
    (``cancelling()`` 1), and the outside cancellation is raised by the task's next csp
    operation before that takes effect; after ``uncancel()`` nothing more is owed."""
    kind = "goroutine" if spawn is csp.go else "task"
    trace = run(_window, WINDOW_PRIMS[prim_name](), kind, True, True, "csp")
    assert trace == [
        "completed",
        ("cancel()", True),
        ("returned", 1, True),
        ("raised at next", 1, 0),
        ("end", 0),
    ], f"{prim_name}: the outside cancellation was dropped or misplaced: {trace}"


def test_merged_cancel_after_effect_is_raised_at_next_suspension(
    run: Callable[..., Any], prim_name: str, spawn: Spawn
) -> None:
    """As above, but the task's next step is a plain suspension (``asyncio.sleep(0)``):
    the outside cancellation is raised there."""
    kind = "goroutine" if spawn is csp.go else "task"
    trace = run(_window, WINDOW_PRIMS[prim_name](), kind, True, True, "suspend")
    assert trace == [
        "completed",
        ("cancel()", True),
        ("returned", 1, True),
        ("raised at next", 1, 0),
        ("end", 0),
    ], f"{prim_name}: the outside cancellation was dropped or misplaced: {trace}"


def test_cancel_after_effect_is_raised_at_next_csp_op(
    run: Callable[..., Any], prim_name: str, spawn: Spawn
) -> None:
    """Control, one request: completed, then cancelled from outside before the task
    resumed: the operation returns normally and the cancellation is raised by the next
    csp operation before that takes effect (``cancelling()`` 1 there)."""
    kind = "goroutine" if spawn is csp.go else "task"
    trace = run(_window, WINDOW_PRIMS[prim_name](), kind, True, False, "csp")
    assert trace == [
        "completed",
        ("cancel()", True),
        ("returned", 1, False),
        ("raised at next", 1, 0),
        ("end", 0),
    ], f"{prim_name}: {trace}"


def test_withdrawn_timeout_after_effect_owes_nothing(
    run: Callable[..., Any], prim_name: str, spawn: Spawn
) -> None:
    """Control, the timeout alone: completed, then ``timeout(0)`` fired before the task
    resumed: the operation returns normally, the block exits without TimeoutError and
    withdraws the request, and no cancellation is raised later (``cancelling()`` 0)."""
    kind = "goroutine" if spawn is csp.go else "task"
    trace = run(_window, WINDOW_PRIMS[prim_name](), kind, False, True, "csp")
    assert trace == [
        "completed",
        ("returned", 0, True),
        ("next not cancelled", 0, 1),
        ("end", 0),
    ], f"{prim_name}: {trace}"
