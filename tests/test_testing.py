"""csp/testing.py and csp/_vtime.py: virtual-time bubbles (Go: testing/synctest).

Invariants: the bubble's clock starts at 0.0, never moves while anything can run, and
jumps exactly to the earliest timer when everything is blocked and no I/O is ready;
every timer source reads it; all blocked with no timer is a DeadlockError; ``wait()``
returns once every other task is blocked, without moving the clock. The Go examples
are those of the ``testing/synctest`` package documentation.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import csp
import csp.testing
from csp import context


def now() -> float:
    return asyncio.get_running_loop().time()


# -- the clock -----------------------------------------------------------------------


def test_clock_starts_at_zero_and_sleeps_are_exact() -> None:
    seen: list[float] = []

    async def main() -> None:
        seen.append(now())
        await csp.sleep(3600)
        seen.append(now())
        await asyncio.sleep(0.25)
        seen.append(now())
        await csp.sleep(1e-9)
        seen.append(now())

    t0 = time.perf_counter()
    csp.testing.run(main)
    assert seen == [0.0, 3600.0, 3600.25, 3600.25 + 1e-9]
    assert time.perf_counter() - t0 < 5  # an hour of virtual time, not of real time


def test_every_timer_source_reads_the_virtual_clock() -> None:
    out: dict[str, Any] = {}

    async def main() -> None:
        ctx, cancel = context.with_timeout(context.background(), 5)
        await ctx.done().recv()
        out["deadline"] = (now(), ctx.err())
        try:
            async with asyncio.timeout(2):
                await csp.Chan[int]().recv()
        except TimeoutError:
            out["asyncio.timeout"] = now()
        fired: list[float] = []
        asyncio.get_running_loop().call_later(1, lambda: fired.append(now()))
        await csp.after(1.5).recv()
        out["call_later"], out["after"] = fired[0], now()
        tk = csp.Ticker(2)
        ticks = [await tk.c.recv() for _ in range(3)]
        tk.stop()
        out["ticks"] = [now(), len(ticks)]
        t = csp.Timer(10)
        assert t.stop()
        out["stopped timer"] = now()
        cancel()

    csp.testing.run(main)
    assert out["deadline"][0] == 5.0
    assert isinstance(out["deadline"][1], context.DeadlineExceeded)
    assert out["asyncio.timeout"] == 7.0
    assert out["call_later"] == 8.0 and out["after"] == 8.5
    assert out["ticks"] == [14.5, 3]
    assert out["stopped timer"] == 14.5


def test_clock_does_not_move_while_a_goroutine_computes() -> None:
    seen: list[float] = []

    async def main() -> None:
        async def busy() -> None:
            end = time.perf_counter() + 0.05
            while time.perf_counter() < end:
                await csp.gosched()  # runnable all along: the clock must hold
            seen.append(now())

        csp.go(busy)
        await csp.sleep(1)  # due only once busy has stopped being runnable
        seen.append(now())

    csp.testing.run(main)
    assert seen == [0.0, 1.0]


def test_timers_fire_in_order_at_their_times() -> None:
    order: list[tuple[float, int]] = []

    async def main() -> None:
        wg = csp.WaitGroup()
        for i, d in enumerate([3.0, 1.0, 2.0, 1.0, 0.5]):
            async def sleeper(i: int = i, d: float = d) -> None:
                await csp.sleep(d)
                order.append((now(), i))

            wg.go(sleeper)
        await wg.wait()

    csp.testing.run(main)
    assert order == [(0.5, 4), (1.0, 1), (1.0, 3), (2.0, 2), (3.0, 0)]


def test_deadlock_in_a_bubble() -> None:
    async def main() -> None:
        await csp.sleep(10)  # a timer first: the clock jumps, then nothing is left
        await csp.Chan[int]().recv()

    with pytest.raises(csp.DeadlockError) as ei:
        csp.testing.run(main)
    lines = str(ei.value).splitlines()
    assert lines[0] == "all goroutines are asleep - deadlock!"
    assert lines[2] == "goroutine 1 [chan receive]:"


def test_a_loopback_tcp_echo_server_works_in_a_bubble() -> None:
    async def main() -> tuple[list[bytes], float]:
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while line := await r.readline():
                await csp.sleep(30)  # a slow server, in virtual time
                w.write(line)
                await w.drain()
            w.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        got = []
        for msg in (b"one\n", b"two\n"):
            w.write(msg)
            await w.drain()
            got.append(await r.readline())
        w.close()
        await w.wait_closed()
        server.close()
        await server.wait_closed()
        return got, now()

    got, t = csp.testing.run(main)
    assert got == [b"one\n", b"two\n"]
    assert t == 60.0


def test_main_result_and_args() -> None:
    async def main(a: int, b: int) -> int:
        await csp.sleep(a)
        return int(now()) + b

    assert csp.testing.run(main, 2, 40) == 42


@pytest.mark.parametrize("loop,exc,text", [
    ("uvloop", ValueError, "loop='uvloop' cannot be honoured"),
    ("trio", ValueError, "unknown loop 'trio'"),
    (3, TypeError, "loop must be 'asyncio', got 3"),
])
def test_bad_loop(loop: Any, exc: type[Exception], text: str) -> None:
    async def main() -> None:
        pass

    coro = main()
    with pytest.raises(exc, match=text.replace("(", r"\(")):
        csp.testing.run(coro, loop=loop)
    assert coro.cr_frame is None  # closed: no "never awaited" warning


def test_in_bubble() -> None:
    async def main() -> bool:
        return csp.testing.in_bubble()

    assert csp.testing.run(main) is True
    assert csp.run(main, loop="asyncio") is False


# -- wait ------------------------------------------------------------------------------


def test_wait_returns_once_the_others_are_blocked() -> None:
    log: list[tuple[str, Any]] = []

    async def main() -> None:
        jobs = csp.Chan[int]()
        results = csp.Chan[int](10)

        async def worker() -> None:
            async for j in jobs:
                await csp.gosched()
                await csp.gosched()  # several steps per job: wait must outlast them
                await results.send(j * 10)

        csp.go(worker)
        await jobs.send(1)
        await csp.testing.wait()
        log.append(("after 1", len(results)))
        await jobs.send(2)
        await csp.testing.wait()
        log.append(("after 2", len(results)))
        log.append(("clock", now()))
        jobs.close()

    csp.testing.run(main)
    assert log == [("after 1", 1), ("after 2", 2), ("clock", 0.0)]


def test_wait_does_not_move_the_clock_past_sleepers() -> None:
    seen: list[Any] = []

    async def main() -> None:
        woke = csp.atomic.Bool()

        async def sleeper() -> None:
            await csp.sleep(5)
            woke.store(True)

        csp.go(sleeper)
        await csp.testing.wait()
        seen.append((now(), woke.load()))
        await csp.sleep(5)
        await csp.testing.wait()
        seen.append((now(), woke.load()))

    csp.testing.run(main)
    assert seen == [(0.0, False), (5.0, True)]


def test_wait_outside_a_bubble_is_an_error() -> None:
    async def main() -> None:
        await csp.testing.wait()

    with pytest.raises(RuntimeError, match=r"inside a bubble \(csp.testing.run\)"):
        csp.run(main, loop="asyncio")


# -- Go's testing/synctest examples -----------------------------------------------------


def test_go_example_time() -> None:
    """synctest package docs, "Time": a goroutine sleeping 1ns sees exactly 1ns pass."""
    since: list[float] = []

    async def main() -> None:
        start = now()

        async def f() -> None:
            await csp.sleep(1e-9)
            since.append(now() - start)

        csp.go(f)
        await csp.sleep(2e-9)

    csp.testing.run(main)
    assert since == [1e-9]


def test_go_example_context_after_func() -> None:
    """synctest package docs, "Wait": AfterFunc runs only after cancel."""
    called: list[bool] = []

    async def main() -> None:
        ctx, cancel = context.with_cancel(context.background())
        context.after_func(ctx, lambda: called.append(True))
        await csp.testing.wait()
        assert called == [], "AfterFunc called before context is canceled"
        cancel()
        await csp.testing.wait()
        assert called == [True], "AfterFunc not called after context is canceled"

    csp.testing.run(main)


def test_go_example_with_timeout() -> None:
    """synctest docs (blog "Testing time"): the context expires exactly at its timeout."""
    async def main() -> None:
        timeout = 5.0
        ctx, cancel = context.with_timeout(context.background(), timeout)
        await csp.sleep(timeout - 1e-6)
        await csp.testing.wait()
        assert ctx.err() is None, "before timeout"
        await csp.sleep(1e-6)
        await csp.testing.wait()
        assert isinstance(ctx.err(), context.DeadlineExceeded), "after timeout"
        cancel()

    csp.testing.run(main)


# -- the worked example of docs/testing.md ------------------------------------------------


def test_the_docs_worked_example_passes_in_milliseconds(pytester: pytest.Pytester) -> None:
    """docs/testing.md's Python blocks, as one test module run by pytest (the plugin's
    marker with virtual time): its three tests pass, in far less real time than the
    26.5 virtual seconds they cover; and forgetting a close() leaks, as it says."""
    import pathlib
    import re

    doc = (pathlib.Path(__file__).parent.parent / "docs" / "testing.md").read_text()
    code = "\n\n".join(re.findall(r"```python\n(.*?)```", doc, re.S))
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_client=code)
    t0 = time.perf_counter()
    r = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:benchmark",
                           "-p", "no:hypothesispytest")
    r.assert_outcomes(passed=3)
    assert time.perf_counter() - t0 < 5

    pytester.makepyfile(test_client=code.replace(
        "    requests.close()  # the server's loop ends: no goroutine leaks\n", ""))
    r = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:benchmark",
                           "-p", "no:hypothesispytest")
    r.assert_outcomes(passed=2, failed=1)
    r.stdout.fnmatch_lines([
        "the test leaked goroutines: 1 goroutine still alive (Go: goleak)",
        "goroutine 2 [[]chan receive[]]:",
        "csp.Chan.__anext__(...)",
        "flaky_server.serve(...)",
        "created by test_retries_until_the_server_answers in goroutine 1",
    ])


def test_wait_cancelled_by_a_timeout_and_from_outside() -> None:
    """wait() is a suspension like any other: while a busy goroutine keeps it from
    returning, a cancellation from outside ends it (also inside asyncio.timeout: the
    outside cancellation is delivered, not turned into a timeout or swallowed), and the
    clock did not move meanwhile."""
    out: list[Any] = []

    async def main() -> None:
        stop = csp.Chan[None]()

        async def busy() -> None:
            while (await csp.select(stop.recv, default=True))[0] == -1:
                await csp.gosched()

        csp.go(busy)
        waiting = csp.go(csp.testing.wait)
        await csp.gosched()
        waiting.cancel()
        try:
            await waiting
        except asyncio.CancelledError:
            out.append("cancelled")

        async def in_timeout() -> None:
            async with asyncio.timeout(5):
                await csp.testing.wait()

        t = csp.go(in_timeout)
        await csp.gosched()
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            out.append(("outside cancel delivered", t.cancelled()))
        stop.close()
        await csp.testing.wait()
        out.append(now())

    csp.testing.run(main)
    assert out == ["cancelled", ("outside cancel delivered", True), 0.0]
