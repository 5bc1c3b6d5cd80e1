"""csp.context: ports of Go's src/context/context_test.go plus the scope() bridge, and
notify_context (Go's os/signal NotifyContext, signal_test.go's TestNotifyContext*).

Deadlines run in virtual time on asyncio (a csp.testing bubble: the ``vrun`` fixture of
tests/vclock.py) and on real, tiny durations on uvloop, asserting only what load cannot
change there.
"""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest
from vclock import Clock, pending_timers

import csp
from csp import context
from csp.context import Canceled, Context, DeadlineExceeded

U = 2.0**-7  # time unit (~8 ms), binary-exact

bg = context.background


def now() -> float:
    return asyncio.get_running_loop().time()


async def is_done(ctx: Context) -> bool:
    """Is ctx.done() closed right now (select with default; never blocks)."""
    i, _ = await csp.select(ctx.done().recv, default=True)
    return i == 0


def children(ctx: Context) -> int:
    ch = ctx._children  # type: ignore[attr-defined]
    return 0 if ch is None else len(ch)


# -- roots (TestBackground, TestTODO) ----------------------------------------------


def test_background_and_todo(arun: Any) -> None:
    async def main() -> None:
        for ctx, name in ((context.background(), "context.Background"),
                          (context.todo(), "context.TODO")):
            assert str(ctx) == name
            assert ctx.done() is csp.nil
            assert ctx.err() is None
            assert ctx.deadline() is None
            assert ctx.value("k") is None
            assert not await is_done(ctx)
        assert context.background() is context.background()
        assert context.todo() is not context.background()

    arun(main)


# -- with_cancel (TestWithCancel, TestParentFinishesChild, TestChildFinishesFirst) ---


def test_with_cancel_propagates_to_all_descendants_at_once(run: Any) -> None:
    """When cancel() returns, every descendant's done channel is closed and err() is
    Canceled, with no await in between (Go: propagation is synchronous)."""

    async def main() -> None:
        c1, cancel = context.with_cancel(bg())
        assert str(c1) == "context.Background.WithCancel"
        v = context.with_value(c1, "k", "v")
        c2, _ = context.with_cancel(v)
        c3, _ = context.with_timeout(c2, 1000.0)
        kids = [context.with_cancel(c3)[0] for _ in range(10)]
        everyone = [c1, v, c2, c3, *kids]
        for c in everyone:
            assert c.done() is not csp.nil
            assert c.err() is None
            assert not await is_done(c)
        assert children(c1) == 1 and children(c2) == 1 and children(c3) == 10
        cancel()
        # no await since cancel(): all closed already
        assert [d.done()._closed for d in everyone] == [True] * len(everyone)
        assert [type(d.err()) for d in everyone] == [Canceled] * len(everyone)
        assert [children(c) for c in (c1, c2, c3)] == [0, 0, 0]
        assert c3._handle is None  # type: ignore[attr-defined]  # timer stopped
        assert pending_timers(asyncio.get_running_loop()) == 0

    run(main)


def test_cancel_wakes_every_parked_receiver(run: Any) -> None:
    async def main() -> list[str]:
        root, cancel = context.with_cancel(bg())
        a, _ = context.with_cancel(root)
        b = context.with_value(a, "k", 1)
        c, _ = context.with_cancel(b)
        woke = csp.Chan[str](10)

        async def waiter(name: str, ctx: Context) -> None:
            await ctx.done().recv()
            err = ctx.err()
            assert err is not None
            await woke.send(f"{name}:{err}")

        for name, ctx in (("root", root), ("a", a), ("b", b), ("c", c), ("c2", c)):
            csp.go(waiter, name, ctx)
        for _ in range(3):
            await csp.gosched()
        cancel()
        return sorted([await woke.recv() for _ in range(5)])

    assert run(main) == sorted(
        f"{n}:context canceled" for n in ("root", "a", "b", "c", "c2")
    )


def test_parent_finishes_child(arun: Any) -> None:
    async def main() -> None:
        parent, cancel = context.with_cancel(bg())
        cancel_child, stop = context.with_cancel(parent)
        value_child = context.with_value(parent, "key", "value")
        timer_child, stop2 = context.with_timeout(value_child, 1000.0)
        after_child = context.after_func(parent, lambda: None)
        # parent's children: cancel_child, timer_child (through value_child), after_child
        assert children(parent) == 3
        assert children(cancel_child) == 0 and children(timer_child) == 0
        for c in (parent, cancel_child, value_child, timer_child):
            assert not await is_done(c)
        cancel()
        assert children(parent) == 0
        for c in (parent, cancel_child, value_child, timer_child):
            assert await is_done(c)
            assert type(c.err()) is Canceled
        # a child of a cancelled parent is born cancelled
        pre = context.with_value(parent, "key", "value")
        assert await is_done(pre) and type(pre.err()) is Canceled
        born, _ = context.with_cancel(parent)
        assert await is_done(born) and type(born.err()) is Canceled
        assert children(parent) == 0
        assert after_child() is False  # already started
        stop()
        stop2()

    arun(main)


def test_child_finishes_first(arun: Any) -> None:
    async def main() -> None:
        cancelable, stop = context.with_cancel(bg())
        for parent in (bg(), cancelable):
            child, cancel = context.with_cancel(parent)
            if parent is cancelable:
                assert children(parent) == 1
            cancel()
            assert await is_done(child) and type(child.err()) is Canceled
            if parent is cancelable:
                assert children(parent) == 0
                assert not await is_done(parent) and parent.err() is None
        stop()

    arun(main)


def test_cancel_is_idempotent(arun: Any) -> None:
    async def main() -> None:
        parent, pcancel = context.with_cancel(bg())
        child, cancel = context.with_cancel(parent)
        d = child.done()
        cancel()
        err = child.err()
        cancel()
        pcancel()
        pcancel()
        assert child.err() is err and type(err) is Canceled
        assert child.done() is d and d._closed
        assert parent.err() is not err and type(parent.err()) is Canceled

    arun(main)


def test_done_is_same_channel_and_lazy(arun: Any) -> None:
    async def main() -> None:
        ctx, cancel = context.with_cancel(bg())
        assert ctx._done is None  # type: ignore[attr-defined]
        d = ctx.done()
        assert ctx.done() is d and context.with_value(ctx, 1, 2).done() is d
        assert len(d) == 0 and d.cap == 0
        cancel()
        assert ctx.done() is d
        # never asked before cancel: a shared closed channel
        c2, cancel2 = context.with_cancel(bg())
        cancel2()
        assert await is_done(c2) and c2.done() is c2.done()
        assert await c2.done().recv_ok() == (None, False)

    arun(main)


def test_contexts_made_before_a_loop_runs() -> None:
    """with_cancel / with_value / done() need no loop; the channel binds later."""
    ctx, cancel = context.with_cancel(bg())
    ctx = context.with_value(ctx, "k", "v")
    d = ctx.done()

    async def main() -> list[Any]:
        async def waiter(out: csp.Chan[str]) -> None:
            await d.recv()
            await out.send(str(ctx.err()))

        out = csp.Chan[str]()
        csp.go(waiter, out)
        await csp.gosched()
        cancel()
        return [await out.recv(), ctx.value("k")]

    assert csp.run(main, loop="asyncio") == ["context canceled", "v"]
    with pytest.raises(RuntimeError):
        context.with_timeout(bg(), 1)
    with pytest.raises(RuntimeError):
        context.with_deadline(bg(), 1)


# -- deadlines (TestDeadline, TestTimeout, TestCanceledTimeout) ---------------------


def test_with_timeout_expires(vrun: Any, clock: Clock) -> None:
    async def main() -> list[Any]:
        t0 = now()
        ctx, cancel = context.with_timeout(bg(), 4 * U)
        child, _ = context.with_cancel(ctx)
        v = context.with_value(child, "k", 1)
        d = ctx.deadline()
        assert d is not None
        out: list[Any] = [d == t0 + 4 * U if clock.virtual else abs(d - t0 - 4 * U) < 0.002,
                          child.deadline() == d, v.deadline() == d,
                          str(ctx).startswith("context.Background.WithDeadline(")]
        await v.done().recv()
        out.append(now() - t0 == 4 * U if clock.virtual else now() - t0 >= 4 * U - 0.001)
        out += [type(c.err()) for c in (ctx, child, v)]
        out.append(str(ctx.err()))
        cancel()
        out.append(type(ctx.err()))  # unchanged by a later cancel
        return out

    assert vrun(main) == [True, True, True, True, True, DeadlineExceeded, DeadlineExceeded,
                          DeadlineExceeded, "context deadline exceeded", DeadlineExceeded]


def test_deadline_inheritance(vrun: Any) -> None:
    """A child's deadline is never later than its parent's: asking for a later one
    gives a plain cancel context reporting the parent's deadline, which expires with
    the parent as DeadlineExceeded."""

    async def main() -> list[Any]:
        t0 = now()
        parent, _ = context.with_deadline(bg(), t0 + 4 * U)
        later, _ = context.with_timeout(parent, 100 * U)
        earlier, _ = context.with_deadline(parent, t0 + 2 * U)
        out: list[Any] = [later.deadline() == t0 + 4 * U, earlier.deadline() == t0 + 2 * U,
                          str(later).endswith(".WithCancel"),
                          later._handle is None]  # type: ignore[attr-defined]
        trace = csp.Chan[str](3)

        async def watch(name: str, ctx: Context) -> None:
            await ctx.done().recv()
            await trace.send(f"{name}:{type(ctx.err()).__name__}")

        for name, ctx in (("later", later), ("parent", parent), ("earlier", earlier)):
            csp.go(watch, name, ctx)
        # timers fire in deadline order; one cancel closes parent, then its child
        out += [await trace.recv() for _ in range(3)]
        out.append(pending_timers(asyncio.get_running_loop()))
        return out

    assert vrun(main) == [True, True, True, True, "earlier:DeadlineExceeded",
                          "parent:DeadlineExceeded", "later:DeadlineExceeded", 0]


def test_past_deadline_is_born_expired(vrun: Any) -> None:
    async def main() -> list[Any]:
        parent, cancel = context.with_cancel(bg())
        out: list[Any] = []
        for ctx, _ in (context.with_deadline(parent, now() - 1),
                       context.with_deadline(parent, now()),
                       context.with_timeout(parent, 0),
                       context.with_timeout(parent, -5)):
            out.append((await is_done(ctx), type(ctx.err())))
        out.append(children(parent))
        out.append(pending_timers(asyncio.get_running_loop()))
        cancel()
        return out

    assert vrun(main) == [(True, DeadlineExceeded)] * 4 + [0, 0]


def test_cancel_before_deadline_stops_timer(vrun: Any) -> None:
    async def main() -> list[Any]:
        ctx, cancel = context.with_timeout(bg(), 1000.0)
        o = context.with_value(ctx, "k", "v")
        child, _ = context.with_timeout(o, 2000.0)
        loop = asyncio.get_running_loop()
        out: list[Any] = [pending_timers(loop)]
        cancel()
        out += [type(ctx.err()), type(child.err()), pending_timers(loop)]
        return out

    assert vrun(main) == [1, Canceled, Canceled, 0]


def test_expired_child_unlinks_from_parent(vrun: Any) -> None:
    async def main() -> list[int]:
        parent, cancel = context.with_cancel(bg())
        kids = [context.with_timeout(parent, (k % 5 + 1) * U)[0] for k in range(100)]
        out = [children(parent)]
        await kids[-1].done().recv()
        await csp.sleep(6 * U)
        out.append(sum(type(k.err()) is DeadlineExceeded for k in kids))
        out.append(children(parent))
        out.append(pending_timers(asyncio.get_running_loop()))
        cancel()
        return out

    assert vrun(main) == [100, 100, 0, 0]


def test_with_timeout_is_not_a_deadlock(vrun: Any) -> None:
    """A pending context deadline postpones deadlock detection until it fires (G7)."""

    async def main() -> str:
        ctx, _ = context.with_timeout(bg(), 3 * U)
        await ctx.done().recv()
        return str(ctx.err())

    assert vrun(main) == "context deadline exceeded"

    async def main2() -> None:
        ctx, _ = context.with_timeout(bg(), 3 * U)
        await ctx.done().recv()
        await csp.Chan[None]().recv()

    with pytest.raises(csp.DeadlockError):
        vrun(main2)


# -- values (TestValues, TestWithValueChecksKey) ------------------------------------


class Key1:
    pass


class Key2:
    pass


def test_values() -> None:
    k1, k2, k3 = Key1(), Key2(), "k3"

    def check(c: Context, v1: Any, v2: Any, v3: Any) -> None:
        assert (c.value(k1), c.value(k2), c.value(k3)) == (v1, v2, v3)

    c0 = bg()
    check(c0, None, None, None)
    c1 = context.with_value(bg(), k1, "c1k1")
    check(c1, "c1k1", None, None)
    assert str(c1).startswith("context.Background.WithValue(")
    c2 = context.with_value(c1, k2, "c2k2")
    check(c2, "c1k1", "c2k2", None)
    c3 = context.with_value(c2, k3, "c3k3")
    check(c3, "c1k1", "c2k2", "c3k3")
    c4 = context.with_value(c3, k1, None)  # shadowing with None
    check(c4, None, "c2k2", "c3k3")
    o0, _ = context.with_cancel(c3)
    check(o0, "c1k1", "c2k2", "c3k3")
    o1 = context.with_value(context.without_cancel(c4), k2, "o1k2")
    check(o1, None, "o1k2", "c3k3")
    # keys compare with ==, innermost first
    c5 = context.with_value(c3, "".join(["k", "3"]), "c5")
    assert c5.value("k3") == "c5" and c3.value("k3") == "c3k3"
    assert context.with_value(bg(), 1, "int").value(1.0) == "int"


def test_deep_chains_have_no_recursion_limit(arun: Any) -> None:
    async def main() -> None:
        root, cancel = context.with_cancel(bg())
        ctx: Context = root
        for k in range(5000):
            ctx = context.with_value(ctx, k, k) if k % 2 else context.with_cancel(ctx)[0]
        assert ctx.value(1) == 1 and ctx.value(4999) == 4999 and ctx.value(4998) is None
        assert str(ctx).count("WithCancel") == 2501
        cancel()
        assert type(ctx.err()) is Canceled and await is_done(ctx)

    arun(main)


def test_nil_key_and_nil_parent() -> None:
    with pytest.raises(TypeError, match=r"^nil key$"):
        context.with_value(bg(), None, "v")
    makers: list[Any] = [
        lambda: context.with_cancel(None),  # type: ignore[arg-type]
        lambda: context.with_cancel_cause(None),  # type: ignore[arg-type]
        lambda: context.with_value(None, "k", "v"),  # type: ignore[arg-type]
        lambda: context.without_cancel(None),  # type: ignore[arg-type]
        lambda: context.after_func(None, print),  # type: ignore[arg-type]
        lambda: context.scope(None),  # type: ignore[arg-type]
    ]
    for make in makers:
        with pytest.raises(TypeError, match=r"^cannot create context from nil parent$"):
            make()

    async def main() -> None:
        for make in (lambda: context.with_timeout(None, 1),  # type: ignore[arg-type]
                     lambda: context.with_deadline(None, 1)):  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"^cannot create context from nil parent$"):
                make()

    csp.run(main, loop="asyncio")
    with pytest.raises(TypeError):
        context.with_cancel("not a context")  # type: ignore[arg-type]


# -- errors (TestDeadlineExceededSupportsTimeout) ------------------------------------


def test_error_values() -> None:
    assert str(Canceled()) == "context canceled"
    assert str(DeadlineExceeded()) == "context deadline exceeded"
    assert issubclass(DeadlineExceeded, TimeoutError)
    assert issubclass(DeadlineExceeded, Exception) and issubclass(Canceled, Exception)
    assert not issubclass(Canceled, TimeoutError)
    assert not issubclass(Canceled, asyncio.CancelledError)
    assert not issubclass(DeadlineExceeded, Canceled)


def test_child_of_expired_parent_reports_parents_kind(vrun: Any) -> None:
    async def main() -> list[Any]:
        parent, _ = context.with_timeout(bg(), U)
        await parent.done().recv()
        c1, _ = context.with_cancel(parent)
        c2, _ = context.with_timeout(parent, 100.0)
        c3 = context.with_value(parent, "k", 1)
        return [type(c.err()) for c in (c1, c2, c3)] + [
            c1.err() is parent.err(), pending_timers(asyncio.get_running_loop())]

    assert vrun(main) == [DeadlineExceeded] * 3 + [True, 0]


# -- cause, after_func, without_cancel (Go 1.20 / 1.21) --------------------------------


def test_cause(vrun: Any) -> None:
    async def main() -> list[Any]:
        boom = ValueError("boom")
        other = KeyError("other")
        out: list[Any] = [context.cause(bg())]
        ctx, cancel = context.with_cancel_cause(bg())
        child, _ = context.with_cancel(ctx)
        out.append(context.cause(ctx))
        cancel(boom)
        cancel(other)  # only the first cancellation counts
        out += [context.cause(ctx) is boom, context.cause(child) is boom, type(ctx.err())]
        # no cause: cause == err
        c2, cancel2 = context.with_cancel_cause(bg())
        cancel2(None)
        out.append(context.cause(c2) is c2.err())
        c3, cancel3 = context.with_cancel(bg())
        cancel3()
        out.append(context.cause(c3) is c3.err())
        # a child's own later cause does not override the parent's
        p, pc = context.with_cancel_cause(bg())
        k, kc = context.with_cancel_cause(p)
        pc(boom)
        kc(other)
        out.append(context.cause(k) is boom)
        # deadline causes apply only when the deadline fires
        d1, _ = context.with_timeout_cause(bg(), U, boom)
        d2, c_d2 = context.with_timeout_cause(bg(), U, boom)
        c_d2()
        await d1.done().recv()
        out += [context.cause(d1) is boom, type(d1.err()), type(context.cause(d2))]
        d3, _ = context.with_deadline_cause(bg(), now() - 1, other)
        out.append(context.cause(d3) is other)
        return out

    assert vrun(main) == [None, None, True, True, Canceled, True, True, True, True,
                          DeadlineExceeded, Canceled, True]


def test_context_after_func(vrun: Any) -> None:
    async def main() -> list[Any]:
        trace: list[str] = []
        ctx, cancel = context.with_cancel(bg())
        stop1 = context.after_func(ctx, lambda: trace.append("f1"))
        stop2 = context.after_func(ctx, lambda: trace.append("f2"))
        assert stop2() is True and stop2() is False
        assert children(ctx) == 1

        async def af() -> None:
            trace.append(f"async g={csp.num_goroutine()}")

        context.after_func(ctx, af)
        cancel()
        trace.append("cancel returned")  # f runs asynchronously
        for _ in range(4):
            await csp.gosched()
        out: list[Any] = [list(trace), stop1()]
        # already done: runs (from the loop) at once
        context.after_func(ctx, lambda: trace.append("late"))
        await csp.gosched()
        out.append(trace[-1])
        # never-cancelled context: never runs, stop() prevents nothing but reports True
        s = context.after_func(bg(), lambda: trace.append("never"))
        out.append(s())
        return out

    assert vrun(main) == [["cancel returned", "f1", "async g=2"], False, "late", True]


def test_without_cancel(arun: Any) -> None:
    async def main() -> None:
        parent, cancel = context.with_cancel(context.with_value(bg(), "k", "v"))
        wc = context.without_cancel(parent)
        child, _ = context.with_cancel(wc)
        cancel()
        assert wc.done() is csp.nil and wc.err() is None and wc.deadline() is None
        assert wc.value("k") == "v" and child.err() is None
        assert context.cause(wc) is None
        assert str(wc).endswith(".WithoutCancel")

    arun(main)


# -- select on ctx.done() with other cases ------------------------------------------


def test_select_on_done_with_other_cases(run: Any) -> None:
    async def main() -> list[Any]:
        ctx, cancel = context.with_cancel(bg())
        work = csp.Chan[int]()
        results: list[Any] = []

        async def worker(out: csp.Chan[Any]) -> None:
            while True:
                i, v = await csp.select(work.recv, ctx.done().recv)
                if i == 1:
                    await out.send(("stopped", str(ctx.err())))
                    return
                await out.send(("job", v))

        out = csp.Chan[Any]()
        csp.go(worker, out)
        for k in range(3):
            await work.send(k)
            results.append(await out.recv())
        cancel()
        results.append(await out.recv())
        # a cancelled context's done case is always ready; with work also ready the
        # choice is random (seeded), and both occur
        random.seed(7)
        ready = csp.Chan[int](1)
        picks = set()
        for _ in range(50):
            await ready.send(1)
            i, _ = await csp.select(ready.recv, ctx.done().recv)
            picks.add(i)
            if i == 1:
                await ready.recv()
        results.append(sorted(picks))
        return results

    assert run(main) == [("job", 0), ("job", 1), ("job", 2),
                         ("stopped", "context canceled"), [0, 1]]


def test_simultaneous_cancels(run: Any) -> None:
    """Go's TestSimultaneousCancels: a random tree, every node cancelled by its own
    goroutine in a seeded random order; all end cancelled, all waiters wake."""

    async def main() -> tuple[int, int, int]:
        rng = random.Random(11)
        root, root_cancel = context.with_cancel(bg())
        nodes: list[tuple[Context, Any]] = [(root, root_cancel)]
        for _ in range(200):
            parent = rng.choice(nodes)[0]
            if rng.random() < 0.3:
                parent = context.with_value(parent, rng.random(), 1)
            nodes.append(context.with_cancel(parent))
        done = csp.Chan[int](len(nodes))

        async def wait(ctx: Context) -> None:
            await ctx.done().recv()
            await done.send(1)

        async def canceller(c: Any) -> None:
            await csp.gosched()
            c()

        for ctx, _ in nodes:
            csp.go(wait, ctx)
        order = list(range(len(nodes)))
        rng.shuffle(order)
        for k in order:
            csp.go(canceller, nodes[k][1])
        total = 0
        for _ in nodes:
            total += await done.recv()
        return total, sum(type(c.err()) is Canceled for c, _ in nodes), children(root)

    assert run(main) == (201, 201, 0)


def test_layers_seeded(run: Any) -> None:
    """Go's testLayers: random stacks of value/cancel/timeout layers; cancelling a
    random layer ends exactly that layer and everything above it."""

    async def main() -> None:
        rng = random.Random(2024)
        for _ in range(200):
            ctx: Context = bg()
            layers: list[tuple[Context, Any]] = []
            vals: list[tuple[int, int]] = []
            for depth in range(rng.randrange(1, 12)):
                r = rng.random()
                if r < 0.4:
                    ctx = context.with_value(ctx, depth, depth * 10)
                    vals.append((depth, depth * 10))
                    layers.append((ctx, None))
                elif r < 0.7:
                    ctx, cancel = context.with_cancel(ctx)
                    layers.append((ctx, cancel))
                else:
                    ctx, cancel = context.with_timeout(ctx, 1000.0)
                    layers.append((ctx, cancel))
            for k, v in vals:
                assert ctx.value(k) == v
            cancellable = [i for i, (_, c) in enumerate(layers) if c is not None]
            if not cancellable:
                assert ctx.done() is csp.nil
                continue
            at = rng.choice(cancellable)
            layers[at][1]()
            for i, (c, _) in enumerate(layers):
                assert (await is_done(c)) is (i >= at), (i, at)
            for _, c in layers:
                if c is not None:
                    c()
        assert pending_timers(asyncio.get_running_loop()) == 0

    run(main)


# -- no growth: a long-lived parent with many short-lived children -------------------


def _churn(n: int) -> Any:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        parent, cancel = context.with_cancel(bg())
        out = []
        gc.disable()
        try:
            for k in range(n):
                if k % 2:
                    _, c = context.with_cancel(parent)
                else:
                    _, c = context.with_timeout(parent, 1000.0)
                c()
            out.append(children(parent))
            out.append(pending_timers(loop))
            # children that expire unlink themselves too
            kids = [context.with_timeout(parent, U)[0] for _ in range(1000)]
            await kids[-1].done().recv()
            out.append(children(parent))
            out.append(pending_timers(loop))
            # scopes over the long-lived parent unregister on exit
            for _ in range(n // 100):
                async with context.scope(parent):
                    pass
            out.append(children(parent))
        finally:
            gc.enable()
        cancel()
        return out

    return main


def test_many_short_lived_children_do_not_grow_parent(vrun: Any) -> None:
    assert vrun(_churn(200_000)) == [0, 0, 0, 0, 0]


@pytest.mark.slow
def test_a_million_short_lived_children(vrun: Any) -> None:
    assert vrun(_churn(1_000_000)) == [0, 0, 0, 0, 0]


# -- scope(): the bridge to asyncio cancellation ----------------------------------------


def test_scope_cancels_event_wait_and_raises_err(arun: Any) -> None:
    async def main() -> list[Any]:
        task = asyncio.current_task()
        assert task is not None
        ctx, cancel = context.with_cancel(bg())
        ev = asyncio.Event()
        asyncio.get_running_loop().call_soon(cancel)
        before = task.cancelling()
        with pytest.raises(Canceled) as e:
            async with context.scope(ctx) as sc:
                await ev.wait()
        out: list[Any] = [before, task.cancelling(), sc.expired(), str(e.value)]
        await asyncio.sleep(0)  # no cancellation left over
        out.append(children(ctx))
        return out

    assert arun(main) == [0, 0, True, "context canceled", 0]


def test_scope_socket_read_stops_when_ctx_ends(vrun: Any) -> None:
    """A plain asyncio socket read on 127.0.0.1 stops when the context is cancelled
    (from another goroutine) or its deadline passes; the connection stays usable."""

    async def main() -> list[Any]:
        accepted = csp.Chan[Any](1)

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await accepted.send(w)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        server_w = await accepted.recv()
        out: list[Any] = []

        ctx, cancel = context.with_cancel(bg())

        async def canceller() -> None:
            await csp.gosched()
            cancel()

        csp.go(canceller)
        try:
            async with context.scope(ctx):
                await reader.read(100)
        except Canceled as e:
            out.append(type(e))
        tctx, tcancel = context.with_timeout(bg(), 4 * U)
        try:
            async with context.scope(tctx):
                await reader.read(100)
        except TimeoutError as e:  # DeadlineExceeded is a TimeoutError
            out.append(type(e))
        tcancel()
        server_w.write(b"still works")
        await server_w.drain()
        out.append(await reader.read(100))
        out.append(asyncio.current_task().cancelling())  # type: ignore[union-attr]
        writer.close()
        server_w.close()
        server.close()
        await server.wait_closed()
        return out

    assert vrun(main) == [Canceled, DeadlineExceeded, b"still works", 0]


def test_scope_ctx_already_done_at_entry(arun: Any) -> None:
    async def main() -> list[Any]:
        ctx, cancel = context.with_cancel(bg())
        cancel()
        trace: list[Any] = []
        with pytest.raises(Canceled):
            async with context.scope(ctx):
                trace.append("body starts")  # runs up to its first suspension
                await asyncio.sleep(0)
                trace.append("not reached")
        # the block ends before suspending: no error, nothing left pending
        async with context.scope(ctx) as sc:
            trace.append("no await")
        trace.append(sc.expired())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        trace.append(asyncio.current_task().cancelling())  # type: ignore[union-attr]
        return trace

    assert arun(main) == ["body starts", "no await", False, 0]


def test_scope_body_cancels_its_own_ctx(arun: Any) -> None:
    async def main() -> list[Any]:
        trace: list[Any] = []
        ctx, cancel = context.with_cancel(bg())
        with pytest.raises(Canceled):
            async with context.scope(ctx):
                cancel()
                trace.append("after cancel")
                await asyncio.sleep(0)
                trace.append("not reached")
        ctx2, cancel2 = context.with_cancel(bg())
        async with context.scope(ctx2):
            cancel2()  # then leave without suspending
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        trace.append("no stray cancellation")
        trace.append(asyncio.current_task().cancelling())  # type: ignore[union-attr]
        return trace

    assert arun(main) == ["after cancel", "no stray cancellation", 0]


def test_scope_nested_with_asyncio_timeout(vrun: Any) -> None:
    async def main() -> list[Any]:
        task = asyncio.current_task()
        assert task is not None
        out: list[Any] = []
        ev = asyncio.Event()
        ctx, cancel = context.with_cancel(bg())
        # inner asyncio.timeout expires inside a live scope: TimeoutError, scope untouched
        async with context.scope(ctx) as sc:
            try:
                async with asyncio.timeout(2 * U):
                    await ev.wait()
            except TimeoutError as e:
                out.append(type(e))
        out.append(sc.expired())
        # outer asyncio.timeout expires around a live scope
        try:
            async with asyncio.timeout(2 * U):
                async with context.scope(ctx):
                    await ev.wait()
        except TimeoutError as e:
            out.append(type(e))
        # the scope fires inside an outer timeout that does not expire
        try:
            async with asyncio.timeout(1000.0):
                async with context.scope(ctx):
                    asyncio.get_running_loop().call_soon(cancel)
                    await ev.wait()
        except Canceled as e:
            out.append(type(e))
        out.append(task.cancelling())
        return out

    assert vrun(main) == [TimeoutError, False, TimeoutError, Canceled, 0]


def test_scope_and_outer_cancellation(arun: Any) -> None:
    """If the task is also cancelled from outside, the CancelledError wins (the
    scope's own request is withdrawn with uncancel(), the outer one stays counted)."""

    async def main() -> list[Any]:
        out: list[Any] = []
        ctx, cancel = context.with_cancel(bg())
        entered = asyncio.Event()

        async def body() -> None:
            async with context.scope(ctx):
                entered.set()
                await asyncio.Event().wait()

        t = asyncio.get_running_loop().create_task(body())
        await entered.wait()
        cancel()  # the scope cancels t ...
        t.cancel()  # ... and so does someone else
        with pytest.raises(asyncio.CancelledError):
            await t
        out.append(t.cancelling())
        # outer cancellation only: CancelledError, scope unregistered
        ctx2, cancel2 = context.with_cancel(bg())
        entered.clear()

        async def body2() -> None:
            async with context.scope(ctx2):
                entered.set()
                await asyncio.Event().wait()

        t2 = asyncio.get_running_loop().create_task(body2())
        await entered.wait()
        assert children(ctx2) == 1
        t2.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t2
        out.append(children(ctx2))
        cancel2()
        return out

    assert arun(main) == [1, 0]


def test_nested_scopes(arun: Any) -> None:
    """Both scopes fire when the outer context is cancelled; the inner one lets the
    CancelledError through (another request is outstanding) and the outer raises."""

    async def main() -> list[Any]:
        outer, cancel = context.with_cancel(bg())
        inner, inner_cancel = context.with_cancel(outer)
        out: list[Any] = []
        asyncio.get_running_loop().call_soon(cancel)
        try:
            async with context.scope(outer) as so:
                try:
                    async with context.scope(inner) as si:
                        await asyncio.Event().wait()
                except asyncio.CancelledError:
                    out.append("inner let CancelledError through")
                    raise
        except Canceled:
            out.append("outer raised Canceled")
        out += [si.expired(), so.expired(), asyncio.current_task().cancelling()]  # type: ignore[union-attr]
        # only the inner context ends: the inner scope raises, the outer is untouched
        outer2, c2 = context.with_cancel(bg())
        inner2, ic2 = context.with_cancel(outer2)
        async with context.scope(outer2) as so2:
            try:
                async with context.scope(inner2):
                    asyncio.get_running_loop().call_soon(ic2)
                    await asyncio.Event().wait()
            except Canceled:
                out.append("inner raised Canceled")
        out.append(so2.expired())
        c2()
        inner_cancel()
        return out

    assert arun(main) == ["inner let CancelledError through", "outer raised Canceled",
                          True, True, 0, "inner raised Canceled", False]


def test_scope_chains_cause_and_csp_ops(run: Any) -> None:
    """The scope also stops csp operations, which then take no effect."""

    async def main() -> list[Any]:
        ctx, cancel = context.with_cancel_cause(bg())
        ch = csp.Chan[int]()
        boom = ConnectionResetError("peer")

        async def canceller() -> None:
            await csp.gosched()
            cancel(boom)

        csp.go(canceller)
        try:
            async with context.scope(ctx):
                await ch.send(1)
        except Canceled as e:
            return [type(e), e.__cause__ is boom, len(ch), repr(ch).count("send_waiters=0")]
        return []

    assert run(main) == [Canceled, True, 0, 1]


def test_scope_misuse(arun: Any) -> None:
    async def main() -> list[str]:
        sc = context.scope(bg())
        async with sc:
            pass
        with pytest.raises(RuntimeError, match="already been entered"):
            async with sc:
                pass
        return [repr(sc)]

    assert arun(main) == ["<csp.context.Scope [finished] ctx=context.Background>"]


def test_reprs(arun: Any) -> None:
    async def main() -> list[str]:
        ctx, cancel = context.with_cancel(bg())
        context.with_cancel(ctx)
        a = repr(ctx)
        cancel()
        return [a, repr(ctx), repr(bg()), repr(context.with_value(bg(), "k", 1))]

    assert arun(main) == [
        "<csp.context context.Background.WithCancel live children=1 done_waiters=0>",
        "<csp.context context.Background.WithCancel context canceled children=0 "
        "done_waiters=0>",
        "<csp.context context.Background>",
        "<csp.context context.Background.WithValue('k', 1) live>",
    ]


def test_public_surface() -> None:
    import csp.context as mod

    assert csp.context is mod
    for name in ("background", "todo", "with_cancel", "with_timeout", "with_deadline",
                 "with_value", "Canceled", "DeadlineExceeded", "scope", "notify_context"):
        assert name in mod.__all__ and hasattr(mod, name)
    for name in ("after", "tick", "Timer", "Ticker", "after_func", "sleep"):
        assert name in csp.__all__ and hasattr(csp, name)


# -- notify_context (Go: signal.NotifyContext) --------------------------------------

posix_signals = pytest.mark.skipif(
    not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1/SIGUSR2 (POSIX)"
)
USR1 = getattr(signal, "SIGUSR1", 0)
USR2 = getattr(signal, "SIGUSR2", 0)


class Recorder:
    """A ``signal.signal`` handler that records the signals it gets."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.calls.append(signum)


@pytest.fixture
def saved_signals() -> Iterator[None]:
    """Each test leaves SIGINT, SIGUSR1 and SIGUSR2 as it found them, and no signal
    diverted (a test that forgets stop() on purpose cleans up after itself)."""
    from csp import _context

    sigs = [signal.SIGINT, USR1, USR2] if USR1 else [signal.SIGINT]
    before = {s: signal.getsignal(s) for s in sigs}
    try:
        yield
        assert _context._diverted == {}
    finally:
        _context._diverted.clear()
        for s, h in before.items():
            signal.signal(s, h)


async def wait_done(ctx: Context) -> None:
    """Wait until ctx.done() is closed; fail after 5 s instead of hanging."""
    i, _ = await csp.select(ctx.done().recv, csp.after(5.0).recv)
    assert i == 0, "ctx.done() was not closed"


def kill(sig: int) -> None:
    # Sent by the main thread to its own process: Python runs the handler before
    # os.kill returns (it checks for pending signals on the way out).
    os.kill(os.getpid(), sig)


@posix_signals
def test_notify_context_signal_cancels_ctx_and_only_ctx(run: Any, saved_signals: None) -> None:
    """Go's TestNotifyContextNotifications: the signal closes ctx.done(); err() is
    Canceled and cause() names the signal (Go 1.26). While diverted, the previous
    handler does not run, also for a second signal after ctx is done (Go: until stop);
    stop() puts exactly that handler back and is idempotent."""
    prev = Recorder()
    signal.signal(USR1, prev)

    async def main() -> list[object]:
        ctx, stop = context.notify_context(bg(), USR1)
        assert signal.getsignal(USR1) is not prev
        assert ctx.err() is None and not await is_done(ctx)
        trace: list[object] = [str(ctx)]
        kill(USR1)
        await wait_done(ctx)
        err, why = ctx.err(), context.cause(ctx)
        assert type(err) is Canceled and why is not err
        back = pickle.loads(pickle.dumps(why))
        assert (type(back), str(back), back.signal) == (type(why), str(why), USR1)  # type: ignore[attr-defined]
        trace += [type(why).__name__, str(why), why.signal, list(prev.calls)]  # type: ignore[union-attr]
        kill(USR1)  # a second one, with ctx already done: still swallowed
        await csp.sleep(0.01)
        trace.append(list(prev.calls))
        stop()
        assert signal.getsignal(USR1) is prev
        assert ctx.err() is err and context.cause(ctx) is why  # stop keeps the first cause
        stop()  # idempotent
        assert signal.getsignal(USR1) is prev
        kill(USR1)  # now the previous handler gets it
        trace.append(list(prev.calls))
        return trace

    assert run(main) == [
        "signal.NotifyContext(context.Background, [user defined signal 1])",
        "_SignalReceived", "user defined signal 1 signal received", USR1, [],
        [],
        [USR1],
    ]


@posix_signals
@pytest.mark.parametrize(
    "prev", ["recorder", "SIG_IGN", "SIG_DFL"], ids=["function", "SIG_IGN", "SIG_DFL"]
)
def test_notify_context_stop_cancels_and_restores_the_previous_handler(
    run: Any, saved_signals: None, prev: str
) -> None:
    """stop() before any signal: ctx is cancelled with Canceled as its cause (Go's
    stop calls cancel), and signal.getsignal() returns the very handler from before,
    whatever it was."""
    handler: Any = Recorder() if prev == "recorder" else getattr(signal, prev)
    signal.signal(USR2, handler)

    async def main() -> None:
        ctx, stop = context.notify_context(bg(), USR2)
        assert signal.getsignal(USR2) is not handler
        stop()
        assert type(ctx.err()) is Canceled and context.cause(ctx) is ctx.err()
        assert await is_done(ctx)
        assert signal.getsignal(USR2) is handler
        stop()
        assert signal.getsignal(USR2) is handler

    run(main)


@posix_signals
def test_notify_context_default_is_sigint(run: Any, saved_signals: None) -> None:
    """With no signals, Ctrl-C (SIGINT): it cancels ctx instead of csp.run's own
    handling (which would cancel main and raise KeyboardInterrupt); main goes on.
    stop() hands SIGINT back to csp.run's handler."""

    async def main() -> list[object]:
        before = signal.getsignal(signal.SIGINT)
        ctx, stop = context.notify_context(bg())
        try:
            kill(signal.SIGINT)
            await wait_done(ctx)
            await csp.sleep(0.01)  # main was not cancelled: it gets past an await
            out: list[object] = [str(ctx), str(context.cause(ctx))]
        finally:
            stop()
        out.append(signal.getsignal(signal.SIGINT) is before)
        return out

    assert run(main) == [
        "signal.NotifyContext(context.Background, [interrupt])",
        "interrupt signal received",
        True,
    ]


@posix_signals
def test_notify_contexts_sharing_signals(run: Any, saved_signals: None) -> None:
    """Go: every channel registered for a signal gets it. Each live notify context
    of a signal is cancelled by it, with that signal as its cause; a signal it does
    not list leaves it alone. The handlers from before come back only with the last
    stop() of each signal, in any stop order."""
    p1, p2 = Recorder(), Recorder()
    signal.signal(USR1, p1)
    signal.signal(USR2, p2)

    async def main() -> None:
        a, stop_a = context.notify_context(bg(), USR1)
        b, stop_b = context.notify_context(bg(), USR1, USR2, USR1)  # duplicates collapse
        c, stop_c = context.notify_context(bg(), USR2)
        assert str(b) == (
            "signal.NotifyContext(context.Background, "
            "[user defined signal 1 user defined signal 2])"
        )
        kill(USR1)
        await wait_done(a)
        await wait_done(b)
        assert c.err() is None
        kill(USR2)
        await wait_done(c)
        assert [context.cause(x).signal for x in (a, b, c)] == [USR1, USR1, USR2]  # type: ignore[union-attr]
        stop_a()
        assert signal.getsignal(USR1) is not p1  # b still diverts it
        stop_c()
        assert signal.getsignal(USR2) is not p2  # b still diverts it
        kill(USR1)
        kill(USR2)
        await csp.sleep(0.01)
        assert p1.calls == [] and p2.calls == []
        stop_b()
        assert signal.getsignal(USR1) is p1 and signal.getsignal(USR2) is p2
        kill(USR2)
        assert p1.calls == [] and p2.calls == [USR2]

    run(main)


@posix_signals
def test_notify_context_in_the_context_tree(arun: Any, saved_signals: None) -> None:
    """It is a context like the others: a parent's cancellation reaches it (and its
    cause); a signal reaches its children; a child of a cancelled parent is born
    cancelled, and the signal stays diverted until stop() all the same (Go
    registers before it looks at the parent). Its name wraps its parent's, as Go's."""

    prev = Recorder()
    signal.signal(USR1, prev)

    async def main() -> None:
        parent, cancel = context.with_cancel_cause(bg())
        v = context.with_value(parent, "k", 1)
        ctx, stop = context.notify_context(v, USR1)
        child, _ = context.with_cancel(ctx)
        assert str(child) == (
            "signal.NotifyContext(context.Background.WithCancel.WithValue('k', 1), "
            "[user defined signal 1]).WithCancel"
        )
        assert ctx.value("k") == 1
        kill(USR1)
        await wait_done(child)
        assert str(context.cause(child)) == "user defined signal 1 signal received"
        assert parent.err() is None
        stop()

        boom = RuntimeError("boom")
        ctx2, stop2 = context.notify_context(parent, USR1)
        cancel(boom)
        assert type(ctx2.err()) is Canceled and context.cause(ctx2) is boom
        kill(USR1)  # ctx2 is done, but the signal stays diverted until stop2()
        stop2()

        born, stop3 = context.notify_context(parent, USR1)  # parent already cancelled
        assert type(born.err()) is Canceled and context.cause(born) is boom
        kill(USR1)  # diverted although ctx was born done
        await csp.sleep(0.01)
        assert prev.calls == []
        assert context.cause(born) is boom  # the signal changes nothing any more
        stop3()
        assert signal.getsignal(USR1) is prev

    arun(main)


@posix_signals
def test_notify_context_is_not_a_deadlock(run: Any, saved_signals: None) -> None:
    """API.md: never a false DeadlockError. Main waits for nothing but ctx.done()
    (no timer, no I/O of its own) while another process sends the signal: until
    stop(), the loop waits for the signal as for I/O."""

    signal.signal(USR1, Recorder())  # should this test fail, a late signal is harmless

    async def main() -> str:
        ctx, stop = context.notify_context(bg(), USR1)
        code = f"import os, time; time.sleep(0.2); os.kill({os.getpid()}, {int(USR1)})"
        proc = subprocess.Popen([sys.executable, "-c", code])
        try:
            await ctx.done().recv()
        finally:
            proc.wait()
            stop()
        return str(context.cause(ctx))

    assert run(main) == "user defined signal 1 signal received"


@posix_signals
def test_notify_context_forgotten_stop_gives_the_signal_back(
    run: Any, saved_signals: None
) -> None:
    """A notify context whose loop closed without stop() can never be cancelled
    again, so it does not keep the signal: the next signal goes to the handler from
    before (put back and delivered again), and another notify context's stop()
    restores that handler as if the forgotten one had stopped. A late stop() is
    harmless."""
    prev = Recorder()
    signal.signal(USR1, prev)
    stops: list[Any] = []

    async def forget() -> None:
        _, stop = context.notify_context(bg(), USR1)
        stops.append(stop)

    async def stop_another() -> None:
        ctx, stop = context.notify_context(bg(), USR1)
        kill(USR1)  # the live one hears it; nothing reaches prev
        await wait_done(ctx)
        stop()

    run(forget)
    assert signal.getsignal(USR1) is not prev  # still diverted: stop() was not called
    kill(USR1)
    assert prev.calls == [USR1]
    assert signal.getsignal(USR1) is prev

    run(forget)
    run(stop_another)
    assert prev.calls == [USR1]
    assert signal.getsignal(USR1) is prev
    for stop in stops:
        stop()
    assert signal.getsignal(USR1) is prev


@posix_signals
def test_notify_context_misuse(saved_signals: None) -> None:
    """Clear errors, and nothing diverted by a call that failed: no running loop or
    not the main thread (RuntimeError), nil parent and non-signals (TypeError),
    invalid or uncatchable signals (ValueError), a signal the loop itself handles
    (RuntimeError); stop() off the main thread (RuntimeError, and it did nothing)."""
    before = signal.getsignal(USR1)
    with pytest.raises(RuntimeError, match="running event loop"):
        context.notify_context(bg(), USR1)
    with pytest.raises(TypeError, match="nil parent"):
        context.notify_context(None, USR1)  # type: ignore[arg-type]

    async def main() -> None:
        for bad in ("SIGUSR1", 1.0, True, None):
            with pytest.raises(TypeError, match=r"int or signal\.Signals"):
                context.notify_context(bg(), bad)  # type: ignore[arg-type]
        for bad_value in (0, 100_000, -1):
            with pytest.raises(ValueError, match="invalid signal number"):
                context.notify_context(bg(), bad_value)
        with pytest.raises(ValueError, match="SIGKILL cannot be caught"):
            context.notify_context(bg(), USR1, signal.SIGKILL)
        assert signal.getsignal(USR1) is before  # all or nothing

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(USR2, lambda: None)
        try:
            with pytest.raises(RuntimeError, match=r"loop\.add_signal_handler"):
                context.notify_context(bg(), USR1, USR2)
        finally:
            loop.remove_signal_handler(USR2)
        assert signal.getsignal(USR1) is before

        ctx, stop = context.notify_context(bg(), USR1)
        errors: list[BaseException] = []

        def off_main() -> None:
            try:
                stop()
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=off_main)
        t.start()
        t.join()
        assert [type(e) for e in errors] == [RuntimeError]
        assert "main thread" in str(errors[0])
        assert ctx.err() is None and signal.getsignal(USR1) is not before
        stop()
        assert signal.getsignal(USR1) is before

    asyncio.run(main())

    errors: list[BaseException] = []

    def in_thread() -> None:
        async def body() -> None:
            context.notify_context(bg(), USR1)

        try:
            asyncio.run(body())
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert [type(e) for e in errors] == [RuntimeError]
    assert "main thread" in str(errors[0])
    assert signal.getsignal(USR1) is before


# -- bad input: a clear error at the call, never a corrupted loop (issue 13) ----------


def deadline_calls() -> list[tuple[str, str, Any]]:
    """Every deadline entry point: (its name in errors, the argument's name, call)."""
    boom = RuntimeError("boom")
    return [
        ("with_timeout", "seconds", lambda d: context.with_timeout(bg(), d)),
        ("with_timeout_cause", "seconds", lambda d: context.with_timeout_cause(bg(), d, boom)),
        ("with_deadline", "deadline", lambda d: context.with_deadline(bg(), d)),
        ("with_deadline_cause", "deadline",
         lambda d: context.with_deadline_cause(bg(), d, boom)),
    ]


def test_deadlines_refuse_nan_and_non_numbers_naming_the_argument(vrun: Any) -> None:
    """NaN is a ``ValueError``, a non-number (a string, None, a bool) a ``TypeError``,
    each naming the call and the argument; nothing is scheduled, and an unrelated
    ``asyncio.timeout`` still fires (a NaN deadline corrupted asyncio's timer heap)."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        before = pending_timers(loop)
        msgs = []
        for bad in (float("nan"), "1", None, True):
            for _who, _arg, call in deadline_calls():
                with pytest.raises((ValueError, TypeError)) as e:
                    call(bad)
                msgs.append(f"{type(e.value).__name__}: {e.value}")
        assert pending_timers(loop) == before
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2 * U):
                await csp.Chan[int]().recv()
        return msgs

    calls = deadline_calls()
    assert vrun(main) == [f"ValueError: {who}: {arg} is NaN" for who, arg, _ in calls] + [
        f"TypeError: {who}: {arg} must be a real number, got {bad!r}"
        for bad in ("1", None, True)
        for who, arg, _ in calls
    ]


def test_infinite_timeout_never_expires(vrun: Any) -> None:
    """``with_timeout(ctx, inf)`` is a context whose deadline never comes (it stays
    live while other timers fire); ``-inf`` has passed: born expired."""

    async def main() -> list[object]:
        ctx, cancel = context.with_timeout(bg(), float("inf"))
        i, _ = await csp.select(ctx.done().recv, csp.after(U).recv)
        past, cancel2 = context.with_timeout(bg(), -float("inf"))
        out = [ctx.deadline(), i, ctx.err(), type(past.err()).__name__]
        cancel()
        cancel2()
        return out

    assert vrun(main) == [float("inf"), 1, None, "DeadlineExceeded"]


def test_context_after_func_refuses_a_non_callable_at_the_call(run: Any) -> None:
    """``context.after_func(ctx, 42)`` is a ``TypeError`` at the call (it used to be
    accepted and to end the program when ``ctx`` was cancelled); nothing registers."""

    async def main() -> str:
        ctx, cancel = context.with_cancel(bg())
        with pytest.raises(TypeError) as e:
            context.after_func(ctx, 42)  # type: ignore[arg-type]
        assert "children=0" in repr(ctx)
        cancel()
        await csp.gosched()
        return str(e.value)

    assert run(main) == "context.after_func: fn must be callable, got 42"


def test_deadline_context_of_a_closed_loop_is_refused(vrun: Any) -> None:
    """A live deadline context made under one ``csp.run`` can never expire under a
    later one (its timer was on the closed loop): ``done()`` and ``err()`` (also of
    its ``with_cancel`` and ``with_value`` children), ``after_func`` and ``scope`` raise
    ``RuntimeError`` naming the loop and the fix; a context that already ended, or a
    child with an earlier deadline of its own, works as usual."""

    async def make() -> tuple[Context, Context]:
        live, _ = context.with_timeout(bg(), 3600)
        ended, cancel = context.with_timeout(bg(), 3600)
        cancel()
        return live, ended

    async def use(made: tuple[Context, Context]) -> list[str]:
        live, ended = made
        child, cancel_child = context.with_cancel(live)
        value = context.with_value(child, "k", "v")
        msgs = []
        for call in (live.done, child.done, value.done, live.err, child.err, value.err,
                     lambda: context.after_func(live, print)):
            with pytest.raises(RuntimeError) as e:
                call()
            msgs.append(str(e.value))
        with pytest.raises(RuntimeError) as e:
            async with context.scope(value):
                pass
        msgs.append(str(e.value))
        assert await is_done(ended) and type(ended.err()) is Canceled
        mine, cancel_mine = context.with_timeout(live, U)
        await mine.done().recv()
        assert type(mine.err()) is DeadlineExceeded
        cancel_mine()
        cancel_child()
        assert await is_done(child)  # cancelled by hand: no longer refused
        return msgs

    made = vrun(make)
    msgs = vrun(use, made)
    pat = (r"^the deadline timer of context\.Background\.WithDeadline\([0-9.e+]+\){} "
           r"belongs to <.*>, which is closed; "
           r"make deadline contexts inside the csp\.run that uses them$")
    names = ["", r"\.WithCancel", r"\.WithCancel", "", r"\.WithCancel", r"\.WithCancel", "",
             r"\.WithCancel"]
    assert len(msgs) == len(names)
    for m, name in zip(msgs, names, strict=True):
        assert re.match(pat.format(name), m), m


def test_non_context_parent_is_named_with_the_function(arun: Any) -> None:
    """A parent (or ``ctx``) that is not a context is a ``TypeError`` naming the
    function and the argument; None keeps Go's text (API.md)."""

    async def main() -> list[str]:
        calls: list[tuple[str, Any]] = [
            ("with_cancel: parent", context.with_cancel),
            ("with_cancel_cause: parent", context.with_cancel_cause),
            ("with_timeout: parent", lambda p: context.with_timeout(p, 1)),
            ("with_deadline_cause: parent", lambda p: context.with_deadline_cause(p, 1, None)),
            ("with_value: parent", lambda p: context.with_value(p, "k", "v")),
            ("without_cancel: parent", context.without_cancel),
            ("cause: ctx", context.cause),
            ("context.after_func: ctx", lambda p: context.after_func(p, print)),
            ("scope: ctx", context.scope),
        ]
        msgs = []
        for _, call in calls:
            with pytest.raises(TypeError) as e:
                call("bg")
            msgs.append(str(e.value))
        assert msgs == [f"{w} must be a csp.context.Context, got 'bg'" for w, _ in calls]
        return msgs

    arun(main)
