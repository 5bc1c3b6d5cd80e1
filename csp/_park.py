"""Parking and waking tasks: the one place where csp suspends and resumes anything.

Strategy. A blocked csp operation creates one small :class:`Waiter` and awaits it.
The waiter is *future-like*: it has exactly the attributes that asyncio's Task looks
for in an awaited object (``_asyncio_future_blocking``, ``get_loop``,
``add_done_callback``, ``cancel``, ``result``, ...), so the task parks on it as it
would on a Future. Completing a waiter does not go through ``loop.call_soon``: the
waiting task's *runnable* is appended to a per-loop run queue (for a goroutine, the
goroutine itself; for a plain Task, a :class:`_TaskWake` holding its wake-up
callback), and a single loop callback drains that queue, running each woken task's
next step. A chain of
hand-offs (ping-pong, pipelines) therefore costs one loop iteration per batch of
wake-ups instead of one per wake-up.

Cancellation. ``Task.cancel()`` calls ``waiter.cancel()``:

* still pending: the waiter is marked cancelled (channels skip it from then on) and
  the task is woken with ``CancelledError``: the operation took no effect;
* already completed (a value was handed over, a lock granted): ``cancel()`` returns
  False, so the Task throws ``CancelledError`` into the coroutine at its next step.
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
import collections.abc
import contextvars
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
    to run in), a ``run`` callable and its argument ``arg``. A goroutine is its own
    runnable (:class:`Goroutine`); a plain Task parked on a csp waiter gets a
    :class:`_TaskWake`.

    Invariants:
      * ``scheduled`` is True iff a drain callback is queued on the loop;
      * ``runq`` and ``yieldq`` are non-empty only while ``scheduled`` is True;
      * ``nparked`` counts goroutines whose Task is parked on their shim (resumed by
        csp, not by the Task): it only decides when the deadlock watch looks.
    """

    __slots__ = (
        "__weakref__",
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

    def push(self, r: Runnable) -> None:
        """Queue a wake-up (the hot paths inline this)."""
        self.runq.append(r)
        self._ensure_drain()

    def push_front(self, r: Runnable) -> None:
        """Queue ``r`` to run before every queued wake-up."""
        self.runq.appendleft(r)
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
                    r._raised(exc)
                    continue
                del cur[loop]
                if type(y) is Waiter:
                    y.waker = r
                    r.cur = y
                    if r.cancel_pending:  # it cancelled its own task meanwhile
                        r._cancel_parked()
                elif y is None:
                    # a bare yield: resumed by the next drain (see _yielded)
                    r.cur = None
                    self.yieldq.append(r)
                else:
                    r._yielded(y)
                continue
            if type(r.arg) is Goroutine:
                budget += 1  # a Task taking its goroutine's outcome over: not a wake-up
            try:
                r.ctx.run(r.run, r.arg)
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
    """The runnable that wakes a plain asyncio Task parked on a csp waiter: it calls
    the Task's wake-up callback ``fn`` with the waiter ``arg``, as a Future would.
    Built field by field (no ``__init__``: this is the plain-task hot path)."""

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
        r = _TaskWake()
        r.run = fn
        r.arg = self
        r.ctx = context if context is not None else contextvars.copy_context()
        loop = _get_running_loop()
        if loop is _last_loop and loop is not None:
            r.sched = _last_sched  # type: ignore[assignment]
        else:
            r.sched = scheduler()  # raises a clear RuntimeError outside a running loop
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
        if self.state is CANCELLED:
            raise self._cancelled_error()
        return None

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
    if getattr(task, "_must_cancel", False):
        return  # a cancellation is already on its way
    # uncancel + cancel keeps the task's cancellation count as it was.
    task.uncancel()
    task.cancel(msg)


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
    if type(w) is Goroutine:
        w = w.cur if not w.kind else None
    if type(w) is Waiter and w.state is PENDING:
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

_NOTHING: Final = 0  # no outcome waits for the Task
_YIELDED: Final = 1  # the coroutine yielded something that is not a csp waiter
_RAISED: Final = 2  # the coroutine finished (StopIteration) or raised


class Goroutine:
    """The coroutine of a goroutine's Task, which wakes it without the Task machinery.

    ``csp.go`` runs ``Task(Goroutine(coro))``. To the Task this object is the coroutine
    (``send``/``throw``/``close``) and, while the goroutine is parked in csp, also the
    future it waits on (the *parker*). When ``coro`` awaits a csp :class:`Waiter`,
    the Task parks on this object once; from then on the goroutine is its own
    runnable (the waiter's ``waker``) and each wake-up resumes ``coro`` straight from
    the run queue (the drain inlines ``_resume``: make the task current so that
    ``current_task()`` is right, ``coro.send(None)`` in the task's context, leave),
    for as long as ``coro`` keeps parking on csp waiters or yielding bare (resumed by
    the next drain). When it yields anything else (a Future) or finishes, the outcome
    is stored and the Task is woken first in line to take it over through ``send``,
    so asyncio sees an ordinary task.

    Cancellation: ``Task.cancel()`` calls :meth:`cancel` while the task is parked
    here, which cancels the csp waiter the goroutine is parked on (took no effect), or,
    if that waiter was already completed, throws CancelledError into the coroutine at
    its resumption, where the waiter keeps the outcome and defers the cancellation
    exactly as for a plain task.

    Invariants:
      * ``kind != _NOTHING`` iff an outcome waits for the Task to take it over;
      * ``cur`` is the csp waiter ``coro`` is parked on while ``kind == _NOTHING``,
        or None while a resumption after a bare yield is queued on the loop;
      * ``_task_cb`` is set iff the Task is parked on this object.
    """

    __slots__ = (
        "coro",
        "task",
        "ctx",
        "sched",
        "cur",
        "kind",
        "outcome",
        "cancel_pending",
        "cancel_msg",
        "_task_cb",
        "_task_ctx",  # set with _task_cb
        "_asyncio_future_blocking",
        "run",
        "arg",
        "csend",
        "loop",
        "__weakref__",
    )

    # Written before they are first read, not in __init__ (spawning is a hot path):
    # ``task`` right after the Task is made; ``cur`` and ``_task_cb`` when the Task
    # first parks here; ``outcome`` with ``kind``; ``cancel_msg`` with ``cancel_pending``.
    task: asyncio.Task[Any] | None
    cur: Waiter | None
    _task_cb: Callable[[Any], object] | None
    outcome: Any
    cancel_msg: Any
    csend: Callable[[Any], Any]  # coro.send, bound once (with ``run``)
    # Set by new_goroutine (csp.go inlines the same stores: keep them in step).
    coro: Any
    ctx: contextvars.Context
    sched: Scheduler
    loop: asyncio.AbstractEventLoop
    kind: int
    cancel_pending: bool
    _asyncio_future_blocking: bool
    run: Callable[[Any], object]  # as a runnable: bound _resume once it parked
    arg: None

    # -- the coroutine protocol, used by the Task -----------------------------------

    def send(self, value: Any) -> Any:
        if self.kind:
            return self._deliver()
        if self.cancel_pending:  # owed since a direct step (see _take_cancel)
            msg = self._take_cancel()
            return self.throw(
                asyncio.CancelledError() if msg is None else asyncio.CancelledError(msg)
            )
        try:
            y = self.coro.send(value)
        except BaseException as exc:
            self._finished(exc)
            raise
        return self._after(y)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if self.kind == _YIELDED:
            y = self.outcome
            self.kind, self.outcome = _NOTHING, None
            if (
                isinstance(typ, asyncio.CancelledError)
                and y is not None
                and hasattr(y, "cancel")
                and not y.done()
                and y.cancel(typ.args[0] if typ.args else None)
            ):
                # As the Task would: cancel what the coroutine awaits, with the
                # message; the Task then throws CancelledError in when it completes.
                return y
        elif self.kind == _RAISED:
            return self._deliver()  # it finished before the cancellation reached it
        try:
            if val is None and tb is None:
                y = self.coro.throw(typ)
            else:  # pragma: no cover - asyncio throws instances
                y = self.coro.throw(typ, val, tb)
        except BaseException as exc:
            self._finished(exc)
            raise
        return self._after(y)

    def close(self) -> None:
        self.coro.close()

    def _deliver(self) -> Any:
        kind, out = self.kind, self.outcome
        self.kind, self.outcome = _NOTHING, None
        if kind == _RAISED:
            task = self.task
            if self.cancel_pending and type(out) is StopIteration and task is not None:
                # It cancelled its own task, then returned, in a direct step: cancel
                # the Task now, inside its own step, so that it ends cancelled with the
                # message, as it would have (uncancel first: the count stays as it was).
                msg = self._take_cancel()
                task.uncancel()
                task.cancel(msg)
            self._finished(out)
            raise out
        return out

    def _finished(self, exc: BaseException) -> None:
        """The coroutine ended with ``exc`` (StopIteration when it returned).

        The goroutine leaves the scheduler's registry now (instead of in a done
        callback: cheaper), an escaping exception is reported once the Task has
        recorded it, and the cycles Task -> self -> Task and self -> its bound wake-up
        method are broken, so reference counting frees a finished goroutine.
        """
        task = self.task
        if task is None:
            return
        self.task = None
        if self.run is not _unset:  # it parked at least once
            self.cur = None
            self.run = _unset
        sched = self.sched
        sched.goroutines.pop(task, None)
        if type(exc) is not StopIteration and not isinstance(exc, asyncio.CancelledError):
            task.add_done_callback(_goroutine_failed)
        if sched.on_all_parked is not None and sched.nparked >= len(sched.goroutines):
            sched.maybe_all_parked()

    def _after(self, y: Any) -> Any:
        if type(y) is Waiter:
            # Parked in csp: take the wake-up over; the Task parks on us.
            if self.run is _unset:
                self.run = self._resume
                self.csend = self.coro.send
            y.waker = self
            self.cur = y
            self._asyncio_future_blocking = True
            sched = self.sched
            sched.nparked += 1
            if sched.on_all_parked is not None and sched.nparked >= len(sched.goroutines):
                sched.maybe_all_parked()  # it checks later, not now
            return self
        return y

    def _resume(self, _: None) -> None:
        """Run the goroutine from the run queue: its csp waiter finished, or it made a
        bare yield one loop iteration ago. (``run``, as a runnable; the drain inlines
        the common case, a wake-up without a pending cancellation.)"""
        loop = self.loop
        cur = _current_tasks
        cur[loop] = self.task  # _enter_task(loop, task): nothing else runs during a drain
        try:
            if self.cancel_pending:
                self.cancel_pending = False
                msg, self.cancel_msg = self.cancel_msg, None
                y = self.coro.throw(
                    asyncio.CancelledError() if msg is None else asyncio.CancelledError(msg)
                )
            else:
                y = self.coro.send(None)
        except BaseException as exc:
            del cur[loop]  # _leave_task(loop, task)
            self._raised(exc)
            return
        del cur[loop]  # _leave_task(loop, task)
        if type(y) is Waiter:
            y.waker = self
            self.cur = y
            if self.cancel_pending:
                self._cancel_parked()
        else:
            self._yielded(y)

    # A direct resumption runs while the Task is parked on this shim, so a cancel() of
    # the task from inside that step (``current_task().cancel()``) reaches cancel()
    # below, which can only set ``cancel_pending``. The step's end delivers it as the
    # Task would have (its ``_must_cancel``): by cancelling what the coroutine awaits
    # next, by throwing CancelledError in after a bare yield (``_resume``), or by ending
    # the task cancelled if the coroutine returned.

    def _take_cancel(self) -> Any:
        self.cancel_pending = False
        msg, self.cancel_msg = self.cancel_msg, None
        return msg

    def _cancel_parked(self) -> None:
        """cancel_pending was set during the step that parked on ``cur``."""
        w = self.cur
        if w is not None and w.state is PENDING:
            w.cancel(self._take_cancel())  # took no effect; wakes us with CancelledError

    def _raised(self, exc: BaseException) -> None:
        """A direct resumption ended the coroutine: the Task takes the outcome over."""
        self.cur = None
        # (returned after cancelling its own task: _deliver ends the Task cancelled)
        self.kind, self.outcome = _RAISED, exc
        self.sched.nparked -= 1
        self._wake_task()

    def _yielded(self, y: Any) -> None:
        """A direct resumption yielded something other than a csp waiter."""
        self.cur = None
        if y is None:
            # A bare yield (asyncio.sleep(0), gosched): resume after one loop
            # iteration, exactly as the Task would, without waking the Task. A pending
            # cancellation is thrown in then.
            self.sched.push_yield(self)
        else:
            if self.cancel_pending and hasattr(y, "cancel") and y.cancel(self.cancel_msg):
                self._take_cancel()  # as the Task does: cancel what it awaits
            self.kind, self.outcome = _YIELDED, y
            self.sched.nparked -= 1
            self._wake_task()

    def _wake_task(self) -> None:
        cb = self._task_cb
        if cb is not None:
            self._task_cb = None
            r = _TaskWake()
            r.run = cb
            r.arg = self
            r.ctx = self._task_ctx
            r.sched = self.sched
            # First in line: the Task takes the outcome over before anything else
            # runs, as if this step had been its own (no window where the goroutine
            # has returned but its Task is not done; the drain does not count it).
            r.sched.push_front(r)

    # -- the future protocol, used by the Task while parked here ----------------------

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.sched.loop

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None
    ) -> None:
        self._task_cb = fn
        self._task_ctx = context if context is not None else contextvars.copy_context()
        if self.kind:
            self._wake_task()

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        if self._task_cb is not None and self._task_cb == fn:
            self._task_cb = None
            return 1
        return 0

    def cancel(self, msg: Any = None) -> bool:
        if self.kind or self.task is None:
            return False  # the Task is about to run: it delivers the cancellation
        w = self.cur
        if w is None:  # after a bare yield: throw CancelledError in at the resumption
            self.cancel_pending = True
            self.cancel_msg = msg
            return True
        if w.state is PENDING:
            w.cancel(msg)  # wakes _resume, where the waiter raises CancelledError
            return True
        if w.state is CANCELLED:
            # Cancelled again before it resumed: the waiter's CancelledError (the first
            # message) is on its way, and one is all it gets, as for a Task.
            return True
        self.cancel_pending = True
        self.cancel_msg = msg
        return True

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return self.kind != _NOTHING

    def result(self) -> None:
        return None

    def exception(self) -> None:
        return None

    # -- what debuggers and asyncio's reprs look for ----------------------------------
    # (a __getattr__ delegating to the coroutine would slow down every attribute access
    # on the hot path; asyncio's task repr falls back from __qualname__ to __name__)

    @property
    def __name__(self) -> str:
        return str(getattr(self.coro, "__qualname__", None) or "goroutine")

    @property
    def cr_frame(self) -> Any:
        return getattr(self.coro, "cr_frame", None)

    @property
    def cr_code(self) -> Any:
        return getattr(self.coro, "cr_code", None)

    @property
    def cr_await(self) -> Any:
        return getattr(self.coro, "cr_await", None)

    @property
    def cr_running(self) -> bool:
        return bool(getattr(self.coro, "cr_running", False))

    def __repr__(self) -> str:
        w = getattr(self, "cur", None)
        if not self.kind and w is not None and w.state is PENDING:
            return f"<csp goroutine {self.__name__}() parked on {w.reason!r}>"
        return f"<csp goroutine {self.__name__}()>"


collections.abc.Coroutine.register(Goroutine)


def new_goroutine(coro: Any, sched: Scheduler, ctx: contextvars.Context) -> Goroutine:
    """The shim for ``coro``, to run as ``Task(g, context=ctx)``; set ``g.task`` next."""
    g = Goroutine()
    g.coro = coro
    g.ctx = ctx
    g.sched = sched
    g.loop = sched.loop
    g.kind = _NOTHING
    g.cancel_pending = False
    g._asyncio_future_blocking = False
    g.run = _unset  # bound to _resume when it first parks
    g.arg = None
    return g


def _goroutine_failed(task: asyncio.Task[Any]) -> None:
    """An exception escaped a goroutine (Go: an unrecovered panic): under ``csp.run``
    it ends the program, elsewhere it goes to the loop's exception handler at once."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        return
    sched = _schedulers.get(task.get_loop())
    if sched is not None and sched.panic_handler is not None:
        sched.panic_handler(task, exc)
    else:
        task.get_loop().call_exception_handler(
            {"message": "Exception in goroutine", "exception": exc, "task": task}
        )


def _sizeof() -> int:  # for benchmarks: bytes held by one parked waiter
    return sys.getsizeof(new_waiter("x"))
