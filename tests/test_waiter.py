"""csp/_waiter.py: the parking primitive, the owed-cancellation rule, the budget.

The rule under test (API.md, cancellation guarantee): a cancellation that arrives after
an operation took effect is raised at the task's next csp operation or suspension; when
several requests merged into one CancelledError (a timeout fired and ``task.cancel()``
was called before the task resumed), withdrawing one leaves the others owed: a
cancellation is owed while ``task.cancelling()`` is above its value just before the
first request the operation absorbed. Each scenario runs with the parked party as a
goroutine (driven by csp) and as a plain asyncio Task (stepped by asyncio).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import csp
from csp import _waiter
from csp._waiter import BUDGET, CANCELLED, DONE, PENDING, Waiter

Spawn = Callable[[Any], "asyncio.Task[Any]"]


@pytest.fixture(params=["goroutine", "task"])
def spawn(request: pytest.FixtureRequest) -> Spawn:
    return csp.go if request.param == "goroutine" else asyncio.create_task


async def until(cond: Callable[[], bool], rounds: int = 200) -> None:
    for _ in range(rounds):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


# -- the merged-requests window, for each kind of hand-off ------------------------------

# Each: (setup) -> (op to park on, hand-off that completes it, expected op result)
Scenario = Callable[[], tuple[Callable[[], Awaitable[Any]], Callable[[], None], Any]]


def _mutex() -> tuple[Callable[[], Awaitable[Any]], Callable[[], None], Any]:
    mu = csp.Mutex()
    assert mu.try_lock()
    return mu.lock, mu.unlock, None


def _recv() -> tuple[Callable[[], Awaitable[Any]], Callable[[], None], Any]:
    ch = csp.Chan[int](1)
    return ch.recv, lambda: ch.send_nowait(7), 7


def _select() -> tuple[Callable[[], Awaitable[Any]], Callable[[], None], Any]:
    a, b = csp.Chan[int](), csp.Chan[int]()

    async def op() -> Any:
        return await csp.select(a.recv, b.recv)

    return op, lambda: b.send_nowait(8), (1, 8)


def _semaphore() -> tuple[Callable[[], Awaitable[Any]], Callable[[], None], Any]:
    s = csp.Semaphore(2)
    assert s.try_acquire(2)
    return (lambda: s.acquire(2)), (lambda: s.release(2)), None


SCENARIOS: dict[str, Scenario] = {
    "mutex": _mutex, "recv": _recv, "select": _select, "semaphore": _semaphore,
}


@pytest.mark.asyncio
@pytest.mark.parametrize("then", ["csp-op", "suspension"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_merged_cancellation_outlives_the_withdrawn_timeout(
    spawn: Spawn, name: str, then: str
) -> None:
    """Rule 1: the operation is completed (value handed over / lock granted), then the
    task is cancelled from outside, then the timeout around the operation fires, all
    before the task resumes: the operation returns normally, the timeout block exits
    (withdrawing its own request) without TimeoutError, and the outside cancellation is
    still raised, at the next csp operation or at the next suspension."""
    op, hand_off, expected = SCENARIOS[name]()
    trace: list[Any] = []
    cm: asyncio.Timeout | None = None
    other = csp.Chan[int](1)

    async def victim() -> None:
        nonlocal cm
        async with asyncio.timeout(None) as c:
            cm = c
            trace.append(("op", await op()))
        trace.append(("after block", asyncio.current_task().cancelling()))  # type: ignore[union-attr]
        try:
            if then == "csp-op":
                await other.send(1)  # must raise before it takes effect
            else:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            trace.append("cancelled")
            raise
        trace.append("not cancelled")

    t = spawn(victim())
    await until(lambda: cm is not None)
    await csp.gosched()
    assert cm is not None
    loop = asyncio.get_running_loop()
    cm.reschedule(loop.time())  # its expiry is queued now, before the hand-off's wake-up
    hand_off()  # the operation takes effect: it must return normally
    assert t.cancel()  # from outside, before the task resumes
    with pytest.raises(asyncio.CancelledError):
        await t
    assert trace == [("op", expected), ("after block", 1), "cancelled"]
    assert len(other) == 0  # the send that raised took no effect


@pytest.mark.asyncio
async def test_withdrawn_single_cancellation_is_not_redelivered(spawn: Spawn) -> None:
    """The other side of rule 1: a timeout alone fires after the hand-off; its block
    withdraws it at exit, so nothing is owed and the task runs on."""
    mu = csp.Mutex()
    assert mu.try_lock()
    trace: list[Any] = []
    cm: asyncio.Timeout | None = None

    async def victim() -> None:
        nonlocal cm
        async with asyncio.timeout(None) as c:
            cm = c
            await mu.lock()
        trace.append("locked")
        await csp.gosched()
        await asyncio.sleep(0)
        trace.append(("ran on", asyncio.current_task().cancelling()))  # type: ignore[union-attr]

    t = spawn(victim())
    await until(lambda: cm is not None)
    await csp.gosched()
    assert cm is not None
    cm.reschedule(asyncio.get_running_loop().time())
    mu.unlock()
    await t
    assert trace == ["locked", ("ran on", 0)]
    assert not _waiter.owed


@pytest.mark.asyncio
async def test_cancel_twice_after_effect_then_uncancel_one(spawn: Spawn) -> None:
    """Two outside requests absorbed by one completed operation; the task withdraws
    one with uncancel(): the other is still raised at its next csp operation."""
    ch = csp.Chan[int](1)
    trace: list[Any] = []

    async def victim() -> None:
        trace.append(await ch.recv())
        me = asyncio.current_task()
        assert me is not None
        trace.append(me.cancelling())
        me.uncancel()
        try:
            await ch.recv()
        except asyncio.CancelledError:
            trace.append("cancelled")
            raise

    t = spawn(victim())
    await until(lambda: len(ch._recvq) == 1)
    ch.send_nowait(5)
    t.cancel()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert trace == [5, 2, "cancelled"]


@pytest.mark.asyncio
async def test_absorbed_cancellation_of_a_task_that_finishes_is_dropped(spawn: Spawn) -> None:
    """A task that finishes without suspending again after its operation took effect
    finishes normally; nothing stays owed."""
    ch = csp.Chan[int](1)

    async def victim() -> int:
        return await ch.recv()  # type: ignore[return-value]

    t = spawn(victim())
    await until(lambda: len(ch._recvq) == 1)
    ch.send_nowait(3)
    t.cancel()
    assert await t == 3
    await asyncio.sleep(0)
    assert t not in _waiter.owed


# -- the waiter itself ---------------------------------------------------------------------


def test_waiter_moves_once() -> None:
    """A waiter leaves PENDING once: completed (outcome written) or withdrawn (the
    message kept, the offered value let go, the abort hook run once)."""
    aborted: list[Waiter] = []
    w = Waiter("x", value=bytearray(10))
    w.on_abort = aborted.append
    assert w.state is PENDING and not w.done()
    w.withdraw("why")
    assert w.state is CANCELLED and w.cancelled() and w.value == "why"
    assert aborted == [w] and w.on_abort is None
    with pytest.raises(asyncio.CancelledError, match="why"):
        w.result()
    d = Waiter("y")
    d.complete(5, ok=False)
    assert (d.state, d.value, d.ok, d.done(), d.cancelled()) == (DONE, 5, False, True, False)
    assert d.result() is None and d.exception() is None
    assert not d.cancel()  # completed: cancel() answers False
    assert repr(d) == "<csp waiter 'y' done>"


@pytest.mark.asyncio
async def test_waiter_supports_one_waiting_task() -> None:
    """A waiter is awaited by the one task that parked on it; a second callback is a
    clear error (waiters never leave csp, so only a csp bug could try)."""
    w = Waiter("x")
    w.add_done_callback(lambda _: None)
    with pytest.raises(RuntimeError, match="single waiting task"):
        w.add_done_callback(lambda _: None)


def test_waiter_add_done_callback_outside_a_loop_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="running event loop"):
        Waiter("x").add_done_callback(lambda _: None)


# -- the cooperative budget ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["select-default", "buffered-send", "send-recv"])
def test_busy_loop_of_csp_operations_yields_within_the_budget(loop_name: str, how: str) -> None:
    """A task that performs csp operations in a row without suspending (a polling
    select with default, sends into a buffer that never fills) is made to yield at
    least once every BUDGET operations, so the goroutine it waits for gets to run."""
    per_round = 2 if how == "send-recv" else 1

    async def main() -> list[int]:
        ch = csp.Chan[int](10**6 if how == "buffered-send" else 1)
        done = False
        gaps: list[int] = []
        n = last = 0

        async def other() -> None:
            nonlocal last, done
            for _ in range(5):
                gaps.append(n - last)
                last = n
                await asyncio.sleep(0)
            done = True

        csp.go(other)
        while not done:
            n += 1
            if how == "select-default":
                await csp.select(ch.recv, default=True)
            elif how == "buffered-send":
                await ch.send(n)
            else:
                await ch.send(n)
                await ch.recv()
        return gaps

    gaps = csp.run(main, loop=loop_name)
    assert len(gaps) == 5
    assert all(g > 0 for g in gaps[1:]), gaps  # main ran between: it is not starved either
    assert max(gaps) * per_round <= BUDGET + per_round, gaps
