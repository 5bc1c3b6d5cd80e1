"""Goroutines and the runtime: csp.go, csp.run, gosched, num_goroutine, DeadlockError.

Go rules G1..G9 (GO_SEMANTICS.md section 3) and the Runtime section of API.md, on
both loops. Ordering is forced with channels and bounded gosched loops. Real timers
appear only where the test is about timers, timeouts or outside events (the deadlock
detector must wait for them), and their delays never decide a test's outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import socket
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from rescue import run_or_rescue

import csp

Run = Callable[..., Any]

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def spin(n: int = 10) -> None:
    for _ in range(n):
        await csp.gosched()


def no_runtime_warnings(recwarn: pytest.WarningsRecorder) -> list[str]:
    gc.collect()
    return [str(w.message) for w in recwarn if w.category is RuntimeWarning]


# -- csp.go --------------------------------------------------------------------------


def test_go_returns_the_task_running_the_goroutine(run: Run) -> None:
    """G1 — ``go f(x)``: arguments are bound at the go statement; go() returns the
    asyncio.Task; inside the goroutine current_task() is that task; awaiting the task
    gives the coroutine's result."""

    async def main() -> list[Any]:
        ch = csp.Chan[Any]()
        x = [1]

        async def child(a: list[int], *, k: str) -> str:
            await ch.send(asyncio.current_task())
            return f"{a}-{k}"

        t = csp.go(child, x, k="kw")
        x = [2]  # rebinding after go() does not change the argument
        out: list[Any] = [isinstance(t, asyncio.Task)]
        out.append(await ch.recv() is t)
        out.append(await t)
        # a coroutine object alone is accepted too
        t2 = csp.go(child([3], k="c"))
        out.append(await ch.recv() is t2)
        out.append(await t2)
        return out

    assert run(main) == [True, True, "[1]-kw", True, "[3]-c"]


def test_go_propagates_contextvars_from_the_spawner(run: Run) -> None:
    """G1 — a goroutine starts with a copy of the spawner's context: it sees the
    spawner's values, and its own changes do not leak back."""

    async def main() -> list[str]:
        seen: list[str] = []
        var.set("main")

        async def child() -> None:
            seen.append(var.get())
            var.set("child")
            seen.append(var.get())

        await csp.go(child)
        seen.append(var.get())
        var.set("main2")
        await csp.go(child)
        return seen

    assert run(main) == ["main", "child", "main", "main2", "child"]


def test_asyncio_timeout_and_taskgroup_inside_goroutines(vrun: Any) -> None:
    """asyncio interop: asyncio.timeout around a csp recv in a goroutine raises
    TimeoutError (the recv took no value); a TaskGroup inside a goroutine runs csp
    operations, and a failing sibling cancels one parked on a channel."""

    async def main() -> list[Any]:
        ch = csp.Chan[int]()
        res = csp.Chan[int](3)

        async def worker() -> list[Any]:
            out: list[Any] = []
            try:
                async with asyncio.timeout(0.01):
                    await ch.recv()
            except TimeoutError:
                out.append("timeout")
            async with asyncio.TaskGroup() as tg:
                for i in range(3):
                    tg.create_task(res.send(i))
            out.append(sorted([await res.recv() for _ in range(3)]))  # type: ignore[type-var]

            cancelled: list[str] = []

            async def parked() -> None:
                try:
                    await ch.recv()
                except asyncio.CancelledError:
                    cancelled.append("parked cancelled")
                    raise

            async def failing() -> None:
                await spin(3)
                raise ValueError("sibling failed")

            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(parked())
                    tg.create_task(failing())
            except* ValueError as eg:
                out.append([str(e) for e in eg.exceptions])
            out.append(cancelled)
            return out

        out = await csp.go(worker)
        # the timed-out and cancelled receivers left no waiter: a send finds nobody
        out.append(await csp.select((ch.send, 1), default=True))
        return out

    assert vrun(main) == [
        "timeout", [0, 1, 2], ["sibling failed"], ["parked cancelled"], (-1, None)]


def test_csp_in_plain_asyncio_tasks(arun: Run) -> None:
    """csp outside csp.run: goroutines and plain asyncio tasks exchange values over
    channels and select; num_goroutine counts goroutines only (no main)."""

    async def amain() -> list[Any]:
        out: list[Any] = [csp.num_goroutine()]
        a, b = csp.Chan[int](), csp.Chan[int]()

        async def echo() -> None:
            async for v in a:
                await b.send(v * 10)

        g1 = csp.go(echo)
        g2 = csp.go(echo)
        out.append(csp.num_goroutine())
        plain = asyncio.create_task(a.send(1))
        out.append(await b.recv())
        await plain
        i, _ = await csp.select((a.send, 2), csp.nil.recv)
        out.append((i, await b.recv()))
        a.close()
        await asyncio.gather(g1, g2)
        out.append(csp.num_goroutine())
        return out

    assert arun(amain) == [0, 2, 10, (0, 20), 0]


def test_goroutine_exception_outside_run_reaches_loop_handler_at_once(arun: Run) -> None:
    """API.md csp.go: outside csp.run, an exception escaping a goroutine goes to the
    loop's exception handler as soon as the goroutine ends (not at garbage
    collection), exactly once."""
    calls: list[dict[str, Any]] = []
    exc = ValueError("escaped")

    async def amain() -> tuple[int, bool, bool]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: calls.append(ctx))
        ch = csp.Chan[int]()

        async def bad() -> None:
            await ch.recv()
            raise exc

        t = csp.go(bad)
        await spin(2)
        before = len(calls)
        await ch.send(1)
        await spin(3)
        return before, calls[0]["exception"] is exc, calls[0].get("task") is t

    assert arun(amain) == (0, True, True)
    gc.collect()
    assert len(calls) == 1
    assert calls[0]["message"] == "Exception in goroutine"


def test_go_outside_a_running_loop(recwarn: pytest.WarningsRecorder) -> None:
    """csp.go needs a running loop: RuntimeError, and a coroutine passed is closed."""

    async def f() -> None:
        raise AssertionError("must not run")

    coro = f()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="event loop"):
            csp.go(coro)
        assert coro.cr_frame is None
        del coro
        assert no_runtime_warnings(recwarn) == []


def test_go_rejects_non_coroutines_without_calling(
    run: Run, recwarn: pytest.WarningsRecorder
) -> None:
    """API.md: go() of something that is not a coroutine function or coroutine is a
    TypeError, rejected without calling it; a coroutine object with extra arguments
    is a TypeError and is closed (no "never awaited" warning)."""
    called: list[str] = []

    def plain(x: int = 0) -> None:
        called.append("plain")

    class Callable_:
        def __call__(self) -> None:
            called.append("callable")

    async def coro_fn(x: int = 0) -> None:
        called.append("coro_fn")

    async def main() -> list[str]:
        msgs = []
        for fn, args in [
            (plain, ()),
            (plain, (1,)),
            (Callable_(), ()),
            (42, ()),
            (None, ()),
            ("f", ()),
        ]:
            with pytest.raises(TypeError) as ei:
                csp.go(fn, *args)  # type: ignore[arg-type]
            msgs.append(str(ei.value))
        c = coro_fn()
        with pytest.raises(TypeError):
            csp.go(c, 1)  # type: ignore[call-overload]
        msgs.append(str(c.cr_frame is None))
        await spin()
        return msgs

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        msgs = run(main)
        assert no_runtime_warnings(recwarn) == []
    assert called == []
    assert all(m.startswith("csp.go") for m in msgs[:6]), msgs
    assert msgs[6] == "True"


# -- csp.run ---------------------------------------------------------------------------


def test_run_returns_main_result_with_args_and_coroutine(run: Run, loop_name: str) -> None:
    """API.md csp.run: returns main's result; run(main, *args); main may be a
    coroutine object; loop= selects the loop; debug= is passed to the loop."""

    async def add(a: int, b: int) -> int:
        return a + b

    async def debug() -> bool:
        return asyncio.get_running_loop().get_debug()

    assert run(add, 2, 3) == 5
    assert run(add(4, 5)) == 9
    assert csp.run(debug, loop=loop_name, debug=True) is True
    assert csp.run(debug, loop=loop_name) is False


def test_run_loop_names(loop_name: str) -> None:
    """API.md csp.run: loop="asyncio" runs a selector loop, "uvloop" a uvloop loop,
    "auto" uvloop when importable."""

    async def kind() -> list[str]:
        loop = asyncio.get_running_loop()
        return [c.__module__ for c in type(loop).__mro__]

    mro = csp.run(kind, loop=loop_name)
    if loop_name == "uvloop":
        assert "uvloop" in mro
        assert "uvloop" in csp.run(kind, loop="auto")
    else:
        assert "uvloop" not in mro
        assert "asyncio.selector_events" in mro


def test_main_return_cancels_and_awaits_goroutines(run: Run) -> None:
    """G4, API.md csp.run: when main returns, every goroutine still running (parked or
    runnable) is cancelled and awaited (its finally blocks, even ones that await,
    complete) before run returns; then num_goroutine is back to 0 for that loop."""
    trace: list[str] = []

    async def main() -> str:
        ch = csp.Chan[int]()

        async def parked() -> None:
            try:
                await ch.recv()
            finally:
                await csp.gosched()  # cleanup that itself suspends
                trace.append("parked cleaned up")

        async def busy() -> None:
            try:
                while True:
                    await csp.gosched()
            finally:
                trace.append("busy cleaned up")

        async def nested() -> None:
            try:
                await csp.go(parked)
            finally:
                trace.append("nested cleaned up")

        csp.go(parked)
        csp.go(busy)
        csp.go(nested)
        await spin()
        trace.append("main returns")
        return "result"

    assert run(main) == "result"
    assert trace[0] == "main returns"
    assert sorted(trace[1:]) == sorted(
        ["parked cleaned up", "parked cleaned up", "busy cleaned up", "nested cleaned up"]
    )


def test_goroutine_panic_is_reraised_and_main_cancelled(run: Run) -> None:
    """G5, API.md csp.run: an exception escaping a goroutine cancels main and every
    goroutine (their finally blocks run) and run re-raises that very exception."""
    exc = ValueError("panic: boom")
    trace: list[str] = []

    async def main() -> None:
        go_on = csp.Chan[int]()

        async def bad() -> None:
            await go_on.recv()
            raise exc

        async def bystander() -> None:
            try:
                await csp.select()
            finally:
                trace.append("bystander finally")

        csp.go(bad)
        csp.go(bystander)
        try:
            await go_on.send(1)
            await csp.Chan[int]().recv()
            trace.append("main not cancelled")
        except asyncio.CancelledError:
            trace.append("main cancelled")
            raise

    with pytest.raises(ValueError) as ei:
        run(main)
    assert ei.value is exc
    assert sorted(trace) == ["bystander finally", "main cancelled"]


def test_main_panic_cancels_goroutines(run: Run) -> None:
    """G5: an exception escaping main is re-raised by run after every goroutine was
    cancelled and awaited."""
    exc = KeyError("main failed")
    trace: list[str] = []

    async def main() -> None:
        async def g() -> None:
            try:
                await csp.Chan[int]().recv()
            finally:
                trace.append("g finally")

        csp.go(g)
        await spin()
        raise exc

    with pytest.raises(KeyError) as ei:
        run(main)
    assert ei.value is exc
    assert trace == ["g finally"]


def test_first_panic_wins(run: Run) -> None:
    """API.md csp.run: "the first one wins": a second goroutine raising while being
    cancelled because of the first panic does not replace it."""
    first, second = ValueError("first"), KeyError("second")

    async def main() -> None:
        start = csp.Chan[int]()

        async def g1() -> None:
            await start.recv()
            raise first

        async def g2() -> None:
            try:
                await csp.select()
            except asyncio.CancelledError:
                raise second from None

        csp.go(g2)
        csp.go(g1)
        await spin()
        await start.send(1)
        await csp.select()

    with pytest.raises(ValueError) as ei:
        run(main)
    assert ei.value is first


def test_cancelled_goroutine_is_not_a_panic(run: Run) -> None:
    """API.md csp.run: a goroutine that ends because it was cancelled (task.cancel(),
    or raising CancelledError itself) is not a panic; main goes on and returns. A
    TimeoutError escaping a goroutine (wait_for expired) is an ordinary exception:
    a panic."""

    async def main() -> list[Any]:
        t = csp.go(csp.Chan[int]().recv)
        await spin()
        t.cancel()

        async def self_cancel() -> None:
            raise asyncio.CancelledError

        t2 = csp.go(self_cancel)
        await asyncio.wait([t, t2])
        await spin()
        return [t.cancelled(), t2.cancelled(), csp.num_goroutine(), "main returned"]

    assert run(main) == [True, True, 1, "main returned"]

    async def timed_out() -> None:
        await asyncio.wait_for(csp.Chan[int]().recv(), 0.001)

    async def main2() -> None:
        csp.go(timed_out)
        await csp.select()

    with pytest.raises(TimeoutError):
        run(main2)


# -- no exception lost: every one after the first goes to the loop's handler ----------

SHUTDOWN = "unhandled exception during csp.run() shutdown"


def handled(calls: list[dict[str, Any]]) -> None:
    """Send the running loop's exception handler calls to ``calls``."""
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: calls.append(ctx))


def reports(calls: list[dict[str, Any]]) -> list[tuple[str, BaseException | None, Any]]:
    return [(c["message"], c.get("exception"), c.get("task")) for c in calls]


def in_goroutine(gid: int, fn: Callable[..., Any]) -> str:
    """The report's message for an exception escaping goroutine ``gid`` running ``fn``."""
    return f"{SHUTDOWN} in goroutine {gid} {fn.__qualname__}()"


def test_run_reports_a_second_goroutine_exception_to_the_loop_handler(run: Run) -> None:
    """Issue 13.7: when two goroutines raise, run re-raises the first and gives the
    second to the loop's exception handler, once, naming its goroutine (as asyncio.run
    reports an exception of its shutdown)."""
    first, second = ValueError("first"), KeyError("second")
    calls: list[dict[str, Any]] = []
    want: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def main() -> None:
        handled(calls)
        start = csp.Chan[int]()

        async def g1() -> None:
            await start.recv()
            raise first

        async def g2() -> None:
            try:
                await csp.select()
            except asyncio.CancelledError:
                raise second from None

        tasks.append(csp.go(g1))
        tasks.append(csp.go(g2))
        want.append(in_goroutine(3, g2))
        await spin()
        await start.send(1)
        await csp.select()

    with pytest.raises(ValueError) as ei:
        run(main)
    assert ei.value is first
    assert reports(calls) == [(want[0], second, tasks[1])]


def test_run_reports_an_oserror_raised_in_a_finally_while_a_panic_cancels(run: Run) -> None:
    """Issue 13.7: a goroutine whose ``finally`` raises OSError while the panic cancels
    it: the panic is raised, the OSError reported once with its goroutine."""
    oops = OSError("close failed")
    calls: list[dict[str, Any]] = []
    want: list[str] = []

    async def main() -> None:
        handled(calls)

        async def worker() -> None:
            try:
                await csp.Chan[int]().recv()
            finally:
                raise oops

        async def boom() -> None:
            raise ValueError("panic")

        csp.go(worker)
        want.append(in_goroutine(2, worker))
        await spin()
        csp.go(boom)
        await csp.select()

    with pytest.raises(ValueError, match="panic"):
        run(main)
    assert [(m, e) for m, e, _ in reports(calls)] == [(want[0], oops)]


def test_run_reports_a_goroutine_exception_in_cleanup_after_main_raised(run: Run) -> None:
    """Issue 13.7: main raises; a goroutine's cleanup then raises too: run re-raises
    main's exception (not reported), the goroutine's is reported once."""
    mine, oops = KeyError("main failed"), OSError("cleanup failed")
    calls: list[dict[str, Any]] = []
    want: list[str] = []

    async def main() -> None:
        handled(calls)

        async def worker() -> None:
            try:
                await csp.Chan[int]().recv()
            finally:
                raise oops

        csp.go(worker)
        want.append(in_goroutine(2, worker))
        await spin()
        raise mine

    with pytest.raises(KeyError) as ei:
        run(main)
    assert ei.value is mine
    assert [(m, e) for m, e, _ in reports(calls)] == [(want[0], oops)]


def test_run_raises_the_first_exception_of_the_shutdown_and_reports_the_rest(run: Run) -> None:
    """Issue 13.7: main returned; at exit two goroutines' ``finally`` blocks raise (the
    second after the first has ended): run raises the first, the second is reported."""
    a_exc, b_exc = OSError("a"), OSError("b")
    calls: list[dict[str, Any]] = []
    want: list[str] = []

    async def main() -> str:
        handled(calls)

        async def a() -> None:
            try:
                await csp.Chan[int]().recv()
            finally:
                raise a_exc

        async def b(ta: asyncio.Task[None]) -> None:
            try:
                await csp.Chan[int]().recv()
            finally:
                await asyncio.wait([ta])
                raise b_exc

        csp.go(b, csp.go(a))
        want.append(in_goroutine(3, b))
        await spin()
        return "main returned"

    with pytest.raises(OSError) as ei:
        run(main)
    assert ei.value is a_exc
    assert [(m, e) for m, e, _ in reports(calls)] == [(want[0], b_exc)]


def test_run_reports_a_shutdown_exception_when_main_cancelled_itself(run: Run) -> None:
    """Issue 13.7: main cancels itself (run raises CancelledError); a goroutine's
    ``finally`` raising at exit is reported, not dropped."""
    oops = OSError("cleanup failed")
    calls: list[dict[str, Any]] = []
    want: list[str] = []

    async def main() -> None:
        handled(calls)

        async def worker() -> None:
            try:
                await csp.Chan[int]().recv()
            finally:
                raise oops

        csp.go(worker)
        want.append(in_goroutine(2, worker))
        await spin()
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        await csp.gosched()

    with pytest.raises(asyncio.CancelledError):
        run(main)
    assert [(m, e) for m, e, _ in reports(calls)] == [(want[0], oops)]


def test_run_reports_the_panic_when_interrupted_during_the_shutdown(run: Run) -> None:
    """Issue 13.7: run's own task is cancelled (as Ctrl-C does) while the shutdown after
    a panic waits for a cleanup: run raises CancelledError, and the panic it can no
    longer raise is reported once, with its goroutine."""
    boom_exc = ValueError("panic")
    calls: list[dict[str, Any]] = []
    want: list[str] = []

    async def main() -> None:
        handled(calls)
        me = asyncio.current_task()

        async def interrupter() -> None:
            try:
                await csp.Chan[int]().recv()
            finally:
                assert me is not None
                await asyncio.wait([me])  # main has ended: the shutdown has begun
                for _ in range(3):
                    await asyncio.sleep(0)
                runner_task = next(t for t in asyncio.all_tasks()
                                   if getattr(t.get_coro(), "__name__", "") == "_main")
                runner_task.cancel()
                await csp.Chan[int]().recv()  # abandoned

        async def boom() -> None:
            raise boom_exc

        csp.go(interrupter)
        await spin()
        csp.go(boom)
        want.append(in_goroutine(3, boom))
        await csp.select()

    with pytest.warns(RuntimeWarning, match="abandoned 1 goroutine"), \
            pytest.raises(asyncio.CancelledError):
        run(main)
    assert [(m, e) for m, e, _ in reports(calls)] == [(want[0], boom_exc)]

def test_run_never_reports_a_cancellation(run: Run) -> None:
    """Issue 13.7: goroutines ending cancelled after a panic (quietly, by raising a new
    CancelledError, or by swallowing it once and being cancelled at exit) are not
    reported: the handler is never called."""
    calls: list[dict[str, Any]] = []

    async def main() -> None:
        handled(calls)

        async def quiet() -> None:
            await csp.Chan[int]().recv()

        async def own() -> None:
            try:
                await csp.Chan[int]().recv()
            except asyncio.CancelledError:
                raise asyncio.CancelledError("mine") from None

        async def boom() -> None:
            raise ValueError("panic")

        csp.go(quiet)
        csp.go(own)
        await spin()
        csp.go(boom)
        await csp.select()

    with pytest.raises(ValueError, match="panic"):
        run(main)
    assert calls == []


def test_run_leaves_plain_task_exceptions_to_asyncio(run: Run) -> None:
    """Issue 13.7: a plain Task (not a goroutine) whose ``finally`` raises at exit is
    reported once, by asyncio's own rule ("Task exception was never retrieved"), and
    not by csp; one that a goroutine awaits is raised by run, and never logged."""
    oops = OSError("plain cleanup failed")
    calls: list[dict[str, Any]] = []

    async def plain() -> None:
        try:
            await csp.Chan[int]().recv()
        finally:
            raise oops

    async def main() -> None:
        handled(calls)
        asyncio.get_running_loop().create_task(plain())
        await spin()

    run(main)
    gc.collect()
    assert [(m, e) for m, e, _ in reports(calls)] == [("Task exception was never retrieved", oops)]

    calls.clear()
    failed = OSError("awaited")

    async def raises() -> None:
        raise failed

    async def main2() -> None:
        handled(calls)
        t = asyncio.get_running_loop().create_task(raises())

        async def awaits() -> None:
            await t

        csp.go(awaits)
        await csp.select()

    with pytest.raises(OSError) as ei:
        run(main2)
    gc.collect()
    assert ei.value is failed
    assert calls == []


def test_run_reports_an_exception_raised_while_closing_an_abandoned_goroutine(
        run: Run, recwarn: pytest.WarningsRecorder) -> None:
    """Issue 13.7: a goroutine abandoned at exit whose coroutine raises as it is closed:
    the warning names it, and the handler gets the exception once."""
    oops = OSError("close failed")
    calls: list[dict[str, Any]] = []
    want: list[str] = []

    async def main() -> None:
        handled(calls)

        async def stubborn() -> None:
            try:
                await csp.Chan[int]().recv()
            finally:
                try:
                    await csp.Chan[int]().send(1)  # nobody receives
                finally:
                    raise oops

        csp.go(stubborn)
        want.append(in_goroutine(2, stubborn))
        await spin()

    run(main)
    assert [(m, e) for m, e, _ in reports(calls)] == [(want[0], oops)]
    msgs = _abandon_warnings(recwarn)
    assert len(msgs) == 1 and "closing it raised OSError('close failed')" in msgs[0], msgs


def test_num_goroutine(run: Run) -> None:
    """G9 — Seen: NumGoroutine 1 -> 4 with three parked receivers -> 1 after close
    (main included; finished goroutines are not counted)."""

    async def main() -> list[int]:
        out = [csp.num_goroutine()]
        ch = csp.Chan[int]()
        ts = [csp.go(ch.recv) for _ in range(3)]
        out.append(csp.num_goroutine())  # counted from go(), before they run
        await spin()
        out.append(csp.num_goroutine())  # parked ones count
        ch.close()
        await spin()
        out.append(csp.num_goroutine())
        await asyncio.gather(*ts)
        return out

    assert run(main) == [1, 4, 4, 1]


def test_gosched_yields(run: Run) -> None:
    """G8 — runtime.Gosched yields and the caller resumes by itself: two goroutines
    that gosched between steps interleave; without gosched one runs to completion
    first (asyncio is cooperative)."""

    async def main() -> list[list[str]]:
        traces = []
        for yielding in (False, True):
            trace: list[str] = []

            async def worker(
                name: str, trace: list[str] = trace, yielding: bool = yielding
            ) -> None:
                for i in range(3):
                    trace.append(f"{name}{i}")
                    if yielding:
                        await csp.gosched()

            await asyncio.gather(csp.go(worker, "a"), csp.go(worker, "b"))
            traces.append(trace)
        return traces

    assert run(main) == [["a0", "a1", "a2", "b0", "b1", "b2"], ["a0", "b0", "a1", "b1", "a2", "b2"]]


def test_run_bad_input(loop_name: str, recwarn: pytest.WarningsRecorder) -> None:
    """API.md: run() of a non-coroutine is a TypeError (a plain function is not
    called); an unknown loop name is a ValueError; a coroutine object given with
    arguments is a TypeError and is closed (no "never awaited" warning)."""
    called: list[int] = []

    def plain() -> None:
        called.append(1)

    async def main(x: int = 0) -> int:
        return x

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        for bad in (42, None, plain, lambda: main()):
            with pytest.raises(TypeError, match=r"^csp\.run\(\)"):
                csp.run(bad, loop=loop_name)  # type: ignore[arg-type]
        assert called == []
        with pytest.raises(ValueError, match="unknown loop 'bogus'"):
            csp.run(main, loop="bogus")
        c = main()
        with pytest.raises(TypeError, match="arguments given with a coroutine object"):
            csp.run(c, 1, loop=loop_name)  # type: ignore[call-overload]
        closed = c.cr_frame is None
        del c
        assert no_runtime_warnings(recwarn) == []
    assert closed


def test_run_bad_loop_closes_the_coroutine(recwarn: pytest.WarningsRecorder) -> None:
    """API.md: ``csp.run(main(), loop="bogus")`` raises ValueError and, like every other
    rejection of a coroutine object, closes it (no "never awaited" warning)."""

    async def main() -> None:
        raise AssertionError("must not run")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        c = main()
        with pytest.raises(ValueError, match="unknown loop 'bogus'"):
            csp.run(c, loop="bogus")
        closed = c.cr_frame is None
        del c
        warned = no_runtime_warnings(recwarn)
    assert (closed, warned) == (True, [])


def test_run_without_uvloop_auto_is_asyncio_and_uvloop_refused(
        monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder) -> None:
    """Issue 13.12, API.md csp.run: where uvloop is not importable, loop="auto" runs the
    asyncio loop and loop="uvloop" raises ValueError (closing a coroutine given)."""
    import sys

    from csp import _deadlock

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop: ImportError
    monkeypatch.setattr(_deadlock, "_uvloop_class", False)  # not probed yet

    async def kind() -> list[str]:
        return [c.__module__ for c in type(asyncio.get_running_loop()).__mro__]

    mro = csp.run(kind, loop="auto")
    assert "asyncio.selector_events" in mro and not any("uvloop" in m for m in mro)
    c = kind()
    with pytest.raises(ValueError) as ei:
        csp.run(c, loop="uvloop")
    assert str(ei.value) == "loop='uvloop' but uvloop is not installed"
    assert c.cr_frame is None  # closed
    del c
    assert no_runtime_warnings(recwarn) == []

def test_run_inside_a_running_loop(arun: Run, recwarn: pytest.WarningsRecorder) -> None:
    """API.md: csp.run() inside a running loop raises RuntimeError and closes the
    coroutine it was given (no "never awaited" warning)."""

    async def inner() -> None:
        raise AssertionError("must not run")

    async def amain() -> list[Any]:
        c = inner()
        with pytest.raises(RuntimeError, match="running event loop"):
            csp.run(c)
        with pytest.raises(RuntimeError, match="running event loop"):
            csp.run(inner)
        return [c.cr_frame is None]

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert arun(amain) == [True]
        assert no_runtime_warnings(recwarn) == []


# -- DeadlockError -----------------------------------------------------------------------


def parse_deadlock(msg: str) -> list[tuple[int, str, str]]:
    """(goroutine id, wait reason, innermost function outside csp) for each goroutine
    in the report (Go's dump format: ``goroutine N [reason]:``, then ``fn(...)`` and
    ``\tfile:line`` per call, innermost first; csp's own calls named ``csp.*``)."""
    lines = msg.splitlines()
    assert lines[0] == "all goroutines are asleep - deadlock!"
    out = []
    for i, line in enumerate(lines):
        if line.startswith("goroutine "):
            gid, reason = line[len("goroutine ") :].split(" ", 1)
            assert reason.startswith("[") and reason.endswith("]:"), line
            calls = []
            for fn, where in zip(lines[i + 1 :: 2], lines[i + 2 :: 2], strict=False):
                if not fn.endswith("(...)") or not where.startswith("\t"):
                    break
                calls.append(fn[: -len("(...)")])
            user = [c for c in calls if not c.startswith("csp.")] or calls
            out.append((int(gid), reason[1:-2], user[0].rsplit(".", 1)[-1]))
    return out


def test_deadlock_main_alone(run: Run) -> None:
    """G7 — ``fatal error: all goroutines are asleep - deadlock!``: main blocked on a
    receive from an unbuffered channel nobody sends on."""

    async def main() -> None:
        await csp.Chan[int]().recv()

    with pytest.raises(csp.DeadlockError) as ei:
        run(main)
    msg = str(ei.value)
    assert msg.startswith("all goroutines are asleep - deadlock!")
    assert parse_deadlock(msg) == [(1, "chan receive", "main")]
    assert "test_runtime.py:" in msg


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("select", "select (no cases)"),
        ("nil recv", "chan receive (nil chan)"),
        ("nil send", "chan send (nil chan)"),
        ("send", "chan send"),
        ("recv_ok", "chan receive"),
        ("select2", "select"),
        ("nil select", "select"),
    ],
)
def test_deadlock_main_blocked_in_each_way(run: Run, kind: str, reason: str) -> None:
    """G7 — main alone, blocked on select{}, a nil channel, an unbuffered send, a
    receive with ok, a select on idle channels, or a select on nil cases; the report
    names the wait reason Go would print."""

    async def main() -> None:
        ch = csp.Chan[int]()
        if kind == "select":
            await csp.select()
        elif kind == "nil recv":
            await csp.nil.recv()
        elif kind == "nil send":
            await csp.nil.send(1)
        elif kind == "send":
            await ch.send(1)
        elif kind == "recv_ok":
            await ch.recv_ok()
        elif kind == "select2":
            await csp.select(ch.recv, (ch.send, 2))
        else:
            await csp.select(csp.nil.recv, (csp.nil.send, 1))

    with pytest.raises(csp.DeadlockError) as ei:
        run(main)
    assert parse_deadlock(str(ei.value)) == [(1, reason, "main")]


def test_deadlock_all_goroutines_blocked(run: Run) -> None:
    """G7 — main and every goroutine parked: the report lists each goroutine with its
    wait reason and function, and every goroutine was cancelled and awaited (finally
    blocks ran) before DeadlockError reached the caller."""
    finals: list[str] = []

    async def main() -> None:
        a, b = csp.Chan[int](), csp.Chan[int](1)
        await b.send(0)  # full

        async def receiver() -> None:
            try:
                await a.recv()
            finally:
                finals.append("receiver")

        async def sender() -> None:
            try:
                await b.send(1)
            finally:
                await csp.gosched()
                finals.append("sender")

        async def selector() -> None:
            try:
                await csp.select(a.recv, (b.send, 2))
            finally:
                finals.append("selector")

        async def forever() -> None:
            try:
                await csp.select()
            finally:
                finals.append("forever")

        async def nil_receiver() -> None:
            try:
                await csp.nil.recv()
            finally:
                finals.append("nil_receiver")

        for g in (receiver, sender, selector, forever, nil_receiver):
            csp.go(g)
        await a.recv()

    with pytest.raises(csp.DeadlockError) as ei:
        run(main)
    assert sorted(finals) == ["forever", "nil_receiver", "receiver", "selector", "sender"]
    assert parse_deadlock(str(ei.value)) == [
        (1, "chan receive", "main"),
        (2, "chan receive", "receiver"),
        (3, "chan send", "sender"),
        (4, "select", "selector"),
        (5, "select (no cases)", "forever"),
        (6, "chan receive (nil chan)", "nil_receiver"),
    ]


def test_deadlock_after_a_noop_timer_fires(loop_name: str) -> None:
    """G7(a) — Seen: a pending timer postpones detection until it fires; if it wakes
    nobody, the deadlock is then reported."""
    fired: list[str] = []

    async def main(stuck: csp.Chan[Any]) -> None:
        asyncio.get_running_loop().call_later(0.02, fired.append, "timer")
        await stuck.recv()

    assert run_or_rescue(loop_name, main, 2.0) == "deadlock"
    assert fired == ["timer"]


def test_deadlock_after_an_overdue_timer_fires(loop_name: str) -> None:
    """G7(a) regression: the loop runs late (a blocking call in main), so when the
    detector first looks, the noop timer is already due but has not run yet (on the
    asyncio loop it sits in the ready queue). Once it has run, the deadlock must still
    be reported, not missed."""
    fired: list[str] = []

    async def main(stuck: csp.Chan[Any]) -> None:
        asyncio.get_running_loop().call_later(0.001, fired.append, "timer")
        time.sleep(0.005)  # a slow callback: the timer is overdue when main parks
        await stuck.recv()

    assert run_or_rescue(loop_name, main, 1.0) == "deadlock"
    assert fired == ["timer"]


def test_deadlock_after_an_executor_job_ends(loop_name: str) -> None:
    """G7(b): a job running in the default executor (a thread busy on the program's
    behalf) postpones detection; once it has ended and woken nobody, the deadlock is
    reported, not missed."""
    ran: list[str] = []

    async def main(stuck: csp.Chan[Any]) -> None:
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, lambda: (time.sleep(0.02), ran.append("job")))
        await stuck.recv()

    assert run_or_rescue(loop_name, main, 1.0) == "deadlock"
    assert ran == ["job"]


def test_deadlock_after_a_timer_fires_every_time(loop_name: str) -> None:
    """G7(a) regression: the deadlock that follows a noop timer is reported on every
    run, never missed (a miss leaves the program parked forever). 300 runs with a
    1 ms timer; each missed run is rescued after 0.3 s and counted."""
    fired: list[int] = []
    results: list[str] = []

    async def main(stuck: csp.Chan[Any]) -> None:
        asyncio.get_running_loop().call_later(0.001, fired.append, 1)
        await stuck.recv()

    for _ in range(300):
        results.append(run_or_rescue(loop_name, main, 0.3))
        if results.count("missed") >= 3:
            break
    assert results.count("missed") == 0, f"missed {results.count('missed')} of {len(results)}"
    assert len(fired) == len(results) == 300


def test_partial_deadlock_is_not_reported(run: Run) -> None:
    """G7(c) — a goroutine stuck forever while main goes on is a leak, not a deadlock:
    main returns normally (and the leaked goroutine is cancelled)."""

    async def main() -> str:
        ch = csp.Chan[int]()
        csp.go(ch.recv)
        csp.go(csp.nil.send, 1)
        for _ in range(50):
            await csp.gosched()
        return "done"

    assert run(main) == "done"


# -- no false positives ---------------------------------------------------------------


def test_no_deadlock_call_later_sends_or_closes(run: Run) -> None:
    """G7(a), API.md: a pending loop.call_later means no deadlock: main blocked in
    recv is woken by a timer callback that closes the channel or starts a sender."""

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        a = csp.Chan[int]()
        loop.call_later(0.01, a.close)
        out: list[Any] = [await a.recv_ok()]
        b = csp.Chan[int]()
        loop.call_later(0.01, lambda: csp.go(b.send, 7))
        out.append(await b.recv())
        return out

    assert run(main) == [(None, False), 7]


def test_no_deadlock_noop_timer_then_later_timer_sends(run: Run) -> None:
    """G7(a): a timer that fires and wakes nobody is followed by another pending timer
    that starts a sender: still no deadlock."""

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        ch = csp.Chan[str]()
        loop.call_later(0.01, fired.append, "noop")
        loop.call_later(0.04, lambda: csp.go(ch.send, "late"))
        v = await ch.recv()
        return [fired, v]

    assert run(main) == [["noop"], "late"]


def test_no_deadlock_noop_timer_then_sleeping_goroutine_sends(run: Run) -> None:
    """G7(a,b): main parked, a noop call_later timer fires and wakes nobody, while a
    goroutine sleeps (asyncio.sleep: a timer, not a csp park) and sends after that
    timer has fired: no deadlock, main gets the value."""

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        trace: list[str] = []
        ch = csp.Chan[str]()

        async def sleeper() -> None:
            await asyncio.sleep(0.05)
            trace.append("sleeper sends")
            await ch.send("after the noop timer")

        loop.call_later(0.01, trace.append, "noop timer")
        csp.go(sleeper)
        v = await ch.recv()
        return [trace, v]

    assert run(main) == [["noop timer", "sleeper sends"], "after the noop timer"]


def test_no_deadlock_asyncio_timeout_around_recv(run: Run) -> None:
    """API.md DeadlockError: asyncio.timeout / wait_for around a blocking recv raise
    TimeoutError, never DeadlockError."""

    async def main() -> list[str]:
        out = []
        ch = csp.Chan[int]()
        try:
            async with asyncio.timeout(0.02):
                await ch.recv()
        except TimeoutError:
            out.append("timeout")
        try:
            await asyncio.wait_for(ch.recv(), 0.02)
        except TimeoutError:
            out.append("wait_for")
        try:
            async with asyncio.timeout(0.02):
                await csp.select()
        except TimeoutError:
            out.append("select")
        return out

    assert run(main) == ["timeout", "wait_for", "select"]


def test_no_deadlock_while_a_plain_task_is_alive(run: Run) -> None:
    """API.md DeadlockError: a live task that is not a goroutine means no deadlock,
    whether it is busy (yielding) or parked itself on a csp channel."""

    async def main() -> list[Any]:
        ch = csp.Chan[int]()

        async def plain_busy() -> None:
            for _ in range(100):
                await asyncio.sleep(0)
            await ch.send(1)

        t = asyncio.create_task(plain_busy())
        out: list[Any] = [await ch.recv()]
        await t
        # a plain task parked in csp, woken by a thread: every goroutine is parked,
        # but the plain task means "undecided", so no deadlock
        gate, result = csp.Chan[int](), csp.Chan[int]()

        async def plain_parked() -> None:
            await result.send(10 + (await gate.recv_ok())[1])

        t2 = asyncio.create_task(plain_parked())
        loop = asyncio.get_running_loop()

        def later() -> None:
            time.sleep(0.05)  # outside event: arrives after the detector's rounds
            loop.call_soon_threadsafe(gate.close)

        th = threading.Thread(target=later)
        th.start()
        out.append(await result.recv())
        await t2
        th.join()
        return out

    assert run(main) == [1, 10]


def test_no_deadlock_plain_task_waiting_on_thread_future(run: Run) -> None:
    """API.md DeadlockError: main parked in csp while a plain task waits for a future
    that a thread completes later (no timer, no loop I/O of our own)."""

    async def main() -> str:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        ch = csp.Chan[str]()

        async def plain() -> None:
            await ch.send(await fut)

        t = asyncio.create_task(plain())

        def thread() -> None:
            time.sleep(0.05)
            loop.call_soon_threadsafe(fut.set_result, "from thread")

        th = threading.Thread(target=thread)
        th.start()
        v = await ch.recv()
        await t
        th.join()
        return v  # type: ignore[return-value]

    assert run(main) == "from thread"


def test_no_deadlock_listening_server(run: Run) -> None:
    """API.md DeadlockError: pending I/O (a listening server) means no deadlock: main
    parked in recv until a client (a thread) connects and the connection handler sends
    what it read."""

    async def main() -> bytes:
        ch = csp.Chan[bytes]()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            line = await reader.readline()
            writer.close()
            await ch.send(line)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        def client() -> None:
            time.sleep(0.05)  # connect after main has been parked a while
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"hello\n")

        th = threading.Thread(target=client)
        csp._deadlock.ignore_thread(th)  # (the I/O, not the thread, must forbid a verdict)
        th.start()
        try:
            return await ch.recv()  # type: ignore[return-value]
        finally:
            th.join()
            server.close()
            await server.wait_closed()

    assert run(main) == b"hello\n"


def test_no_deadlock_goroutines_ping_pong_then_finish(run: Run) -> None:
    """G7: goroutines that park and wake each other many times (so every goroutine is
    momentarily parked after each hand-off) are never reported as deadlocked."""
    N = 2000

    async def main() -> int:
        ping, pong = csp.Chan[int](), csp.Chan[int]()

        async def player() -> None:
            async for v in ping:
                await pong.send(v + 1)

        csp.go(player)
        v = 0
        for _ in range(N):
            await ping.send(v)
            v = await pong.recv()  # type: ignore[assignment]
        ping.close()
        return v

    assert run(main) == N


def test_uvloop_call_soon_watch_is_only_on_while_checking() -> None:
    """On uvloop the deadlock check counts call_soon calls only while it looks: a
    callback chain that ends the wait is seen as work, and afterwards the loop's own
    call_soon is back (no per-call cost outside a check)."""
    pytest.importorskip("uvloop")
    seen: list[bool] = []

    async def main() -> str:
        loop = asyncio.get_running_loop()
        ch = csp.Chan[str]()

        def step(k: int) -> None:
            seen.append("call_soon" in vars(loop))
            if k:
                loop.call_soon(step, k - 1)
            else:
                csp.go(ch.send, "done")

        loop.call_soon(step, 20)
        got = await ch.recv()
        await csp.gosched()
        await csp.gosched()
        return f"{got} {'call_soon' in vars(loop)}"

    assert csp.run(main, loop="uvloop") == "done False"
    assert len(seen) == 21 and any(seen)  # the watch was on during the chain


@pytest.mark.parametrize("how", ["factory", "subclass"])
def test_go_honours_task_factories_and_create_task_overrides(loop_name: str, how: str) -> None:
    """csp.go makes its Task directly only on a stock asyncio/uvloop loop without a
    task factory: a task factory, or a loop type that overrides create_task, is used."""
    from csp._runtime import _loop_factory

    made: list[str] = []
    base: Any = _loop_factory(loop_name)  # csp.run's loop class for this loop

    class Loop(base):  # type: ignore[misc,valid-type]
        def create_task(self, coro: Any, **kw: Any) -> Any:
            made.append("create_task")
            return super().create_task(coro, **kw)

    def factory(loop: Any, coro: Any, **kw: Any) -> Any:
        made.append("factory")
        return asyncio.Task(coro, loop=loop, **kw)

    loop = Loop() if how == "subclass" else base()
    if how == "factory":
        loop.set_task_factory(factory)

    async def main() -> int:
        made.clear()
        ch = csp.Chan[int]()
        t = csp.go(ch.send, 4)
        v = await ch.recv()
        await t
        return v or 0

    try:
        assert loop.run_until_complete(main()) == 4
    finally:
        loop.close()
    assert made == (["factory"] if how == "factory" else ["create_task"])


def test_mass_wakeup_does_not_run_the_deadlock_check_per_goroutine(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waking N parked goroutines that then finish must not look for a deadlock at
    each finish: a look costs O(tasks), so that would be quadratic (1M goroutines:
    minutes instead of seconds). Woken goroutines waiting in the run queue still
    count as parked; the scheduler must not ask while wake-ups are queued."""
    from csp import _deadlock

    looks = [0]
    state = _deadlock.Watch._state

    def counting_state(self: Any) -> Any:
        looks[0] += 1
        return state(self)

    monkeypatch.setattr(_deadlock.Watch, "_state", counting_state)
    n = 3000

    async def main() -> int:
        ch = csp.Chan[int]()
        done = csp.Chan[None](1)
        left = [n]

        async def g() -> None:
            await ch.recv()
            left[0] -= 1
            if not left[0]:
                await done.send(None)

        for _ in range(n):
            csp.go(g)
        await csp.gosched()
        for i in range(n):
            await ch.send(i)
        await done.recv()
        return left[0]

    assert run(main) == 0
    assert looks[0] <= 10, looks[0]


# -- csp.run never hangs at exit (API.md: "csp.run exit") ------------------------------


def _abandon_warnings(recwarn: pytest.WarningsRecorder) -> list[str]:
    return [str(w.message) for w in recwarn
            if w.category is RuntimeWarning and "abandoned" in str(w.message)]


def test_exit_abandons_a_goroutine_whose_finally_sends_to_nobody(
    run: Run, recwarn: pytest.WarningsRecorder
) -> None:
    """Go's ``defer func() { done <- true }()`` after the partner is gone: when main
    returns, the goroutine is cancelled, its ``finally`` blocks in a send nothing can
    complete; run returns main's result after one RuntimeWarning naming the goroutine's
    function and what it was blocked on."""
    log: list[str] = []

    async def main() -> str:
        done = csp.Chan[bool]()
        parked = csp.Chan[None]()

        async def worker() -> None:
            try:
                await parked.recv()  # blocks until cancelled at exit
            finally:
                log.append("finally")
                await done.send(True)  # main is gone: nobody will ever receive
                log.append("not reached")

        csp.go(worker)
        await csp.gosched()
        return "main's result"

    assert run(main) == "main's result"
    assert log == ["finally"]
    msgs = _abandon_warnings(recwarn)
    assert len(msgs) == 1, msgs
    assert "worker()" in msgs[0] and "[chan send]" in msgs[0]


def test_exit_cancels_a_goroutine_that_swallowed_a_cancellation(
    run: Run, recwarn: pytest.WarningsRecorder
) -> None:
    """A goroutine that caught CancelledError without uncancel() (``cancelling()`` stays
    positive) and parked again is still cancelled at exit: cancelling() is no sign that
    a cancellation is on its way. It parks again after that: abandoned, run returns."""
    log: list[Any] = []

    async def main() -> int:
        c = csp.Chan[int]()

        async def stubborn() -> None:
            while True:
                try:
                    await c.recv()
                except asyncio.CancelledError:
                    log.append(asyncio.current_task().cancelling())  # type: ignore[union-attr]
                    if len(log) == 2:
                        raise

        t = csp.go(stubborn)
        await csp.gosched()
        t.cancel()  # swallowed: it parks again with cancelling() == 1
        await csp.gosched()
        await csp.gosched()
        return 7

    assert run(main) == 7
    assert log == [1, 2]  # run cancelled it once more; the second time it gave up
    assert _abandon_warnings(recwarn) == []


def test_exit_abandons_a_goroutine_that_never_gives_up(
    run: Run, recwarn: pytest.WarningsRecorder
) -> None:
    """A goroutine that swallows every cancellation and parks again in csp is abandoned
    (its finally runs when its coroutine is closed), and run returns."""
    log: list[str] = []

    async def main() -> None:
        c = csp.Chan[int]()

        async def stubborn() -> None:
            try:
                while True:
                    try:
                        await c.recv()
                    except asyncio.CancelledError:
                        log.append("swallowed")
            finally:
                log.append("closed")

        csp.go(stubborn)
        await csp.gosched()

    run(main)
    assert log == ["swallowed", "closed"]
    msgs = _abandon_warnings(recwarn)
    assert len(msgs) == 1 and "stubborn()" in msgs[0] and "[chan receive]" in msgs[0]


def test_exit_waits_for_cleanups_that_can_complete(
    run: Run, recwarn: pytest.WarningsRecorder
) -> None:
    """Goroutines whose finally blocks talk to each other (or sleep) after being
    cancelled at exit are awaited, not abandoned: only what nothing can complete is."""
    log: list[Any] = []

    async def main() -> None:
        c = csp.Chan[int]()
        never = csp.Chan[int]()

        async def a() -> None:
            try:
                await never.recv()
            finally:
                await csp.sleep(0.001)
                await c.send(1)
                log.append("a sent")

        async def b() -> None:
            try:
                await never.recv()
            finally:
                log.append(("b got", await c.recv()))

        csp.go(a)
        csp.go(b)
        await csp.gosched()

    run(main)
    assert sorted(map(str, log)) == sorted(map(str, ["a sent", ("b got", 1)]))
    assert _abandon_warnings(recwarn) == []


def test_exit_abandons_a_plain_task_blocked_in_csp(
    run: Run, recwarn: pytest.WarningsRecorder
) -> None:
    """A plain asyncio Task left running by main, whose finally blocks in csp forever,
    does not hang run either."""

    async def main() -> None:
        c = csp.Chan[int]()

        async def leftover() -> None:
            try:
                await c.recv()
            finally:
                await c.recv()

        asyncio.get_running_loop().create_task(leftover())
        await csp.gosched()

    run(main)
    msgs = _abandon_warnings(recwarn)
    assert len(msgs) == 1 and "[chan receive]" in msgs[0]


def test_exit_after_a_panic_also_abandons(run: Run, recwarn: pytest.WarningsRecorder) -> None:
    """When a goroutine panics, the others are cancelled once; one that then blocks
    forever in csp is abandoned and the panic is re-raised."""

    async def main() -> None:
        c = csp.Chan[int]()

        async def cleanup_forever() -> None:
            try:
                await c.recv()
            finally:
                await c.recv()

        async def boom() -> None:
            raise ValueError("panic")

        csp.go(cleanup_forever)
        await csp.gosched()
        csp.go(boom)
        await c.recv()

    with pytest.raises(ValueError, match="panic"):
        run(main)
    assert len(_abandon_warnings(recwarn)) == 1


async def stuck(c: csp.Chan[int]) -> None:
    """Parked until cancelled at exit; its ``finally`` then sends to nobody."""
    try:
        await c.recv()
    finally:
        await c.send(1)


def test_exit_after_a_panic_abandons_main_blocked_in_its_finally(
        run: Run, recwarn: pytest.WarningsRecorder) -> None:
    """A panic cancels main; main's ``finally`` then blocks in a send nothing can
    complete: main is abandoned like any goroutine and the panic is raised (run waited
    for main before it looked for stuck tasks, and hung)."""
    async def main() -> None:
        c = csp.Chan[int]()

        async def boom() -> None:
            raise ValueError("panic")

        try:
            csp.go(boom)
            await c.recv()
        finally:
            await c.send(1)  # nobody receives

    with pytest.raises(ValueError, match="panic"):
        run(main)
    msgs = _abandon_warnings(recwarn)
    assert len(msgs) == 1 and "main()" in msgs[0] and "[chan send]" in msgs[0], msgs


def test_deadlock_raised_when_main_finally_blocks_again(
        run: Run, recwarn: pytest.WarningsRecorder) -> None:
    """Everything blocked: DeadlockError cancels main, whose ``finally`` blocks again in
    csp: main is abandoned and DeadlockError is raised (not a silent hang)."""
    async def main() -> None:
        c = csp.Chan[int]()
        try:
            await c.recv()
        finally:
            await c.send(1)

    with pytest.raises(csp.DeadlockError, match="all goroutines are asleep"):
        run(main)
    assert len(_abandon_warnings(recwarn)) == 1


def test_exit_abandons_despite_open_io(run: Run, recwarn: pytest.WarningsRecorder) -> None:
    """At exit, open I/O (a listening server nobody closed) does not keep goroutines
    stuck in csp: Go just exits."""
    async def main() -> str:
        csp.go(stuck, csp.Chan[int]())
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        assert server.sockets
        await csp.gosched()
        return "done"

    assert run(main) == "done"
    msgs = _abandon_warnings(recwarn)
    assert len(msgs) == 1 and "stuck()" in msgs[0], msgs


def test_exit_abandons_a_goroutine_whose_finally_awaits_a_stuck_task(
        run: Run, recwarn: pytest.WarningsRecorder) -> None:
    """A goroutine whose ``finally`` awaits the Task of a goroutine stuck in csp waits
    on it, it is not live: the stuck one is abandoned, which ends its Task, and the
    waiter goes on (its await raises CancelledError) and ends."""
    log: list[str] = []

    async def main() -> None:
        async def awaits(t: asyncio.Task[None]) -> None:
            try:
                await csp.Chan[int]().recv()
            finally:
                try:
                    await t
                except asyncio.CancelledError:
                    log.append("awaited task ended cancelled")

        t = csp.go(stuck, csp.Chan[int]())
        csp.go(awaits, t)
        await csp.gosched()

    run(main)
    assert log == ["awaited task ended cancelled"]
    msgs = _abandon_warnings(recwarn)
    assert len(msgs) == 1 and "stuck()" in msgs[0], msgs


# -- gosched: Go's order ------------------------------------------------------------------


def test_gosched_goes_behind_goroutines_woken_in_the_same_instant(run: Run) -> None:
    """Go's Gosched puts the caller behind every runnable goroutine: goroutines woken
    (made runnable) before the call run before the yielder resumes."""

    async def main() -> list[str]:
        trace: list[str] = []
        chans = [csp.Chan[int]() for _ in range(3)]

        async def consumer(i: int) -> None:
            await chans[i].recv()
            trace.append(f"consumer {i}")

        for i in range(3):
            csp.go(consumer, i)
        await csp.gosched()  # they all park
        for i in range(3):
            chans[i].send_nowait(i)  # wakes consumer i (runnable now)
        await csp.gosched()
        trace.append("main")
        return trace

    assert run(main) == ["consumer 0", "consumer 1", "consumer 2", "main"]


def test_gosched_lets_a_new_goroutine_run_first(run: Run) -> None:
    """``go f(); runtime.Gosched()``: the new goroutine runs before the spawner resumes."""

    async def main() -> list[str]:
        trace: list[str] = []

        async def f() -> None:
            trace.append("f")

        csp.go(f)
        await csp.gosched()
        trace.append("main")
        return trace

    assert run(main) == ["f", "main"]


# -- typing: go() and run() check their arguments (API.md typing row) ------------------

TYPING_SNIPPET = """
import asyncio
import csp

async def work(n: int, name: str = "") -> float:
    return n / 2

async def main() -> None:
    t: asyncio.Task[float] = csp.go(work, 1, name="x")
    t2: asyncio.Task[float] = csp.go(work(2))
    csp.go(work, "one")  # E: No overload variant of "go" matches argument types
    csp.go(work, 1, 2)  # E: No overload variant of "go" matches argument types
    csp.go(work, 1, nope=3)  # E: Unexpected keyword argument "nope" for "go"
    s: asyncio.Task[str] = csp.go(work, 1)  # E: No overload variant of "go" matches

async def entry(n: int) -> int:
    return n

r: int = csp.run(entry, 3)
csp.run(entry)  # E: Argument 1 to "run" has incompatible type
csp.run(entry, "3")  # E: Argument 1 to "run" has incompatible type
bad: str = csp.run(entry, 3)  # E: Incompatible types in assignment
csp.run(entry, 3, loop="asyncio", debug=True)
"""


def test_go_and_run_are_typed_with_their_arguments(tmp_path: Any) -> None:
    """Wrong arguments to csp.go / csp.run fail ``mypy --strict``, and the Task and the
    result carry the coroutine function's return type."""
    from typecheck import check_snippet

    check_snippet(TYPING_SNIPPET, tmp_path, "runtime_typing")


CTRL_C_PROGRAM = r'''
import asyncio, sys, csp

async def main() -> None:
    stuck = csp.Chan[int]()
    ready = csp.Chan[None]()

    async def parked() -> None:
        try:
            await stuck.recv()
        finally:
            print("parked: finally", flush=True)

    async def stubborn() -> None:
        try:
            await stuck.recv()
        finally:
            print("stubborn: finally", flush=True)
            await stuck.recv()  # blocks again: nothing can complete it

    csp.go(parked)
    csp.go(stubborn)
    await csp.gosched()
    print("ready", flush=True)
    await csp.sleep(3600)  # (a timer: not a deadlock)

try:
    csp.run(main, loop=sys.argv[1])
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
'''


def test_one_ctrl_c_ends_run_even_with_a_goroutine_stuck_in_cleanup(loop_name: str) -> None:
    """Ctrl-C needs to be pressed once: main and every goroutine are cancelled, their
    finally blocks run, one that blocks again in csp is abandoned, and run raises
    KeyboardInterrupt (a real SIGINT to a child process)."""
    import signal
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", CTRL_C_PROGRAM, loop_name],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:  # hung: let csp.run's SIGQUIT dump say where
        p.send_signal(signal.SIGQUIT)
        out, err = p.communicate(timeout=20)
        raise AssertionError(f"csp.run did not end after one Ctrl-C:\n{out}\n{err}") from None
    assert time.monotonic() - t0 < 10
    lines = out.splitlines()
    assert sorted(lines[:2]) == ["parked: finally", "stubborn: finally"], (out, err)
    assert lines[2:] == ["KeyboardInterrupt"], (out, err)
    assert "abandoned 1 goroutine" in err and "stubborn()" in err, err


LOST_SIGINT_PROGRAM = r'''
import signal, sys, threading, csp

def deliver(main_ident: int) -> None:
    # Once main is inside the selector's poll (asyncio) or in the loop's C code
    # (uvloop), run SIGINT's C handler in this thread: nothing interrupts main's wait
    # but a wakeup fd.
    while True:
        f = sys._current_frames().get(main_ident)
        if f is not None and f.f_code.co_filename.endswith(("selectors.py", "runners.py")):
            break
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)

async def main() -> None:
    threading.Thread(target=deliver, args=(threading.get_ident(),)).start()
    await csp.sleep(3600)

try:
    csp.run(main, loop=sys.argv[1])
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
'''


def test_ctrl_c_wakes_a_loop_asleep_on_a_long_timer(loop_name: str) -> None:
    """A SIGINT whose C handler runs while the main thread is already inside the
    selector's wait (another thread took it, or it landed just before ``epoll_wait``)
    still ends run: csp.run gives the signal a wakeup fd (asyncio's loop had none, and
    slept through Ctrl-C until its next timer; seen as an intermittent CI hang)."""
    import signal
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", LOST_SIGINT_PROGRAM, loop_name],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGQUIT)
        out, err = p.communicate(timeout=20)
        raise AssertionError(f"csp.run slept through Ctrl-C:\n{out}\n{err}") from None
    assert out.splitlines() == ["KeyboardInterrupt"], (out, err)


def test_run_sets_the_wakeup_fd_only_when_none_is_set_and_restores_it(
        loop_name: str) -> None:
    """On asyncio's loop, csp.run points the wakeup fd at the loop's self-pipe while it
    runs and clears it after; a wakeup fd set before (here a socket of the test's; uvloop
    sets its own) is left as it is."""
    import signal

    seen: list[int] = []

    async def main() -> None:
        fd = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(fd)
        seen.append(fd)

    assert signal.set_wakeup_fd(-1) == -1
    csp.run(main, loop=loop_name)
    assert signal.set_wakeup_fd(-1) == -1
    assert seen[0] != -1  # (asyncio: the loop's self-pipe; uvloop: its own)

    a, b = socket.socketpair()
    try:
        b.setblocking(False)
        signal.set_wakeup_fd(b.fileno())
        csp.run(main, loop=loop_name)
        assert signal.set_wakeup_fd(-1) == b.fileno()
        if loop_name == "asyncio":
            assert seen[1] == b.fileno()
    finally:
        a.close()
        b.close()
