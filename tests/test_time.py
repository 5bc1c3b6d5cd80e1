"""csp.after / tick / Timer / Ticker / after_func / sleep (Go's package time, Go 1.23).

On asyncio these run in a csp.testing bubble (virtual time, starting at 0.0: the
``vrun`` fixture of tests/vclock.py) and assert exact times; on uvloop they run in real
time with durations of a few milliseconds and assert only orderings and counts that
machine load cannot change. ``U`` is the time unit.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import re
from typing import Any

import pytest
from vclock import Clock, pending_timers

import csp

U = 2.0**-7  # one time unit (~8 ms): binary-exact, so virtual-clock sums compare exactly


def now() -> float:
    return asyncio.get_running_loop().time()


async def ready(ch: csp.Chan[Any]) -> tuple[int, Any]:
    """Receive from ``ch`` only if a value is there now (select with default)."""
    return await csp.select(ch.recv, default=True)


# -- after ------------------------------------------------------------------------


def test_after_delivers_the_fire_time(vrun: Any, clock: Clock) -> None:
    async def main() -> tuple[float, float, float]:
        t0 = now()
        v = await csp.after(4 * U).recv()
        return t0, v, now()

    t0, v, t1 = vrun(main)
    if clock.virtual:
        assert (v, t1) == (t0 + 4 * U, t0 + 4 * U)
    else:
        assert t0 + 4 * U - 0.001 <= v <= t1


def test_after_nonpositive_fires_at_once(vrun: Any) -> None:
    """after(0), after(-1), Timer(0) have their value before anything else runs.

    (uvloop's time() reads the real clock at each call, so only bounds are exact.)"""

    async def main() -> list[Any]:
        t0 = now()
        out: list[Any] = []
        for d in (0, -1.0):
            i, v = await ready(csp.after(d))
            out.append((i, t0 <= v <= now()))
        t = csp.Timer(0)
        i, v = await ready(t.c)
        out.append((i, t0 <= v <= now()))
        out.append(now() - t0 < U)
        return out

    assert vrun(main) == [(0, True), (0, True), (0, True), True]


def test_after_order_follows_deadlines(vrun: Any) -> None:
    async def main() -> list[int]:
        chans = {d: csp.after(d * U) for d in (5, 1, 3, 2, 4)}
        order: list[int] = []
        cases = [chans[d].recv for d in sorted(chans)]
        for _ in range(5):
            i, _v = await csp.select(*cases)
            order.append(i + 1)
        return order

    assert vrun(main) == [1, 2, 3, 4, 5]


def test_timer_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        csp.Timer(1)
    with pytest.raises(RuntimeError):
        csp.after(1)
    with pytest.raises(RuntimeError):
        csp.Ticker(1)


# -- Timer: stop / reset return values, no stale values ----------------------------


def test_timer_stop_before_fire(vrun: Any) -> None:
    async def main() -> list[Any]:
        t = csp.Timer(U)
        out: list[Any] = [t.stop(), t.stop()]
        await csp.after(3 * U).recv()
        out.append(await ready(t.c))
        out.append(pending_timers(asyncio.get_running_loop()))
        return out

    assert vrun(main) == [True, False, (-1, None), 0]


def test_timer_fired_but_unreceived_counts_as_pending(vrun: Any) -> None:
    """Go 1.23: stop() of a timer that fired but was not received returns True and
    discards the value: nothing stale is received afterwards."""

    async def main() -> list[Any]:
        t = csp.Timer(U)
        await csp.after(3 * U).recv()  # t fired before this (earlier deadline)
        return [t.stop(), await ready(t.c), t.stop()]

    assert vrun(main) == [True, (-1, None), False]


def test_timer_received_then_stop_and_reset_return_false(vrun: Any, clock: Clock) -> None:
    async def main() -> list[Any]:
        t = csp.Timer(U)
        await t.c.recv()
        out: list[Any] = [t.stop()]
        t0 = now()
        out.append(t.reset(2 * U))  # stopped: not pending
        v = await t.c.recv()
        out.append(v == t0 + 2 * U if clock.virtual else v >= t0 + 2 * U - 0.001)
        out.append(t.reset(U))  # fired and received: not pending
        out.append(t.stop())  # pending again
        return out

    assert vrun(main) == [False, False, True, False, True]


def test_timer_reset_discards_the_fired_value(vrun: Any, clock: Clock) -> None:
    """reset() of a fired, unreceived timer returns True; the next value received is
    from the new schedule, never the stale one."""

    async def main() -> list[Any]:
        t = csp.Timer(U)
        await csp.after(2 * U).recv()
        t1 = now()
        out: list[Any] = [t.reset(3 * U), await ready(t.c)]
        v = await t.c.recv()
        out.append(v == t1 + 3 * U if clock.virtual else v >= t1 + 3 * U - 0.001)
        return out

    assert vrun(main) == [True, (-1, None), True]


def test_timer_reset_moves_a_pending_timer(vrun: Any, clock: Clock) -> None:
    async def main() -> list[Any]:
        t = csp.Timer(100 * U)
        t0 = now()
        out: list[Any] = [t.reset(2 * U)]
        v = await t.c.recv()
        out.append(v == t0 + 2 * U if clock.virtual else t0 + 2 * U - 0.001 <= v < t0 + 100 * U)
        out.append(t.reset(0))  # delivered: False; 0 fires at once
        i, v = await ready(t.c)
        # (the fire time: now, to the tick; on a real clock uvloop may refresh its
        # cached time in between, under load)
        out.append(i == 0 and (v == now() if clock.virtual else 0 <= now() - v < 0.05))
        return out

    assert vrun(main) == [True, True, False, True]


def test_parked_receiver_survives_stop_and_gets_the_reset_value(vrun: Any) -> None:
    """stop() never closes c: a receiver parked on it stays parked, and receives the
    value of a later reset (whose return is False: stop had already stopped it)."""

    async def main() -> list[Any]:
        t = csp.Timer(50 * U)
        got = csp.Chan[Any](1)

        async def receiver() -> None:
            await got.send(("got", await t.c.recv()))

        csp.go(receiver)
        await csp.gosched()
        out: list[Any] = [t.stop()]
        await csp.after(5 * U).recv()
        out.append(await ready(got))  # still parked
        t0 = now()
        out.append(t.reset(U))
        tag, v = await got.recv()
        out.append((tag, v >= t0))
        return out

    assert vrun(main) == [True, (-1, None), False, ("got", True)]


def test_timer_value_goes_straight_to_a_parked_select(vrun: Any) -> None:
    async def main() -> tuple[int, bool]:
        t = csp.Timer(2 * U)
        other = csp.Chan[int]()
        i, _ = await csp.select(other.recv, t.c.recv)
        return i, t.stop()

    assert vrun(main) == (1, False)


def test_cancelled_receiver_keeps_a_handed_over_timer_value(vrun: Any) -> None:
    """A timer value handed to a parked receiver belongs to it: cancelling the receiver
    in the same step neither loses the value nor leaves it in the channel."""

    async def main() -> list[Any]:
        t = csp.Timer(100 * U)
        got: list[Any] = []

        async def receiver() -> None:
            got.append(await t.c.recv())
            got.append("after recv")
            await csp.sleep(1000 * U)
            got.append("not reached")

        task = csp.go(receiver)
        await csp.gosched()
        h = t._r.handle
        assert h is not None
        h.cancel()
        t._r.handle = None
        t.c._fire(7.0)  # type: ignore[attr-defined]  # what the timer callback does when it fires
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return [got, t.stop(), len(t.c)]

    assert vrun(main) == [[7.0, "after recv"], False, 0]


# -- Ticker ------------------------------------------------------------------------


def test_ticker_ticks_in_phase(vrun: Any, clock: Clock) -> None:
    async def main() -> tuple[float, list[float]]:
        t0 = now()
        tk = csp.Ticker(U)
        vals = [await tk.c.recv() for _ in range(5)]
        tk.stop()
        return t0, vals

    t0, vals = vrun(main)
    if clock.virtual:
        assert vals == [t0 + k * U for k in range(1, 6)]
    else:  # uvloop's clock has millisecond resolution: ticks are non-decreasing
        assert all(a <= b for a, b in itertools.pairwise(vals))
        assert vals[0] >= t0 + U - 0.001 and vals[-1] >= t0 + 5 * U - 0.002


def test_ticker_slow_receiver_gets_oldest_tick_and_later_ones_drop(
    vrun: Any, clock: Clock
) -> None:
    async def main() -> list[Any]:
        t0 = now()
        tk = csp.Ticker(4 * U)
        await csp.sleep(22 * U)  # ticks at 4, 8, 12, 16, 20: one is kept
        woke = now()
        v = await tk.c.recv()
        out: list[Any] = [await ready(tk.c)]  # nothing else piled up
        nxt = await tk.c.recv()
        tk.stop()
        if clock.virtual:
            out += [v - t0, nxt - t0]
        else:
            out += [v <= woke, nxt > v]
        return out

    if clock.virtual:
        assert vrun(main) == [(-1, None), 4 * U, 24 * U]
    else:
        assert vrun(main) == [(-1, None), True, True]


def test_ticker_does_not_burst_after_a_stall(vrun: Any, clock: Clock) -> None:
    """A tick that fires late does not trigger a catch-up burst; the schedule keeps its
    phase (virtual clock only: the stall is a jump of the clock)."""
    if not clock.virtual:
        pytest.skip("needs the virtual clock")

    async def main() -> list[float]:
        loop: Any = asyncio.get_running_loop()
        t0 = now()
        tk = csp.Ticker(4 * U)
        loop.now += 21 * U  # the loop was stalled for 21 units (csp._vtime.VirtualTimeLoop.now)
        vals = [await tk.c.recv() - t0 for _ in range(3)]
        tk.stop()
        return vals

    assert vrun(main) == [21 * U, 24 * U, 28 * U]


def test_ticker_stop_discards_pending_tick_and_stops(vrun: Any) -> None:
    async def main() -> list[Any]:
        tk = csp.Ticker(U)
        await csp.after(U * 2.5).recv()  # a tick is buffered
        tk.stop()
        out: list[Any] = [await ready(tk.c)]
        await csp.after(10 * U).recv()
        out.append(await ready(tk.c))
        out.append(pending_timers(asyncio.get_running_loop()))
        return out

    assert vrun(main) == [(-1, None), (-1, None), 0]


def test_ticker_reset(vrun: Any, clock: Clock) -> None:
    async def main() -> list[Any]:
        tk = csp.Ticker(U)
        await csp.after(U * 2.5).recv()  # a tick is buffered
        t1 = now()
        tk.reset(5 * U)
        out: list[Any] = [await ready(tk.c)]  # the stale tick is gone
        a = await tk.c.recv()
        b = await tk.c.recv()
        tk.stop()
        if clock.virtual:
            out += [a - t1, b - t1]
        else:
            out += [a >= t1 + 5 * U - 0.001, b > a]
        return out

    if clock.virtual:
        assert vrun(main) == [(-1, None), 5 * U, 10 * U]
    else:
        assert vrun(main) == [(-1, None), True, True]


def test_ticker_nonpositive_interval(vrun: Any) -> None:
    async def main() -> list[str]:
        msgs = []
        for d in (0, -1.0):
            with pytest.raises(ValueError) as e:
                csp.Ticker(d)
            msgs.append(str(e.value))
        tk = csp.Ticker(U)
        with pytest.raises(ValueError) as e:
            tk.reset(0)
        msgs.append(str(e.value))
        tk.stop()
        assert csp.tick(0) is csp.nil
        assert csp.tick(-1) is csp.nil
        return msgs

    assert vrun(main) == ["non-positive interval for Ticker"] * 3


def test_tick_channel(vrun: Any, clock: Clock) -> None:
    async def main() -> tuple[float, list[float], int]:
        t0 = now()
        c = csp.tick(2 * U)
        vals = [await c.recv() for _ in range(3)]
        del c
        gc.collect()
        return t0, vals, pending_timers(asyncio.get_running_loop())

    t0, vals, pending = vrun(main)
    assert pending == 0  # the garbage tick channel took its timer with it
    if clock.virtual:
        assert vals == [t0 + 2 * U, t0 + 4 * U, t0 + 6 * U]
    else:
        assert vals == sorted(vals) and vals[-1] >= t0 + 6 * U - 0.002


# -- after_func --------------------------------------------------------------------


def test_after_func_sync_and_async(vrun: Any, clock: Clock) -> None:
    async def main() -> list[Any]:
        trace: list[Any] = []
        done = csp.Chan[None](2)

        def sync_fn() -> None:
            trace.append("sync")
            done._buf.append(None)

        async def async_fn() -> None:
            trace.append(("async", csp.num_goroutine()))
            await done.send(None)

        t1 = csp.after_func(2 * U, async_fn)
        t2 = csp.after_func(U, sync_fn)
        assert t1.c is csp.nil and t2.c is csp.nil
        trace.append("armed")
        await done.recv()
        await done.recv()
        trace += [t1.stop(), t2.stop()]
        return trace

    # async_fn runs as a goroutine: main + it = 2
    assert vrun(main) == ["armed", "sync", ("async", 2), False, False]


def test_after_func_stop_prevents_the_call(vrun: Any) -> None:
    async def main() -> list[Any]:
        trace: list[str] = []
        t = csp.after_func(U, lambda: trace.append("ran"))
        out: list[Any] = [t.stop(), t.stop()]
        await csp.sleep(5 * U)
        out.append(list(trace))
        out.append(pending_timers(asyncio.get_running_loop()))
        return out

    assert vrun(main) == [True, False, [], 0]


def test_after_func_zero_runs_on_next_iteration_not_inline(vrun: Any) -> None:
    async def main() -> list[str]:
        trace: list[str] = []
        csp.after_func(0, lambda: trace.append("fn"))
        csp.after_func(-1, lambda: trace.append("fn2"))
        trace.append("returned")
        for _ in range(3):
            await csp.gosched()
        t = csp.after_func(0, lambda: trace.append("never"))
        assert t.stop() is True
        for _ in range(3):
            await csp.gosched()
        return trace

    assert vrun(main) == ["returned", "fn", "fn2"]


def test_after_func_reset_moves_or_rearms(vrun: Any) -> None:
    async def main() -> list[Any]:
        trace: list[float] = []
        t0 = now()
        t = csp.after_func(10 * U, lambda: trace.append(now() - t0))
        out: list[Any] = [t.reset(U)]  # moved the pending call
        await csp.sleep(3 * U)
        out.append(len(trace))
        out.append(t.reset(U))  # already ran: arms another call
        await csp.sleep(3 * U)
        out.append(len(trace))
        return out

    assert vrun(main) == [True, 1, False, 2]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_after_func_exception_is_a_panic_under_run(vrun: Any, kind: str) -> None:
    class Boom(Exception):
        pass

    def sync_fn() -> None:
        raise Boom("sync")

    async def async_fn() -> None:
        raise Boom("async")

    async def main() -> None:
        csp.after_func(U, sync_fn if kind == "sync" else async_fn)
        await csp.sleep(100 * U)

    with pytest.raises(Boom, match=kind):
        vrun(main)


def test_after_func_second_exception_under_run_is_reported(run: Any) -> None:
    """Issue 13.7: two after_func functions raise in the same instant under csp.run:
    run raises the first, the loop's exception handler gets the second, once."""
    first, second = KeyError("first"), KeyError("second")
    calls: list[dict[str, Any]] = []

    def raise_(exc: BaseException) -> None:
        raise exc

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: calls.append(ctx))
        csp.after_func(0, lambda: raise_(first))
        csp.after_func(0, lambda: raise_(second))
        await csp.select()

    with pytest.raises(KeyError) as ei:
        run(main)
    assert ei.value is first
    assert [(c["message"], c["exception"], "task" in c) for c in calls] == [
        ("unhandled exception during csp.run() shutdown", second, False)]

def test_after_func_outside_run_reports_to_loop_handler(arun: Any) -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        seen: list[Any] = []
        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx["exception"]))

        def fn() -> None:
            raise KeyError("x")

        csp.after_func(0, fn)
        for _ in range(3):
            await asyncio.sleep(0)
        return [type(e) for e in seen]

    assert arun(main) == [KeyError]


def test_after_func_needs_callable(vrun: Any) -> None:
    async def main() -> None:
        with pytest.raises(TypeError):
            csp.after_func(1, 42)  # type: ignore[arg-type]

    vrun(main)


# -- sleep -------------------------------------------------------------------------


def test_sleep(vrun: Any, clock: Clock) -> None:
    async def main() -> list[Any]:
        t0 = now()
        await csp.sleep(3 * U)
        t1 = now()
        await csp.sleep(0)
        await csp.sleep(-5)
        t2 = now()
        if clock.virtual:
            return [t1 - t0, t2 - t1]
        return [t1 - t0 >= 3 * U - 0.001, t2 - t1 < 3 * U]

    assert vrun(main) == ([3 * U, 0.0] if clock.virtual else [True, True])


def test_sleep_zero_yields_once(vrun: Any) -> None:
    async def main() -> list[str]:
        trace: list[str] = []

        async def other() -> None:
            trace.append("other")

        csp.go(other)
        await csp.sleep(0)
        trace.append("main")
        return trace

    assert vrun(main) == ["other", "main"]


def test_cancelled_sleep_leaves_no_timer(vrun: Any) -> None:
    async def main() -> list[Any]:
        async def sleeper() -> None:
            await csp.sleep(10_000)

        tasks = [csp.go(sleeper) for _ in range(10)]
        await csp.gosched()
        loop = asyncio.get_running_loop()
        before = pending_timers(loop)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return [before, pending_timers(loop), [t.cancelled() for t in tasks].count(True)]

    assert vrun(main) == [10, 0, 10]


def test_sleep_ordering(vrun: Any) -> None:
    async def main() -> list[int]:
        out = csp.Chan[int](10)

        async def sleeper(k: int) -> None:
            await csp.sleep(k * U)
            await out.send(k)

        for k in (5, 2, 4, 1, 3):
            csp.go(sleeper, k)
        return [await out.recv() for _ in range(5)]

    assert vrun(main) == [1, 2, 3, 4, 5]


# -- nothing left on the loop ------------------------------------------------------


def test_many_timers_stopped_leave_no_handles(vrun: Any) -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        out = []
        gc.disable()  # 100k live objects make the cyclic GC the main cost; not under test
        try:
            timers = [csp.Timer(1000.0) for _ in range(100_000)]
        finally:
            gc.enable()
        out.append(pending_timers(loop))
        out.append(sum(t.stop() for t in timers))
        out.append(pending_timers(loop))
        tickers = [csp.Ticker(1000.0) for _ in range(1000)]
        for tk in tickers:
            tk.stop()
        fns = [csp.after_func(1000.0, print) for _ in range(1000)]
        out.append(sum(t.stop() for t in fns))
        out.append(pending_timers(loop))
        return out

    assert vrun(main) == [100_000, 100_000, 0, 1000, 0]


def test_garbage_timers_are_unscheduled(vrun: Any) -> None:
    """A timer whose channel nobody holds is collected and leaves no handle behind,
    so the idle-timeout idiom select(ch.recv, after(d).recv) does not pile up timers."""

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        out = []
        for _ in range(10_000):
            csp.after(1000.0)
        out.append(pending_timers(loop))
        for _ in range(1000):
            csp.Timer(1000.0)
            csp.Ticker(1000.0)
            csp.tick(1000.0)
        gc.collect()
        out.append(pending_timers(loop))
        ch = csp.Chan[int](1)
        got = 0
        for k in range(10_000):
            await ch.send(k)
            i, v = await csp.select(ch.recv, csp.after(1000.0).recv)
            got += v if i == 0 else 0
        out.append(pending_timers(loop))
        out.append(got == sum(range(10_000)))
        return out

    assert vrun(main) == [0, 0, 0, True]


def test_after_func_timer_runs_even_if_unreferenced(vrun: Any) -> None:
    async def main() -> list[str]:
        trace: list[str] = []
        csp.after_func(U, lambda: trace.append("ran"))
        gc.collect()
        await csp.sleep(3 * U)
        return trace

    assert vrun(main) == ["ran"]


# -- deadlock detection sees csp timers (G7) --------------------------------------


def test_waiting_on_a_timer_is_not_a_deadlock(vrun: Any) -> None:
    async def main() -> list[str]:
        trace: list[str] = []
        await csp.after(3 * U).recv()
        trace.append("after")
        await csp.sleep(2 * U)
        trace.append("sleep")
        t = csp.Timer(2 * U)
        await t.c.recv()
        trace.append("timer")
        done = csp.Chan[None]()
        csp.after_func(2 * U, done.close)
        await done.recv()
        trace.append("after_func")
        return trace

    assert vrun(main) == ["after", "sleep", "timer", "after_func"]


def test_deadlock_is_reported_after_the_timer_fired(vrun: Any) -> None:
    trace: list[str] = []

    async def worker(block: csp.Chan[None]) -> None:
        await csp.after(5 * U).recv()
        trace.append("worker woke")
        await block.recv()

    async def main() -> None:
        block = csp.Chan[None]()
        csp.go(worker, block)
        trace.append("main blocks")
        await block.recv()

    with pytest.raises(csp.DeadlockError) as e:
        vrun(main)
    assert trace == ["main blocks", "worker woke"]
    assert str(e.value).startswith("all goroutines are asleep - deadlock!")
    assert str(e.value).count("[chan receive]") == 2


def test_stopped_timer_and_ticker_do_not_postpone_deadlock(vrun: Any) -> None:
    async def main() -> None:
        t = csp.Timer(1e6)
        tk = csp.Ticker(1e6)
        t.stop()
        tk.stop()
        await t.c.recv()

    with pytest.raises(csp.DeadlockError):
        vrun(main)


def test_uvloop_accounting_survives_sub_ms_timers() -> None:
    """Under csp.run on uvloop, a timer with a sub-millisecond delay (uvloop returns a
    plain Handle for it) must not break the loop's timer accounting (it used to crash
    the 256th call_later and the deadlock check; fixed on main in 668fd4a)."""
    pytest.importorskip("uvloop")

    async def main() -> int:
        loop = asyncio.get_running_loop()
        loop.call_later(0.0001, lambda: None)  # uvloop: rounds to 0 ms -> plain Handle
        for _ in range(300):  # the 256th note prunes the list and calls .when()
            loop.call_later(10, lambda: None)
        return 1

    assert csp.run(main, loop="uvloop") == 1


def test_reprs(vrun: Any) -> None:
    async def main() -> list[str]:
        t = csp.Timer(1000.0)
        a = repr(t)
        t.stop()
        tk = csp.Ticker(0.5)
        b = repr(tk)
        tk.stop()
        f = csp.after_func(1000.0, print)
        c = repr(f)
        f.stop()
        t0 = csp.Timer(0)
        return [a.split(" when=")[0], repr(t), b.split(" when=")[0], c.split(" when=")[0],
                repr(t0), repr(tk)]

    assert vrun(main) == [
        "<csp.Timer pending",
        "<csp.Timer stopped>",
        "<csp.Ticker every=0.5s pending",
        "<csp.Timer after_func pending",
        "<csp.Timer fired unreceived>",
        "<csp.Ticker every=0.5s stopped>",
    ]


@pytest.mark.slow
def test_many_timers_firing_stress(vrun: Any) -> None:
    """Seeded: 20k timers with random delays, random stops and resets; every value
    that is received comes from a timer that was not stopped afterwards, and every
    timer that was left running delivers exactly one value."""
    import random

    async def main() -> tuple[int, int]:
        rng = random.Random(4)
        timers = [csp.Timer(rng.randrange(1, 50) * U) for _ in range(20_000)]
        live = set(range(len(timers)))
        for _ in range(5):
            await csp.sleep(rng.randrange(1, 10) * U)
            for k in rng.sample(sorted(live), 1000):
                t = timers[k]
                if rng.random() < 0.5:
                    t.stop()
                    live.discard(k)
                else:
                    t.reset(rng.randrange(1, 50) * U)
        await csp.sleep(100 * U)
        got = 0
        for k in live:
            got += (await ready(timers[k].c))[0] == 0
        stale = sum(1 for k in range(len(timers)) if k not in live and len(timers[k].c))
        return got, stale + len(live) - got

    got, bad = vrun(main)
    assert bad == 0 and got > 0


# -- second wave: receive-only timer channels, never early in real time ---------------


@pytest.mark.parametrize("make", ["after", "tick", "Timer", "Ticker"])
def test_timer_channels_are_receive_only(vrun: Any, make: str) -> None:
    """API.md timers row: the channels of after, tick, Timer.c and Ticker.c are
    receive-only: send and close raise ChannelError with Go's words (also as a select
    case), and len/cap are 0, also after the timer fired (Go 1.23)."""

    async def main() -> list[Any]:
        c: Any = {
            "after": lambda: csp.after(0),
            "tick": lambda: csp.tick(0.001),
            "Timer": lambda: csp.Timer(0).c,
            "Ticker": lambda: csp.Ticker(0.001).c,
        }[make]()
        out: list[Any] = []
        for bad in (lambda: c.send_nowait(1.0), c.close):
            with pytest.raises(csp.ChannelError) as e:
                bad()
            out.append(str(e.value))
        with pytest.raises(csp.ChannelError, match="send to receive-only channel"):
            await c.send(1.0)
        with pytest.raises(csp.ChannelError, match="send to receive-only channel"):
            await csp.select((c.send, 1.0))
        await csp.sleep(0.01)  # fired (a value is pending)
        out.append((len(c), c.cap))
        v, ok = await c.recv_ok()
        out.append((type(v), ok))
        return out

    assert vrun(main) == [
        "send to receive-only channel", "close of receive-only channel", (0, 0), (float, True)
    ]


def test_timers_never_fire_early_in_real_time(run: Any) -> None:
    """Outside a testing bubble a csp timer never fires before its duration has passed
    in real time (uvloop's clock has millisecond resolution; timers fired up to 0.74 ms
    early there before the fix): 40 short waits of each kind, measured with
    time.monotonic()."""
    import time as _t

    async def main() -> list[tuple[str, float]]:
        early: list[tuple[str, float]] = []
        for i in range(40):
            d = 0.0005 + (i % 7) * 0.0003
            for kind in ("sleep", "after", "Timer", "Ticker"):
                t0 = _t.monotonic()
                if kind == "sleep":
                    await csp.sleep(d)
                elif kind == "after":
                    await csp.after(d).recv()
                elif kind == "Timer":
                    await csp.Timer(d).c.recv()
                else:
                    tk = csp.Ticker(d)
                    await tk.c.recv()
                    tk.stop()
                got = _t.monotonic() - t0
                if got < d:
                    early.append((kind, d - got))
        return early

    assert run(main) == []


# -- bad input: a clear error at the call, never a corrupted loop (issue 13) ----------

NAN = float("nan")


def duration_calls() -> list[tuple[str, Any]]:
    """Every duration entry point of the time API, as (its name in errors, call)."""

    def timer_reset(d: Any) -> object:
        t = csp.Timer(U)
        try:
            return t.reset(d)
        finally:
            t.stop()

    def ticker_reset(d: Any) -> object:
        t = csp.Ticker(U)
        try:
            return t.reset(d)
        finally:
            t.stop()

    return [
        ("after", csp.after),
        ("tick", csp.tick),
        ("Timer", csp.Timer),
        ("Ticker", csp.Ticker),
        ("Timer.reset", timer_reset),
        ("Ticker.reset", ticker_reset),
        ("after_func", lambda d: csp.after_func(d, lambda: None)),
        ("sleep", lambda d: csp.sleep(d).send(None)),  # raises before the coroutine parks
    ]


def test_durations_refuse_nan_and_leave_the_loop_sound(vrun: Any) -> None:
    """NaN is a ``ValueError`` naming the call and the argument, for every duration;
    nothing is scheduled, and unrelated timeouts still fire (on asyncio a NaN deadline
    used to corrupt the timer heap, so ``asyncio.timeout`` never expired)."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        before = pending_timers(loop)
        msgs = []
        for _name, call in duration_calls():
            with pytest.raises(ValueError) as e:
                call(NAN)
            msgs.append(str(e.value))
        assert pending_timers(loop) == before
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2 * U):
                await csp.Chan[int]().recv()
        return msgs

    names = [n for n, _ in duration_calls()]
    assert vrun(main) == [f"{n}: seconds is NaN" for n in names]


def test_durations_refuse_non_numbers_naming_the_argument(vrun: Any) -> None:
    """A duration is a real number: a string, None, a bool or a complex number is a
    ``TypeError`` naming the call and the argument, raised at the call (a coroutine
    ``sleep`` raises when awaited and leaves no timer)."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        before = pending_timers(loop)
        msgs = []
        for bad in ("1", None, True, 1j):
            for _name, call in duration_calls():
                with pytest.raises(TypeError) as e:
                    call(bad)
                msgs.append(str(e.value))
        assert pending_timers(loop) == before
        return msgs

    names = [n for n, _ in duration_calls()]
    assert vrun(main) == [
        f"{n}: seconds must be a real number, got {bad!r}"
        for bad in ("1", None, True, 1j)
        for n in names
    ]


def test_durations_accept_any_real_number_and_infinity(vrun: Any, clock: Clock) -> None:
    """Ints, floats and ``numbers.Real`` (a Fraction) are durations; ``-inf`` has
    passed (fires at once) and ``+inf`` never comes: such a timer stays pending."""
    from fractions import Fraction

    async def main() -> list[object]:
        import time as _t

        clk = now if clock.virtual else _t.monotonic  # (real time: never early)
        t0 = clk()
        await csp.sleep(Fraction(1, 128))  # type: ignore[arg-type]
        slept = clk() - t0
        first, _ = await ready(csp.after(-float("inf")))
        t = csp.Timer(float("inf"))
        second, _ = await csp.select(t.c.recv, csp.after(10**400).recv, csp.after(U).recv)
        return [slept >= U if not clock.virtual else slept, first, second, t.stop()]

    assert vrun(main) == [U if clock.virtual else True, 0, 2, True]


def run_then(loop_name: str, make: Any, use: Any) -> Any:
    """Make timers under one ``csp.run``, then hand them to ``use`` under a later one."""
    made = csp.run(make, loop=loop_name)
    return csp.run(use, made, loop=loop_name)


def test_timers_of_a_closed_loop_refuse_to_be_used(loop_name: str) -> None:
    """A Timer, Ticker or ``after_func`` timer made under one ``csp.run`` and used
    under a later one raises ``RuntimeError`` naming its (closed) loop and the fix,
    instead of never firing (``reset`` used to schedule on the dead loop); a receive
    that would park on such a timer's channel is refused too, also in a select."""

    async def make() -> list[Any]:
        return [csp.Timer(3600), csp.Ticker(3600), csp.after_func(3600, print),
                csp.after(3600)]

    async def use(made: list[Any]) -> list[str]:
        timer, ticker, func, c = made
        calls = [
            lambda: timer.reset(1), lambda: timer.stop(), lambda: ticker.reset(1),
            lambda: ticker.stop(), lambda: func.reset(1), lambda: func.stop(),
            lambda: timer.c.recv_nowait(),
        ]
        msgs = []
        for call in calls:
            with pytest.raises(RuntimeError) as e:
                call()
            msgs.append(str(e.value))
        for aw in (c.recv(), ticker.c.recv_ok(), csp.select(timer.c.recv, csp.nil.recv),
                   csp.select(c.recv, default=True)):
            with pytest.raises(RuntimeError) as e:
                await aw
            msgs.append(str(e.value))
        return msgs

    msgs = run_then(loop_name, make, use)
    fix = "make timers inside the csp.run (or loop) that uses them"
    pat = r"^{} belongs to <.*>, which is closed; " + fix.replace("(", r"\(").replace(")", r"\)")
    whats = ["Timer"] * 2 + ["Ticker"] * 2 + ["Timer"] * 2 + ["this timer channel"] * 5
    assert len(msgs) == len(whats)
    for what, msg in zip(whats, msgs, strict=True):
        assert re.match(pat.format(what) + "$", msg), msg


def test_timer_value_fired_before_its_loop_closed_is_still_received(loop_name: str) -> None:
    """Only what could never complete is refused: a value that fired under the first
    run and was not received is still delivered under a later one."""

    async def make() -> Any:
        c = csp.after(0)
        assert len(c) == 0  # fired (Go 1.23: len 0)
        return c

    async def use(c: Any) -> tuple[bool, bool]:
        v, ok = await c.recv_ok()
        return isinstance(v, float), ok

    assert run_then(loop_name, make, use) == (True, True)


def test_timer_refuses_stop_and_reset_from_another_running_loop(loop_name: str) -> None:
    """A timer's handle is on its own loop: ``stop``/``reset`` from another running
    loop (its own still open) raise ``RuntimeError`` naming both loops."""
    from conftest import loop_factory

    async def make() -> csp.Timer:
        return csp.Timer(3600)

    async def use(t: csp.Timer) -> list[str]:
        msgs = []
        for call in (t.stop, lambda: t.reset(1)):
            with pytest.raises(RuntimeError) as e:
                call()
            msgs.append(str(e.value))
        return msgs

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as a:
        t = a.run(make())
        with asyncio.Runner(loop_factory=loop_factory(loop_name)) as b:
            msgs = b.run(use(t))
        assert t.stop() is True  # its own loop may still stop it (no loop running now)
    assert len(msgs) == 2
    for m in msgs:
        assert m.startswith("Timer belongs to <") and ", not to the running loop <" in m
        assert m.endswith("; make timers inside the csp.run (or loop) that uses them")


def test_finished_sleep_leaves_no_cycle(vrun: Any, gc_off: None) -> None:
    """A sleep that completed drops its abort hook: before, waiter -> hook -> timer
    handle -> waiter was a cycle (7 objects per sleep on the asyncio loop) that only
    the collector freed. Counted with the collector off."""

    async def main() -> int:
        await csp.sleep(0.0001)
        gc.collect()
        for _ in range(20):
            await csp.sleep(0.0001)
        return gc.collect()

    assert vrun(main) == 0
