"""Timers: Go's package time (Sleep, After, Tick, Timer, Ticker, AfterFunc) on the loop clock.

Strategy. A timer is one loop ``TimerHandle`` (``loop.call_at``) plus a small state
record, :class:`_Arm`, which the handle's callback receives. ``_Arm`` *is* a weak
reference to the timer's channel: the loop holds the record strongly (through the
handle) but the channel only weakly, so a channel nobody can receive from any more
(``select(ch.recv, csp.after(60).recv)`` after the select returned, an unreferenced
``csp.tick``) is collected at once, and the weak reference's callback cancels the
handle: a garbage timer leaves nothing scheduled on the loop. ``after_func`` timers
have no channel; their handle holds the function strongly, as Go's runtime does.

Timer channels are receive-only (``csp._chan._TimerChan``, Go 1.23: ``len`` and ``cap``
are 0, ``send`` and ``close`` raise). Firing completes the longest-parked
live receiver directly (the value belongs to it from that instant, so cancellation
cannot lose it) or else fills the one-slot buffer with a non-blocking put; a Ticker
drops a tick when the slot is still full, so a slow receiver gets the oldest
undelivered tick. ``stop()``/``reset()`` cancel the handle and clear the slot: a value
that fired but was not received counts as pending and is discarded, which gives Go
1.23's guarantee that no stale value is received after they return.

Invariants:
  * ``_Arm.handle`` is the one live loop handle of the timer, or None when it is not
    scheduled; a cancelled or fired handle is never left in it;
  * a timer's channel holds at most one value, and none while a receiver is parked
    on it (the channel's own invariant);
  * the loop never holds a timer's channel strongly.

Bad input fails at the call (``csp._check``): a duration that is not a real number is
a ``TypeError`` and NaN a ``ValueError`` (NaN would corrupt asyncio's timer heap), both
naming the function and the argument. A timer belongs to the loop it was made on:
``stop``/``reset`` from another loop, or after that loop closed, and a receive that
would park on the channel of a timer whose loop has closed, raise ``RuntimeError``
rather than never fire.
"""

from __future__ import annotations

import asyncio
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any, cast, final

from csp import _compat, _sched
from csp._chan import RecvChan, _BaseChan, _TimerChan, is_coro, nil
from csp._check import TIMERS_FIX, duration, foreign_loop
from csp._waiter import PENDING, Waiter, budget, owed, prelude, yield_now

__all__ = ["Ticker", "Timer", "after", "after_func", "sleep", "tick"]


class _Arm(weakref.ref):  # type: ignore[type-arg]
    """A timer's schedule: a weak reference to its channel plus the loop handle.

    ``fn`` is set for ``after_func`` timers (their referent is ``csp.nil``, which
    lives forever); ``period`` is non-zero for tickers.
    """

    __slots__ = ("due", "fn", "handle", "loop", "period", "when")

    handle: asyncio.TimerHandle | asyncio.Handle | None
    loop: asyncio.AbstractEventLoop
    when: float
    due: float  # the real (time.monotonic) time it may fire at, on a coarse clock; else 0
    period: float
    fn: Callable[[], object] | None

    def __init__(self, c: _BaseChan[Any], callback: Callable[[_Arm], None] | None) -> None:
        super().__init__(c, callback)  # type: ignore[call-arg]


def _chan_gone(r: _Arm) -> None:
    """Weak-reference callback: the timer's channel was collected; unschedule."""
    h = r.handle
    if h is not None:
        r.handle = None
        h.cancel()


def _new_arm(c: _BaseChan[Any], loop: asyncio.AbstractEventLoop, period: float = 0.0,
             fn: Callable[[], object] | None = None) -> _Arm:
    r = _Arm(c, None if fn is not None else _chan_gone)
    r.handle = None
    r.loop = loop
    r.when = 0.0
    r.due = 0.0
    r.period = period
    r.fn = fn
    return r


# uvloop's clock has millisecond resolution and its timers may fire up to a millisecond
# before their delay has passed in real time: on such a loop a timer also checks
# time.monotonic() and waits out the rest. (Not on virtual clocks: asyncio loops.)
_coarse: dict[type, bool] = {}


def _coarse_clock(loop: asyncio.AbstractEventLoop) -> bool:
    t = type(loop)
    c = _coarse.get(t)
    if c is None:
        uvloop = sys.modules.get("uvloop")
        c = _coarse[t] = uvloop is not None and isinstance(loop, uvloop.Loop)
    return c


def _due(loop: asyncio.AbstractEventLoop, seconds: float) -> float:
    return time.monotonic() + seconds if _coarse_clock(loop) else 0.0


def _early(r: _Arm, cb: Callable[[_Arm], None]) -> bool:
    """The handle fired before ``r.due`` in real time: wait out the rest (True)."""
    if r.due:
        left = r.due - time.monotonic()
        if left > 0:
            r.handle = r.loop.call_later(max(left, 0.001), cb, r)
            return True
    return False


def _fire(r: _Arm) -> None:
    """Loop callback of a one-shot timer."""
    if _early(r, _fire):
        return
    r.handle = None
    fn = r.fn
    if fn is not None:
        _run_func(fn, r.loop)
        return
    c = r()
    if c is not None:
        c._fire(r.loop.time())


def _tick(r: _Arm) -> None:
    """Loop callback of a ticker: deliver, then schedule the next tick in phase,
    skipping the ticks that are already late (Go does not burst to catch up)."""
    c = r()
    if c is None:
        r.handle = None
        return
    if _early(r, _tick):
        return
    loop = r.loop
    now = loop.time()
    c._fire(now)
    p = r.period
    nxt = r.when + p
    if nxt <= now:
        nxt += p * ((now - nxt) // p + 1)
    r.when = nxt
    r.due = _due(loop, nxt - now)
    r.handle = loop.call_at(nxt, _tick, r)


def _start(r: _Arm, seconds: float) -> None:
    """Arm a one-shot timer. Precondition: ``r.handle is None``."""
    loop = r.loop
    if seconds <= 0:
        if r.fn is not None:
            r.handle = loop.call_soon(_fire, r)
        else:
            c = r()
            if c is not None:
                c._fire(loop.time())
        return
    r.when = when = loop.time() + seconds
    r.due = _due(loop, seconds)
    r.handle = loop.call_at(when, _fire, r)


def _unschedule(r: _Arm) -> bool:
    """Cancel the handle and discard an undelivered value; True if either existed."""
    pending = False
    h = r.handle
    if h is not None:
        r.handle = None
        h.cancel()
        pending = True
    c = r()
    if c is not None and c is not nil and c._discard():
        pending = True
    return pending


def _own(r: _Arm, what: str) -> None:
    """Refuse to touch a timer from a loop it does not belong to (its handle is on
    ``r.loop``: rescheduling it elsewhere would never fire)."""
    loop = r.loop
    running = _compat.get_running_loop()
    if loop.is_closed():
        raise foreign_loop(what, loop, None, TIMERS_FIX)
    if running is not None and running is not loop:
        raise foreign_loop(what, loop, running, TIMERS_FIX)


def _run_func(fn: Callable[[], object], loop: asyncio.AbstractEventLoop) -> None:
    """Run an ``after_func`` function: an async one as a goroutine, a sync one here.

    An exception escaping a sync function is treated like one escaping a goroutine:
    under ``csp.run`` it ends the program (Go: an unrecovered panic in f), elsewhere it
    goes to the loop's exception handler.
    """
    from csp._runtime import _is_coro_fn, go

    try:
        if _is_coro_fn(fn):
            go(cast(Any, fn))
            return
        res = fn()
        if is_coro(res):
            go(res)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        sched = _sched.schedulers.get(loop)
        if sched is not None and sched.panic_handler is not None:
            sched.panic_handler(None, exc)
        else:
            loop.call_exception_handler(
                {"message": "Exception in csp.after_func function", "exception": exc}
            )


def _state(r: _Arm) -> str:
    c = r()
    if r.handle is not None:
        return f"pending when={r.when:.6g}" if r.when else "pending"
    if c is not None and c is not nil and c._pending():
        return "fired unreceived"
    return "stopped"


@final
class Timer:
    """A single event after a delay (Go: ``time.NewTimer``, Go 1.23 semantics).

    After ``seconds`` the loop time at which it fired is delivered on ``c`` (a
    ``Chan[float]``). ``seconds <= 0`` fires at once. :meth:`stop` and :meth:`reset`
    return True if the timer was pending, and a value that fired but was not received
    yet counts as pending and is discarded: after they return, no stale value is
    received from ``c``. Needs a running loop (it reads the loop's clock). An
    unreferenced timer (and channel) is collected and unscheduled. Example::

        t = csp.Timer(5.0)
        i, v = await csp.select(results.recv, t.c.recv)
        if i == 0:
            t.stop()  # no value will arrive on t.c any more
    """

    __slots__ = ("_r", "c")

    c: RecvChan[float]

    def __init__(self, seconds: float) -> None:
        seconds = duration("Timer", "seconds", seconds)
        loop = asyncio.get_running_loop()
        c: _TimerChan[float] = _TimerChan(loop)
        self.c = c
        self._r = r = _new_arm(c, loop)
        _start(r, seconds)

    @classmethod
    def _func(cls, seconds: float, fn: Callable[[], object]) -> Timer:
        loop = asyncio.get_running_loop()
        t = cls.__new__(cls)
        t.c = nil
        t._r = r = _new_arm(nil, loop, fn=fn)
        _start(r, seconds)
        return t

    def stop(self) -> bool:
        """Stop the timer (Go: ``Timer.Stop``).

        Returns True if it was pending (not fired, or fired but not received: that
        value is discarded), False if it had already delivered its value or was
        stopped. Never closes ``c``; a receiver parked on ``c`` stays parked. For an
        ``after_func`` timer, False means the function has started. ``RuntimeError``
        from another loop than the timer's, or once that loop is closed.
        """
        _own(self._r, "Timer")
        return _unschedule(self._r)

    def reset(self, seconds: float) -> bool:
        """Restart the timer to fire after ``seconds`` (Go: ``Timer.Reset``).

        Returns what :meth:`stop` would have returned; no value of the old schedule is
        received after it returns. For an ``after_func`` timer it moves the pending
        call (True) or arms another one (False). ``seconds`` is checked as for
        :class:`Timer`; ``RuntimeError`` as for :meth:`stop`.
        """
        seconds = duration("Timer.reset", "seconds", seconds)
        _own(self._r, "Timer")
        pending = _unschedule(self._r)
        _start(self._r, seconds)
        return pending

    def __repr__(self) -> str:
        kind = "after_func " if self._r.fn is not None else ""
        return f"<csp.Timer {kind}{_state(self._r)}>"


@final
class Ticker:
    """Ticks every interval (Go: ``time.NewTicker``, Go 1.23 semantics).

    Delivers the loop time on ``c`` every ``seconds``, the first tick one interval
    after creation, in phase with the start. The channel holds one tick: a slow
    receiver gets the oldest undelivered tick, later ones are dropped and the
    schedule does not burst to catch up. After :meth:`stop` or :meth:`reset` returns
    no stale tick is received. ``seconds <= 0`` raises
    ``ValueError("non-positive interval for Ticker")``. An unreferenced ticker (and
    channel) is collected and unscheduled. Example::

        t = csp.Ticker(1.0)
        async for now in t.c:
            print("tick at", now)
    """

    __slots__ = ("_r", "c")

    c: RecvChan[float]

    def __init__(self, seconds: float) -> None:
        seconds = duration("Ticker", "seconds", seconds)
        if seconds <= 0:
            raise ValueError("non-positive interval for Ticker")
        loop = asyncio.get_running_loop()
        c: _TimerChan[float] = _TimerChan(loop)
        self.c = c
        self._r = _new_arm(c, loop, period=seconds)
        self._arm(seconds)

    def _arm(self, seconds: float) -> None:
        r = self._r
        r.period = seconds
        r.when = when = r.loop.time() + seconds
        r.due = _due(r.loop, seconds)
        r.handle = r.loop.call_at(when, _tick, r)

    def stop(self) -> None:
        """Turn the ticker off (Go: ``Ticker.Stop``); an undelivered tick is discarded.

        Does not close ``c``. ``RuntimeError`` from another loop than the ticker's, or
        once that loop is closed.
        """
        _own(self._r, "Ticker")
        _unschedule(self._r)

    def reset(self, seconds: float) -> None:
        """Stop, then tick every ``seconds`` from now (Go: ``Ticker.Reset``).

        An undelivered tick is discarded. ``seconds <= 0`` raises ``ValueError``;
        ``RuntimeError`` as for :meth:`stop`.
        """
        seconds = duration("Ticker.reset", "seconds", seconds)
        if seconds <= 0:
            raise ValueError("non-positive interval for Ticker")
        _own(self._r, "Ticker")
        _unschedule(self._r)
        self._arm(seconds)

    def __repr__(self) -> str:
        return f"<csp.Ticker every={self._r.period:.6g}s {_state(self._r)}>"


def after(seconds: float) -> RecvChan[float]:
    """A channel that receives, once, the loop time at which ``seconds`` expired.

    Go: ``time.After(d)``, i.e. ``Timer(seconds).c``. ``seconds <= 0`` fires at once.
    If the channel becomes garbage before it fires, its timer is unscheduled, so the
    idle-timeout idiom does not accumulate timers. Example::

        i, v = await csp.select(ch.recv, csp.after(1.0).recv)
        if i == 1:
            print("timed out")
    """
    seconds = duration("after", "seconds", seconds)
    loop = asyncio.get_running_loop()
    c: _TimerChan[float] = _TimerChan(loop)
    _start(_new_arm(c, loop), seconds)
    return c


def tick(seconds: float) -> RecvChan[float]:
    """A channel that receives the loop time every ``seconds`` (Go: ``time.Tick``).

    ``Ticker(seconds).c`` without a way to stop it; it stops when the channel is
    garbage. ``seconds <= 0`` returns ``csp.nil``. Example::

        beat = csp.tick(0.5)
        while True:
            now = await beat.recv()
    """
    seconds = duration("tick", "seconds", seconds)
    if seconds <= 0:
        return nil
    return Ticker(seconds).c


def after_func(seconds: float, fn: Callable[[], object]) -> Timer:
    """Run ``fn()`` once after ``seconds`` unless stopped (Go: ``time.AfterFunc``).

    ``fn`` is a plain function (called from the loop) or a coroutine function (run as a
    goroutine, ``csp.go(fn)``). Returns a :class:`Timer` whose ``c`` is ``csp.nil``;
    its :meth:`~Timer.stop` returns True iff it prevented the call. ``seconds <= 0``
    runs it at the loop's next iteration. Example::

        t = csp.after_func(2.0, lambda: print("slow request"))
        await do_request()
        t.stop()
    """
    seconds = duration("after_func", "seconds", seconds)
    if not callable(fn):
        raise TypeError(f"after_func: fn must be callable, got {fn!r}")
    return Timer._func(seconds, fn)


def _wake(w: Waiter, due: float) -> None:
    if w.state is not PENDING:
        return
    if due:
        left = due - time.monotonic()
        if left > 0:  # a coarse clock fired early: wait out the rest
            h = asyncio.get_running_loop().call_later(max(left, 0.001), _wake, w, due)
            w.on_abort = lambda _w: h.cancel()
            return
    w.on_abort = None  # (it holds the handle, whose arguments hold w: no cycle left)
    w.complete(None)


async def sleep(seconds: float) -> None:
    """Pause the calling goroutine for ``seconds`` of loop time (Go: ``time.Sleep``).

    ``seconds <= 0`` does not wait on the clock; it yields once, like ``csp.gosched()``.
    A cancelled sleep leaves no timer behind. Example::

        await csp.sleep(0.1)
    """
    seconds = duration("sleep", "seconds", seconds)
    if seconds <= 0:
        await yield_now()
        return
    budget.left -= 1
    if budget.left <= 0 or owed:  # (the budget guard: see csp._waiter)
        await prelude()
    loop = _sched.scheduler().loop
    w = Waiter("sleep")
    h = loop.call_at(loop.time() + seconds, _wake, w, _due(loop, seconds))
    w.on_abort = lambda _w: h.cancel()
    await w
