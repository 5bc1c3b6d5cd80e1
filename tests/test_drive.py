"""csp/_drive.py: goroutines are driven by csp between csp parks; to user code they
remain ordinary asyncio Tasks.

A goroutine's Task steps csp's driver (a Goroutine, which has the coroutine protocol
and shows the user's coroutine: name, frame, state) around the user's coroutine; after
its first csp park the Task stays parked on a proxy waiter and csp resumes the
coroutine straight from the run queue (CSP mode); anything else it awaits (an asyncio
Future), a bad yield and its end are handed back to the Task's own step. The first
tests pin, one by one, what the Task machinery would otherwise guarantee. The
differential tests (tests/differential.py) then run each scenario as a goroutine and
as plain Tasks, which asyncio steps: the traces must be equal, except where API.md
allows a goroutine to differ (its bare yield follows Go's order; ``get_coro()`` is the
driver; while csp drives it the Task waits for the driver, and csp's frames stand
beneath the user's while it runs).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import io
import logging
import os
import random
import re
import socket
import sys
import threading
import types
import warnings
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from conftest import loop_factory
from differential import (
    EAGER,
    REFERENCE,
    Program,
    check_driven,
    differential,
    driven,
    finish,
    is_goroutine,
    kinds_for,
    me,
    new_future,
    norm,
    outcome_of,
    parked,
    resolve_soon,
    run_kind,
    run_kinds,
    same,
    spin,
    start,
    task_factory,
    until,
)

import csp
from csp import _sched

CSP_DIR = os.path.dirname(os.path.abspath(csp.__file__)) + os.sep

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


def test_finished_goroutine_is_freed_without_the_cycle_collector(
        run: Callable[..., Any]) -> None:
    """A goroutine that has finished, and that nothing references, is freed at once,
    as a finished asyncio Task is: the Task and its driver do not keep each other
    alive. (Found by the scale benchmark: waking 1M parked goroutines took ~2.5 s with
    the collector off and ~10-12 s with it on while every finished goroutine was
    cyclic garbage.)"""

    async def main() -> list[str]:
        async def g() -> int:
            return 1

        freed: list[str] = []
        gc.disable()
        try:
            for name, spawn in (("create_task", lambda: asyncio.create_task(g())),
                                ("csp.go", lambda: csp.go(g))):
                t = spawn()
                assert await t == 1
                for _ in range(3):  # let done callbacks run
                    await asyncio.sleep(0)
                ref = weakref.ref(t)
                del t
                if ref() is None:
                    freed.append(name)
        finally:
            gc.enable()
        return freed

    assert run(main) == ["create_task", "csp.go"]


def test_self_cancel_before_the_first_csp_park_raises_at_next_await(loop_name: str) -> None:
    """Invariant (asyncio's): ``current_task().cancel()`` in a goroutine that never
    parked in csp (its Task steps it) is raised at its next suspension, and the task
    ends cancelled."""
    async def main() -> tuple[list[str], bool]:
        trace: list[str] = []

        async def g() -> None:
            me().cancel()
            try:
                await asyncio.sleep(0)
                trace.append("sleep returned")
            except asyncio.CancelledError:
                trace.append("cancelled at sleep")
                raise

        t = csp.go(g)
        await finish(t)
        return trace, t.cancelled()

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as r:
        assert r.run(main()) == (["cancelled at sleep"], True)




# == Differential: goroutine == plain Task == Task subclass (tests/differential.py) ==
#
# Every scenario below first parks the task under test on a csp operation, so that a
# goroutine is driven by csp from then on (check_driven), then does the thing under
# test. The trace (values, exception types and messages, cancelling() counts, what
# other tasks see, the outcome) must be the same for every kind.

# -- 1. foreign awaits after being driven ---------------------------------------------


async def _ret_after(v: Any, n: int) -> Any:
    await spin(n)
    return v


async def _raise_after(exc: BaseException, n: int) -> Any:
    await spin(n)
    raise exc


async def _recv(c: csp.Chan[Any]) -> Any:
    return await c.recv()


async def _send_after(c: csp.Chan[Any], v: Any, n: int) -> None:
    await spin(n)
    await c.send(v)


async def f_sleep0() -> Any:
    return await asyncio.sleep(0, "s0")


async def f_sleep_ms() -> Any:
    return await asyncio.sleep(0.001, "s1")


async def f_fut_result() -> Any:
    loop = asyncio.get_running_loop()
    f = loop.create_future()
    loop.call_soon(f.set_result, "fr")
    return await f


async def f_fut_exception() -> Any:
    loop = asyncio.get_running_loop()
    f = loop.create_future()
    loop.call_soon(f.set_exception, KeyError("fe"))
    return await f


async def f_fut_cancelled() -> Any:
    loop = asyncio.get_running_loop()
    f = loop.create_future()
    loop.call_soon(f.cancel, "fc")
    return await f


async def f_py_fut_result() -> Any:
    """A pure-Python Future (handed back to the Task, as a C Future is)."""
    loop = asyncio.get_running_loop()
    f = new_future(loop, "py")
    loop.call_soon(f.set_result, "pr")
    return await f


async def f_py_fut_exception() -> Any:
    loop = asyncio.get_running_loop()
    f = new_future(loop, "py")
    loop.call_soon(f.set_exception, KeyError("pe"))
    return await f


async def f_py_fut_cancelled() -> Any:
    loop = asyncio.get_running_loop()
    f = new_future(loop, "py")
    loop.call_soon(f.cancel, "pc")
    return await f


async def f_fut_by_task() -> Any:
    f = asyncio.get_running_loop().create_future()

    async def setter() -> None:
        await spin(2)
        f.set_result("ft")

    setter_task = asyncio.create_task(setter())
    r = await f
    await setter_task
    return r


async def f_task_finished() -> Any:
    t2 = asyncio.create_task(_ret_after("tf", 0))
    await spin(2)
    assert t2.done()
    return await t2


async def f_task_pending() -> Any:
    return await asyncio.create_task(_ret_after("tp", 3))


async def f_task_failing() -> Any:
    return await asyncio.create_task(_raise_after(ValueError("tx"), 2))


async def f_task_cancelled() -> Any:
    t2 = asyncio.create_task(asyncio.sleep(10))
    asyncio.get_running_loop().call_soon(t2.cancel, "tc")
    return await t2


async def f_task_driven() -> Any:
    """Awaiting another Task that is itself driven by csp (it parks on a channel)."""
    c = csp.Chan[str]()
    t2 = asyncio.create_task(_recv(c))
    sender = asyncio.create_task(_send_after(c, "td", 2))
    r = await t2
    await sender
    return r


async def f_gather() -> Any:
    return await asyncio.gather(asyncio.sleep(0, 1), asyncio.sleep(0.001, 2),
                                _ret_after(3, 2))


async def f_gather_exceptions() -> Any:
    return await asyncio.gather(_raise_after(KeyError("g"), 1), _ret_after(2, 2),
                                return_exceptions=True)


async def f_shield() -> Any:
    return await asyncio.shield(_ret_after("sh", 2))


async def f_wait_for_ok() -> Any:
    return await asyncio.wait_for(_ret_after("wf", 2), 5)


async def f_wait_for_timeout() -> Any:
    return await asyncio.wait_for(asyncio.get_running_loop().create_future(), 0.001)


async def f_wait() -> Any:
    t1 = asyncio.create_task(_ret_after("w1", 1))
    t2 = asyncio.create_task(asyncio.sleep(10))
    done, pending = await asyncio.wait([t1, t2], return_when=asyncio.FIRST_COMPLETED)
    t2.cancel()
    await asyncio.wait([t2])
    return (len(done), len(pending), t1.result(), t2.cancelled())


async def f_timeout_expires() -> Any:
    try:
        async with asyncio.timeout(0.001):
            await asyncio.get_running_loop().create_future()
    except TimeoutError:
        return ("timeout", me().cancelling())


async def f_timeout_ok() -> Any:
    async with asyncio.timeout(5):
        return await _ret_after("to", 2)


async def f_event() -> Any:
    e = asyncio.Event()
    asyncio.get_running_loop().call_soon(e.set)
    return await e.wait()


async def f_lock() -> Any:
    lock = asyncio.Lock()

    async def holder() -> None:
        async with lock:
            await spin(3)

    h = asyncio.create_task(holder())
    # (not a single sleep(0): a goroutine's bare yield may resume before the holder
    # runs, see test_bare_yield_resumes_after_later_callbacks_like_asyncio)
    await until(lock.locked)
    async with lock:
        return ("locked", h.done())


async def f_queue() -> Any:
    q: asyncio.Queue[int] = asyncio.Queue()

    async def put() -> None:
        for i in range(3):
            await asyncio.sleep(0)
            await q.put(i)

    putter = asyncio.create_task(put())
    r = [await q.get() for _ in range(3)]
    await putter
    return r


async def f_agen() -> Any:
    async def ag() -> Any:
        for i in range(3):
            await asyncio.sleep(0)
            yield i

    return [x async for x in ag()]


async def f_agen_csp() -> Any:
    """An async generator that parks on csp and awaits Futures between its items."""
    c = csp.Chan[int]()

    async def feed() -> None:
        for i in range(3):
            await c.send(i)

    feeder = asyncio.create_task(feed())

    async def ag() -> Any:
        for _ in range(3):
            v = await c.recv()
            await asyncio.sleep(0)
            yield v * 10

    r = [x async for x in ag()]
    await feeder
    return r


async def f_executor() -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, sum, [1, 2, 3])


async def f_to_thread() -> Any:
    return await asyncio.to_thread(pow, 2, 5)


FOREIGN: dict[str, Callable[[], Awaitable[Any]]] = {
    "sleep0": f_sleep0,
    "sleep_ms": f_sleep_ms,
    "fut_result": f_fut_result,
    "fut_exception": f_fut_exception,
    "fut_cancelled": f_fut_cancelled,
    "py_fut_result": f_py_fut_result,
    "py_fut_exception": f_py_fut_exception,
    "py_fut_cancelled": f_py_fut_cancelled,
    "fut_by_task": f_fut_by_task,
    "task_finished": f_task_finished,
    "task_pending": f_task_pending,
    "task_failing": f_task_failing,
    "task_cancelled": f_task_cancelled,
    "task_driven": f_task_driven,
    "gather": f_gather,
    "gather_exceptions": f_gather_exceptions,
    "shield": f_shield,
    "wait_for_ok": f_wait_for_ok,
    "wait_for_timeout": f_wait_for_timeout,
    "wait": f_wait,
    "timeout_expires": f_timeout_expires,
    "timeout_ok": f_timeout_ok,
    "event": f_event,
    "lock": f_lock,
    "queue": f_queue,
    "agen": f_agen,
    "agen_csp": f_agen_csp,
    "executor": f_executor,
    "to_thread": f_to_thread,
}

# What each foreign await gives (asyncio's behaviour; the reference shows it too).
FOREIGN_RESULT: dict[str, Any] = {
    "sleep0": ("value", "s0"),
    "sleep_ms": ("value", "s1"),
    "fut_result": ("value", "fr"),
    "fut_exception": ("raised", ("KeyError", ("fe",))),
    "fut_cancelled": ("raised", ("CancelledError", ("fc",))),
    "py_fut_result": ("value", "pr"),
    "py_fut_exception": ("raised", ("KeyError", ("pe",))),
    "py_fut_cancelled": ("raised", ("CancelledError", ("pc",))),
    "fut_by_task": ("value", "ft"),
    "task_finished": ("value", "tf"),
    "task_pending": ("value", "tp"),
    "task_failing": ("raised", ("ValueError", ("tx",))),
    "task_cancelled": ("raised", ("CancelledError", ("tc",))),
    "task_driven": ("value", "td"),
    "gather": ("value", [1, 2, 3]),
    "gather_exceptions": ("value", [("KeyError", ("g",)), 2]),
    "shield": ("value", "sh"),
    "wait_for_ok": ("value", "wf"),
    "wait_for_timeout": ("raised", ("TimeoutError", ())),
    "wait": ("value", (1, 1, "w1", True)),
    "timeout_expires": ("value", ("timeout", 0)),
    "timeout_ok": ("value", "to"),
    "event": ("value", True),
    "lock": ("value", ("locked", True)),
    "queue": ("value", [0, 1, 2]),
    "agen": ("value", [0, 1, 2]),
    "agen_csp": ("value", [0, 10, 20]),
    "executor": ("value", 6),
    "to_thread": ("value", 32),
}

_var: contextvars.ContextVar[str] = contextvars.ContextVar("_var", default="unset")


def _foreign_program(steps: list[str]) -> Program:
    async def program(kind: str) -> Any:
        ch = csp.Chan[int]()
        trace: list[Any] = []

        async def victim() -> int:
            t = me()
            _var.set("before")
            trace.append(("first", await ch.recv()))
            check_driven(kind, t)
            _var.set("after")
            for i, name in enumerate(steps):
                try:
                    r = await FOREIGN[name]()
                    trace.append((name, "value", norm(r), t.cancelling()))
                except BaseException as e:
                    trace.append((name, "raised", norm(e), t.cancelling()))
                # a csp park after each foreign await: the task stays driven
                trace.append(("csp", await ch.recv(), asyncio.current_task() is t,
                              _var.get()))
                _var.set(f"step {i}")
            return len(steps)

        async def feeder() -> None:
            for i in range(len(steps) + 1):
                await ch.send(i)

        t = start(kind, victim())
        f = start(kind, feeder())
        await finish(t, f)
        return trace, outcome_of(t), outcome_of(f)

    return program


def _foreign_expected(steps: list[str]) -> list[Any]:
    out: list[Any] = [("first", 0)]
    for i, name in enumerate(steps):
        how, r = FOREIGN_RESULT[name]
        out.append((name, how, r, 0))
        out.append(("csp", i + 1, True, "after" if i == 0 else f"step {i - 1}"))
    return out


@pytest.mark.parametrize("name", list(FOREIGN))
def test_foreign_await_after_driven_matches_asyncio(loop_name: str, name: str) -> None:
    """Invariant: once driven, awaiting a foreign awaitable (Future resolved, failed or
    cancelled by someone else, another Task in every state, gather, shield, wait_for,
    wait, timeout, Event, Lock, Queue, async generators, executors) gives what asyncio
    gives, and the task goes on parking in csp afterwards (same current_task, same
    context)."""
    trace, outcome, _ = same(run_kinds(loop_name, _foreign_program([name])))
    assert trace == _foreign_expected([name])
    assert outcome == ("result", 1)


def test_foreign_awaits_alternate_with_csp_many_times(loop_name: str) -> None:
    """Invariant: the same, all foreign awaits in a row, three rounds, a csp park
    between each two: nothing lost, duplicated or reordered."""
    steps = list(FOREIGN) * 3
    trace, outcome, feeder = same(run_kinds(loop_name, _foreign_program(steps)))
    assert trace == _foreign_expected(steps)
    assert outcome == ("result", len(steps))
    assert feeder == ("result", None)


def _yield_order_program(where: str) -> Program:
    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        trace: list[Any] = []
        a, b = csp.Chan[int](), csp.Chan[int]()

        async def yielder() -> None:
            await a.recv()
            await a.recv()  # resumed by csp
            await asyncio.sleep(0)
            trace.append("yielder resumed")

        async def other() -> None:
            await b.recv()
            await b.recv()
            loop.call_soon(trace.append, "callback")

        fut = loop.create_future()
        c = csp.Chan[int]()

        async def early() -> None:
            await a.recv()  # driven from here
            await fut  # resumed by a loop callback (not by a drain)
            # a sender is parked: this recv does not suspend, and the drain that wakes
            # the sender is queued now, before the callback below
            await c.recv()
            loop.call_soon(trace.append, "callback")
            await asyncio.sleep(0)
            trace.append("yielder resumed")

        if where == "late":
            t1, t2 = start(kind, yielder()), start(kind, other())
            await spin(3)
            await a.send(0)
            await b.send(0)
            await spin(3)
            await a.send(1)  # yielder, then other, in one drain
            await b.send(1)
            await finish(t1, t2)
        else:
            t1 = start(kind, early())
            t2 = asyncio.create_task(c.send(5))
            await spin(3)
            await a.send(0)
            await spin(3)
            fut.set_result(None)
            await finish(t1, t2)
        return trace

    return program


def test_bare_yield_resumes_after_later_callbacks_like_asyncio(loop_name: str) -> None:
    """Invariant (asyncio's call_soon FIFO): a plain Task that yields with sleep(0) is
    resumed before a callback another task queues after that yield.

    A goroutine is not (API.md allows it: its bare yield follows Go's order, pinned
    here): it goes to the back of csp's run queue, behind a barrier, so callbacks
    queued later in the same drain run before it (Go orders nothing there)."""
    out = run_kinds(loop_name, _yield_order_program("late"))
    for kind, trace in out.items():
        if is_goroutine(kind):
            assert trace == ["callback", "yielder resumed"], kind
        else:
            assert trace == ["yielder resumed", "callback"], kind


def test_bare_yield_resumes_after_earlier_callbacks_like_asyncio(loop_name: str) -> None:
    """Invariant (asyncio's call_soon FIFO): a callback a task queued before its
    sleep(0) runs before the task resumes, also when a drain was already queued
    before that callback (a step woken by a Future, then a csp operation that did not
    suspend but woke a partner). Goroutines too."""
    trace = same(run_kinds(loop_name, _yield_order_program("early")))
    assert trace == ["callback", "yielder resumed"]


# -- 2. cancellation from another task, at every point ---------------------------------


class Blocker:
    """Something the victim awaits after it is driven, which the driver can end
    without suspending (``resolve``): the victim is suspended on it until then."""

    async def setup(self) -> None:
        return None

    async def wait(self) -> Any:
        raise NotImplementedError

    async def resolve(self) -> None:
        return None

    def cleanup(self) -> None:
        return None


class BFuture(Blocker):
    async def setup(self) -> None:
        self.f = asyncio.get_running_loop().create_future()

    async def wait(self) -> Any:
        return await self.f

    async def resolve(self) -> None:
        if not self.f.done():
            self.f.set_result("v")


class BPyFuture(BFuture):
    """A pure-Python Future (the Task awaits it, after csp handed the coroutine back)."""

    async def setup(self) -> None:
        self.f = new_future(asyncio.get_running_loop(), "py")


class BTask(BFuture):
    """Awaiting another Task (asyncio forwards the cancellation to it)."""

    async def wait(self) -> Any:
        async def inner() -> Any:
            try:
                return await self.f
            except asyncio.CancelledError as e:
                self.inner_saw = norm(e.args)
                raise

        self.inner = asyncio.create_task(inner())
        return await self.inner


class BTaskIgnoresCancel(BFuture):
    """Awaiting a Task that swallows the cancellation and returns a value."""

    async def wait(self) -> Any:
        async def inner() -> Any:
            try:
                return await self.f
            except asyncio.CancelledError:
                return "swallowed"

        return await asyncio.create_task(inner())


class BGather(BFuture):
    async def setup(self) -> None:
        await super().setup()
        self.g = asyncio.get_running_loop().create_future()

    async def wait(self) -> Any:
        return await asyncio.gather(self.f, self.g)

    async def resolve(self) -> None:
        await super().resolve()
        if not self.g.done():
            self.g.set_result("g")


class BShield(BFuture):
    async def wait(self) -> Any:
        return await asyncio.shield(self.f)


class BWaitFor(BFuture):
    async def wait(self) -> Any:
        return await asyncio.wait_for(self.f, 10)


class BWait(BFuture):
    async def wait(self) -> Any:
        done, pending = await asyncio.wait([self.f])
        return (len(done), len(pending))


class BTimeout(BFuture):
    async def wait(self) -> Any:
        async with asyncio.timeout(10):
            return await self.f


class BEvent(Blocker):
    async def setup(self) -> None:
        self.e = asyncio.Event()

    async def wait(self) -> Any:
        return await self.e.wait()

    async def resolve(self) -> None:
        self.e.set()


class BLock(Blocker):
    async def setup(self) -> None:
        self.lock = asyncio.Lock()
        await self.lock.acquire()  # the driver holds it

    async def wait(self) -> Any:
        async with self.lock:
            return "locked"

    async def resolve(self) -> None:
        if self.lock.locked():
            self.lock.release()


class BQueue(Blocker):
    async def setup(self) -> None:
        self.q: asyncio.Queue[str] = asyncio.Queue()

    async def wait(self) -> Any:
        return await self.q.get()

    async def resolve(self) -> None:
        self.q.put_nowait("q")


class BSleep(Blocker):
    async def wait(self) -> Any:
        return await asyncio.sleep(10, "slept")


class BSleep0(Blocker):
    """Bare yields: the cancellation lands while a goroutine waits in csp's run queue
    (behind the yield barrier)."""

    async def wait(self) -> Any:
        n = 0
        for _ in range(30):
            await asyncio.sleep(0)
            n += 1
        return n


class BAgen(BFuture):
    async def wait(self) -> Any:
        async def ag() -> Any:
            yield await self.f

        async for x in ag():
            return x


class BExecutor(Blocker):
    async def setup(self) -> None:
        self.ev = threading.Event()

    async def wait(self) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, self.ev.wait, 5)

    def cleanup(self) -> None:
        self.ev.set()


class BChan(Blocker):
    """A csp park again (the completion queues the task: 'queued to resume')."""

    async def setup(self) -> None:
        self.c = csp.Chan[str]()

    async def wait(self) -> Any:
        return await self.c.recv()

    async def resolve(self) -> None:
        await csp.select((self.c.send, "c"), default=True)  # never suspends


class BDrivenTask(BChan):
    """Awaiting another Task that is itself parked in csp (driven)."""

    async def wait(self) -> Any:
        return await asyncio.create_task(self.c.recv())


BLOCKERS: dict[str, type[Blocker]] = {
    "future": BFuture,
    "py_future": BPyFuture,
    "task": BTask,
    "task_ignores_cancel": BTaskIgnoresCancel,
    "gather": BGather,
    "shield": BShield,
    "wait_for": BWaitFor,
    "wait": BWait,
    "timeout": BTimeout,
    "event": BEvent,
    "lock": BLock,
    "queue": BQueue,
    "sleep": BSleep,
    "sleep0": BSleep0,
    "agen": BAgen,
    "executor": BExecutor,
    "chan": BChan,
    "driven_task": BDrivenTask,
}

MODES = ("cancel", "cancel_twice", "cancel_uncancel", "resolve_then_cancel",
         "cancel_then_resolve", "cancel_spin_resolve", "resolve_spin_cancel")


async def _after_steps(trace: list[Any], t: asyncio.Task[Any]) -> None:
    """A bare yield, a csp park and a Future after the blocker: an owed cancellation
    shows here, once; none appears from nowhere."""
    c = csp.Chan[int]()
    for step in ("sleep0", "csp", "future"):
        try:
            if step == "sleep0":
                await asyncio.sleep(0)
            elif step == "csp":
                aux = asyncio.create_task(c.send(1))  # completes the park next iteration
                try:
                    await c.recv()
                finally:
                    aux.cancel()
            else:
                f = asyncio.get_running_loop().create_future()
                resolve_soon(f, None)
                await f
            trace.append((step, t.cancelling()))
        except asyncio.CancelledError as e:
            trace.append((step, "cancelled", norm(e.args), t.cancelling()))


def _cancel_program(bname: str, mode: str) -> Program:
    async def program(kind: str) -> Any:
        b = BLOCKERS[bname]()
        await b.setup()
        ch = csp.Chan[int]()
        trace: list[Any] = []

        async def victim() -> str:
            t = me()
            trace.append(("first", await ch.recv()))
            trace.append("blocking")
            try:
                r = await b.wait()
                trace.append(("value", norm(r), t.cancelling()))
            except asyncio.CancelledError as e:
                trace.append(("cancelled", norm(e.args), t.cancelling()))
            except Exception as e:
                trace.append(("raised", norm(e), t.cancelling()))
            await _after_steps(trace, t)
            return "end"

        t = start(kind, victim())
        await until(lambda: parked(t))  # its first csp park
        await ch.send(0)
        check_driven(kind, t)
        await until(lambda: "blocking" in trace)
        await spin(5)  # let it (and the helpers it started) suspend
        assert trace[-1] == "blocking" and not t.done()
        log: list[Any] = []
        if mode == "cancel":
            log.append(t.cancel("x"))
            await b.resolve()
        elif mode == "cancel_twice":
            log += [t.cancel("x"), t.cancel("y")]
            await b.resolve()
        elif mode == "cancel_uncancel":
            log += [t.cancel("x"), t.uncancel()]
            await b.resolve()
        elif mode == "resolve_then_cancel":  # done, its callback not run yet
            await b.resolve()
            log.append(t.cancel("x"))
        elif mode == "cancel_then_resolve":
            log.append(t.cancel("x"))
            await b.resolve()
        elif mode == "cancel_spin_resolve":
            log.append(t.cancel("x"))
            await asyncio.sleep(0)
            await b.resolve()
        elif mode == "resolve_spin_cancel":
            await b.resolve()
            await asyncio.sleep(0)
            log.append(t.cancel("x"))
        log.append(t.cancelling())
        await finish(t)
        b.cleanup()
        return log, trace, outcome_of(t)

    return program


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bname", list(BLOCKERS))
def test_cancel_while_awaiting_after_driven_matches_asyncio(loop_name: str, bname: str,
                                                             mode: str) -> None:
    """Invariant: a driven task cancelled by another task while it awaits a foreign
    awaitable (or a csp operation, or bare yields), before or after that awaitable
    completed, once, twice, or withdrawn with uncancel(), raises exactly what asyncio
    raises, where asyncio raises it (message, cancelling() count), keeps values asyncio
    keeps, and raises nothing more afterwards."""
    log, trace, outcome = same(run_kinds(loop_name, _cancel_program(bname, mode)))
    assert trace[:2] == [("first", 0), "blocking"]
    assert log[0] is True
    assert outcome == ("result", "end")


# -- 2b. cancellation from within the task itself -------------------------------------

PRE = ("none", "csp_done", "csp_cancelled", "csp_timeout", "future_cancelled",
       "future_timeout")
POST = ("future", "sleep0", "csp", "done_future_return", "raise")


def _self_cancel_program(pre: str, post: str) -> Program:
    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[int]()
        never = csp.Chan[int]()
        trace: list[Any] = []
        fut = loop.create_future()

        async def victim() -> str:
            t = me()
            trace.append(("first", await ch.recv()))
            trace.append("pre")
            try:
                if pre == "csp_done":
                    trace.append(("recv", await ch.recv()))
                elif pre == "csp_cancelled":
                    await never.recv()
                elif pre == "future_cancelled":
                    await fut
                elif pre in ("csp_timeout", "future_timeout"):
                    async with asyncio.timeout(0):
                        await (never.recv() if pre == "csp_timeout" else fut)
            except (asyncio.CancelledError, TimeoutError) as e:
                trace.append(("pre raised", norm(e), t.cancelling()))
            # the task cancels itself, then:
            trace.append(("self cancel", t.cancel("s"), t.cancelling()))
            try:
                if post == "future":
                    f = loop.create_future()
                    resolve_soon(f, "f")
                    trace.append(("post", await f))
                elif post == "sleep0":
                    await asyncio.sleep(0)
                elif post == "csp":
                    aux = asyncio.create_task(ch.send(7))
                    try:
                        trace.append(("post", await ch.recv()))
                    finally:
                        aux.cancel()
                elif post == "done_future_return":
                    f = loop.create_future()
                    f.set_result("d")
                    trace.append(("post", await f))
                    return "returned"
                else:
                    raise KeyError("boom")
                trace.append("post returned")
            except asyncio.CancelledError as e:
                trace.append(("post cancelled", norm(e.args), t.cancelling()))
                raise
            return "end"

        t = start(kind, victim())
        await until(lambda: parked(t))
        await ch.send(0)
        check_driven(kind, t)
        await until(lambda: "pre" in trace)
        if pre == "csp_done":
            await ch.send(1)
        elif pre in ("csp_cancelled", "future_cancelled"):
            await spin(3)
            assert not t.done()
            t.cancel("x")
        await finish(t)
        return trace, outcome_of(t)

    return program


def _self_cancel_expected(pre: str, post: str) -> tuple[list[Any], Any]:
    trace: list[Any] = [("first", 0), "pre"]
    n = 0
    if pre == "csp_done":
        trace.append(("recv", 1))
    elif pre in ("csp_cancelled", "future_cancelled"):
        trace.append(("pre raised", ("CancelledError", ("x",)), 1))
        n = 1
    elif pre in ("csp_timeout", "future_timeout"):
        trace.append(("pre raised", ("TimeoutError", ()), 0))
    trace.append(("self cancel", True, n + 1))
    if post == "raise":
        return trace, ("exception", ("KeyError", ("boom",)))
    if post == "done_future_return":
        # it returned with the cancellation pending: the message stays for every result()
        trace.append(("post", "d"))
        return trace, ("cancelled", ("s",), ("s",))
    # the CancelledError("s") it raised: asyncio gives its message to the first result()
    trace.append(("post cancelled", ("s",), n + 1))
    return trace, ("cancelled", ("s",), ())


@pytest.mark.parametrize("post", POST)
@pytest.mark.parametrize("pre", PRE)
def test_self_cancel_after_driven_matches_asyncio(loop_name: str, pre: str,
                                                 post: str) -> None:
    """Invariant (asyncio's): ``current_task().cancel("s")`` made by a running task is
    raised at its next suspension (a Future, a bare yield, a csp park), with "s" and
    the cancelling() count; a return without suspending ends the task cancelled "s";
    an exception wins. Whatever the task did before in the same step: a csp operation
    that completed, one that was cancelled (by another task or an expiring timeout),
    a Future that was cancelled."""
    trace, outcome = same(run_kinds(loop_name, _self_cancel_program(pre, post)))
    assert (trace, outcome) == _self_cancel_expected(pre, post)


@types.coroutine
def _raw_yield(v: Any) -> Any:
    return (yield v)


# what a driven task yields or does right after cancelling itself
REARM = ("nonblocking_future", "other_loop_future", "itself", "done_future",
         "bad_yield", "uncancel_return", "uncancel_csp", "bad_yield_then_uncancel")


def _rearm_program(what: str) -> Program:
    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        other = asyncio.new_event_loop()
        ch = csp.Chan[int]()
        trace: list[Any] = []

        async def victim() -> str:
            t = me()
            await ch.recv()
            await ch.recv()  # csp drives it now (a goroutine)
            t.cancel("self")
            y: Any
            if what == "uncancel_return":
                t.uncancel()
                return "returned"
            if what == "uncancel_csp":
                t.uncancel()  # 3.13: withdraws the pending cancellation
                try:
                    trace.append(("recv", await ch.recv()))
                except asyncio.CancelledError as e:
                    trace.append(("recv cancelled", norm(e.args), t.cancelling()))
                return "end"
            if what == "nonblocking_future":
                y = loop.create_future()  # its _asyncio_future_blocking is False
            elif what == "other_loop_future":
                y = other.create_future()
                y._asyncio_future_blocking = True
            elif what == "itself":
                y = t
            elif what == "done_future":
                y = loop.create_future()
                y.set_result("d")
                y._asyncio_future_blocking = True
            else:  # bad_yield, bad_yield_then_uncancel
                y = 5
            try:
                trace.append(("yield returned", norm(await _raw_yield(y))))
            except BaseException as e:  # what asyncio raised is the trace
                trace.append(("yield raised", norm(e), t.cancelling()))
            if what == "other_loop_future":
                trace.append(("foreign future cancelled", y.cancelled()))
            return "end"

        t = start(kind, victim())
        await until(lambda: parked(t))
        await ch.send(0)
        await until(lambda: parked(t))
        check_driven(kind, t)
        await ch.send(1)
        if what == "bad_yield_then_uncancel":
            await asyncio.sleep(0)  # its step yielded 5; the canceller withdraws
            t.uncancel()
        if what == "uncancel_csp":
            await spin(3)
            if not t.done():
                await ch.send(2)
        await finish(t)
        other.close()
        return trace, outcome_of(t), t.cancelling()

    return program


@pytest.mark.parametrize("what", REARM)
def test_self_cancel_then_odd_yield_or_uncancel_matches_asyncio(loop_name: str,
                                                                what: str) -> None:
    """Invariant (asyncio's): a running task's own pending cancellation meets whatever
    it yields next by Task.__step's rules (a Future is cancelled only if it is
    blocking, of this loop and not the task itself; otherwise the cancellation is
    raised at the next step, and a bad yield's RuntimeError gives way to it), and
    ``uncancel()`` counts as asyncio counts (3.13: to 0 it withdraws the pending
    cancellation, also the one csp would have delivered at the next csp park)."""
    trace, outcome, count = same(run_kinds(loop_name, _rearm_program(what)))
    if what == "uncancel_return":
        assert count == 0 and trace == []
    elif what in ("nonblocking_future", "itself", "done_future", "bad_yield"):
        assert trace[0] == ("yield raised", ("CancelledError", ("self",)), 1)
        assert outcome == ("result", "end")


def _first_park_program(where: str) -> Program:
    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[int]()
        trace: list[Any] = []

        async def victim() -> str:
            t = me()
            if where == "after_hand_back":
                trace.append(("first", await ch.recv()))  # driven
                f = loop.create_future()  # csp gives the coroutine back to the Task
                resolve_soon(f, None)
                await f
            t.cancel("s")
            try:
                trace.append(("recv", await ch.recv()))  # parks: the Task's own step
            except asyncio.CancelledError as e:
                trace.append(("recv cancelled", norm(e.args), t.cancelling()))
            try:
                await asyncio.sleep(0)
                trace.append("slept")
            except asyncio.CancelledError as e:
                trace.append(("sleep cancelled", norm(e.args), t.cancelling()))
            return "end"

        t = start(kind, victim())
        if where == "after_hand_back":
            await until(lambda: parked(t))
            await ch.send(0)
        await spin(5)
        # a sender finds the victim parked (its receive took effect) or nobody
        trace.append(("send", await csp.select((ch.send, 7), default=True)))
        await finish(t)
        return trace, outcome_of(t)

    return program


@pytest.mark.parametrize("where", ["first_park", "after_hand_back"])
def test_self_cancel_then_csp_park_in_task_step_matches_asyncio(loop_name: str,
                                                                where: str) -> None:
    """Invariant (asyncio's): a task that cancelled itself and then parks in csp gets
    CancelledError("s") at that park, which takes no effect (a sender right after
    finds nobody), also when the step is run by the Task (its first csp park, or its
    first after awaiting an asyncio Future)."""
    trace, outcome = same(run_kinds(loop_name, _first_park_program(where)))
    first = [("first", 0)] if where == "after_hand_back" else []
    assert trace == [*first, ("recv cancelled", ("s",), 1), "slept", ("send", (-1, None))]
    assert outcome == ("result", "end")


async def _redeliver_program(kind: str) -> Any:
    """A csp receive is completed and cancelled ("x") in the same step: the value is
    kept and the cancellation owed (csp._waiter.owe). Before that
    re-delivery runs, another task cancels the victim ("a") while it waits in a
    bare yield: asyncio's Task then already has a cancellation on its way."""
    a, b = csp.Chan[int](), csp.Chan[int]()
    trace: list[Any] = []
    box: list[asyncio.Task[Any]] = []

    async def victim() -> str:
        t = me()
        await a.recv()
        trace.append(("got", await a.recv(), t.cancelling()))
        try:
            await asyncio.sleep(0)
            trace.append("slept")
        except asyncio.CancelledError as e:
            trace.append(("cancelled", norm(e.args), t.cancelling()))
        return "end"

    async def killer() -> None:
        await b.recv()
        await b.recv()  # resumed in the same drain as the victim, right after it
        trace.append(("kill", box[0].cancel("a"), box[0].cancelling()))

    v = start(kind, victim())
    box.append(v)
    k = start(kind, killer())
    await until(lambda: parked(v) and parked(k))
    await a.send(0)
    await b.send(0)
    await until(lambda: parked(v) and parked(k))
    check_driven(kind, v)
    await a.send(1)
    trace.append(("cancel", v.cancel("x")))
    await b.send(2)
    await finish(v, k)
    return trace, outcome_of(v)


def test_redelivery_keeps_newer_pending_cancel_message(loop_name: str) -> None:
    """Invariant (asyncio's last request wins, and csp._waiter's owed-cancellation
    rule): a re-delivered cancellation does not replace a cancellation already on its
    way: the task sees "a", once, count 2."""
    trace, outcome = same(run_kinds(loop_name, _redeliver_program))
    assert trace == [("cancel", True), ("got", 1, 1), ("kill", True, 2),
                     ("cancelled", ("a",), 2)]
    assert outcome == ("result", "end")


async def _uncancel_program(kind: str) -> Any:
    ch = csp.Chan[int]()
    trace: list[Any] = []

    async def victim() -> str:
        t = me()
        await ch.recv()
        for i in range(6):
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError as e:
                trace.append(("cancelled", i, norm(e.args), t.cancelling()))
        return "end"

    v = start(kind, victim())
    await until(lambda: parked(v))
    await ch.send(0)
    await spin(2)  # it waits in a bare yield now
    check_driven(kind, v)
    trace.append(("cancel", v.cancel("x"), v.uncancel()))
    await finish(v)
    return trace, outcome_of(v)


def test_cancel_uncancel_in_bare_yield_matches_asyncio(loop_name: str) -> None:
    """cancel() then uncancel() while the task waits in a bare yield: 3.11 and 3.12
    still raise the cancellation (uncancel() leaves _must_cancel set); 3.13 withdraws
    it (see the next test). csp must do what the running asyncio does."""
    if sys.version_info >= (3, 13):
        pytest.skip("3.13 semantics: test_uncancel_withdraws_pending_cancel_313")
    trace, outcome = same(run_kinds(loop_name, _uncancel_program))
    assert trace == [("cancel", True, 0), ("cancelled", 1, ("x",), 0)]
    assert outcome == ("result", "end")


@pytest.mark.skipif(sys.version_info < (3, 13), reason="uncancel() changed in 3.13")
def test_uncancel_withdraws_pending_cancel_313(loop_name: str) -> None:
    """Invariant (CPython >= 3.13): uncancel() back to 0 withdraws a cancellation
    that has not been raised yet."""
    trace, outcome = same(run_kinds(loop_name, _uncancel_program))
    assert trace == [("cancel", True, 0)]
    assert outcome == ("result", "end")


# -- 3. bad yields after being driven ---------------------------------------------------


@types.coroutine
def _yield_raw(v: Any) -> Any:
    return (yield v)


def _gen() -> Any:
    yield 1


BAD_YIELDS = ("value", "nonblocking_future", "other_loop_future", "generator", "itself")


def _no_place(x: Any) -> Any:
    """An exception's normalised args without "running at FILE:LINE"."""
    return (x[0], tuple(re.sub(r" running at [^>]*>", " running>", a) if isinstance(a, str)
                        else a for a in x[1]))


def _bad_yield_program(which: str, *, cancel: bool = False) -> Program:
    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        other = asyncio.new_event_loop()
        ch = csp.Chan[int]()
        trace: list[Any] = []

        async def victim() -> str:
            t = me()
            await ch.recv()
            for _ in range(2):
                trace.append("yield")
                try:
                    if which == "itself":
                        await t
                    else:
                        if which == "value":
                            y: Any = 42
                        elif which == "nonblocking_future":
                            y = loop.create_future()  # _asyncio_future_blocking False
                        elif which == "other_loop_future":
                            y = other.create_future()
                            y._asyncio_future_blocking = True
                        else:
                            y = _gen()
                        await _yield_raw(y)
                    trace.append("returned")
                except BaseException as e:
                    # (without the Task's "running at" place: the bad-yield messages
                    # embed the Task's repr, whose wait_for= differs while csp drives)
                    trace.append(("raised", _no_place(norm(e)), t.cancelling()))
                trace.append(("recv", await ch.recv()))
            return "end"

        t = start(kind, victim())
        await until(lambda: parked(t))
        await ch.send(0)
        check_driven(kind, t)
        for i in (1, 2):
            await until(lambda i=i: trace.count("yield") == i)
            if cancel and i == 1:
                # while the RuntimeError is on its way (Task.__step scheduled)
                trace.append(("cancel", t.cancel("c")))
            await ch.send(i)
        await finish(t)
        other.close()
        return trace, outcome_of(t)

    return program


def _bad_yield_message(which: str) -> str:
    task = "<Task pending name='Task-N' coro=<_bad_yield_program.<locals>.program.<locals>."
    if which == "itself":
        return f"Task cannot await on itself: {task}victim() running>"
    if which == "value":
        return "Task got bad yield: 42"
    if which == "nonblocking_future":
        return f"yield was used instead of yield from in task {task}"
    if which == "other_loop_future":
        return f"Task {task}"
    return f"yield was used instead of yield from for generator in task {task}"


@pytest.mark.parametrize("which", BAD_YIELDS)
def test_bad_yield_after_driven_matches_asyncio(loop_name: str, which: str) -> None:
    """Invariant: a driven coroutine that yields something a Task refuses (a plain
    value, a non-blocking Future, another loop's Future, a generator, its own Task)
    gets the same RuntimeError as from Task.__step, a loop iteration later, and goes
    on afterwards (here: parks in csp again, and fails the same way a second time).
    Messages compared without addresses, task numbers and the Task's place."""
    trace, outcome = same(run_kinds(loop_name, _bad_yield_program(which)))
    assert outcome == ("result", "end")
    assert [e if isinstance(e, str) else e[0] for e in trace] == [
        "yield", "raised", "recv", "yield", "raised", "recv"]
    first = trace[1]
    assert first[1][0] == "RuntimeError" and first[2] == 0
    assert first[1][1][0].startswith(_bad_yield_message(which)), first
    if which != "itself":  # awaiting itself again: "await wasn't used with future"
        assert trace[4] == first


@pytest.mark.parametrize("which", BAD_YIELDS)
def test_cancel_while_bad_yield_error_pending_matches_asyncio(loop_name: str,
                                                              which: str) -> None:
    """Invariant: cancel() while the bad-yield RuntimeError is scheduled replaces it
    with CancelledError("c") (asyncio: _must_cancel wins over a non-cancel
    exception at the next step)."""
    trace, outcome = same(run_kinds(loop_name, _bad_yield_program(which, cancel=True)))
    assert trace[:4] == ["yield", ("cancel", True), ("raised", ("CancelledError", ("c",)), 1),
                         ("recv", 1)]
    assert outcome == ("result", "end")


class _NoLoopAwaitable:
    """A future-like object a Task cannot handle: ``futures._get_loop`` raises
    AttributeError on it inside the Task's step."""

    _asyncio_future_blocking = True

    def __await__(self) -> Any:
        yield self


async def _broken_awaitable_program(kind: str) -> Any:
    """One task awaits an object that makes the Task's step itself fail; a bystander
    goes on exchanging values over csp meanwhile."""
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    loop.set_exception_handler(lambda _l, c: errors.append(type(c.get("exception")).__name__))
    a, b = csp.Chan[int](), csp.Chan[int]()
    got: list[int] = []

    async def victim() -> None:
        await a.recv()
        await a.recv()  # resumed by csp's drain
        await _NoLoopAwaitable()

    async def bystander() -> None:
        await b.recv()
        for _ in range(3):
            got.append(await b.recv())

    v, by = start(kind, victim()), start(kind, bystander())
    await until(lambda: parked(v) and parked(by))
    await a.send(0)
    await b.send(0)
    await until(lambda: parked(v) and parked(by))
    await a.send(1)  # the victim breaks in the drain that wakes it
    sends = asyncio.create_task(_send_all(b, [1, 2, 3]))
    for _ in range(30):  # wait on Futures, not bare yields: they do not need csp
        if by.done():
            break
        f = loop.create_future()
        resolve_soon(f, None)
        await f
    in_time = by.done()
    sched = _sched.scheduler()
    if not in_time and sched.scheduled and sched.runq:
        sched.loop.call_soon(sched.drain)  # unstick csp so that the runner can close
    await asyncio.wait([by, sends])
    # The victim is stranded for good, under asyncio too (its step failed: nothing
    # will ever step it again); end its Future so that the runner can close.
    asyncio.Future.cancel(v)
    return got, in_time, errors[:1]


async def _send_all(c: csp.Chan[int], vs: list[int]) -> None:
    for v in vs:
        await c.send(v)


def test_broken_awaitable_does_not_stall_other_tasks(loop_name: str) -> None:
    """Invariant (asyncio's): an awaitable that makes a task's step fail is reported
    to the loop's exception handler and strands that task only; other tasks go on."""
    got, by_done, errors = same(run_kinds(loop_name, _broken_awaitable_program))
    assert (got, by_done, errors) == ([1, 2, 3], True, ["AttributeError"])


# -- 4. TaskGroup and anyio --------------------------------------------------------------


def _eg(e: BaseException) -> Any:
    """An exception group as (type, [its exceptions, normalised, sorted])."""
    if isinstance(e, BaseExceptionGroup):
        return (type(e).__name__, sorted(repr(_eg(x)) for x in e.exceptions))
    return norm(e)


def _taskgroup_program(variant: str) -> Program:
    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        trace: list[Any] = []
        gate = csp.Chan[int]()
        never = csp.Chan[int]()
        buf = csp.Chan[int](8)
        box: list[asyncio.Task[Any]] = []

        async def child(name: str) -> str:
            t = me()
            trace.append((name, "start", await gate.recv()))
            try:
                if name == "fails":
                    f = loop.create_future()
                    resolve_soon(f, None)
                    await f
                    await asyncio.sleep(0)
                    raise ValueError(name)
                if name == "csp":
                    await never.recv()
                elif name in ("future", "victim"):
                    await loop.create_future()
                elif name == "swallows":
                    try:
                        await loop.create_future()
                    except asyncio.CancelledError as e:
                        trace.append((name, "swallowed", norm(e.args), t.cancelling()))
                        await buf.send(1)
                        await asyncio.sleep(0)
                        trace.append((name, "recv", await buf.recv()))
                        return name
                return name
            except asyncio.CancelledError as e:
                trace.append((name, "cancelled", norm(e.args), t.cancelling()))
                raise

        async def parent() -> str:
            t = me()
            box.append(t)
            trace.append(("parent", await gate.recv()))
            names = {"child_fails": ["fails", "csp", "future", "swallows"],
                     "child_cancelled": ["victim", "csp"],
                     "parent_cancelled": ["csp", "future", "swallows"]}[variant]
            try:
                async with asyncio.TaskGroup() as tg:
                    kids = [tg.create_task(child(n)) for n in names]
                    box.extend(kids)
                    await spin(2)
                    for i in range(len(names)):
                        await gate.send(i)
                    try:
                        if variant == "child_cancelled":
                            await until(lambda: ("driver", "blocked") in trace)
                            trace.append(("parent", "child outcome", outcome_of(kids[0])))
                            await never.send(99)  # the csp child finishes normally
                        else:
                            await never.recv()
                    except asyncio.CancelledError as e:
                        trace.append(("parent", "body cancelled", norm(e.args),
                                      t.cancelling()))
                        raise
            except BaseException as e:
                trace.append(("parent", "raised", _eg(e), t.cancelling()))
                raise
            trace.append(("parent", "kids", [outcome_of(k) for k in kids], t.cancelling()))
            return "parent end"

        p = start(kind, parent())
        await until(lambda: parked(p))
        await gate.send(-1)
        check_driven(kind, p)
        await until(lambda: len(box) > 1 and len(
            [e for e in trace if e[1] == "start"]) == len(box) - 1)
        await spin(5)  # every child is suspended where it waits
        for k in box[1:]:  # the group's children are plain Tasks: asyncio steps them
            assert not driven(k)
        if variant == "child_cancelled":
            trace.append(("driver", "cancel child", box[1].cancel("k")))
            trace.append(("driver", "blocked"))
        elif variant == "parent_cancelled":
            trace.append(("driver", "cancel parent", p.cancel("p")))
        await finish(p)
        # TaskGroup cancels its children in set order (by address): only each
        # actor's own sequence is deterministic
        actors: dict[str, list[Any]] = {}
        for e in trace:
            actors.setdefault(e[0], []).append(e[1:])
        return actors, outcome_of(p)

    return program


@pytest.mark.parametrize("variant", ["child_fails", "child_cancelled", "parent_cancelled"])
def test_taskgroup_with_driven_children_matches_asyncio(loop_name: str, variant: str) -> None:
    """Invariant: TaskGroup children driven by csp (parked in csp, awaiting Futures)
    fail, get cancelled by the group or from outside, swallow a cancellation and go on
    with csp operations, exactly as asyncio-stepped children: same messages, counts,
    exception group and parent outcome."""
    out = run_kinds(loop_name, _taskgroup_program(variant))
    actors, outcome = same(out)
    if variant == "child_fails":
        assert outcome == ("exception", ("ExceptionGroup", (
            "unhandled errors in a TaskGroup", [("ValueError", ("fails",))])))
        assert actors["swallows"] == [("start", 3), ("swallowed", (), 1), ("recv", 1)]
        assert actors["csp"] == [("start", 1), ("cancelled", (), 1)]
        assert actors["parent"][-1] == (
            "raised", ("ExceptionGroup", ["('ValueError', ('fails',))"]), 0)
    elif variant == "child_cancelled":
        assert actors["victim"] == [("start", 0), ("cancelled", ("k",), 1)]
        assert actors["parent"] == [(-1,), ("child outcome", ("pending",)), (
            "kids", [("cancelled", ("k",), ()), ("result", "csp")], 0)]
        assert outcome == ("result", "parent end")
    else:
        assert actors["parent"][-2:] == [("body cancelled", ("p",), 1),
                                         ("raised", ("CancelledError", ("p",)), 1)]
        assert outcome == ("cancelled", ("p",), ())


# anyio ---------------------------------------------------------------------------------


def _anyio_program(variant: str) -> Program:
    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        trace: list[Any] = []
        ch = csp.Chan[int]()
        never = csp.Chan[int]()
        box: list[Any] = []

        async def soon(v: Any) -> Any:
            f = loop.create_future()
            resolve_soon(f, v)
            return await f

        async def victim() -> str:
            t = me()
            trace.append(("first", await ch.recv()))
            if variant in ("cancel_at_csp", "cancel_at_future", "cancel_at_sleep0"):
                with anyio.CancelScope() as cs:
                    box.append(cs)
                    trace.append("in scope")
                    try:
                        if variant == "cancel_at_csp":
                            await never.recv()
                        elif variant == "cancel_at_future":
                            await loop.create_future()
                        else:
                            for _ in range(50):
                                await asyncio.sleep(0)
                    except asyncio.CancelledError as e:
                        trace.append(("cancelled", norm(e.args), t.cancelling()))
                        raise
                trace.append(("scope", cs.cancel_called, cs.cancelled_caught,
                              t.cancelling()))
            elif variant == "deadline_csp":
                with anyio.move_on_after(0.001) as cs:
                    await never.recv()
                trace.append(("moved on", cs.cancelled_caught, t.cancelling()))
            elif variant == "deadline_future":
                try:
                    with anyio.fail_after(0.001):
                        await loop.create_future()
                except TimeoutError:
                    trace.append(("timeout", t.cancelling()))
            elif variant == "shield":
                with anyio.CancelScope() as outer:
                    outer.cancel()
                    with anyio.CancelScope(shield=True):
                        # nothing here is cancelled: values all arrive
                        b = csp.Chan[int]()
                        aux = asyncio.create_task(_send_all(b, [1, 2]))
                        trace.append(("shielded", await b.recv(), await soon("f"),
                                      await asyncio.sleep(0, "s"), await b.recv()))
                        await aux
                    try:
                        await asyncio.sleep(0)
                        trace.append("not cancelled after the shield?!")
                    except asyncio.CancelledError as e:
                        trace.append(("cancelled after shield", norm(e.args),
                                      t.cancelling()))
                        raise
                trace.append(("outer", outer.cancelled_caught, t.cancelling()))
            elif variant == "recancel_loop":
                # anyio re-cancels the task at every loop iteration while it is in a
                # cancelled scope: a task that catches each CancelledError and keeps
                # awaiting gets one per suspension, never two, and loses no value
                got: list[Any] = []
                b = csp.Chan[int](1)
                with anyio.CancelScope() as cs:
                    cs.cancel()
                    for i in range(6):
                        try:
                            if i % 3 == 0:
                                got.append(await soon(i))
                            elif i % 3 == 1:
                                await b.send(i)  # buffered: does not suspend
                                got.append(await b.recv())
                                await asyncio.sleep(0)
                            else:
                                got.append(await never.recv())
                        except asyncio.CancelledError as e:
                            trace.append((i, "cancelled", norm(e.args), t.cancelling()))
                trace.append(("got", got, cs.cancelled_caught, t.cancelling()))
            elif variant == "task_group":
                async def kid(n: int) -> None:
                    kt = me()
                    trace.append(("kid", n, await ch.recv()))
                    try:
                        if n == 0:
                            await soon(None)
                            raise KeyError("kid")
                        if n == 1:
                            await never.recv()
                        else:
                            await loop.create_future()
                    except asyncio.CancelledError as e:
                        trace.append(("kid cancelled", n, norm(e.args), kt.cancelling()))
                        raise

                try:
                    async with anyio.create_task_group() as tg:
                        for n in range(3):
                            tg.start_soon(kid, n)
                        await asyncio.sleep(0)
                        for n in range(3):
                            await ch.send(n)
                        await never.recv()
                except BaseException as e:
                    trace.append(("group raised", _eg(e), t.cancelling()))
            # afterwards: a csp park and a Future, no stray cancellation
            b2 = csp.Chan[int]()
            aux2 = asyncio.create_task(b2.send(5))
            trace.append(("after", await b2.recv(), await soon("f"), t.cancelling()))
            await aux2
            return "end"

        v = start(kind, victim())
        await until(lambda: parked(v))
        await ch.send(0)
        check_driven(kind, v)
        if box or variant.startswith("cancel_at"):
            await until(lambda: "in scope" in trace)
            await spin(3)
            assert not v.done()
            box[0].cancel()
        await finish(v)
        return trace, outcome_of(v)

    return program


ANYIO_VARIANTS = ["cancel_at_csp", "cancel_at_future", "cancel_at_sleep0", "deadline_csp",
                  "deadline_future", "shield", "recancel_loop", "task_group"]


@pytest.mark.parametrize("variant", ANYIO_VARIANTS)
def test_anyio_scopes_around_driven_tasks_match_asyncio(loop_name: str, variant: str) -> None:
    """Invariant: anyio cancel scopes (cancel(), deadlines, shield=True) and task
    groups around csp operations and foreign awaits of a driven task give asyncio's
    trace: one CancelledError per suspension in a cancelled scope, none in a shielded
    one, none after the scope, no value lost, same cancelling() counts."""
    trace, outcome = same(run_kinds(loop_name, _anyio_program(variant)))
    assert outcome == ("result", "end")
    assert trace[-1] == ("after", 5, "f", 0)


async def _anyio_done_future_program(kind: str) -> Any:
    loop = asyncio.get_running_loop()
    ch = csp.Chan[int]()
    fut = loop.create_future()
    trace: list[Any] = []
    box: list[Any] = []

    async def victim() -> str:
        t = me()
        await ch.recv()
        with anyio.CancelScope() as cs:
            box.append(cs)
            try:
                trace.append(("fut", await fut, t.cancelling()))
                await asyncio.sleep(0)
                trace.append("slept")
            except asyncio.CancelledError:
                trace.append(("cancelled", t.cancelling()))
                raise
        trace.append(("scope", cs.cancelled_caught, t.cancelling()))
        return "end"

    v = start(kind, victim())
    await until(lambda: parked(v))
    await ch.send(0)
    check_driven(kind, v)
    await until(lambda: bool(box))
    await spin(3)
    fut.set_result(42)  # done; the victim's wake-up callback has not run yet
    box[0].cancel()
    await finish(v)
    return trace, outcome_of(v)


def test_anyio_cancel_keeps_value_of_future_already_done(loop_name: str) -> None:
    """Invariant (anyio on asyncio): a scope cancelled right after the Future its task
    awaits got its result does not take that value away: the task gets 42 and the
    cancellation at its next suspension."""
    trace, outcome = same(run_kinds(loop_name, _anyio_done_future_program))
    assert trace == [("fut", 42, 0), ("cancelled", 1), ("scope", True, 0)]
    assert outcome == ("result", "end")


# -- 5. KeyboardInterrupt / SystemExit from a driven coroutine ------------------------

KI_WHERE = ("csp", "future", "bare_yield", "after_cancel", "after_bad_yield")


def _interrupt_scenario(kind: str, loop_name: str, where: str,
                        exc_type: type[BaseException]) -> list[Any]:
    loop = loop_factory(loop_name)()
    loop.set_exception_handler(lambda _l, _c: None)  # go reports the "panic" too
    loop.set_task_factory(task_factory(kind))
    trace: list[Any] = []
    ch = csp.Chan[int]()
    by_ch = csp.Chan[int]()
    box: dict[str, Any] = {}

    async def victim() -> None:
        await ch.recv()
        await ch.recv()  # resumed by csp from here
        if where == "future":
            f = asyncio.get_running_loop().create_future()
            resolve_soon(f, None)
            await f
        elif where == "bare_yield":
            await asyncio.sleep(0)
        elif where == "after_cancel":
            me().cancel()
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                pass
        elif where == "after_bad_yield":
            try:
                await _yield_raw(42)
            except RuntimeError:
                pass
        raise exc_type("stop")

    async def bystander() -> str:
        got = [await by_ch.recv() for _ in range(4)]
        return f"bystander got {got}"

    async def main() -> str:
        t = start(kind, victim())
        b = start(kind, bystander())
        box.update(t=t, b=b)
        await until(lambda: parked(t))
        await ch.send(0)
        await until(lambda: parked(t))
        check_driven(kind, t)
        await by_ch.send(0)
        await ch.send(1)
        await by_ch.send(1)
        for _ in range(10):
            f = loop.create_future()
            resolve_soon(f, None)
            await f
        return "main returned"

    try:
        trace.append(("run returned", loop.run_until_complete(main())))
    except BaseException as e:
        trace.append(("run raised", norm(e)))
    t, b = box["t"], box["b"]
    trace.append(("victim", t.done(), norm(t.exception()) if t.done() else None))

    async def rest() -> Any:  # the loop is usable again: the others finish
        await by_ch.send(2)
        await by_ch.send(3)
        return await b

    trace.append(("rest", loop.run_until_complete(rest())))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    return trace


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("where", KI_WHERE)
def test_keyboard_interrupt_from_driven_coroutine_matches_asyncio(
        loop_name: str, where: str, exc_type: type[BaseException]) -> None:
    """Invariant (asyncio's): KeyboardInterrupt/SystemExit raised by a task's
    coroutine (in a step resumed by csp, by a Future, after a bare yield, after a
    cancellation, after a bad yield) is set on the task and propagates out of
    run_until_complete; the loop can be run again and the other tasks finish."""
    out = {kind: _interrupt_scenario(kind, loop_name, where, exc_type)
           for kind in kinds_for(loop_name)}
    trace = same(out)
    name = exc_type.__name__
    assert trace == [("run raised", (name, ("stop",))), ("victim", True, (name, ("stop",))),
                     ("rest", "bystander got [0, 1, 2, 3]")]


# -- 6. observability -------------------------------------------------------------------


def _observe_program(kind: str) -> Program:
    del kind

    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[int]()
        trace: list[Any] = []
        fut = loop.create_future()
        box: list[asyncio.Task[Any]] = []

        def inside(where: str) -> None:
            t = me()
            trace.append((where, "inside", t is box[0], _var.get(),
                          contextvars.copy_context()[_var], t in asyncio.all_tasks()))

        async def child() -> str:
            return _var.get()

        async def ag() -> Any:
            inside("agen")
            yield 1
            await asyncio.sleep(0)
            inside("agen resumed")
            yield 2

        async def victim() -> str:
            if not box:  # (an eager task runs this inside start())
                box.append(me())
            _var.set("v0")
            inside("start")
            await ch.recv()
            inside("after first park")
            _var.set("v1")
            await fut
            inside("after future")
            await asyncio.sleep(0)
            inside("after bare yield")
            async for _ in ag():
                pass
            _var.set("v2")
            trace.append(("child sees", await asyncio.create_task(child())))
            f2 = loop.create_future()
            f2.add_done_callback(lambda _f: trace.append(("callback sees", _var.get())))
            resolve_soon(f2, None)
            await f2
            await ch.recv()
            inside("after second park")
            return "end"

        def outside(where: str) -> None:
            t = box[0]
            trace.append((where, "outside", t.done(), t in asyncio.all_tasks(),
                          inspect.getcoroutinestate(t.get_coro()),
                          [f.f_code.co_name for f in t.get_stack()], _var.get()))

        coro = victim()
        t = start(kind, coro)
        if not box:
            box.append(t)
        assert box == [t]
        outside("created")
        await until(lambda: parked(t))
        outside("first park")
        check_driven(kind, t)
        await ch.send(0)
        await spin(3)
        outside("awaiting future")
        fut.set_result(None)
        await until(lambda: parked(t))
        check_driven(kind, t)
        outside("second park")
        await ch.send(1)
        await finish(t)
        outside("done")
        trace.append(("get_coro", t.get_coro() is coro))
        return trace, outcome_of(t)

    return program


def _as_asyncio_shows(kind: str, trace: list[Any]) -> list[Any]:
    """A goroutine's trace with the accepted difference of a goroutine's Task (API.md
    guarantees it for the Tasks csp did not create) turned into asyncio's: its
    coroutine is csp's driver (``get_coro()`` is not the user's coroutine; the driver
    shows the user's frame, so ``get_stack()`` is asyncio's)."""
    if not is_goroutine(kind):
        return trace
    out = []
    for e in trace:
        if e[0] == "get_coro":
            assert e == ("get_coro", False)  # the driver, not the user's coroutine
            e = ("get_coro", True)
        out.append(e)
    return out


def test_current_task_context_and_introspection_match_asyncio(loop_name: str) -> None:
    """Invariant: inside a goroutine current_task() is its Task and contextvars are
    its own (set before and after the first park, seen by children it creates and by
    callbacks it registers, inside async generators); from outside, done(),
    all_tasks(), get_stack() and the coroutine's state are asyncio's. (``get_coro()``
    is csp's driver: see _as_asyncio_shows.)"""
    out = run_kinds(loop_name, _observe_program(""))
    trace, outcome = same({k: (_as_asyncio_shows(k, t), o) for k, (t, o) in out.items()})
    assert outcome == ("result", "end")
    assert trace == [
        ("created", "outside", False, True, "CORO_CREATED", ["victim"], "unset"),
        ("start", "inside", True, "v0", "v0", True),
        ("first park", "outside", False, True, "CORO_SUSPENDED", ["victim"], "unset"),
        ("after first park", "inside", True, "v0", "v0", True),
        ("awaiting future", "outside", False, True, "CORO_SUSPENDED", ["victim"], "unset"),
        ("after future", "inside", True, "v1", "v1", True),
        ("after bare yield", "inside", True, "v1", "v1", True),
        ("agen", "inside", True, "v1", "v1", True),
        ("agen resumed", "inside", True, "v1", "v1", True),
        ("child sees", "v2"),
        ("callback sees", "v2"),
        ("second park", "outside", False, True, "CORO_SUSPENDED", ["victim"], "unset"),
        ("after second park", "inside", True, "v2", "v2", True),
        ("done", "outside", True, False, "CORO_CLOSED", [], "unset"),
        ("get_coro", True),
    ]


def test_goroutine_get_coro_is_its_driver_showing_the_users_coroutine() -> None:
    """A goroutine's Task steps csp's driver: get_coro() is the driver (a coroutine as
    far as asyncio is concerned), which shows the user's coroutine (name, frame, code,
    state) and holds it."""
    async def main() -> None:
        async def work() -> None:
            await csp.Chan[int]().recv()

        coro = work()
        t = csp.go(coro)
        await asyncio.sleep(0)
        g = t.get_coro()
        assert g is not coro and asyncio.iscoroutine(g)
        assert g is _sched.scheduler().goroutines[t] and g.coro is coro  # type: ignore[union-attr]
        assert g.__qualname__ == coro.__qualname__  # type: ignore[union-attr]
        assert g.cr_frame is coro.cr_frame and g.cr_code is coro.cr_code  # type: ignore[union-attr]
        assert inspect.getcoroutinestate(g) == "CORO_SUSPENDED"  # type: ignore[arg-type]
        assert weakref.ref(g)() is g  # as a coroutine object is weakly referenceable
        t.cancel()
        await asyncio.wait([t])

    asyncio.run(main())


async def _blocked_program(kind: str) -> Any:
    ch = csp.Chan[int]()

    async def victim() -> None:
        await ch.recv()
        await ch.recv()  # parked again: csp drives a goroutine now

    t = start(kind, victim())
    await anyio.wait_all_tasks_blocked()
    await ch.send(0)
    async with asyncio.timeout(2):
        await anyio.wait_all_tasks_blocked()  # returns: the task is parked
    check_driven(kind, t)
    seen = (t._fut_waiter.done(), parked(t))  # type: ignore[attr-defined]
    await ch.send(1)
    await finish(t)
    return seen


def test_parked_goroutine_counts_as_blocked_for_anyio(loop_name: str) -> None:
    """Invariant (asyncio's): a task parked on a pending operation has a ``_fut_waiter``
    that is not done (anyio's ``wait_all_tasks_blocked()`` asks it); for a goroutine
    csp drives, that is its proxy, done exactly while the goroutine is runnable."""
    assert same(run_kinds(loop_name, _blocked_program)) == (False, True)


def _stack_program(fut: str) -> Program:
    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[int]()
        out: list[Any] = []

        def names(t: asyncio.Task[Any]) -> list[str]:
            # the coroutine's frames and csp's (the loop's own frames differ by loop)
            return [f.f_code.co_name for f in t.get_stack()
                    if f.f_code.co_filename.startswith(CSP_DIR)
                    or f.f_code.co_name in ("victim", "inner")]

        async def inner() -> None:
            f = new_future(loop, fut)
            resolve_soon(f, None)
            await f
            out.append(("running, woken by a Future", names(me())))
            f = new_future(loop, fut)
            resolve_soon(f, None)
            await f
            raise ValueError("x")

        async def victim() -> None:
            await ch.recv()
            await inner()

        t = start(kind, victim())
        await until(lambda: parked(t))
        await ch.send(0)
        await finish(t)
        assert isinstance(t.exception(), ValueError)  # retrieved: nothing logged at gc
        out.append(("failed", names(t)))
        buf = io.StringIO()
        t.print_stack(file=buf)
        out.append(("print_stack mentions csp", CSP_DIR in buf.getvalue()))
        return out

    return program


@pytest.mark.parametrize("fut", ["c", "py"])
def test_get_stack_of_goroutine_shows_the_users_frames_as_a_plain_tasks(
        loop_name: str, fut: str) -> None:
    """get_stack()/print_stack() of a plain Task are asyncio's (its own frames, while
    it runs after a Future woke it and once it failed). A goroutine's coroutine is its
    driver, which shows the user's coroutine (``cr_frame``), so the same user frames
    appear; csp's own frames (the driver's step) stand beneath them while it runs and
    in the traceback it failed with, where a plain Task shows asyncio's loop frames."""
    out = run_kinds(loop_name, _stack_program(fut))
    goroutines = {k: out.pop(k) for k in list(out) if is_goroutine(k)}
    assert same(out) == [("running, woken by a Future", ["victim"]),
                         ("failed", ["victim", "inner"]), ("print_stack mentions csp", False)]
    for trace in goroutines.values():
        user = [(what, [n for n in names if n in ("victim", "inner")])
                for what, names in trace[:2]]
        assert user == [("running, woken by a Future", ["victim"]),
                        ("failed", ["victim", "inner"])]
        assert trace[1][1][0] != "body"  # no wrapper coroutine any more


def _paths(s: str) -> str:
    """A repr with this file as TEST, csp's directory as CSP/, line numbers as L and
    goroutine ids as N."""
    s = re.sub(r"\.py:\d+", ".py:L", s)
    s = s.replace(__file__, "TEST").replace(CSP_DIR, "CSP/")
    return re.sub(r"csp goroutine \d+", "csp goroutine N", s)


def _repr_program(kind: str) -> Program:
    del kind

    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[int]()
        fut = loop.create_future()
        reprs: dict[str, str] = {}

        async def victim() -> str:
            await ch.recv()
            await ch.recv()
            await fut  # the Task takes its coroutine back (asyncio steps it)
            reprs["running, a Task step"] = repr(me())
            await ch.recv()  # driven again
            reprs["running, a csp step"] = repr(me())
            return "end"  # ends in a step csp resumed

        t = start(kind, victim())
        await until(lambda: parked(t))
        await ch.send(0)
        await until(lambda: parked(t))
        reprs["parked"] = repr(t)
        await ch.send(1)
        reprs["runnable"] = repr(t)  # woken, not resumed yet
        await spin(3)
        reprs["awaiting a Future"] = repr(t)
        fut.set_result(None)
        await until(lambda: parked(t))
        await ch.send(2)
        await finish(t)
        reprs["done"] = repr(t)
        return {k: _paths(norm(v)) for k, v in reprs.items()}

    return program


_V = "<Task {} name='Task-N' coro=<_repr_program.<locals>.program.<locals>.victim() {}>"


def test_repr_of_goroutine_task_shows_csp_state(loop_name: str) -> None:
    """repr(task) of a plain Task is asyncio's at every point. A goroutine's is the
    same (its coroutine is its driver, which shows the user's coroutine: name, file,
    line, state), except that while csp drives it the Task waits for the goroutine
    itself, which says what it is parked on or that it is runnable."""
    out = run_kinds(loop_name, _repr_program(""))
    goroutines = {k: out.pop(k) for k in list(out) if is_goroutine(k)}
    here = "running at TEST:L"
    assert same(out) == {
        "parked": _V.format("pending", here) + " wait_for=<csp waiter 'chan receive' pending>>",
        "runnable": _V.format("pending", here) + " wait_for=<csp waiter 'chan receive' done>>",
        "awaiting a Future": _V.format("pending", here)
        + " wait_for=<Future pending cb=[Task.task_wakeup()]>>",
        "running, a Task step": _V.format("pending", here) + ">",
        "running, a csp step": _V.format("pending", here) + " cb=[_wait."
        f"<locals>._on_completion() at {asyncio.tasks.__file__}:L]>",
        "done": _V.format("finished", "done, defined at TEST:L") + " result='end'>",
    }
    g = "wait_for=<csp goroutine N _repr_program.<locals>.program.<locals>.victim() "
    for reprs in goroutines.values():
        assert reprs == {
            "parked": _V.format("pending", here) + f" {g}parked on 'chan receive'>>",
            "runnable": _V.format("pending", here) + f" {g}runnable>>",
            "awaiting a Future": _V.format("pending", here)
            + " wait_for=<Future pending cb=[Task.task_wakeup()]>>",
            "running, a Task step": _V.format("pending", here) + ">",
            "running, a csp step": _V.format("pending", here) + f" {g}runnable> cb=[_wait."
            f"<locals>._on_completion() at {asyncio.tasks.__file__}:L]>",
            "done": _V.format("finished", "done, defined at TEST:L") + " result='end'>",
        }


async def _callbacks_program(kind: str) -> Any:
    ch = csp.Chan[int]()
    order: list[Any] = []

    def cb(name: str) -> Callable[[asyncio.Task[Any]], None]:
        def f(t: asyncio.Task[Any]) -> None:
            order.append((name, t.done(), asyncio.current_task() is None,
                          outcome_of(t)))
        return f

    removed = cb("removed")

    async def victim() -> str:
        await ch.recv()
        me().add_done_callback(cb("inside, driven"))
        await ch.recv()
        return "end"

    t = start(kind, victim())
    t.add_done_callback(cb("before first park"))
    t.add_done_callback(removed)
    await until(lambda: parked(t))
    await ch.send(0)
    await until(lambda: parked(t))
    check_driven(kind, t)
    t.add_done_callback(cb("parked, driven"))
    order.append(("removed", t.remove_done_callback(removed)))
    await ch.send(1)
    await finish(t)
    t.add_done_callback(cb("after done"))
    await spin(2)
    return order


def test_done_callbacks_run_in_order_like_asyncio(loop_name: str) -> None:
    """Invariant: done callbacks added before the first park, from inside once driven,
    while parked, and after the end run in the order they were added, once, outside
    any task, seeing the task done; remove_done_callback works on a driven task."""
    order = same(run_kinds(loop_name, _callbacks_program))
    assert order == [("removed", 1)] + [
        (name, True, True, ("result", "end"))
        for name in ("before first park", "inside, driven", "parked, driven", "after done")]


def _awaiters_program(end: str) -> Program:
    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[int]()
        fut = loop.create_future()
        seen: list[Any] = []

        async def victim() -> str:
            t = me()
            await ch.recv()
            if end == "self_cancel_return":
                t.cancel("self")
                return "ignored"
            try:
                await fut
            finally:
                seen.append(("victim left", t.cancelling()))
            if end == "raise":
                raise KeyError("k")
            return "end"

        t = start(kind, victim())

        async def waiter(how: str) -> None:
            try:
                if how == "await":
                    r = await t
                elif how == "wait_for":
                    r = await asyncio.wait_for(t, 10)
                elif how == "shield":
                    r = await asyncio.shield(t)
                elif how == "gather":
                    r = await asyncio.gather(t)
                else:  # a goroutine awaiting it
                    r = await csp.go(_await_task(t))
                seen.append((how, "value", norm(r)))
            except BaseException as e:
                seen.append((how, "raised", norm(e)))

        ws = [asyncio.create_task(waiter(h))
              for h in ("await", "wait_for", "shield", "gather", "go")]
        await until(lambda: parked(t))
        check_driven(kind, t)
        await ch.send(0)
        await spin(3)
        if end == "result" or end == "raise":
            fut.set_result(None)
        elif end == "cancelled":
            t.cancel("c")
        await finish(t, *ws)
        return sorted(seen, key=repr), outcome_of(t), [outcome_of(w) for w in ws]

    return program


async def _await_task(t: asyncio.Task[Any]) -> Any:
    return await t


_AWAITERS = ("await", "gather", "go", "shield", "wait_for")


def _awaiters_expected(end: str) -> tuple[list[Any], Any]:
    """What asyncio shows the awaiters of a task that ends so (the first to retrieve a
    CancelledError gets the one the task raised, the others a new one; shield's
    outer future is cancelled without a message)."""
    if end == "result":
        seen = [(h, "value", ["end"] if h == "gather" else "end") for h in _AWAITERS]
        return sorted([*seen, ("victim left", 0)], key=repr), ("result", "end")
    if end == "raise":
        seen = [(h, "raised", ("KeyError", ("k",))) for h in _AWAITERS]
        return (sorted([*seen, ("victim left", 0)], key=repr),
                ("exception", ("KeyError", ("k",))))
    if end == "cancelled":
        seen = [(h, "raised", ("CancelledError", ("c",) if h == "await" else ()))
                for h in _AWAITERS]
        return sorted([*seen, ("victim left", 1)], key=repr), ("cancelled", (), ())
    seen = [(h, "raised", ("CancelledError", () if h == "shield" else ("self",)))
            for h in _AWAITERS]
    return sorted(seen, key=repr), ("cancelled", ("self",), ("self",))


@pytest.mark.parametrize("end", ["result", "raise", "cancelled", "self_cancel_return"])
def test_several_awaiters_see_what_asyncio_shows(loop_name: str, end: str) -> None:
    """Invariant: tasks awaiting a goroutine (await, wait_for, shield, gather, and a
    goroutine awaiting it) all see its result, its exception or its cancellation
    (with asyncio's messages: a task that called ``cancel("self")`` and then returned
    without suspending shows "self" to every awaiter) as for a Task asyncio steps."""
    seen, outcome, waiters = differential(loop_name, _awaiters_program(end))
    assert (seen, outcome) == _awaiters_expected(end)
    assert waiters == [("result", None)] * len(_AWAITERS)


# garbage ------------------------------------------------------------------------------


def _gc_program(how: str) -> Program:
    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        logged: list[str] = []
        loop.set_exception_handler(lambda _l, c: logged.append(c["message"]))
        ch = csp.Chan[int]()
        fut = new_future(loop, "py" if how.endswith("py_future") else "c")

        async def victim() -> str:
            await ch.recv()
            await ch.recv()  # resumed by csp
            if how.endswith("future"):
                await fut  # resumed by the Future's callback
            if how.startswith("raise"):
                raise ValueError("v")
            if how.startswith("cancel"):
                await ch.recv()  # cancelled here
            return "end"

        coro = victim()
        coro_ref = weakref.ref(coro)
        box = [start(kind, coro)]
        del coro
        await until(lambda: parked(box[0]))
        await ch.send(0)
        await until(lambda: parked(box[0]))
        await ch.send(1)
        await spin(2)
        fut.set_result(None)
        if how.startswith("cancel"):
            await until(lambda: parked(box[0]))
            box[0].cancel()
        await finish(box[0])
        await spin(2)  # its done callbacks ran
        # (a plain task's exception is not retrieved: asyncio logs it when it is freed)
        ref = weakref.ref(box.pop())
        freed = ref() is None and coro_ref() is None  # the Task, and the user's coroutine
        return freed, [m for m in logged if "never retrieved" in m]

    return program


def _gc_run3(loop_name: str, how: str) -> dict[str, Any]:
    gc.collect()
    gc.disable()
    # A log record kept by pytest's capture would hold the exception, hence the task
    # (a goroutine's report, if it is logged).
    logging.disable(logging.CRITICAL)
    try:
        return {kind: run_kind(kind, loop_name, _gc_program(how)) for kind in ("go", "task")}
    finally:
        logging.disable(logging.NOTSET)
        gc.enable()
        gc.collect()


# (3.12+ links a finished coroutine's frame to its caller's through f_back: no frame of
# csp's driver or of a TaskWake may hold the Task or the exception past the step)
@pytest.mark.parametrize("how", [
    "return_after_csp", "raise_after_csp", "return_after_future", "raise_after_future",
    "return_after_py_future", "raise_after_py_future", "cancel_after_csp",
    "cancel_after_future",
])
def test_finished_driven_task_freed_by_refcount(loop_name: str, how: str) -> None:
    """Invariant (asyncio's): with the cyclic GC disabled, a finished task nobody
    references is freed at once, and so is its coroutine (a goroutine's driver frame
    once kept the traceback of an exception raised, or a cancellation delivered, while
    csp drove it: a frame <-> traceback cycle); a plain task's unretrieved exception is
    logged then (goroutines report theirs at the end instead)."""
    out = _gc_run3(loop_name, how)
    assert out["go"] == (True, [])
    expect_log = ["Task exception was never retrieved"] if how.startswith("raise") else []
    assert out["task"] == (True, expect_log)


# -- later CPythons --------------------------------------------------------------------


def test_goroutine_panic_reaches_custom_exception_handler(loop_name: str) -> None:
    """Invariant (API: outside csp.run an exception escaping a goroutine goes to the
    loop's exception handler as soon as the goroutine ends): also with a custom
    handler, on every CPython (3.12+ runs a custom handler in the task's context: the
    report must not be made from inside that context)."""
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        loop.set_exception_handler(
            lambda _l, c: seen.append(f"{c['message']}: {c.get('exception')!r}"))
        ch = csp.Chan[int]()

        async def bad() -> None:
            await ch.recv()
            raise ValueError("boom")

        t = csp.go(bad)
        await ch.send(1)
        await asyncio.wait([t])
        await spin(2)
        return seen

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as r:
        assert r.run(main()) == ["Exception in goroutine: ValueError('boom')"]


@pytest.mark.skipif(not EAGER, reason="eager tasks are new in 3.12")
def test_eager_task_parked_in_its_eager_step_matches_asyncio(loop_name: str) -> None:
    """Invariant: with an eager task factory (3.12+), a goroutine whose eager first
    step parks in csp is driven from there like any other and behaves as an eager
    asyncio Task; a plain eager Task parked in csp is stepped by asyncio."""
    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[int]()
        trace: list[Any] = []
        fut = loop.create_future()

        async def victim(n: int) -> int:
            t = me()
            trace.append((n, "eager start", asyncio.current_task() is t))
            v = await ch.recv()  # parks during the eager step
            trace.append((n, "recv", v, asyncio.current_task() is t))
            trace.append((n, "fut", await fut))
            trace.append((n, "recv", await ch.recv()))
            return n

        ts = [start(kind, victim(0)), asyncio.create_task(victim(1))]
        trace.append(("created", [t.done() for t in ts]))
        check_driven(kind, ts[0])
        for i in range(2):
            await ch.send(10 + i)
        await spin(3)
        fut.set_result("f")
        t3 = asyncio.create_task(victim(2))  # eager: parks at once, inside this step
        trace.append(("t3 parked", parked(t3), driven(t3)))
        for i in range(4):
            await ch.send(20 + i)
        await finish(*ts, t3)
        return trace, [outcome_of(t) for t in (*ts, t3)]

    if "eager" not in kinds_for(loop_name):
        pytest.skip("uvloop passes eager_start= to the task factory, which CPython "
                    "3.13.0's create_eager_task_factory() does not accept (not csp)")
    out = run_kinds(loop_name, program, kinds=("go_eager", "eager"))
    assert out["go_eager"] == out["eager"]
    trace, outcomes = out["eager"]
    assert outcomes == [("result", 0), ("result", 1), ("result", 2)]
    assert trace[:3] == [(0, "eager start", True), (1, "eager start", True),
                         ("created", [False, False])]
    assert ("t3 parked", True, False) in trace


# -- 7. randomized: channels and foreign awaits under cancellation ---------------------


def _fuzz_program(seed: int, bare_yields: bool) -> Program:
    """Producers send unique ids over csp channels (plain send, select, or through an
    asyncio.Queue and a relay task), consumers receive them (recv, select, or under an
    ``asyncio.timeout(0)`` that expires at the next iteration); between operations
    everyone awaits foreign things (Futures resolved by a loop callback, C or
    pure-Python, an Event, another Task, gather, and, with ``bare_yields``,
    sleep(0)). A chaos task (never driven: it does not touch csp) cancels random
    workers; workers catch every cancellation, uncancel() and go on. Nothing uses the
    clock: for a given kind, a seed always runs the same way."""

    async def program(kind: str) -> Any:
        rnd = random.Random(seed)
        random.seed(seed)  # csp.select's choices (the module's global generator)
        loop = asyncio.get_running_loop()
        chans = [csp.Chan[int](rnd.choice([0, 0, 1, 2])) for _ in range(rnd.randint(1, 3))]
        relay_q: asyncio.Queue[int | None] = asyncio.Queue()
        trace: list[Any] = []
        sent: list[int] = []
        received: list[int] = []
        stats = Counter[str]()
        ids = iter(range(10**6))
        giving_up: list[bool] = []

        async def foreign(r: random.Random, who: str) -> None:
            k = r.choice([0, 1, 2, 3, 5, 4] if bare_yields else [0, 1, 2, 3, 5])
            if k == 0:
                f = loop.create_future()
                resolve_soon(f, None)
                await f
            elif k == 1:
                e = asyncio.Event()
                loop.call_soon(e.set)
                await e.wait()
            elif k == 2:
                await asyncio.create_task(_ret_after(None, 0))
            elif k == 3:
                f1, f2 = loop.create_future(), loop.create_future()
                resolve_soon(f1, 1)
                resolve_soon(f2, 2)
                await asyncio.gather(f1, f2)
            elif k == 5:  # a pure-Python Future (the Task awaits it)
                f = new_future(loop, "py")
                resolve_soon(f, None)
                await f
            else:
                await asyncio.sleep(0)
            stats[f"foreign {k}"] += 1

        async def producer(name: str, r: random.Random, n: int) -> None:
            t = me()
            for _ in range(n):
                v = next(ids)
                try:
                    if r.random() < 0.5:
                        await foreign(r, name)
                    mode = r.random()
                    if mode < 0.4:
                        await r.choice(chans).send(v)
                    elif mode < 0.8:
                        await csp.select((r.choice(chans).send, v), (r.choice(chans).send, v))
                    else:
                        relay_q.put_nowait(v)  # the relay owns it now
                    sent.append(v)
                    trace.append((name, "sent", v))
                except asyncio.CancelledError as e:
                    if giving_up:
                        raise
                    t.uncancel()
                    stats["producer cancelled"] += 1
                    trace.append((name, "cancelled", v, norm(e.args)))

        async def relay() -> None:
            t = me()
            while True:
                try:
                    v = await relay_q.get()
                except asyncio.CancelledError:
                    if giving_up:
                        raise
                    t.uncancel()
                    stats["relay cancelled"] += 1
                    continue
                if v is None:
                    return
                while True:  # the value is ours: retry until it is handed over
                    try:
                        await chans[0].send(v)
                        trace.append(("relay", "sent", v))
                        break
                    except asyncio.CancelledError:
                        if giving_up:
                            raise
                        t.uncancel()
                        stats["relay cancelled"] += 1

        async def consumer(name: str, r: random.Random) -> None:
            t = me()
            open_chans = list(chans)
            while open_chans:
                try:
                    if r.random() < 0.3:
                        await foreign(r, name)
                    mode = r.random()
                    # (a blocking receive always listens to every open channel: the
                    # relay may only be able to send on one)
                    if mode < 0.2:
                        i, res = await csp.select(*[c.recv_ok for c in open_chans],
                                                  default=True)
                        if i < 0:
                            await foreign(r, name)
                            continue
                        c, (v, ok) = open_chans[i], res
                    elif mode < 0.7:
                        i, (v, ok) = await csp.select(*[c.recv_ok for c in open_chans])
                        c = open_chans[i]
                    else:
                        c = r.choice(open_chans)
                        try:
                            async with asyncio.timeout(0):
                                v, ok = await c.recv_ok()
                        except TimeoutError:
                            stats["consumer timeout"] += 1
                            trace.append((name, "timeout"))
                            continue
                    if ok:
                        received.append(v)
                        trace.append((name, "got", v))
                    else:
                        open_chans.remove(c)
                except asyncio.CancelledError as e:
                    if giving_up:
                        raise
                    t.uncancel()
                    stats["consumer cancelled"] += 1
                    trace.append((name, "cancelled", norm(e.args)))

        producers = [start(kind, producer(f"p{i}", random.Random(rnd.random()),
                                           rnd.randint(5, 25)))
                     for i in range(rnd.randint(1, 3))]
        consumers = [start(kind, consumer(f"c{i}", random.Random(rnd.random())))
                     for i in range(rnd.randint(1, 3))]
        relayer = start(kind, relay())
        workers = [*producers, *consumers, relayer]

        async def chaos() -> None:
            while not all(p.done() for p in producers):
                live = [w for w in workers if not w.done()]
                for _ in range(rnd.choice([1, 1, 2])):
                    rnd.choice(live).cancel(rnd.choice([None, "chaos"]))
                    stats["chaos"] += 1
                for _ in range(rnd.randint(0, 4)):
                    await asyncio.sleep(0)

        try:
            async with asyncio.timeout(5):
                chaos_task = asyncio.create_task(chaos())
                await asyncio.wait(producers)
                await chaos_task
                relay_q.put_nowait(None)
                await asyncio.wait([relayer])
                for c in chans:
                    c.close()
                await asyncio.wait(consumers)
        except TimeoutError:
            hung = [norm(repr(w)) for w in workers if not w.done()]
            giving_up.append(True)  # workers stop catching cancellations
            for w in workers:
                w.cancel()
            await asyncio.wait(workers)
            raise AssertionError(("hangs", seed, kind, hung, [repr(c) for c in chans],
                                  trace[-10:])) from None
        for w in workers:
            assert not w.cancelled() and w.exception() is None, w
        return {"trace": trace, "sent": sent, "received": received, "stats": stats,
                "chans": [repr(c) for c in chans]}

    return program


def _fuzz_check(out: dict[str, Any], seed: int) -> None:
    sent, received = out["sent"], out["received"]
    dup = [v for v, n in Counter(received).items() if n > 1]
    assert dup == [], (seed, dup)
    assert sorted(received) == sorted(sent), (
        seed, sorted(set(sent) - set(received)), sorted(set(received) - set(sent)))
    assert all("len=0 recv_waiters=0 send_waiters=0 closed" in c for c in out["chans"]), (
        seed, out["chans"])


def _fuzz_seed(loop_name: str, seed: int, bare_yields: bool, totals: Counter[str]) -> None:
    out = run_kinds(loop_name, _fuzz_program(seed, bare_yields))
    for kind in out:
        _fuzz_check(out[kind], seed)
        totals.update(out[kind]["stats"])
        totals["values"] += len(out[kind]["sent"])
    for kind, got in out.items():
        # a Task subclass runs exactly as a plain Task, event by event; goroutines
        # too, unless they bare-yield (Go's order: see
        # test_bare_yield_resumes_after_later_callbacks_like_asyncio)
        if bare_yields and is_goroutine(kind):
            continue
        assert got["trace"] == out[REFERENCE[kind]]["trace"], (seed, kind)


@pytest.mark.slow
@pytest.mark.parametrize("bare_yields", [False, True])
def test_random_driven_programs_lose_nothing_and_match_asyncio(
        loop_name: str, bare_yields: bool) -> None:
    """Invariant: under random cancellations, every value whose send returned is
    received exactly once and no other; plain Tasks driven by csp run event by event
    as asyncio runs them, for the same seed; goroutines too, unless they bare-yield
    (whose order they change, by design)."""
    totals = Counter[str]()
    for seed in range(1000):
        _fuzz_seed(loop_name, seed, bare_yields, totals)
    for key in ("producer cancelled", "consumer cancelled", "relay cancelled",
                "consumer timeout", "chaos", "foreign 0", "foreign 1", "foreign 2",
                "foreign 3", "foreign 5"):
        assert totals[key] > 50, (key, totals)
    if bare_yields:
        assert totals["foreign 4"] > 50, totals


def test_random_driven_program_smoke(loop_name: str) -> None:
    """Two seeds of the same fuzz in the default suite (same invariants)."""
    totals = Counter[str]()
    for seed in (1, 2):
        _fuzz_seed(loop_name, seed, False, totals)
    assert totals["values"] > 0 and totals["chaos"] > 0


# -- exceptions handled by the coroutine do not leak into the rest of its step --------


def _exc_context_program(source: str) -> Program:
    async def program(kind: str) -> Any:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[int]()
        out: list[Any] = []

        async def victim() -> str:
            await ch.recv()
            try:
                if source.endswith("future_exception"):
                    f = new_future(loop, "py" if source.startswith("py") else "c")
                    loop.call_soon(f.set_exception, KeyError("k"))
                    await f
                elif source.endswith("future_cancelled"):
                    f = new_future(loop, "py" if source.startswith("py") else "c")
                    loop.call_soon(f.cancel)
                    await f
                else:
                    await asyncio.create_task(_raise_after(KeyError("k"), 1))
            except (KeyError, asyncio.CancelledError) as e:
                out.append(("caught", type(e).__name__))
            out.append(("exc_info after the handler", repr(sys.exc_info()[1])))
            try:
                raise ValueError("v")
            except ValueError as e:
                out.append(("__context__ of a later exception", repr(e.__context__)))
            return "end"

        t = start(kind, victim())
        await until(lambda: parked(t))
        await ch.send(0)
        check_driven(kind, t)
        await finish(t)
        return out, outcome_of(t)

    return program


@pytest.mark.parametrize("source", [
    "future_exception", "future_cancelled", "task_failing",
    "py_future_exception", "py_future_cancelled",
])
def test_handled_exception_does_not_leak_into_the_step(loop_name: str, source: str) -> None:
    """Invariant (Python's, asyncio's): an exception the coroutine caught and handled
    is no longer the current exception after its handler, and does not become the
    __context__ of the next exception raised."""
    out, outcome = same(run_kinds(loop_name, _exc_context_program(source)))
    assert out[1:] == [("exc_info after the handler", "None"),
                       ("__context__ of a later exception", "None")]
    assert outcome == ("result", "end")


# -- self-cancellation and cancellation by another task, in CSP mode ------------------
#
# Each body first parks once on a csp channel, so that a goroutine is from then on
# resumed straight from the run queue (its Task stays parked on its proxy); then it
# cancels itself, or another task cancels it while it waits in a bare yield or parked
# in csp. The observable trace (what each await returned or raised, the message,
# ``cancelling()``) and the task's outcome must be asyncio's.

Body = Callable[[csp.Chan[int], list[Any], list[Any]], Awaitable[Any]]


def _body_program(body: Body, action: Callable[..., Awaitable[None]] | None = None,
                  feed: int = 3) -> Program:
    async def program(kind: str) -> Any:
        ch = csp.Chan[int]()
        trace: list[Any] = []
        box: list[Any] = []
        t = start(kind, body(ch, trace, box))
        await until(lambda: parked(t))
        await ch.send(100)  # from now on a goroutine is resumed by csp
        if action is not None:
            await action(kind, t, trace, box)
        for i in range(feed):
            await spin(10)
            if t.done():
                break
            try:
                async with asyncio.timeout(2.0):
                    await ch.send(i)
            except TimeoutError:
                trace.append(("driver: nobody received", i))
        await finish(t)
        return trace, outcome_of(t)

    return program


# -- self-cancel during a direct resumption ------------------------------------------


async def b_msg_then_csp_park(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> None:
    await ch.recv()
    me().cancel("bye")
    try:
        await ch.recv()
        trace.append("recv returned")
    except asyncio.CancelledError as e:
        trace.append(("cancelled at recv", e.args, me().cancelling()))
        raise


async def b_msg_then_sleep0(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> None:
    await ch.recv()
    me().cancel("bye")
    try:
        await asyncio.sleep(0)
        trace.append("sleep returned")
    except asyncio.CancelledError as e:
        trace.append(("cancelled at sleep(0)", e.args))
        raise


async def b_msg_then_future(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> None:
    await ch.recv()
    me().cancel("bye")
    try:
        await asyncio.sleep(0.001)
        trace.append("sleep returned")
    except asyncio.CancelledError as e:
        trace.append(("cancelled at sleep", e.args))
        raise


async def b_msg_then_raise(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> None:
    await ch.recv()
    me().cancel("bye")
    raise KeyError("boom")  # an exception wins over the pending cancel


async def b_cancel_uncancel_then_park(ch: csp.Chan[int], trace: list[Any],
                                      box: list[Any]) -> str:
    await ch.recv()
    t = me()
    t.cancel()
    trace.append(("uncancel", t.uncancel()))
    try:  # 3.11: uncancel() does not withdraw _must_cancel; still raised here
        await ch.recv()
        trace.append("recv returned")
    except asyncio.CancelledError:
        trace.append(("cancelled", t.cancelling()))
    trace.append(("recv", await ch.recv()))
    return "done"


async def b_twice_catch_continue(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> int:
    await ch.recv()
    t = me()
    t.cancel("a")
    t.cancel("b")
    for _ in range(3):
        try:
            trace.append(("recv", await ch.recv()))
        except asyncio.CancelledError as e:
            trace.append(("cancelled", e.args, t.cancelling()))
    return t.cancelling()


async def b_nonblocking_ops_do_not_raise(ch: csp.Chan[int], trace: list[Any],
                                         box: list[Any]) -> int:
    await ch.recv()
    t = me()
    buf = csp.Chan[int](2)
    mu = csp.Mutex()
    t.cancel()
    await buf.send(1)  # none of these suspends: no CancelledError yet
    trace.append(("recv", await buf.recv()))
    trace.append(("select", await csp.select(buf.recv, default=True)))
    async with mu:
        trace.append("locked")
    await mu.lock()
    mu.unlock()
    trace.append(repr(mu))
    try:
        await ch.recv()  # the first suspension
        trace.append("recv returned")
    except asyncio.CancelledError:
        trace.append(("cancelled at park", t.cancelling()))
    trace.append(("recv", await ch.recv()))  # only once
    return t.cancelling()


async def b_nonblocking_then_return(ch: csp.Chan[int], trace: list[Any],
                                    box: list[Any]) -> int:
    await ch.recv()
    buf = csp.Chan[int](1)
    me().cancel()
    await buf.send(1)
    trace.append(await buf.recv())
    return 7  # Task semantics: cancelled right before it returned


async def b_in_timeout_block(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> int:
    await ch.recv()
    t = me()
    try:
        async with asyncio.timeout(5):
            t.cancel()
            await ch.recv()
            trace.append("recv returned")
    except asyncio.CancelledError:
        trace.append(("cancelled (not a timeout)", t.cancelling()))
    except TimeoutError:
        trace.append("timeout")
    trace.append(("uncancel", t.uncancel()))
    trace.append(("recv", await ch.recv()))
    return t.cancelling()


async def b_timeout_expires(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> int:
    await ch.recv()
    t = me()
    never = csp.Chan[int]()
    try:
        async with asyncio.timeout(0.002):
            await never.recv()
    except TimeoutError:
        trace.append(("timeout", t.cancelling()))
    trace.append(("recv", await ch.recv()))
    return t.cancelling()


async def b_catch_sleep0_loop(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> int:
    await ch.recv()
    t = me()
    t.cancel("x")
    slept = 0
    for i in range(5):
        try:
            await csp.gosched()
            slept += 1
        except asyncio.CancelledError as e:
            trace.append(("cancelled", i, e.args, t.cancelling()))
    trace.append(("slept", slept))
    return await ch.recv() or 0


async def b_done_future_then_sleep0(ch: csp.Chan[int], trace: list[Any],
                                    box: list[Any]) -> None:
    await ch.recv()
    f = asyncio.get_running_loop().create_future()
    f.set_result(3)
    me().cancel()
    trace.append(("done future", await f))  # does not suspend
    try:
        await asyncio.sleep(0)
        trace.append("sleep returned")
    except asyncio.CancelledError:
        trace.append("cancelled at sleep(0)")
        raise


async def b_wait_for(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> None:
    await ch.recv()
    me().cancel()
    try:
        await asyncio.wait_for(ch.recv(), 1)
        trace.append("returned")
    except asyncio.CancelledError:
        trace.append("cancelled")
        raise


async def b_shield(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> int:
    await ch.recv()
    me().cancel()
    try:
        await asyncio.shield(asyncio.sleep(0.001))
        trace.append("returned")
    except asyncio.CancelledError:
        trace.append("cancelled")
    trace.append(("recv", await ch.recv()))
    return me().cancelling()


async def b_mutex_park(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> int:
    await ch.recv()
    mu = csp.Mutex()
    await mu.lock()
    me().cancel()
    try:
        await mu.lock()  # parks: cancelled, must leave nothing queued
        trace.append("locked twice?!")
    except asyncio.CancelledError:
        trace.append(("cancelled lock", repr(mu)))
    mu.unlock()
    trace.append(repr(mu))
    return me().cancelling()


async def b_anyio_self_cancel(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> int:
    await ch.recv()
    t = me()
    with anyio.CancelScope() as sc:
        sc.cancel()
        for i in range(3):
            try:
                await ch.recv()
                trace.append(("recv in scope", i))
            except asyncio.CancelledError:
                trace.append(("cancelled in scope", i, t.cancelling()))
    trace.append(("scope", sc.cancelled_caught, t.cancelling()))
    trace.append(("recv", await ch.recv(), t.cancelling()))
    return t.cancelling()


async def b_anyio_self_cancel_sleep0(ch: csp.Chan[int], trace: list[Any],
                                     box: list[Any]) -> int:
    await ch.recv()
    t = me()
    with anyio.CancelScope() as sc:
        sc.cancel()
        for i in range(3):
            try:
                await asyncio.sleep(0)
                trace.append(("slept", i))
            except asyncio.CancelledError:
                trace.append(("cancelled", i, t.cancelling()))
    trace.append(("scope", sc.cancelled_caught, t.cancelling()))
    trace.append(("recv", await ch.recv(), t.cancelling()))
    return t.cancelling()


SELF_CANCEL: dict[str, tuple[Body, list[Any]]] = {
    "msg_then_csp_park": (b_msg_then_csp_park, [
        ("cancelled at recv", ("bye",), 1)]),
    "msg_then_sleep0": (b_msg_then_sleep0, [("cancelled at sleep(0)", ("bye",))]),
    "msg_then_future": (b_msg_then_future, [("cancelled at sleep", ("bye",))]),
    "msg_then_raise": (b_msg_then_raise, []),
    "cancel_uncancel_then_park": (b_cancel_uncancel_then_park, [
        ("uncancel", 0), ("cancelled", 0), ("recv", 0)]),
    "twice_catch_continue": (b_twice_catch_continue, [
        ("cancelled", ("b",), 2), ("recv", 0), ("recv", 1)]),
    "nonblocking_ops_do_not_raise": (b_nonblocking_ops_do_not_raise, [
        ("recv", 1), ("select", (-1, None)), "locked", "<csp.Mutex unlocked>",
        ("cancelled at park", 1), ("recv", 0)]),
    "nonblocking_then_return": (b_nonblocking_then_return, [1]),
    "in_timeout_block": (b_in_timeout_block, [
        ("cancelled (not a timeout)", 1), ("uncancel", 0), ("recv", 0)]),
    "timeout_expires": (b_timeout_expires, [("timeout", 0), ("recv", 0)]),
    "catch_sleep0_loop": (b_catch_sleep0_loop, [
        ("cancelled", 0, ("x",), 1), ("slept", 4)]),
    "done_future_then_sleep0": (b_done_future_then_sleep0, [
        ("done future", 3), "cancelled at sleep(0)"]),
    "wait_for": (b_wait_for, ["cancelled"]),
    "shield": (b_shield, ["cancelled", ("recv", 0)]),
    "mutex_park": (b_mutex_park, [
        ("cancelled lock", "<csp.Mutex locked waiters=0>"), "<csp.Mutex unlocked>"]),
    "anyio_self_cancel": (b_anyio_self_cancel, [
        ("cancelled in scope", 0, 1), ("cancelled in scope", 1, 2),
        ("cancelled in scope", 2, 3), ("scope", False, 0), ("recv", 0, 0)]),
    "anyio_self_cancel_sleep0": (b_anyio_self_cancel_sleep0, [
        ("cancelled", 0, 1), ("cancelled", 1, 2), ("cancelled", 2, 3),
        ("scope", False, 0), ("recv", 0, 0)]),
}


def _pre_313(name: str) -> None:
    """The expected traces with ``uncancel()`` are CPython 3.11/3.12's (uncancel()
    leaves _must_cancel set); 3.13 withdraws it, so they are pinned to < 3.13."""
    if "uncancel" in name and sys.version_info >= (3, 13):
        pytest.skip("uncancel()/_must_cancel semantics before CPython 3.13")


@pytest.mark.parametrize("name", list(SELF_CANCEL))
def test_self_cancel_in_csp_mode_matches_asyncio(loop_name: str, name: str) -> None:
    """Invariant (asyncio's): ``current_task().cancel()`` made while the task runs is
    raised at its next *suspension* (not at awaits that do not suspend), exactly once,
    with the message given, and ``cancelling()`` counts as for a plain Task; a return
    right after it ends the task cancelled; an exception wins over it."""
    _pre_313(name)
    body, expected = SELF_CANCEL[name]
    trace, _ = differential(loop_name, _body_program(body))
    assert trace == expected


async def _self_cancel_then_return(ch: csp.Chan[int], trace: list[Any],
                                   box: list[Any]) -> int:
    await ch.recv()
    me().cancel("bye")
    return 5


def test_self_cancel_then_return_keeps_message_for_every_retrieval(loop_name: str) -> None:
    """Invariant (asyncio's): a task that called ``cancel("bye")`` on itself and then
    returned without suspending is cancelled with message "bye" for every observer
    (every ``result()``)."""
    _, outcome = differential(loop_name, _body_program(_self_cancel_then_return))
    assert outcome == ("cancelled", ("bye",), ("bye",))


async def b_yields(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> int:
    t = me()
    await ch.recv()
    for i in range(4):
        try:
            await asyncio.sleep(0)
            trace.append(("g", i))
        except asyncio.CancelledError as e:
            trace.append(("g cancelled", i, e.args, t.cancelling()))
    trace.append(("g recv", await ch.recv()))
    return t.cancelling()


async def b_parks(ch: csp.Chan[int], trace: list[Any], box: list[Any]) -> int:
    t = me()
    await ch.recv()
    for i in range(3):
        try:
            trace.append(("g recv", await ch.recv()))
        except asyncio.CancelledError as e:
            trace.append(("g cancelled", i, e.args, t.cancelling()))
    return t.cancelling()


def _canceller(where: str, msgs: list[str], uncancel: bool = False
               ) -> Callable[..., Awaitable[None]]:
    async def act(kind: str, t: asyncio.Task[Any], trace: list[Any], box: list[Any]) -> None:
        await asyncio.sleep(0)
        # the scenario is what it says: the task waits in a bare yield (a goroutine in
        # csp's run queue, behind the yield barrier), or is parked on a pending waiter
        check_driven(kind, t)
        if where == "yield":
            assert not parked(t)
            if is_goroutine(kind):
                g = _sched.scheduler().goroutines[t]
                assert g.cur is None and g in _sched.scheduler().runq
        else:
            assert parked(t)
        for m in msgs:
            trace.append(("cancel", m, t.cancel(m)))
        if uncancel:
            trace.append(("uncancel", t.uncancel()))
    return act


OTHER_CANCEL: dict[str, tuple[Body, Callable[..., Awaitable[None]], list[Any]]] = {
    "in_yield_once": (b_yields, _canceller("yield", ["x"]), [
        ("cancel", "x", True), ("g cancelled", 0, ("x",), 1), ("g", 1), ("g", 2),
        ("g", 3), ("g recv", 0)]),
    "in_yield_twice": (b_yields, _canceller("yield", ["x", "y"]), [
        ("cancel", "x", True), ("cancel", "y", True),
        ("g cancelled", 0, ("y",), 2), ("g", 1), ("g", 2), ("g", 3), ("g recv", 0)]),
    "in_yield_then_uncancel": (b_yields, _canceller("yield", ["x"], True), [
        ("cancel", "x", True), ("uncancel", 0),
        ("g cancelled", 0, ("x",), 0), ("g", 1), ("g", 2), ("g", 3), ("g recv", 0)]),
    "parked_once": (b_parks, _canceller("parked", ["x"]), [
        ("cancel", "x", True), ("g cancelled", 0, ("x",), 1), ("g recv", 0),
        ("g recv", 1)]),
    "parked_twice_first_message_wins": (b_parks, _canceller("parked", ["x", "y"]), [
        ("cancel", "x", True), ("cancel", "y", True), ("g cancelled", 0, ("x",), 2),
        ("g recv", 0), ("g recv", 1)]),
    "parked_then_uncancel": (b_parks, _canceller("parked", ["x"], True), [
        ("cancel", "x", True), ("uncancel", 0), ("g cancelled", 0, ("x",), 0),
        ("g recv", 0), ("g recv", 1)]),
}


@pytest.mark.parametrize("name", list(OTHER_CANCEL))
def test_cancel_by_another_task_in_csp_mode_matches_asyncio(loop_name: str,
                                                           name: str) -> None:
    """Invariant (asyncio's): a goroutine cancelled by another task while it waits in
    a bare yield or parked in csp gets one CancelledError at the same point as a plain
    Task, with the message (the waiter's, when a pending one was cancelled first); it
    may catch it and go on parking without a second, spurious cancellation;
    ``cancelling()`` counts match."""
    _pre_313(name)
    body, act, expected = OTHER_CANCEL[name]
    trace, _ = differential(loop_name, _body_program(body, act))
    assert trace == expected


# -- the hand-back of a step csp resumed: others see the Task as asyncio's ------------


def _window_program(variant: str) -> Program:
    """The victim's step, run by csp, ends by awaiting a Future (``sleep``, ``future``)
    or by returning (``return``); the killer, resumed right after it in the same
    drain, looks at the victim's Task and cancels it."""
    return lambda kind: _window(kind, variant)


async def _window(kind: str, variant: str) -> list[Any]:
    trace: list[Any] = []
    a, b = csp.Chan[int](), csp.Chan[int]()
    box: list[asyncio.Task[Any]] = []

    async def victim() -> int:
        t = asyncio.current_task()
        assert t is not None
        await a.recv()
        if variant == "return":
            return 5
        try:
            if variant == "sleep":
                await asyncio.sleep(0.01)
            else:
                await asyncio.get_running_loop().create_future()
            trace.append("returned")
        except asyncio.CancelledError as e:
            trace.append(("cancelled", e.args, t.cancelling()))
            raise
        return 0

    async def killer() -> None:
        await b.recv()  # resumed in the same drain, right after the victim
        t = box[0]
        trace.append(("victim done", t.done()))
        trace.append(("cancel", t.cancel("kill"), t.cancelling()))

    t, k = start(kind, victim()), start(kind, killer())
    box.append(t)
    await until(lambda: parked(t) and parked(k))
    await a.send(1)
    await b.send(2)  # the victim and then the killer run in one drain
    async with asyncio.timeout(1):
        await asyncio.wait([t, k])
    if t.cancelled():
        try:
            t.result()
        except asyncio.CancelledError as e:
            trace.append(("outcome cancelled", e.args))
    else:
        trace.append(("outcome", t.result()))
    return trace


@pytest.mark.parametrize("variant", ["sleep", "future"])
def test_cancel_reaches_the_future_a_handed_back_step_awaits(loop_name: str,
                                                             variant: str) -> None:
    """Invariant (asyncio's): ``t.cancel("kill")`` of a goroutine whose csp-resumed step
    just awaited a Future (asyncio.sleep, a bare Future), made by a task resumed in
    the same drain before the Task took the coroutine back, returns True, raises
    CancelledError("kill") at that await, and the task ends cancelled with "kill"."""
    trace = differential(loop_name, _window_program(variant))
    assert trace == [("victim done", False), ("cancel", True, 1),
                     ("cancelled", ("kill",), 1), ("outcome cancelled", ("kill",))]


def test_goroutine_returned_in_a_csp_step_is_done_for_others(loop_name: str) -> None:
    """Invariant (asyncio's): once a task's coroutine has returned, other tasks (here
    one resumed in the same drain) see it done() and cancel() returns False, leaving
    cancelling() at 0."""
    trace = differential(loop_name, _window_program("return"))
    assert trace == [("victim done", True), ("cancel", False, 0), ("outcome", 5)]


def test_a_goroutine_that_rebinds_its_own_coroutine_runs_on() -> None:
    """The resume holds the coroutine it runs: a goroutine's coroutine that replaces
    ``g.coro`` / ``g.send_`` while it runs is not freed under its own frame (a review
    finding: the compiled twin resumed through borrowed pointers)."""
    from csp import _sched

    async def replacement() -> None:
        pass

    async def main() -> str:
        ch, out = csp.Chan[int](), csp.Chan[str](1)

        async def body() -> None:
            await ch.recv()  # parked: the next resume is the goroutine's run
            g = _sched.scheduler().goroutines[asyncio.current_task()]  # type: ignore[index]
            r = replacement()
            g.coro, g.send_ = r, r.send
            gc.collect()
            _ = [bytearray(200) for _ in range(2000)]  # reuse any freed memory
            await out.send("went on")

        csp.go(body)
        await csp.gosched()
        await ch.send(1)
        return await out.recv()  # type: ignore[return-value]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (replacement never awaited)
        assert csp.run(main()) == "went on"
