"""Testing concurrent code: virtual-time bubbles (Go: ``testing/synctest``).

``csp.testing.run(main)`` is ``csp.run`` inside a *bubble*: the loop's clock is virtual.
It starts at 0.0 and never moves while anything can run; when every task is blocked
and no I/O is ready, it jumps to the earliest pending timer. Every timer source reads
it: ``csp.sleep``, ``after``, ``tick``, ``Timer``/``Ticker``, context deadlines,
``asyncio.sleep``, ``asyncio.timeout``, ``loop.call_later``. An hour of timeouts and
retries runs in milliseconds, and exactly: ``loop.time()`` after ``await
csp.sleep(3)`` is 3.0. A bubble in which everything is blocked with no timer pending
raises :class:`csp.DeadlockError`, as ``csp.run`` does. Real sockets on 127.0.0.1 work
inside a bubble (ready I/O is served before the clock jumps).

``await csp.testing.wait()`` (Go: ``synctest.Wait``) returns once every other task of
the bubble is blocked, without moving the clock: the moment to assert what the
goroutines did. Example::

    import csp, csp.testing

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ctx, cancel = csp.context.with_timeout(csp.context.background(), 5)
        await ctx.done().recv()
        assert loop.time() == 5.0       # no real time passed

    csp.testing.run(main)

The virtual clock is the loop's: it is honoured on asyncio's loop, whose clock can be
replaced; uvloop's is libuv's (``loop="uvloop"`` raises ``ValueError``). Threads do
not hold the clock: a bubble's time moves when its own tasks are all blocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, TypeVarTuple, overload

from csp import _compat, _sched
from csp._runtime import _Options, run_with
from csp._vtime import VirtualTimeLoop

__all__ = ["run", "wait"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def _loop_class(loop: str) -> type[VirtualTimeLoop]:
    if not isinstance(loop, str):
        raise TypeError(f"csp.testing.run: loop must be 'asyncio', got {loop!r}")
    if loop == "uvloop":
        raise ValueError(
            "csp.testing.run: loop='uvloop' cannot be honoured: virtual time replaces the "
            "loop's clock, and uvloop's is libuv's (use loop='asyncio', the default)")
    if loop not in ("asyncio", "auto"):
        raise ValueError(f"csp.testing.run: unknown loop {loop!r}: expected 'asyncio'")
    return VirtualTimeLoop


@overload
def run(main: Callable[[*Ts], Awaitable[T]], /, *args: *Ts, loop: str = ...,
        debug: bool = ...) -> T: ...


@overload
def run(main: Coroutine[Any, Any, T], /, *, loop: str = ..., debug: bool = ...) -> T: ...


def run(  # type: ignore[misc]  # (mypy: an implementation of a *Ts overload)
    main: Any, /, *args: Any, loop: str = "asyncio", debug: bool = False
) -> Any:
    """Run ``main(*args)`` as ``csp.run`` does, in a bubble with a virtual clock.

    Go: ``synctest.Test``. ``loop.time()`` starts at 0.0; the clock jumps to the next
    timer only when everything is blocked and no I/O is ready, so timers fire in order
    at their exact times, in microseconds of real time. Everything blocked with no
    timer pending: :class:`csp.DeadlockError`. ``loop`` is ``"asyncio"`` (the only loop
    whose clock can be replaced; ``"uvloop"`` raises ``ValueError``). SIGQUIT is left
    alone (a test runner owns the process). Example::

        async def main() -> None:
            await csp.sleep(3600)
            assert asyncio.get_running_loop().time() == 3600.0

        csp.testing.run(main)
    """
    try:
        factory = _loop_class(loop)
    except (TypeError, ValueError):
        if asyncio.iscoroutine(main):
            main.close()
        raise
    return run_with(main, args, _Options("csp.testing.run", loop, debug, False, factory))


def in_bubble(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """Whether ``loop`` (default: the running loop) is a bubble's, with virtual time."""
    if loop is None:
        loop = _compat.get_running_loop()
    return isinstance(loop, VirtualTimeLoop)


def _idle(loop: asyncio.AbstractEventLoop, sched: _sched.Scheduler) -> bool:
    """Nothing but the caller can run: no ready callback, no csp wake-up queued, no
    timer due now, no I/O ready (polled without waiting)."""
    queues = _compat.loop_queues(loop)
    assert queues is not None
    ready, scheduled, selector = queues
    if sched.runq or any(not h.cancelled() for h in ready.copy()):  # (see _csp_busy)
        return False
    now = loop.time()
    if any(not h.cancelled() and h.when() <= now for h in scheduled):
        return False
    return not selector.select(0)


async def wait() -> None:
    """Return once every other task of the bubble is blocked (Go: ``synctest.Wait``).

    Blocked: parked in a csp operation, sleeping on a timer, or awaiting an asyncio
    future nothing runnable is about to complete. The clock does not move. Use it to
    assert what goroutines did in reaction to an event before time goes on. Outside a
    bubble: ``RuntimeError``. Example::

        csp.go(worker, jobs)
        await jobs.send(1)
        await csp.testing.wait()        # the worker handled it and is blocked again
        assert handled == [1]
    """
    loop = _compat.get_running_loop()
    if loop is None or not isinstance(loop, VirtualTimeLoop):
        raise RuntimeError(
            "csp.testing.wait() must be called inside a bubble (csp.testing.run): "
            "outside one, other tasks may be waiting for real time or real I/O")
    sched = _sched.scheduler()
    # Two idle looks in a row, a loop iteration apart: what the first look let run
    # (I/O it found ready, callbacks those queued) has had its turn.
    quiet = 0
    while quiet < 2:
        await asyncio.sleep(0)
        quiet = quiet + 1 if _idle(loop, sched) else 0
