"""Tests for csp.ErrGroup (ports of golang.org/x/sync/errgroup/errgroup_test.go)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import csp


async def until(pred: Callable[[], bool], limit: int = 1000) -> None:
    for _ in range(limit):
        if pred():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


@pytest.fixture
def ctxmod() -> Any:
    import csp.context

    return csp.context


async def closed(ch: csp.Chan[Any]) -> bool:
    i, _ = await csp.select(ch.recv, default=True)
    return i == 0


def make(err: BaseException | None) -> Callable[[], Any]:
    async def f() -> None:
        if err is not None:
            raise err

    return f


def test_go_zero_group(run: Callable[..., Any]) -> None:
    """Go: TestZeroGroup: wait reports the first error recorded, identity and all."""
    err1, err2 = ValueError("errgroup_test: 1"), KeyError("errgroup_test: 2")
    cases: list[list[BaseException | None]] = [
        [], [None], [err1], [err1, None], [err1, None, err2],
    ]

    async def main() -> None:
        for errs in cases:
            g = csp.ErrGroup()
            first: BaseException | None = None
            for err in errs:
                g.go(make(err))
                if first is None and err is not None:
                    first = err
                try:
                    await g.wait()
                    got: BaseException | None = None
                except Exception as e:
                    got = e
                assert got is first, (errs, got)

    run(main)


def test_go_with_context(run: Callable[..., Any], ctxmod: Any) -> None:
    """Go: TestWithContext: wait returns the error and the context is done after."""
    doom = RuntimeError("group_test: doomed")
    cases: list[tuple[list[BaseException | None], BaseException | None]] = [
        ([], None), ([None], None), ([doom], doom), ([doom, None], doom),
    ]

    async def main() -> None:
        for errs, want in cases:
            g, ctx = csp.ErrGroup.with_context(ctxmod.background())
            for err in errs:
                g.go(make(err))
            try:
                await g.wait()
                got: BaseException | None = None
            except Exception as e:
                got = e
            assert got is want
            assert await closed(ctx.done()), "ctx.done() was not closed"
            assert str(ctx.err()) == "context canceled"

    run(main)


def test_first_error_in_time_wins(run: Callable[..., Any]) -> None:
    """The error wait() raises is the first one *raised*, not the first launched;
    wait() still waits for every function."""

    async def main() -> list[str]:
        g = csp.ErrGroup()
        gate = csp.Chan[None]()
        trace: list[str] = []

        async def slow() -> None:
            await gate.recv()
            trace.append("slow raises")
            raise ValueError("slow")

        async def fast() -> None:
            trace.append("fast raises")
            raise KeyError("fast")

        g.go(slow)
        g.go(fast)
        await until(lambda: g._err is not None)
        gate.close()
        with pytest.raises(KeyError, match="fast"):
            await g.wait()
        trace.append("wait returned")
        return trace

    assert run(main) == ["fast raises", "slow raises", "wait returned"]


def test_errors_are_not_panics(run: Callable[..., Any]) -> None:
    """A function's exception is collected by the group; it does not end csp.run."""

    async def main() -> str:
        g = csp.ErrGroup()
        g.go(make(ValueError("x")))
        try:
            await g.wait()
        except ValueError as e:
            return f"caught {e}"
        return "no error"  # pragma: no cover

    assert run(main) == "caught x"


def test_go_limit(run: Callable[..., Any]) -> None:
    """Go: TestGoLimit: never more than the limit active; here the peak is exactly the
    limit and queued functions start in FIFO order."""

    async def main() -> tuple[int, list[int], int]:
        limit = 10
        g = csp.ErrGroup()
        g.set_limit(limit)
        st = {"active": 0, "peak": 0}
        started: list[int] = []

        async def f(i: int) -> None:
            started.append(i)
            st["active"] += 1
            if st["active"] > limit:
                raise AssertionError(f"saw {st['active']} active goroutines; want <= {limit}")
            st["peak"] = max(st["peak"], st["active"])
            for _ in range(1 + i % 3):
                await csp.gosched()  # give others a chance to increment active
            st["active"] -= 1

        for i in range(1 << 10 | 1):
            g.go(f, i)
        assert repr(g) == f"<csp.ErrGroup active=10 queued={1025 - 10} limit=10>"
        g._invariants()
        await g.wait()
        g._invariants()
        await until(lambda: csp.num_goroutine() == 1)  # every group goroutine ended
        return st["peak"], started, g._active

    peak, started, live = run(main)
    assert peak == 10
    assert started == list(range(1025))
    assert live == 0


def test_go_try_go(run: Callable[..., Any]) -> None:
    """Go: TestTryGo."""

    async def main() -> None:
        g = csp.ErrGroup()
        n = 42
        g.set_limit(42)
        ch = csp.Chan[None]()

        async def fn() -> None:
            await ch.send(None)

        async def drain(k: int) -> None:
            for _ in range(k):
                await ch.recv()

        for i in range(n):
            assert g.try_go(fn), f"TryGo should succeed but got fail at {i}-th call."
        assert not g.try_go(fn), "TryGo is expected to fail but succeeded."
        csp.go(drain, n)
        await g.wait()
        assert g.try_go(fn), "TryGo should succeed after all goroutines."
        csp.go(drain, 1)
        await g.wait()
        # Switch limit.
        g.set_limit(1)
        assert g.try_go(fn)
        assert not g.try_go(fn)
        csp.go(drain, 1)
        await g.wait()
        # Block all calls.
        g.set_limit(0)
        for _ in range(1 << 10):
            assert not g.try_go(fn)
        await g.wait()

    run(main)


def test_set_limit_while_active_raises(run: Callable[..., Any]) -> None:
    async def main() -> str:
        g = csp.ErrGroup()
        gate = csp.Chan[None]()

        async def f() -> None:
            await gate.recv()

        g.set_limit(1)
        g.go(f)
        g.go(f)  # queued
        try:
            g.set_limit(5)
        except RuntimeError as e:
            msg = str(e)
        gate.close()
        await g.wait()
        g.set_limit(-7)  # no limit, now that nothing is active
        assert g._limit == -1
        return msg

    assert run(main) == "errgroup: modify limit while 2 goroutines in the group are still active"


@pytest.mark.asyncio
async def test_go_rejects_non_coroutine_function() -> None:
    g = csp.ErrGroup()
    with pytest.raises(TypeError):
        g.go(lambda: None)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError):
        g.try_go(print)  # type: ignore[arg-type]

    async def f(x: int) -> None:
        pass

    coro = f(1)
    with pytest.raises(TypeError):
        g.go(coro, 2)
    assert coro.cr_frame is None  # type: ignore[attr-defined]  # closed, no "never awaited" warning
    assert repr(g) == "<csp.ErrGroup active=0 queued=0>"
    await g.wait()


@pytest.mark.asyncio
async def test_go_accepts_coroutine_object() -> None:
    g = csp.ErrGroup()
    out: list[int] = []

    async def f(x: int) -> None:
        out.append(x)

    g.go(f(3))
    assert g.try_go(f(4))
    await g.wait()
    assert sorted(out) == [3, 4]


def test_with_context_first_failure_cancels_ctx(run: Callable[..., Any], ctxmod: Any) -> None:
    """The first failure cancels ctx at once; functions watching ctx.done() stop."""

    async def main() -> list[str]:
        g, ctx = csp.ErrGroup.with_context(ctxmod.background())
        trace: list[str] = []

        async def watcher() -> None:
            await ctx.done().recv()
            trace.append(f"watcher saw {ctx.err()}")

        async def failer() -> None:
            trace.append("failing")
            raise ValueError("boom")

        g.go(watcher)
        await until(lambda: not trace and ctx.err() is None and g._active == 1)
        g.go(failer)
        with pytest.raises(ValueError, match="boom"):
            await g.wait()
        return trace

    assert run(main) == ["failing", "watcher saw context canceled"]


def test_with_context_cancelled_wait_leaves_ctx_alive(
    run: Callable[..., Any], ctxmod: Any
) -> None:
    """A wait() that is cancelled did not return: the context stays live and the
    functions keep running; a later wait() finishes the job."""

    async def main() -> tuple[bool, bool]:
        g, ctx = csp.ErrGroup.with_context(ctxmod.background())
        gate = csp.Chan[None]()

        async def f() -> None:
            await gate.recv()

        g.go(f)
        w = csp.go(g.wait)
        await until(lambda: len(g._wg._waiters) == 1)
        w.cancel()
        await until(w.done)
        alive = ctx.err() is None and not await closed(ctx.done())
        gate.close()
        await g.wait()
        return alive, await closed(ctx.done())

    assert run(main) == (True, True)


def test_with_context_cause_is_first_error(run: Callable[..., Any]) -> None:
    """As in Go (WithCancelCause), the group's context records the first error as its
    cause; err() is still Canceled."""
    import csp.context as context

    async def main() -> tuple[bool, str]:
        g, ctx = csp.ErrGroup.with_context(context.background())

        async def bad() -> None:
            raise KeyError("first")

        g.go(bad)
        with pytest.raises(KeyError):
            await g.wait()
        cause = context.cause(ctx)
        return isinstance(ctx.err(), context.Canceled), repr(cause)

    assert run(main) == (True, "KeyError('first')")


def test_with_context_real_module(run: Callable[..., Any]) -> None:
    """With the real csp.context: the group's context is a child of the parent."""
    import csp.context as context

    async def main() -> tuple[bool, bool, str]:
        parent, cancel_parent = context.with_cancel(context.background())
        g, ctx = csp.ErrGroup.with_context(parent)
        gate = csp.Chan[None]()

        async def f() -> None:
            await gate.recv()

        g.go(f)
        cancel_parent()  # cancelling the parent cancels the group's context
        child_done = await closed(ctx.done())
        gate.close()
        await g.wait()
        return child_done, isinstance(ctx.err(), context.Canceled), str(ctx.err())

    assert run(main) == (True, True, "context canceled")


@pytest.mark.asyncio
async def test_cancelled_functions_are_not_errors_and_free_their_slot() -> None:
    """A function whose goroutine is cancelled (even before its first step) records
    no error, frees its slot for the next queued function, and is counted done."""
    g = csp.ErrGroup()
    g.set_limit(1)
    out: list[str] = []

    async def blocked() -> None:
        await asyncio.Event().wait()

    async def ok(name: str) -> None:
        out.append(name)

    before = asyncio.all_tasks()
    g.go(blocked)
    (t1,) = asyncio.all_tasks() - before
    t1.cancel()  # cancelled before its first step
    g.go(blocked)
    g.go(ok, "third")
    await until(lambda: g._active == 1 and len(g._queue) == 1 and len(asyncio.all_tasks()) == 2)
    (t2,) = asyncio.all_tasks() - before - {t1}
    await until(lambda: t2._fut_waiter is not None)  # type: ignore[attr-defined]
    t2.cancel()  # cancelled while running
    await g.wait()
    assert out == ["third"]
    assert g._err is None
    assert repr(g) == "<csp.ErrGroup active=0 queued=0 limit=1>"


@pytest.mark.asyncio
async def test_repr_shows_error() -> None:
    g = csp.ErrGroup()
    g.go(make(ValueError("v")))
    with pytest.raises(ValueError):
        await g.wait()
    assert repr(g) == "<csp.ErrGroup active=0 queued=0 err=ValueError('v')>"


def test_set_limit_refuses_non_integers_naming_the_argument() -> None:
    """``set_limit(1.5)`` is a ``TypeError`` naming the call and the argument (it used
    to be accepted as a limit of 1.5); a bool is not a limit either."""
    g = csp.ErrGroup()
    msgs = []
    for bad in (1.5, "2", None, True):
        with pytest.raises(TypeError) as e:
            g.set_limit(bad)  # type: ignore[arg-type]
        msgs.append(str(e.value))
    assert msgs == [f"ErrGroup.set_limit: n must be an integer, got {b!r}"
                    for b in (1.5, "2", None, True)]
