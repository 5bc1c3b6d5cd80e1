"""The goroutine driver: csp resumes a goroutine's coroutine itself between csp parks.

Only goroutines are driven: the tasks ``csp.go`` created, and main under ``csp.run``.
Every other Task is stepped by asyncio, exactly as asyncio says (``csp._sched.TaskWake``).

A goroutine is an ordinary ``asyncio.Task`` whose coroutine is its :class:`Goroutine`:
an object with the coroutine protocol (``send``/``throw``/``close``, and the ``cr_*``
attributes of the user's coroutine, so the Task's repr, ``get_stack()`` and anyio's
introspection see the user's code). The Task steps it and it steps the user's
coroutine: the first step, awaiting Futures and anything else, cancellation through
``_must_cancel``, the end are all the Task's own. What csp adds is a shortcut:

* TASK mode: the Task steps the goroutine, which steps the coroutine. When the
  coroutine parks on a csp :class:`~csp._waiter.Waiter`, the Task parks on it
  (``add_done_callback``): that waiter becomes the Task's *proxy* and the goroutine
  switches to
* CSP mode: the Task stays parked on the proxy, and each csp wake-up resumes the
  coroutine straight from the run queue (:meth:`Goroutine.run`, the hot path: make the
  Task current, ``coro.send(None)`` in its context, look at what it yields). Further csp
  parks and bare yields stay in CSP mode. Anything else the coroutine yields (an
  asyncio Future, ...), and its end, are *handed back* (:meth:`Goroutine._to_task`): csp
  wakes the Task from the drain, the Task steps the goroutine, and :meth:`send` /
  :meth:`throw` do what the coroutine asked (give the Future to the Task, return its
  result, raise its exception). Back in TASK mode.

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
  * ``back`` is set only between a hand-back and the Task's next step;
  * ``foreign`` is True (and counts in ``sched.nforeign``) from a step that gave the
    Task something other than a csp waiter or a bare yield to await, to its next step;
  * ``task`` is the goroutine's Task until that Task is done (its done callback clears
    it: no Task <-> goroutine cycle outlives it).
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

from csp import _compat, _mode
from csp._sched import Scheduler
from csp._threads import lock, shared
from csp._waiter import DONE, NOTHING, PENDING, Waiter

__all__ = ["Goroutine"]

# What the Task's next step does after a hand-back (Goroutine.back):
_RESUME: Final = 0  # step the coroutine (with the exception the Task throws in, if any)
_YIELD: Final = 1  # the coroutine yielded ``back_arg`` (not a csp waiter): give it to the Task
_RETURN: Final = 2  # the coroutine returned ``back_arg``
_RAISE: Final = 3  # the coroutine raised ``back_arg``

_current_tasks = _compat.current_tasks
_must_cancel = _compat.must_cancel


def _rearm(exc: BaseException) -> None:
    """Give the running Task back the cancellation its step has just thrown in (its
    ``_must_cancel``, with the message; ``cancelling()`` unchanged), so that the rest
    of this step and the next one treat it exactly as asyncio's Task would have: it
    cancels the Future the coroutine yields (or not, by asyncio's own rules), throws it
    in at the next step after a bare or bad yield, and ends the Task cancelled if the
    coroutine returned. ``cancel()`` then ``uncancel()``: the count is >= 1 here on
    3.13, whose ``uncancel()`` to 0 withdraws ``_must_cancel``."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel(exc.args[0] if exc.args else None)
    task.uncancel()


class _GoroutineCore:
    """The goroutine's hot fields and :meth:`run`. Its compiled twin is
    ``GoroutineCore`` in ``csp/_speedups.c`` (see csp._mode); the rest of the driver is
    :class:`Goroutine`."""

    __slots__ = ("coro", "ctx", "cur", "loop", "sched", "send_", "task", "via_task")

    coro: Coroutine[Any, Any, Any]
    ctx: contextvars.Context
    cur: Waiter | None
    loop: asyncio.AbstractEventLoop
    sched: Scheduler
    send_: Any
    task: asyncio.Task[Any] | None
    via_task: bool

    if TYPE_CHECKING:
        def _to_task(self, kind: int, arg: Any) -> None: ...
        def _publish(self, y: Waiter) -> bool: ...
        def _parked_with_cancel_pending(self, y: Waiter) -> None: ...

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
            y = self.ctx.run(self.send_, None)
        except StopIteration as stop:
            kind, arg = _RETURN, stop.value
        except BaseException as exc:
            tb = exc.__traceback__  # this frame out of the traceback (the Task's step adds
            if tb is not None:  # none, and it would hold this driver alive)
                exc.__traceback__ = tb.tb_next
                tb = None  # (it holds this frame, which holds it: a cycle)
            kind, arg = _RAISE, exc
        else:
            del cur[loop]
            if type(y) is Waiter:  # parked in csp again
                if shared.on:
                    if not self._publish(y):
                        return  # completed by another thread meanwhile: queued to run
                else:
                    y.waker = self  # type: ignore[assignment]  # (a Goroutine: a Waker)
                    self.cur = y
                if self.via_task:
                    self._parked_with_cancel_pending(y)
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


if not TYPE_CHECKING:
    _speedups = _mode.speedups()
    if _speedups is not None:
        _speedups.setup_drive(globals(), _RESUME, _YIELD, _RETURN, _RAISE)
        _GoroutineCore = _speedups.GoroutineCore


class Goroutine(_GoroutineCore):
    """The driver of one goroutine, and its Task's coroutine (see the module docstring)."""

    __slots__ = (
        "__qualname__",
        "__weakref__",
        "back",
        "back_arg",
        "cancel_msg",
        "foreign",
        "id",
        "origin",
        "proxy",
        "wakeup",
    )

    # (``wakeup`` and ``cur`` are set by attach, ``cancel_msg`` with ``via_task``,
    # ``back_arg`` with ``back``: written before they are read)
    wakeup: Any
    cancel_msg: Any
    back_arg: Any
    # where it was created: (code, f_lasti, parent goroutine id or 0) of the caller of
    # ``csp.go`` (for csp's own callers, of theirs); None for main; see csp._dump.Origin
    origin: tuple[Any, int, int] | None

    def __init__(self, coro: Coroutine[Any, Any, Any], sched: Scheduler,
                 ctx: contextvars.Context, gid: int) -> None:
        self.coro = coro
        self.send_ = coro.send  # bound once: the hot path resumes through it
        self.__qualname__ = getattr(coro, "__qualname__", "coroutine")
        self.sched = sched
        self.loop = sched.loop
        self.ctx = ctx
        self.id = gid
        self.task = None  # set by whoever made the Task
        self.proxy: Waiter | None = None
        self.via_task = False
        self.back: int | None = None
        self.foreign = False

    # -- the coroutine protocol: how the Task steps the goroutine (TASK mode) -------------

    # (An exception the coroutine raises passes through these frames, and its traceback
    # keeps them: no local may hold an exception when they exit, or exception and frame
    # would keep each other alive for the cycle collector only.)

    def send(self, _: None) -> Any:
        """The Task's step (it always sends None)."""
        if self.foreign:
            self._back_from_foreign()
        if self.back is not None:
            return self._handed_back(None)
        return self._give(self.send_(None))

    def throw(self, exc: BaseException | None, *_: Any) -> Any:
        """The Task's step with an exception for the coroutine."""
        assert exc is not None
        if self.foreign:
            self._back_from_foreign()
        try:
            if self.back is not None:
                return self._handed_back(exc)
            return self._give(self.coro.throw(exc))
        finally:
            exc = None

    def close(self) -> None:
        """Close the user's coroutine (its finally blocks run)."""
        self.coro.close()

    def _give(self, y: Any) -> Any:
        """What the coroutine yielded goes to the Task; a csp waiter is marked so that
        the Task's park on it makes it the proxy (:meth:`attach`)."""
        if type(y) is Waiter:
            if shared.on:
                with lock:
                    # (completed by another thread meanwhile: no waker, so the Task's
                    # own park finds it done and wakes at once)
                    if y.state is PENDING:
                        y.waker = self
            else:
                y.waker = self
        elif y is not None:
            self._to_foreign()
        return y

    def _to_foreign(self) -> None:
        """The Task is about to await something that is not csp's (a Future, a Task):
        it counts in ``sched.nforeign`` until its next step, and the deadlock watch may
        look (main awaiting a deadlocked goroutine's Task is a deadlock too)."""
        self.foreign = True
        sched = self.sched
        sched.nforeign += 1
        if sched.on_all_parked is not None and sched.all_waiting():
            sched.maybe_all_parked()

    def _back_from_foreign(self) -> None:
        self.foreign = False
        self.sched.nforeign -= 1

    def _handed_back(self, exc: BaseException | None) -> Any:
        """The Task's first step after :meth:`_to_task`; ``exc`` is what it throws in
        (its ``_must_cancel``, or a withdrawn waiter's CancelledError)."""
        kind, arg = self.back, self.back_arg
        self.back = self.back_arg = None
        try:
            if kind == _RESUME:
                y = self.send_(None) if exc is None else self.coro.throw(exc)
                return self._give(y)
            if kind == _YIELD or kind == _RETURN:
                # The coroutine yielded ``arg`` (not a csp waiter) or returned it while
                # csp drove it, with a cancellation pending that the Task has just
                # thrown in: asyncio's Task would have looked at that yield or return
                # with the cancellation still pending, so it gets it back.
                if exc is not None:
                    _rearm(exc)
                if kind == _RETURN:
                    raise StopIteration(arg)
                self._to_foreign()
                return arg
            raise arg  # _RAISE (a pending cancellation does not replace an exception)
        finally:
            arg = exc = None

    # -- what the Task's repr, get_stack() and anyio look at: the user's coroutine ------

    @property
    def cr_frame(self) -> Any:
        return self.coro.cr_frame  # type: ignore[attr-defined]

    @property
    def cr_running(self) -> bool:
        return bool(self.coro.cr_running)  # type: ignore[attr-defined]

    @property
    def cr_suspended(self) -> bool:
        return bool(getattr(self.coro, "cr_suspended", False))

    @property
    def cr_code(self) -> Any:
        return self.coro.cr_code  # type: ignore[attr-defined]

    @property
    def cr_await(self) -> Any:
        return self.coro.cr_await  # type: ignore[attr-defined]

    # -- CSP mode -----------------------------------------------------------------------

    def attach(self, w: Waiter, wakeup: Any, ctx: contextvars.Context | None) -> None:
        """The Task parks on csp waiter ``w`` from its own step (``w.add_done_callback``):
        from now on csp resumes the coroutine itself."""
        self.proxy = w
        self.wakeup = wakeup
        self.cur = w
        sched = self.sched
        sched.nparked += 1
        # (all_waiting(), inlined: this is on every first park)
        if (sched.on_all_parked is not None
                and sched.nparked + sched.nforeign >= len(sched.goroutines)):
            sched.maybe_all_parked()

    def _parked_with_cancel_pending(self, y: Waiter) -> None:
        """:meth:`run`: the coroutine parked on ``y`` with ``via_task`` set."""
        task = self.task
        if task is not None and _must_cancel(task):
            # It cancelled its own task during this step: as the Task would, the waiter
            # it parks on is cancelled (took no effect).
            if shared.on:
                with lock:
                    if y.state is PENDING:
                        y.withdraw(self.cancel_msg)
            else:
                y.withdraw(self.cancel_msg)
            self._to_task(_RESUME, None)
        else:  # and withdrew that with uncancel() (3.13): nothing pending
            self.via_task = False

    def _publish(self, y: Waiter) -> bool:
        """Shared mode: become ``y``'s waker under the csp lock, unless a partner on
        another thread completed it since it was queued (then run again: False)."""
        lock.acquire()  # (not ``with``: an explicit pair costs half as much)
        try:
            if y.state is PENDING:
                y.waker = self
                self.cur = y
                return True
        finally:
            lock.release()
        self.cur = y
        self.sched.wake(self)
        return False

    def _to_task(self, kind: int, arg: Any) -> None:
        """Hand the coroutine back to the Task: wake it now (from the drain: no task is
        current), and its step does what ``kind`` says (:meth:`_handed_back`)."""
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
        if shared.on:  # (decided under the csp lock: a partner may complete it now)
            with lock:
                return self._cancel(msg)
        return self._cancel(msg)

    def _cancel(self, msg: Any) -> bool:
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
        assert not self.foreign or self.proxy is None
        assert self.task is None or self.sched.goroutines.get(self.task) in (self, None)

    def name(self) -> str:
        return self.__qualname__

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


# asyncio.Task accepts it as a coroutine (asyncio.iscoroutine checks the ABC).
collections.abc.Coroutine.register(Goroutine)
