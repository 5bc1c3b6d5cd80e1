"""Parking and waking tasks: the one place where csp suspends and resumes anything.

Strategy. A blocked csp operation creates one small :class:`Waiter` and awaits it.
The waiter is *future-like*: it has exactly the attributes that asyncio's Task looks
for in an awaited object (``_asyncio_future_blocking``, ``get_loop``,
``add_done_callback``, ``cancel``, ``result``, ...), so the task parks on it as it
would on a Future, once. That first park makes the waiter the Task's *proxy*: from
then on csp drives the Task's coroutine itself (:class:`Goroutine`), and later waiters
are seen by csp only. Completing a waiter does not go through ``loop.call_soon``: the
waiting task's *runnable* is appended to a per-loop run queue (the :class:`Goroutine`
driving it; for a Task subclass, which csp does not drive, a :class:`_TaskWake`
holding its wake-up callback), and a single loop callback drains that queue, running
each woken task's next step. A chain of hand-offs (ping-pong, pipelines) therefore
costs one loop iteration per batch of wake-ups instead of one per wake-up.

Cancellation. ``Task.cancel()`` reaches the waiter the task is parked on (through the
proxy, :meth:`Goroutine.cancel`):

* still pending: the waiter is marked cancelled (channels skip it from then on) and
  the task is woken with ``CancelledError``: the operation took no effect;
* already completed (a value was handed over, a lock granted): the cancellation is
  noted, and ``CancelledError`` is thrown into the coroutine at its next step.
  :meth:`Waiter.__await__` catches it, keeps the result (the operation took effect)
  and re-delivers the cancellation later: at the task's next csp operation (see
  :func:`check_cancel`), or at its next suspension, provided the canceller has not
  withdrawn it meanwhile (``task.cancelling()`` fell below what it was).

Invariants:
  * a waiter's state moves once, from PENDING to DONE or CANCELLED;
  * whoever completes a waiter checks that it is PENDING first;
  * a waiter's callbacks run exactly once, after it left PENDING, from the run queue.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import sys
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol

PENDING: Final = 0
DONE: Final = 1
CANCELLED: Final = 2

_get_running_loop = asyncio._get_running_loop
_current_task = asyncio.current_task

# How many wake-ups one drain may run before it lets the event loop poll for I/O
# and run its other callbacks (fairness; Go preempts after ~10 ms for the same end).
DRAIN_BUDGET: Final = 64


class Scheduler:
    """Per-loop run queue of wake-ups plus the bookkeeping ``csp.run`` needs.

    The run queue holds *runnables*: objects with a ``ctx`` (the contextvars.Context
    to run in), a ``run`` callable and its argument ``arg``: the :class:`Goroutine`
    that drives a task (goroutine or plain Task), or a :class:`_TaskWake` for a Task
    subclass parked on a csp waiter.

    Invariants:
      * ``scheduled`` is True iff a drain callback is queued on the loop;
      * ``runq`` and ``yieldq`` are non-empty only while ``scheduled`` is True;
      * ``nparked`` counts driven goroutines parked in csp or queued to be resumed by
        it (see Goroutine): it only decides when the deadlock watch looks.
    """

    __slots__ = (
        "__weakref__",
        "done_cb",
        "done_ctx",
        "goroutines",
        "loop",
        "main",
        "next_id",
        "nparked",
        "on_all_parked",
        "panic_handler",
        "runq",
        "yieldq",
        "scheduled",
        "task_path",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.runq: deque[Runnable] = deque()
        # goroutines resumed after a bare yield, at the next drain (a loop iteration on)
        self.yieldq: list[Runnable] = []
        self.scheduled = False
        self.nparked = 0
        # goroutine task -> goroutine id (main is 1 under csp.run)
        self.goroutines: dict[asyncio.Task[Any], int] = {}
        # set by csp.run: called when every goroutine may be parked (deadlock check)
        self.on_all_parked: Callable[[], None] | None = None
        # set by csp.run: called with a goroutine's escaping exception
        self.panic_handler: Callable[[asyncio.Task[Any], BaseException], None] | None = None
        self.next_id = 1
        self.main: asyncio.Task[Any] | None = None
        # every goroutine's Task gets it as a done callback (bound once)
        self.done_cb: Callable[[asyncio.Task[Any]], None] = self._goroutine_done
        # ... run in this empty context (not copied per goroutine, and not the task's:
        # since 3.12 the loop's exception handler enters the task's context itself)
        self.done_ctx = contextvars.Context()
        # how csp.go makes a Task on this loop (csp._runtime._learn_task_path), once known
        self.task_path = -1

    def push(self, r: Runnable) -> None:
        """Queue a wake-up (the hot paths inline this)."""
        self.runq.append(r)
        self._ensure_drain()

    def push_yield(self, r: Runnable) -> None:
        """Queue ``r`` for the next drain, a loop iteration from now (a bare yield)."""
        self.yieldq.append(r)
        self._ensure_drain()

    def _ensure_drain(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.drain)

    def drain(self) -> None:
        runq = self.runq
        budget = DRAIN_BUDGET
        # Goroutines that yielded (sleep(0), gosched) before this drain go first, all
        # of them, on top of the budget; the ones that yield during it wait for the
        # next drain, a loop iteration later.
        yieldq = self.yieldq
        if yieldq:
            self.yieldq = []
            runq.extendleft(reversed(yieldq))
            budget += len(yieldq)
        popleft = runq.popleft
        loop = self.loop
        cur = _current_tasks
        while runq and budget:
            budget -= 1
            r = popleft()
            if type(r) is Goroutine and not r.cancel_pending:
                # Goroutine._resume, inlined (the hottest path in csp: a Python call
                # made from C, ctx.run, costs a frame and an interpreter entry).
                cur[loop] = r.task  # _enter_task(loop, task)
                try:
                    y = r.ctx.run(r.csend, None)
                except BaseException as exc:
                    del cur[loop]  # _leave_task(loop, task)
                    try:
                        r._raised(exc)
                    except BaseException:  # SystemExit, KeyboardInterrupt: re-raised
                        self._requeue()
                        raise
                    continue
                del cur[loop]
                if type(y) is Waiter:
                    y.waker = r
                    r.cur = y
                    if r.cancel_pending:  # it cancelled its own task meanwhile
                        r._cancel_parked()
                elif y is None:
                    # a bare yield: a goroutine is resumed by the next drain, a plain
                    # Task through call_soon, in asyncio's order (see _yielded)
                    r.cur = None
                    if r.counted:
                        self.yieldq.append(r)
                    else:
                        loop.call_soon(r.run, None, context=r.ctx)
                else:
                    try:
                        r._yielded(y, False)  # may step the Task (hand-back)
                    except BaseException:  # SystemExit, KeyboardInterrupt: re-raised
                        self._requeue()
                        raise
                continue
            arg = r.arg
            if type(r) is _TaskWake:
                r.arg = None  # run once: no waiter <-> _TaskWake cycle (waker, arg) left
            try:
                r.ctx.run(r.run, arg)
            except (SystemExit, KeyboardInterrupt):
                # A Task's step re-raised them (as asyncio does): the loop stops, but
                # what is queued still runs if the loop is run again (clean-up).
                self._requeue()
                raise
            except BaseException as exc:  # a callback is not ours to crash the drain
                self._failed(exc)
        if runq or self.yieldq:
            self.loop.call_soon(self.drain)
        else:
            self.scheduled = False
            # Nothing left to run: if every goroutine is parked, csp.run looks closer.
            if self.on_all_parked is not None and self.nparked >= len(self.goroutines):
                self.on_all_parked()

    def _goroutine_done(self, task: asyncio.Task[Any]) -> None:
        """A goroutine's Task is done: it leaves the registry; an exception escaping it
        is reported (Go: an unrecovered panic); maybe everyone left is parked now."""
        self.goroutines.pop(task, None)
        if task._exception is not None:  # (None if cancelled)
            _goroutine_failed(task, self)
        if self.on_all_parked is not None and self.nparked >= len(self.goroutines):
            self.maybe_all_parked()

    def live_goroutines(self) -> int:
        """Goroutines not yet done (a done one leaves the registry a callback later)."""
        return sum(1 for t in self.goroutines if not t.done())

    def maybe_all_parked(self) -> None:
        """Every goroutine may be parked (``nparked`` covers them all): unless a wake-up
        is queued (then the drain that runs it looks when it ends idle), ask csp.run's
        deadlock watch to look. The look costs O(goroutines), so it must stay rare:
        while woken goroutines wait in the run queue they still count as parked."""
        if not self.runq and not self.yieldq and self.on_all_parked is not None:
            self.on_all_parked()

    def _requeue(self) -> None:
        """Keep the invariant when an exception escapes a drain half-way."""
        if self.runq or self.yieldq:
            self.loop.call_soon(self.drain)
        else:
            self.scheduled = False

    def _failed(self, exc: BaseException) -> None:
        self.loop.call_exception_handler(
            {"message": "Exception in csp wake-up callback", "exception": exc}
        )

    def __repr__(self) -> str:
        return (
            f"<csp.Scheduler runq={len(self.runq)} parked={self.nparked} "
            f"goroutines={len(self.goroutines)}>"
        )


class Runnable(Protocol):
    """What the run queue holds: call ``run(arg)`` in ``ctx``, on ``sched``'s loop."""

    @property
    def ctx(self) -> contextvars.Context: ...
    @property
    def sched(self) -> Scheduler: ...
    @property
    def run(self) -> Callable[[Any], object]: ...
    @property
    def arg(self) -> Any: ...


class _TaskWake:
    """The runnable that wakes a Task csp does not drive (a subclass of asyncio.Task)
    parked on a csp waiter: it calls the Task's wake-up callback ``run`` with the
    waiter ``arg``, as a Future would. Built field by field (no ``__init__``)."""

    __slots__ = ("ctx", "sched", "run", "arg")

    ctx: contextvars.Context
    sched: Scheduler
    run: Callable[[Any], object]
    arg: Any

_last_loop: asyncio.AbstractEventLoop | None = None
_last_sched: Scheduler | None = None
_schedulers: dict[asyncio.AbstractEventLoop, Scheduler] = {}


def scheduler() -> Scheduler:
    """The running loop's scheduler (created on first use)."""
    global _last_loop, _last_sched
    loop = _get_running_loop()
    if loop is _last_loop and _last_sched is not None:
        return _last_sched
    if loop is None:
        raise RuntimeError("no running event loop: csp operations must run inside a task")
    sched = _schedulers.get(loop)
    if sched is None:
        sched = _schedulers[loop] = Scheduler(loop)
        if len(_schedulers) > 16:
            for lp in [lp for lp in _schedulers if lp.is_closed()]:
                del _schedulers[lp]
    _last_loop, _last_sched = loop, sched
    return sched


def forget_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Drop the scheduler of a loop that is closing."""
    global _last_loop, _last_sched
    _schedulers.pop(loop, None)
    if _last_loop is loop:
        _last_loop = _last_sched = None


class Waiter:
    """What a parked task awaits: a single-assignment, future-like outcome.

    ``index``, ``value`` and ``ok`` are the outcome, written once by whoever completes
    the waiter: ``index`` is the select case that fired (-1 for a plain operation),
    ``ok`` is False when the waiter was woken by close rather than by a partner.
    ``reason`` says what the task waits for ("chan receive", "select", ...): it appears
    in deadlock reports and in the task's repr. ``waker`` is the runnable queued when
    the waiter leaves PENDING: the goroutine parked on it, or a :class:`_TaskWake` for
    a plain Task; None until the waiting task has parked.

    Make one with :func:`new_waiter`. The hottest paths (channel send and receive)
    build it inline instead: ``Waiter()`` runs no Python ``__init__``, and they set
    the same five fields ``new_waiter`` sets. Keep the two in step.
    """

    __slots__ = (
        "_asyncio_future_blocking",
        "index",
        "ok",
        "on_cancel",
        "proxy",
        "reason",
        "state",
        "value",
        "waker",
    )

    # Set by new_waiter (or inline): read before completion.
    _asyncio_future_blocking: bool
    waker: Runnable | None
    state: int
    reason: str
    on_cancel: Callable[[Waiter], None] | None  # called once when cancelled while pending
    # Set (only) on the waiter a Task first parked on in csp: the Goroutine that drives
    # the Task's coroutine since then. The Task stays parked here: see Goroutine.
    proxy: Goroutine
    # Written by complete() or _abort() before any read.
    index: int
    value: Any
    ok: bool

    # -- completion (called by channels, locks, timers) ---------------------------

    def complete(self, index: int, value: Any, ok: bool = True) -> None:
        """Give the waiter its outcome and queue its task's wake-up.

        Precondition: ``self.state is PENDING`` (callers check, then call).
        """
        self.state = DONE
        self.index = index
        self.value = value
        self.ok = ok
        r = self.waker
        if r is not None:
            # Scheduler.push, inlined: this is the hottest call in csp. (The state
            # check every completer makes keeps this from running twice.)
            sched = r.sched
            sched.runq.append(r)
            if not sched.scheduled:
                sched.scheduled = True
                sched.loop.call_soon(sched.drain)

    # -- the Future-like protocol used by asyncio.Task ----------------------------

    # Asked by the Task about to park here, from inside its own step: the running loop
    # (a C function, no Python frame on the plain-task path).
    get_loop: Callable[[], asyncio.AbstractEventLoop] = staticmethod(_get_running_loop)  # type: ignore[assignment]

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None
    ) -> None:
        loop = _get_running_loop()
        if loop is _last_loop and loop is not None:
            sched: Scheduler = _last_sched  # type: ignore[assignment]
        else:
            sched = scheduler()  # raises a clear RuntimeError outside a running loop
        if self.state is PENDING and self.waker is None and context is not None:
            # A Task parks here from inside its own step: csp drives it from now on.
            task = _current_tasks_get(loop)
            # (asyncio.Task itself: a subclass may have its own ideas about its steps)
            if type(task) is _AsyncioTask and not task.done():
                drive(task, self, sched, context, fn)
                return
        r = _TaskWake()
        r.run = fn
        r.arg = self
        r.ctx = context if context is not None else contextvars.copy_context()
        r.sched = sched
        if self.state is PENDING:
            if self.waker is not None:  # never happens with a Task; keep it honest
                raise RuntimeError("csp waiter supports a single waiting task")
            self.waker = r
        else:
            r.sched.push(r)

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        r = self.waker
        if type(r) is _TaskWake and r.run == fn:
            self.waker = None
            return 1
        return 0

    def cancel(self, msg: Any = None) -> bool:
        """Task.cancel() of the Task parked here (as on a Future)."""
        g: Goroutine | None = getattr(self, "proxy", None)
        if g is not None:  # the Task's proxy: the driving Goroutine decides
            return g.cancel(msg)
        return self._cancel(msg)

    def _cancel(self, msg: Any = None) -> bool:
        """Cancel this waiter: if pending, it took no effect and its task wakes."""
        if self.state is not PENDING:
            return False
        self._abort(msg)
        r = self.waker
        if r is not None:
            self.waker = None
            r.sched.push(r)
        return True

    def _abort(self, msg: Any = None) -> None:
        """PENDING -> CANCELLED and unregister, without waking anyone."""
        self.state = CANCELLED
        self.value = msg
        on_cancel = self.on_cancel
        if on_cancel is not None:
            self.on_cancel = None
            on_cancel(self)

    def cancelled(self) -> bool:
        return self.state is CANCELLED

    def done(self) -> bool:
        return self.state is not PENDING

    def _cancelled_error(self) -> asyncio.CancelledError:
        msg = self.value
        return asyncio.CancelledError() if msg is None else asyncio.CancelledError(msg)

    def result(self) -> None:
        if self.state is CANCELLED and getattr(self, "proxy", None) is None:
            raise self._cancelled_error()
        return None  # (a proxy: its Task is woken to take its coroutine back)

    def exception(self) -> BaseException | None:
        if self.state is CANCELLED:
            raise self._cancelled_error()
        return None

    def __await__(self) -> Any:
        if self.state is PENDING:
            try:
                yield self
            except BaseException as exc:
                self._thrown(exc)
        if self.state is CANCELLED:
            raise self._cancelled_error()

    def _thrown(self, exc: BaseException) -> None:
        """An exception was thrown into the parked coroutine."""
        if self.state is PENDING:
            # Thrown in without going through cancel() (coro.throw, GeneratorExit):
            # withdraw the waiter so that nothing completes it later.
            self.waker = None
            self._abort()
            raise exc
        if self.state is DONE and isinstance(exc, asyncio.CancelledError):
            # The operation took effect before the cancellation reached us: keep the
            # outcome and hand the cancellation back to the task later.
            defer_cancel(exc)
            return
        raise exc

    def __repr__(self) -> str:
        g = getattr(self, "proxy", None)
        if g is not None:  # what a Task shows as wait_for=
            return repr(g)
        state = ("pending", "done", "cancelled")[self.state]
        return f"<csp waiter {self.reason!r} {state}>"


def new_waiter(reason: str) -> Waiter:
    """A pending waiter for an operation described by ``reason``; await it at once."""
    w = Waiter()
    # True from the start: a waiter is only ever created to be awaited at once.
    w._asyncio_future_blocking = True
    w.waker = None
    w.state = PENDING
    w.reason = reason
    w.on_cancel = None
    return w


# -- an awaitable that is already done ------------------------------------------------


class _NoLoop:
    """The loop :data:`READY` was made with: it belongs to none. A finished Future
    never touches its loop when awaited; ``get_debug`` is what the constructor asks,
    ``call_soon`` what ``add_done_callback`` on a finished Future calls (it runs the
    callback on whichever loop is running)."""

    def get_debug(self) -> bool:
        return False

    def call_soon(self, callback: Callable[..., object], *args: Any,
                  context: contextvars.Context | None = None) -> asyncio.Handle:
        return asyncio.get_running_loop().call_soon(callback, *args, context=context)

    def __repr__(self) -> str:
        return "<csp: no loop>"


class _ReadyFuture(asyncio.Future[None]):
    """A finished Future usable on every loop: ``get_loop()`` is the running loop, so
    ``asyncio.gather``, ``wait_for`` and ``ensure_future`` accept it anywhere."""

    def get_loop(self) -> asyncio.AbstractEventLoop:
        loop = _get_running_loop()
        return loop if loop is not None else super().get_loop()


READY: Final[asyncio.Future[None]] = _ReadyFuture(loop=_NoLoop())  # type: ignore[arg-type]
"""A finished Future (result None), shared: what the ``__aenter__``/``__aexit__`` of
csp's locks return when they need not wait. Awaiting it neither suspends nor yields,
and costs less than creating and running a coroutine (asyncio's C Future iterator)."""
READY.set_result(None)


# -- deferred re-delivery of a cancellation ---------------------------------------

# task -> (cancelling() count at the time, cancel message)
_redeliver: dict[asyncio.Task[Any], tuple[int, Any]] = {}


def defer_cancel(exc: BaseException) -> None:
    """Remember that the current task swallowed ``exc`` after its operation took effect.

    The cancellation is raised again by the task's next csp operation or, failing
    that, at its next suspension (a callback queued now runs once the task's current
    step has ended), unless the canceller withdrew it (``cancelling()`` dropped, as when
    an ``asyncio.timeout()`` block exits) or the task finished first.
    """
    task = _current_task()
    if task is None:
        return
    msg = exc.args[0] if exc.args else None
    _redeliver[task] = (task.cancelling(), msg)
    task.get_loop().call_soon(_redeliver_later, task)


def _redeliver_later(task: asyncio.Task[Any]) -> None:
    entry = _redeliver.pop(task, None)
    if entry is None or task.done():
        return
    count, msg = entry
    if task.cancelling() < count or count == 0:
        return
    if getattr(task, "_must_cancel", False) or _driver_cancel_pending(task):
        return  # a cancellation is already on its way
    # uncancel + cancel keeps the task's cancellation count as it was.
    task.uncancel()
    task.cancel(msg)


def _driver_cancel_pending(task: asyncio.Task[Any]) -> bool:
    """A driven task's ``_must_cancel``: see Goroutine.cancel_pending."""
    w = getattr(task, "_fut_waiter", None)
    g = getattr(w, "proxy", None) if type(w) is Waiter else None
    return g is not None and g.cancel_pending


def check_cancel() -> None:
    """Raise a cancellation that the current task owes itself (see defer_cancel).

    Called at the start of every blocking csp operation, before it takes effect.
    Callers test ``if _redeliver:`` first so that the common path costs nothing.
    """
    task = _current_task()
    if task is None:
        return
    entry = _redeliver.pop(task, None)
    if entry is None:
        return
    count, msg = entry
    if task.cancelling() >= count > 0:
        raise asyncio.CancelledError(msg) if msg is not None else asyncio.CancelledError()


def pending_redeliveries() -> dict[asyncio.Task[Any], tuple[int, Any]]:
    return _redeliver


def parked_on(task: asyncio.Task[Any]) -> Waiter | None:
    """The csp waiter ``task`` is parked on, or None if it is not parked in csp."""
    w = getattr(task, "_fut_waiter", None)
    if type(w) is not Waiter:
        return None
    g = getattr(w, "proxy", None)
    if g is not None:
        if g.fut is not None or g.task is None:
            return None
        w = g.cur
    if w is not None and w.state is PENDING:
        return w
    return None


# -- goroutines: tasks whose csp wake-ups bypass the Task machinery -----------------

def _unset(_: Any) -> None:
    """A goroutine's ``run`` before it first parks and after it finished."""
    raise RuntimeError("csp: goroutine resumed while not parked")  # pragma: no cover


_enter_task = asyncio.tasks._enter_task
_leave_task = asyncio.tasks._leave_task


def _tasks_dict() -> dict[Any, Any] | None:
    """asyncio's loop -> current task dict, if ``current_task()`` and ``_enter_task``
    both go through it (CPython 3.11-3.13); else None.

    Writing it directly saves two C calls per goroutine switch. Probed, not assumed:
    an interpreter that keeps the current task elsewhere gets the functions.
    """
    d = getattr(asyncio.tasks, "_current_tasks", None)
    if type(d) is not dict:
        return None
    key: Any = object()
    task: Any = object()
    try:
        d[key] = task
        try:
            seen = asyncio.current_task(key) is task
            try:
                _enter_task(key, task)  # must refuse: key has a current task
                entered = True
            except RuntimeError:
                entered = False
            else:
                _leave_task(key, d[key])
        finally:
            d.pop(key, None)
    except Exception:  # pragma: no cover - a different implementation
        return None
    return d if seen and not entered else None


class _TaskSwitch:
    """The fallback for :data:`_current_tasks`: ``d[loop] = task`` and ``del d[loop]``
    call asyncio's ``_enter_task``/``_leave_task``, so the hot path has no branch."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: dict[Any, Any] = {}

    def __setitem__(self, loop: Any, task: Any) -> None:
        _enter_task(loop, task)
        self._tasks[loop] = task

    def __delitem__(self, loop: Any) -> None:
        _leave_task(loop, self._tasks.pop(loop))


def _task_switch() -> dict[Any, Any] | _TaskSwitch:
    d = _tasks_dict()
    return d if d is not None else _TaskSwitch()


# What Goroutine._resume writes to make the goroutine's task current (and deletes to
# leave it): asyncio's own dict when the probe allows, else a _TaskSwitch.
_current_tasks = _task_switch()
_current_tasks_get: Callable[[Any], Any] = (
    _current_tasks.get if type(_current_tasks) is dict else _current_task
)

# CPython 3.13: Task.uncancel() down to 0 clears a pending _must_cancel.
_UNCANCEL_WITHDRAWS: Final = sys.version_info >= (3, 13)
_future_set_result = asyncio.Future.set_result
_future_set_exception = asyncio.Future.set_exception
_future_cancel = asyncio.Future.cancel
_get_loop = asyncio.futures._get_loop  # type: ignore[attr-defined]
_AsyncioTask = asyncio.Task


def _leaf(coro: Any) -> Any:
    """The innermost awaitable of a suspended coroutine chain."""
    while True:
        inner = getattr(coro, "cr_await", None)
        if inner is None:
            inner = getattr(coro, "gi_yieldfrom", None)
            if inner is None:
                return coro
        coro = inner


_FUTURE_ITER: list[type] = []


class _NoFutureIter:
    """Stands for C's FutureIter where futures are pure Python (never a leaf)."""


def _future_iter_type(loop: asyncio.AbstractEventLoop) -> type:
    """The type of ``iter(asyncio.Future)`` (C ``FutureIter``), learnt once. A
    generator (pure-Python futures) does not qualify: sending None into a suspended
    generator resumes it; only C's iterator yields its pending future again."""
    if not _FUTURE_ITER:
        f = loop.create_future()
        it = f.__await__()
        t = type(it)
        _FUTURE_ITER.append(_NoFutureIter if inspect.isgenerator(it) else t)
        if inspect.isgenerator(it):
            it.close()
        f.cancel()
    return _FUTURE_ITER[0]


def _cancelled_error(msg: Any) -> asyncio.CancelledError:
    return asyncio.CancelledError() if msg is None else asyncio.CancelledError(msg)


def drive(task: asyncio.Task[Any], w: Waiter, sched: Scheduler, ctx: contextvars.Context,
          wakeup: Callable[[Any], object]) -> None:
    """``task`` parks on the csp waiter ``w`` from inside its own step (``wakeup`` is
    its wake-up callback): from now on csp runs the task's coroutine itself, until it
    awaits an asyncio Future (see :class:`Goroutine`)."""
    g = Goroutine()
    g.wakeup = wakeup
    g.proxy = w
    coro = task.get_coro()
    g.coro = coro
    g.task = task
    g.ctx = ctx
    g.sched = sched
    g.loop = sched.loop
    g.cur = w
    g.fut = None
    g.cancel_pending = False
    g.cancel_msg = None
    g.run = g._resume
    g.arg = None
    g.csend = coro.send
    w.waker = g
    w.proxy = g
    if task in sched.goroutines:
        g.counted = True
        sched.nparked += 1
        if sched.on_all_parked is not None and sched.nparked >= len(sched.goroutines):
            sched.maybe_all_parked()  # it checks later, not now
    else:
        g.counted = False


class Goroutine:
    """Runs a Task's coroutine from the run queue, without the Task machinery.

    When a Task (a goroutine's, or any plain asyncio Task) parks on a csp
    :class:`Waiter` from its own step, that waiter becomes the Task's *proxy*: the Task
    stays parked on it and does not step, and csp drives the coroutine: each wake-up
    resumes it straight from the run queue (the drain inlines ``_resume``: make the
    task current so that ``current_task()`` is right, ``coro.send(None)`` in the task's
    context, leave). When the coroutine awaits an asyncio Future, it is given back to
    its Task (``_hand_back``), which awaits the Future as asyncio does, until its next
    csp park makes a new Goroutine. Anything else it yields is handled as the Task
    would (``_await_foreign``, ``_fut_wake``). When the coroutine ends, the outcome is
    set on the Task (``_raised``), whose done callbacks then run as usual. The Task's
    ``cancel()`` reaches :meth:`cancel` through the proxy (``Waiter.cancel``).

    Cancellation follows ``Task.cancel()``: a pending csp waiter is cancelled (took no
    effect) and wakes the coroutine with CancelledError; a foreign future is cancelled;
    otherwise (a waiter already completed, a bare yield, the coroutine running now)
    ``cancel_pending`` is set, the Task's ``_must_cancel``: CancelledError is thrown in
    at the next resumption, or what it awaits next is cancelled, or, if it returns, the
    Task ends cancelled.

    Invariants:
      * ``task`` is None iff the coroutine has ended (its outcome is on the Task) or
        was handed back to the Task; ``wakeup`` and ``proxy`` are None alike;
      * ``cur`` is the csp waiter the coroutine is parked on, or None;
      * ``fut`` is the foreign future it awaits (its callback is ``_fut_wake``), or None;
      * a goroutine (``counted``) adds one to ``sched.nparked`` while it is parked in
        csp or queued to be resumed by csp, that is while ``task`` is set and ``fut``
        is None and no Task-style step is pending (``_throw_later``).
    """

    __slots__ = (
        "coro",
        "task",
        "ctx",
        "sched",
        "loop",
        "cur",
        "fut",
        "cancel_pending",
        "cancel_msg",
        "counted",
        "run",
        "arg",
        "csend",
        "wakeup",
        "proxy",
    )

    # All set by drive(): this object exists only from the Task's first csp park.
    coro: Any
    task: asyncio.Task[Any] | None
    ctx: contextvars.Context
    sched: Scheduler
    loop: asyncio.AbstractEventLoop
    cur: Waiter | None
    fut: Any
    cancel_pending: bool
    cancel_msg: Any
    counted: bool
    run: Callable[[Any], object]  # as a runnable: the bound _resume
    arg: None
    csend: Callable[[Any], Any]  # coro.send, bound once
    wakeup: Callable[[Any], object] | None  # the Task's wake-up callback, to hand back
    proxy: Waiter | None  # the waiter the Task is parked on

    # -- resuming ------------------------------------------------------------------

    def _resume(self, _: None) -> None:
        """Run the coroutine from the run queue: its csp waiter finished, or it made a
        bare yield one loop iteration ago. (``run``, as a runnable; the drain inlines
        the common case, a wake-up without a pending cancellation.)"""
        self._step(None, True)

    def _fut_wake(self, fut: Any) -> None:
        """The foreign future the coroutine awaits is done (Task.__wakeup)."""
        self.fut = None
        exc: BaseException | None = None
        try:
            fut.result()
        except BaseException as e:
            exc = e
        # stepped outside the except block: the coroutine must not run "while handling"
        self._step(exc, False)

    def _throw_later(self, exc: BaseException) -> None:
        self._step(exc, False)

    def _step(self, exc: BaseException | None, incsp: bool) -> None:
        """One step of the coroutine, as Task.__step: send None or throw ``exc`` (a
        pending cancellation wins); runs in the task's context."""
        if self.task is None:  # pragma: no cover - ended meanwhile (nothing wakes it)
            return
        sched = self.sched
        if self.counted and not incsp:
            sched.nparked += 1
        if self.cancel_pending and self._cancel_due():
            msg = self._take_cancel()
            if not isinstance(exc, asyncio.CancelledError):
                exc = _cancelled_error(msg)
        loop = self.loop
        cur = _current_tasks
        # (no local holds the Task or the exception past the resumption: on 3.12+
        # a finished coroutine's frame links to this one, and the exception it ends
        # with must not reach the Task through it, a cycle)
        cur[loop] = self.task  # _enter_task(loop, task): nothing else runs now
        try:
            if exc is None:
                y = self.coro.send(None)
            else:
                y, exc = self.coro.throw(exc), None
        except BaseException as e:
            exc = None
            del cur[loop]  # _leave_task(loop, task)
            self._raised(e)
            return
        del cur[loop]  # _leave_task(loop, task)
        if type(y) is Waiter:
            y.waker = self
            self.cur = y
            if self.cancel_pending:
                self._cancel_parked()
            elif (
                not incsp
                and self.counted
                and sched.on_all_parked is not None
                and sched.nparked >= len(sched.goroutines)
            ):
                sched.maybe_all_parked()
        elif y is None:
            self.cur = None
            if incsp and self.counted:
                sched.push_yield(self)  # a goroutine in a drain: the next drain
            else:
                # A plain Task, or not in a drain (a drain may be queued already,
                # before callbacks this step queued): call_soon, as the Task would.
                loop.call_soon(self._resume, None, context=self.ctx)
        else:
            self._yielded(y, True)

    # A resumption runs while the Task is parked on its proxy, so a cancel() of the
    # task from inside that step (``current_task().cancel()``) reaches cancel() below,
    # which can only set ``cancel_pending``. The step's end delivers it as the Task
    # would have (its ``_must_cancel``): by cancelling what the coroutine awaits next,
    # by throwing CancelledError in after a bare yield, or by ending the task
    # cancelled if the coroutine returned.

    def _take_cancel(self) -> Any:
        self.cancel_pending = False
        msg, self.cancel_msg = self.cancel_msg, None
        return msg

    def _cancel_due(self) -> bool:
        """``cancel_pending`` is still owed: False (and cleared) if ``uncancel()`` has
        brought the count back to 0 meanwhile, on Pythons where that withdraws a
        Task's ``_must_cancel`` (3.13+)."""
        task = self.task
        return task is None or self._cancel_due_for(task)

    def _cancel_due_for(self, task: asyncio.Task[Any]) -> bool:
        if _UNCANCEL_WITHDRAWS and task.cancelling() == 0:
            self._take_cancel()
            return False
        return True

    def _cancel_parked(self) -> None:
        """cancel_pending was set during the step that parked on ``cur``."""
        w = self.cur
        if w is not None and w.state is PENDING and self._cancel_due():
            w._cancel(self._take_cancel())  # took no effect; wakes us with CancelledError

    def _raised(self, exc: BaseException) -> None:
        """The coroutine ended with ``exc`` (StopIteration when it returned): set the
        outcome on the Task, as its step would have (this also runs its callbacks)."""
        task = self.task
        assert task is not None
        self.task = self.wakeup = self.proxy = None
        self.cur = self.fut = None
        self.run = self.csend = _unset  # no cycle through the bound methods
        if self.counted:
            self.sched.nparked -= 1
        if type(exc) is not StopIteration:
            # csp's frames out of the traceback: the Task's own step adds none, and
            # _step's frame holds the Task (a cycle: Task -> exc -> frame -> Task)
            tb = exc.__traceback__
            while tb is not None and tb.tb_frame.f_code in _STEP_CODES:
                tb = tb.tb_next
            exc.__traceback__ = tb
        if type(exc) is StopIteration:
            if self.cancel_pending and not (_UNCANCEL_WITHDRAWS and task.cancelling() == 0):
                # It cancelled its own task, then returned: the Task ends cancelled.
                _future_cancel(task, self._take_cancel())
            else:
                _future_set_result(task, exc.value)
        elif isinstance(exc, asyncio.CancelledError):
            _future_cancel(task, exc.args[0] if exc.args else None)
        else:
            _future_set_exception(task, exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise exc  # as the Task's step does: the loop stops

    def _yielded(self, y: Any, in_ctx: bool) -> None:
        """A resumption yielded something other than a csp waiter or None (the
        callers handle bare yields): an asyncio Future goes back to the Task
        (``_hand_back``); anything else is handled as Task.__step does, with this
        object in the Task's place. ``in_ctx``: called inside the task's context (else
        the drain's, outside it)."""
        self.cur = None
        if self.counted:
            self.sched.nparked -= 1
        try:
            if type(_leaf(self.coro)) is _future_iter_type(self.loop):
                self._hand_back(y, in_ctx)
            else:
                self._await_foreign(y)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # As when Task.__step fails handling what the coroutine yielded: the error
            # goes to the loop's handler, and this task alone is stranded.
            # (no "task" key: since 3.12 the handler would enter the task's context,
            # which may be the one running now)
            self.loop.call_exception_handler({
                "message": f"Exception in csp while stepping {self.task!r}",
                "exception": exc,
            })

    def _hand_back(self, y: Any, in_ctx: bool) -> None:
        """The coroutine awaits an asyncio Future (``await fut``: the innermost
        awaitable is the Future's C iterator): give the coroutine back to its Task,
        which then awaits ``y`` itself, exactly as asyncio does (anyio's cancel scopes
        look at what a Task awaits, for one). Waking the Task steps the coroutine
        with None; the Future's iterator, its future still pending and no longer
        marked blocking, yields it again, and the Task parks on it. The coroutine's
        next csp park goes through its Task again (a new Goroutine)."""
        task = self.task
        assert task is not None
        wakeup, proxy = self.wakeup, self.proxy
        assert wakeup is not None
        # inert from now on, and no cycle (wakeup -> Task -> proxy -> self) left
        self.task = self.wakeup = self.proxy = None
        self.run = self.csend = _unset
        y._asyncio_future_blocking = False
        # the Task's step, now (no task is current), in the task's context
        if in_ctx:
            wakeup(proxy)
        else:
            self.ctx.run(wakeup, proxy)
        if self.cancel_pending and self._cancel_due_for(task):
            y.cancel(msg=self._take_cancel())  # as the Task does with its _must_cancel

    def _await_foreign(self, y: Any) -> None:
        task = self.task
        blocking = getattr(y, "_asyncio_future_blocking", None)
        if blocking is not None:
            if _get_loop(y) is not self.loop:
                exc = RuntimeError(f"Task {task!r} got Future {y!r} attached to a different loop")
            elif blocking:
                if y is task:
                    exc = RuntimeError(f"Task cannot await on itself: {task!r}")
                else:
                    y._asyncio_future_blocking = False
                    y.add_done_callback(self._fut_wake, context=self.ctx)
                    self.fut = y
                    if (
                        self.cancel_pending
                        and self._cancel_due()
                        and y.cancel(msg=self.cancel_msg)
                    ):
                        self._take_cancel()
                    return
            else:
                exc = RuntimeError(
                    f"yield was used instead of yield from in task {task!r} with {y!r}"
                )
        elif inspect.isgenerator(y):
            exc = RuntimeError(
                f"yield was used instead of yield from for generator in task {task!r} with {y!r}"
            )
        else:
            exc = RuntimeError(f"Task got bad yield: {y!r}")
        self.loop.call_soon(self._throw_later, exc, context=self.ctx)

    # -- Task.cancel(), through the proxy waiter --------------------------------------

    def cancel(self, msg: Any = None) -> bool:
        task = self.task
        if task is None:
            return False
        f = self.fut
        if f is not None:
            if f.cancel(msg=msg):
                return True
        else:
            w = self.cur
            if w is not None:
                if w.state is PENDING:
                    # (also the Task's own _must_cancel, delivered from its step right
                    # after it first parked here)
                    w._cancel(msg)  # wakes _resume, where the waiter raises CancelledError
                    return True
                if _current_tasks_get(self.loop) is task:
                    pass  # cancelled from inside a step csp runs: ``cur`` is stale
                elif w.state is CANCELLED:
                    # Cancelled again before it resumed: the waiter's CancelledError
                    # (the first message) is on its way, and one is all it gets.
                    return True
        self.cancel_pending = True
        self.cancel_msg = msg
        return True

    def __repr__(self) -> str:
        name = getattr(self.coro, "__qualname__", None) or "coroutine"
        if self.task is None:
            return f"<csp: {name}() ended>"
        if self.fut is not None:
            return f"<csp: {name}() waiting on {self.fut!r}>"
        w = self.cur
        if w is not None and w.state is PENDING:
            return f"<csp: {name}() parked on {w.reason!r}>"
        return f"<csp: {name}() runnable>"


# The frames an exception ending a coroutine passes through when csp resumed it.
_STEP_CODES: Final = frozenset({Scheduler.drain.__code__, Goroutine._step.__code__})


def _goroutine_failed(task: asyncio.Task[Any], sched: Scheduler | None) -> None:
    """An exception escaped a goroutine (Go: an unrecovered panic): under ``csp.run``
    it ends the program, elsewhere it goes to the loop's exception handler at once."""
    exc = task.exception()
    if exc is None:
        return
    if sched is not None and sched.panic_handler is not None:
        sched.panic_handler(task, exc)
    else:
        task.get_loop().call_exception_handler(
            {"message": "Exception in goroutine", "exception": exc, "task": task}
        )


def _sizeof() -> int:  # for benchmarks: bytes held by one parked waiter
    return sys.getsizeof(new_waiter("x"))
