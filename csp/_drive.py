"""The goroutine driver: csp resumes a goroutine's coroutine itself between csp parks.

Only goroutines are driven: the tasks ``csp.go`` created, and main under ``csp.run``.
Every other Task is stepped by asyncio, exactly as asyncio says (``csp._sched.TaskWake``).

A goroutine is an ordinary ``asyncio.Task`` whose coroutine is a small *body*
(:func:`_body`) that steps the user's coroutine. The Task and the body do everything
asyncio does: the first step, awaiting Futures and anything else, cancellation through
``_must_cancel``, the end. What csp adds is a shortcut for the common case:

* TASK mode: the Task steps the body, the body steps the coroutine. When the coroutine
  parks on a csp :class:`~csp._waiter.Waiter`, the body hands it to the Task, which
  parks on it (``add_done_callback``): that waiter becomes the Task's *proxy* and the
  goroutine switches to
* CSP mode: the Task stays parked on the proxy, and each csp wake-up resumes the
  coroutine straight from the run queue (:meth:`Goroutine.run`, the hot path: make the
  Task current, ``coro.send(None)`` in its context, look at what it yields). Further csp
  parks and bare yields stay in CSP mode. Anything else the coroutine yields (an
  asyncio Future, ...), and its end, are *handed back* (:meth:`Goroutine._to_task`): csp
  wakes the Task from the drain, the Task steps the body, and the body does what the
  coroutine asked (yields the Future to the Task, returns its result, raises its
  exception). Back in TASK mode.

Cancellation. ``Task.cancel()`` asks the proxy (:meth:`Goroutine.cancel`): if the
coroutine is parked on a pending csp waiter, that waiter is withdrawn (took no effect)
and the coroutine resumes with ``CancelledError`` (True, as a Future would answer).
Otherwise it answers False, so the Task records the request itself (``_must_cancel``,
its message, its count) and the goroutine's next resumption goes through the Task's own
step (``via_task``), which delivers it as asyncio does. So ``cancelling()``, messages,
``uncancel()`` and 3.13's withdrawal of ``_must_cancel`` are asyncio's own.

Invariants:
  * ``proxy is None`` in TASK mode; in CSP mode it is the waiter the Task is parked on,
    ``wakeup`` its wake-up callback, and the goroutine counts in ``sched.nparked``;
  * in CSP mode ``cur`` is the csp waiter the coroutine is parked on (PENDING, or
    completed/withdrawn with this goroutine queued to run), or None while the coroutine
    runs or waits in the run queue after a bare yield;
  * ``via_task`` is True only in CSP mode, when the Task has a cancellation pending
    that only its own step can deliver;
  * ``back`` is set only between a hand-back and the body's next resumption.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Coroutine, Generator
from typing import Any, Final

from csp import _compat
from csp._sched import Scheduler
from csp._waiter import DONE, NOTHING, PENDING, Waiter

__all__ = ["Goroutine", "body"]

# What the body does when the Task steps it after a hand-back (Goroutine.back):
_RESUME: Final = 0  # step the coroutine (with the exception the Task throws in, if any)
_YIELD: Final = 1  # the coroutine yielded ``arg`` (not a csp waiter): give it to the Task
_RETURN: Final = 2  # the coroutine returned ``arg``
_RAISE: Final = 3  # the coroutine raised ``arg``

_current_tasks = _compat.current_tasks
_CancelledError = asyncio.CancelledError


class Goroutine:
    """The driver of one goroutine (see the module docstring)."""

    __slots__ = (
        "back",
        "back_arg",
        "cancel_msg",
        "coro",
        "ctx",
        "cur",
        "id",
        "loop",
        "proxy",
        "sched",
        "send",
        "task",
        "via_task",
        "wakeup",
    )

    # (``wakeup`` and ``cur`` are set by attach, ``cancel_msg`` with ``via_task``,
    # ``back_arg`` with ``back``: written before they are read)
    wakeup: Any
    cur: Waiter | None
    cancel_msg: Any
    back_arg: Any

    def __init__(self, coro: Coroutine[Any, Any, Any], sched: Scheduler,
                 ctx: contextvars.Context, gid: int) -> None:
        self.coro = coro
        self.send = coro.send  # bound once
        self.sched = sched
        self.loop = sched.loop
        self.ctx = ctx
        self.id = gid
        self.task: asyncio.Task[Any] | None = None  # set by whoever made the Task
        self.proxy: Waiter | None = None
        self.via_task = False
        self.back: int | None = None

    # -- CSP mode -----------------------------------------------------------------------

    def attach(self, w: Waiter, wakeup: Any, ctx: contextvars.Context | None) -> None:
        """The Task parks on csp waiter ``w`` from its own step (``w.add_done_callback``):
        from now on csp resumes the coroutine itself."""
        self.proxy = w
        self.wakeup = wakeup
        self.cur = w
        sched = self.sched
        sched.nparked += 1
        if sched.on_all_parked is not None and sched.nparked >= len(sched.goroutines):
            sched.maybe_all_parked()

    def run(self) -> None:
        """Resume the coroutine from the run queue: its csp waiter finished, or it made
        a bare yield. (The hottest path in csp.)"""
        if self.via_task:
            self._to_task(_RESUME, None)
            return
        self.cur = None
        loop = self.loop
        cur = _current_tasks
        cur[loop] = self.task  # current_task() is right while it runs
        try:
            y = self.ctx.run(self.send, None)
        except StopIteration as stop:
            kind, arg = _RETURN, stop.value
        except BaseException as exc:
            tb = exc.__traceback__  # this frame out of the traceback (the Task's step adds
            if tb is not None:  # none, and it would hold this driver alive)
                exc.__traceback__ = tb.tb_next
            kind, arg = _RAISE, exc
        else:
            del cur[loop]
            if type(y) is Waiter:  # parked in csp again
                y.waker = self
                self.cur = y
                if self.via_task:
                    # It cancelled its own task during this step: as the Task would, the
                    # waiter it parks on is cancelled (took no effect).
                    y.withdraw(self.cancel_msg)
                    self._to_task(_RESUME, None)
            elif y is None:  # a bare yield (gosched, asyncio.sleep(0))
                if self.via_task:
                    self._to_task(_RESUME, None)  # the Task throws CancelledError in
                else:
                    self.sched.push_yield(self)
            else:
                self._to_task(_YIELD, y)  # an asyncio Future, ...: the Task awaits it
            return
        del cur[loop]
        # (outside the except blocks: the Task's step must not run "while handling")
        self._to_task(kind, arg)
        arg = None  # a traceback may keep this frame (3.12+: f_back): not its exception

    def _to_task(self, kind: int, arg: Any) -> None:
        """Hand the coroutine back to the Task: wake it now (from the drain: no task is
        current), its step runs the body, which does what ``kind`` says."""
        self.back = kind
        self.back_arg = arg
        wakeup = self.wakeup
        # The Task reads the outcome of what it was woken with: a withdrawn waiter
        # raises its CancelledError, anything else gives None.
        w: Any = self.cur if self.cur is not None else NOTHING
        self.proxy = self.wakeup = self.cur = None
        self.via_task = False  # the Task's step consumes its _must_cancel
        self.sched.nparked -= 1
        self.ctx.run(wakeup, w)
        # A traceback made in that step may keep this frame (3.12+ links f_back): it
        # must not keep the Task (through its wake-up callback) or the exception.
        wakeup = arg = w = None

    # -- Task.cancel(), through the proxy -------------------------------------------

    def cancel(self, msg: Any = None) -> bool:
        """``Task.cancel()`` while csp drives the coroutine (see the module docstring)."""
        w = self.cur
        if w is not None:
            if w.state is PENDING:
                w.withdraw(msg)  # took no effect
                self.sched.wake(self)  # resumes with CancelledError from the waiter
                return True
            if w.state is DONE and getattr(w, "base", None) is None and self.task is not None:
                # The operation took effect; this request is the first it absorbs (the
                # Task's count already includes it).
                w.base = self.task.cancelling() - 1
        self.via_task = True
        self.cancel_msg = msg
        return False

    # -- reports ----------------------------------------------------------------------

    def _invariants(self) -> None:
        if self.proxy is None:
            assert not self.via_task
        else:
            assert self.wakeup is not None
            assert self.cur is None or self.cur.waker is self
        assert (self.back is None) or self.proxy is None
        assert self.task is None or self.sched.goroutines.get(self.task) in (self, None)

    def name(self) -> str:
        return getattr(self.coro, "__qualname__", None) or "coroutine"

    def parked(self) -> Waiter | None:
        """The pending csp waiter the coroutine is parked on, or None."""
        if self.proxy is None:
            return None
        w = self.cur
        if w is not None and w.state is PENDING:
            return w
        return None

    def __repr__(self) -> str:
        name = self.name()
        if self.task is None or self.task.done():
            return f"<csp goroutine {self.id} {name}() ended>"
        w = self.parked()
        if w is not None:
            return f"<csp goroutine {self.id} {name}() parked on {w.reason!r}>"
        if self.proxy is None:
            return f"<csp goroutine {self.id} {name}() stepped by its Task>"
        return f"<csp goroutine {self.id} {name}() runnable>"


@types.coroutine
def _hand(y: Any) -> Generator[Any, None, None]:
    """Yield ``y`` to the Task; the Task's next step resumes (or throws into) the body."""
    yield y


def _future_like_cancel(y: Any, exc: BaseException) -> bool:
    """What the Task does with its pending cancellation once the coroutine yielded a
    Future-like object: cancel it (True if that took)."""
    cancel = getattr(y, "cancel", None)
    if cancel is None or getattr(y, "_asyncio_future_blocking", None) is None:
        return False
    return bool(cancel(msg=exc.args[0] if exc.args else None))


async def body(g: Goroutine) -> Any:
    """The coroutine of a goroutine's Task: it steps the user's coroutine for the Task
    (TASK mode) and carries out csp's hand-backs (see the module docstring)."""
    coro = g.coro
    exc: BaseException | None = None
    held: BaseException | None = None  # a cancellation the Task could not deliver yet
    try:
        while True:
            try:
                y = coro.send(None) if exc is None else coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            exc = None
            while True:  # give y to the Task until it has something for the coroutine
                if type(y) is Waiter:
                    y.waker = g  # a csp park: the Task attaches us (Goroutine.attach)
                try:
                    await _hand(y)
                except GeneratorExit:
                    raise
                except BaseException as e:
                    exc = e
                if held is not None:
                    if not isinstance(exc, _CancelledError):
                        exc = held  # the Task's _must_cancel outlived the yield
                    held = None
                kind = g.back
                if kind is None:
                    break  # the Task's own resumption: step the coroutine
                arg, g.back, g.back_arg = g.back_arg, None, None
                if kind == _RESUME:
                    break
                if kind == _RETURN:
                    if exc is not None:
                        # It cancelled itself, then returned: as asyncio's Task does,
                        # it ends cancelled with the message (the Task's own
                        # cancel(msg) once this step sees _must_cancel again; the count
                        # stays as it was).
                        task = asyncio.current_task()
                        assert task is not None
                        task.uncancel()
                        task.cancel(exc.args[0] if exc.args else None)
                    return arg
                if kind == _RAISE:
                    raise arg  # (a pending cancellation does not replace an exception)
                # _YIELD: the coroutine yielded ``arg`` while csp drove it
                y = arg
                if exc is not None:
                    # The Task consumed its _must_cancel before seeing y; as its step
                    # would after the yield: cancel y, or keep it for the next step.
                    if not _future_like_cancel(y, exc):
                        held = exc
                    exc = None
    except GeneratorExit:
        coro.close()  # the Task was destroyed (or abandoned): close the coroutine too
        raise
    except BaseException:
        g.task = None  # no cycle Task -> exception -> this frame -> g -> Task
        raise
