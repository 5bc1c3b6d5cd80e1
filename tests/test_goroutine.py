"""Goroutines are resumed straight from csp's run queue (csp/_drive.py, Goroutine):
to user code they must remain ordinary asyncio Tasks. Each test pins one thing the
Task machinery would otherwise guarantee."""

from __future__ import annotations

import asyncio
import contextvars
import socket
import sys

import pytest

import csp

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


@pytest.fixture(params=["dict", "functions"])
def task_switch(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a goroutine's resumption sets the current task: writing asyncio's
    current-task dict (probed at import) and the _enter_task/_leave_task fallback."""
    from csp import _compat, _drive

    if request.param == "functions":
        monkeypatch.setattr(_drive, "_current_tasks", _compat._TaskSwitch())
    elif sys.version_info < (3, 12):
        # on 3.11 the probe must find the dict: it is the fast path we measure
        assert _drive._current_tasks is asyncio.tasks._current_tasks  # type: ignore[attr-defined]
    return str(request.param)


@pytest.mark.asyncio
async def test_current_task_and_context_after_direct_wakeups(task_switch: str) -> None:
    """After many csp wake-ups, current_task() is the goroutine's task and context
    variables set inside the goroutine are still visible; the spawner's are copied."""
    ch = csp.Chan[int]()
    seen: list[tuple[bool, str]] = []
    var.set("spawner")

    async def g() -> None:
        me = asyncio.current_task()
        assert var.get() == "spawner"
        var.set("inside")
        for _ in range(5):
            await ch.recv()
            seen.append((asyncio.current_task() is me, var.get()))
        raise ValueError("after a direct wake-up")

    t = csp.go(g)
    for i in range(5):
        await ch.send(i)
    with pytest.raises(ValueError, match="after a direct wake-up"):
        await t
    assert seen == [(True, "inside")] * 5
    assert var.get() == "spawner"
    assert asyncio.current_task() is not t
    loop = asyncio.get_running_loop()
    assert asyncio.current_task(loop) is asyncio.current_task()


@pytest.mark.asyncio
async def test_goroutine_result_and_exception_after_direct_wakeup() -> None:
    """A goroutine that finishes or raises right after a direct wake-up completes its
    Task with that result or exception."""
    ch = csp.Chan[int]()

    async def ok() -> int:
        return (await ch.recv() or 0) * 2

    async def bad() -> None:
        await ch.recv()
        raise ValueError("boom")

    t1 = csp.go(ok)
    await ch.send(21)
    assert await t1 == 42
    loop = asyncio.get_running_loop()
    errors: list[BaseException] = []
    loop.set_exception_handler(lambda _l, c: errors.append(c["exception"]))
    t2 = csp.go(bad)
    await ch.send(1)
    with pytest.raises(ValueError, match="boom"):
        await t2
    await asyncio.sleep(0)  # the done callback runs in the same loop iteration
    assert [type(e) for e in errors] == [ValueError]


@pytest.mark.asyncio
async def test_goroutine_awaits_future_after_csp() -> None:
    """After direct wake-ups a goroutine can await asyncio futures and sleep; a
    cancellation while it awaits a future cancels that future, as for any Task."""
    ch = csp.Chan[int]()
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    trace: list[object] = []

    async def g() -> None:
        trace.append(await ch.recv())
        await asyncio.sleep(0)
        trace.append("slept")
        try:
            await fut
        except asyncio.CancelledError:
            trace.append("cancelled in future")
            raise

    t = csp.go(g)
    await ch.send(1)
    for _ in range(5):
        await asyncio.sleep(0)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert trace == [1, "slept", "cancelled in future"]
    assert fut.cancelled()


@pytest.mark.asyncio
async def test_cancel_goroutine_awaiting_another_task() -> None:
    """Cancelling a goroutine that awaits another task cancels that task too
    (asyncio's rule), also after the goroutine was woken directly by csp."""
    ch = csp.Chan[int]()
    inner_started = asyncio.Event()

    async def inner() -> None:
        inner_started.set()
        await asyncio.Event().wait()

    inner_task = asyncio.create_task(inner())

    async def g() -> None:
        await ch.recv()
        await inner_task

    t = csp.go(g)
    await ch.send(0)
    await inner_started.wait()
    for _ in range(3):
        await asyncio.sleep(0)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    with pytest.raises(asyncio.CancelledError):
        await inner_task
    assert inner_task.cancelled()


@pytest.mark.asyncio
async def test_cancel_goroutine_between_direct_wakeups() -> None:
    """A goroutine cancelled while its csp wake-up is queued keeps the completed
    operation and raises CancelledError at its next csp operation."""
    a, b = csp.Chan[int](), csp.Chan[int](1)
    trace: list[object] = []

    async def g() -> None:
        trace.append(await a.recv())
        try:
            await b.send(1)
        except asyncio.CancelledError:
            trace.append("cancelled")
            raise

    t = csp.go(g)
    await asyncio.sleep(0)
    await a.send(7)  # completes g's recv; its wake-up is queued
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert trace == [7, "cancelled"]
    assert len(b) == 0


@pytest.mark.asyncio
async def test_timeout_inside_goroutine() -> None:
    """asyncio.timeout around a parked csp receive inside a goroutine raises
    TimeoutError and leaves the task's cancelling() count at 0."""

    async def g() -> int:
        ch = csp.Chan[int]()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.001):
                await ch.recv()
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert await csp.go(g) == 0


@pytest.mark.asyncio
async def test_taskgroup_inside_goroutine() -> None:
    """A TaskGroup inside a goroutine whose children block on csp channels works, and
    a failing child cancels the siblings parked in csp."""
    ch = csp.Chan[int]()

    async def g() -> list[str]:
        out: list[str] = []

        async def parked() -> None:
            try:
                await ch.recv()
            except asyncio.CancelledError:
                out.append("sibling cancelled")
                raise

        async def fail() -> None:
            await asyncio.sleep(0)
            raise KeyError("x")

        with pytest.raises(ExceptionGroup):
            async with asyncio.TaskGroup() as tg:
                tg.create_task(parked())
                tg.create_task(fail())
        return out

    assert await csp.go(g) == ["sibling cancelled"]


def test_goroutine_repr_and_stack(run: object) -> None:
    """Task repr and get_stack() show the user's coroutine, not csp's wrapper."""

    async def worker(ch: csp.Chan[int]) -> None:
        await ch.recv()

    async def main() -> tuple[str, int]:
        ch = csp.Chan[int]()
        t = csp.go(worker, ch)
        await asyncio.sleep(0)
        await ch.send(1)
        await asyncio.sleep(0)
        r = repr(t)
        n = len(t.get_stack())
        return r, n

    r, _ = run(main)  # type: ignore[operator]
    assert "worker" in r


@pytest.mark.asyncio
async def test_cancel_goroutine_in_bare_yield_after_direct_wakeup() -> None:
    """A goroutine woken directly by csp that then yields bare (asyncio.sleep(0)) is
    resumed by csp after one loop iteration; cancelling it there raises CancelledError
    at that sleep, and it took nothing more."""
    ch = csp.Chan[int]()
    trace: list[object] = []

    async def g() -> None:
        trace.append(await ch.recv())
        try:
            while True:
                await asyncio.sleep(0)
                trace.append("tick")
        except asyncio.CancelledError:
            trace.append("cancelled at sleep")
            raise

    t = csp.go(g)
    await ch.send(5)
    for _ in range(4):
        await asyncio.sleep(0)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert trace[0] == 5 and trace[-1] == "cancelled at sleep"
    assert set(trace[1:-1]) == {"tick"} and len(trace) >= 4


@pytest.mark.asyncio
async def test_yielding_goroutines_do_not_starve_the_loop() -> None:
    """Goroutines spinning on gosched() (resumed by csp's drain, not by their Task)
    still yield to the loop every time: plain tasks, call_soon callbacks and I/O
    readiness make progress, and each spinner resumes once per loop iteration."""
    stop = asyncio.Event()
    spins = [0, 0]

    async def spinner(k: int) -> None:
        while not stop.is_set():
            spins[k] += 1
            await csp.gosched()

    ts = [csp.go(spinner, 0), csp.go(spinner, 1)]
    loop = asyncio.get_running_loop()
    ticks: list[int] = []
    for i in range(20):
        fut = loop.create_future()
        loop.call_soon(fut.set_result, i)
        ticks.append(await fut)  # a plain future completed by a loop callback
    r, w = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=r)
    try:
        w.send(b"x")
        assert await reader.read(1) == b"x"  # I/O is polled between resumptions
    finally:
        writer.close()
        w.close()
    stop.set()
    await asyncio.gather(*ts)
    assert ticks == list(range(20))
    assert min(spins) >= 20  # both kept running, interleaved with the loop


@pytest.mark.asyncio
@pytest.mark.parametrize("then", ["csp-op", "bare-yield", "return", "future"])
async def test_self_cancel_during_direct_resumption(then: str) -> None:
    """``current_task().cancel()`` inside a goroutine resumed straight from the run
    queue behaves as in any Task: the next suspension raises CancelledError (a csp
    operation parked then took no effect), and returning right after ends the task
    cancelled."""
    ch = csp.Chan[int]()
    never = csp.Chan[int]()
    trace: list[str] = []

    async def g() -> str:
        await ch.recv()  # first park: through the Task
        await ch.recv()  # resumed directly from here on
        me = asyncio.current_task()
        assert me is not None
        me.cancel("self")
        if then == "return":
            return "returned"
        try:
            if then == "csp-op":
                await never.recv()
            elif then == "bare-yield":
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(0.001)
        except asyncio.CancelledError as e:
            trace.append(f"cancelled: {e.args}")
            raise
        trace.append("not cancelled")  # pragma: no cover
        return "finished"  # pragma: no cover

    t = csp.go(g)
    await ch.send(1)
    await ch.send(2)
    done, _ = await asyncio.wait([t], timeout=2)
    assert done == {t}
    assert t.cancelled()
    assert trace == ([] if then == "return" else ["cancelled: ('self',)"])
    assert len(never._recvq) == 0 or all(e[0].state != 0 for e in never._recvq)
