"""Parking: the one object every blocked csp operation awaits, and the cancellation rule.

Every blocking operation (channel send/receive, select, locks, semaphores, wait groups,
conditions, sleep) has the same shape:

1. the *budget guard*, the same two lines in every operation::

       budget.left -= 1
       if budget.left <= 0 or owed:
           await prelude()

   :func:`prelude` raises a cancellation the task still owes itself (below), or
   yields once when csp operations ran ``BUDGET`` times in a row without anyone
   parking (the cooperative budget, refilled by every park and every yield);
2. its non-blocking twin: finish now if it can (it never yields);
3. otherwise *park*: make one :class:`Waiter`, put it (or the nodes of a select) in the
   queue(s) where a partner will find it, and ``await`` it.

A partner *completes* the waiter (:meth:`Waiter.complete`: outcome written once, the
waiting task's runnable queued on its loop's run queue, ``csp._sched``). A waiter that
is cancelled while still pending is *withdrawn* (:meth:`Waiter.withdraw`, trio's abort
callback): it leaves its queue and its ``on_abort`` hook runs, so the operation took no
effect and nothing can complete it any more.

The Waiter is *future-like*: it has what ``asyncio.Task`` looks for in an awaited
object (``_asyncio_future_blocking``, ``get_loop``, ``add_done_callback``, ``cancel``,
``result``, ...). A plain Task parks on it as on a Future and asyncio steps it; a
goroutine's Task parks on it once and csp drives the coroutine from there
(``csp._drive``).

Cancellation: took effect => returns normally. ``Task.cancel()`` reaches the waiter:

* still pending: it is withdrawn and the task wakes with ``CancelledError``;
* already completed (a value handed over, a lock granted): ``cancel()`` returns False,
  the task gets ``CancelledError`` when it resumes, and :meth:`Waiter.__await__` keeps
  the outcome and records the cancellation as *owed* (:func:`owe`). It is raised by the
  task's next csp operation (before that operation takes effect) or, failing that, at
  its next suspension, unless its canceller withdrew it meanwhile. The rule: a
  cancellation is owed while ``task.cancelling()`` is above its value just *before the
  first request the operation absorbed* (``Waiter.base``), so that when a timeout and a
  ``task.cancel()`` merged into one ``CancelledError`` and the timeout block then exits
  (withdrawing its own), the other is still raised.

Invariants:
  * a waiter's state moves once, from PENDING to DONE (:meth:`complete`) or CANCELLED
    (:meth:`withdraw`); whoever completes it has taken it out of its queue first;
  * a waiter is in a queue (``q`` set) only while PENDING;
  * a withdrawn waiter no longer holds the value it offered, nor its ``on_abort``; a
    hook that refers back to its waiter (a select's, a sleep's timer) is dropped by
    its owner when the waiter completes: a finished operation keeps nothing alive and
    leaves no cycle;
  * a waiter whose task's loop is closed is never completed: :meth:`complete`
    withdraws it and answers False (the partner moves on, nothing is lost);
  * ``waker`` is None until a task parks on the waiter; once the waiter leaves PENDING
    its waker is queued to run exactly once (by :meth:`complete` or :meth:`cancel`),
    unless its loop is closed;
  * ``base`` is None or the ``cancelling()`` count before the first cancellation
    request that reached the waiter after it was completed.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Final

from csp import _compat, _mode, _sched
from csp._threads import BUDGET, budget, lock, maybe_single, shared

if TYPE_CHECKING:
    from csp._sched import Waker
    from csp._waitq import WaitQ

__all__ = [
    "BUDGET",
    "CANCELLED",
    "DONE",
    "PENDING",
    "READY",
    "Waiter",
    "budget",
    "owe",
    "owed",
    "prelude",
    "yield_now",
]

PENDING: Final = 0
DONE: Final = 1
CANCELLED: Final = 2

_get_running_loop = _compat.get_running_loop
_get_current_task = _compat.get_current_task
_CancelledError = asyncio.CancelledError


def _cancelled_error(msg: Any) -> asyncio.CancelledError:
    return _CancelledError() if msg is None else _CancelledError(msg)


# -- the cooperative budget ---------------------------------------------------------------



# ``budget`` (csp._threads): ``left`` operations before a yield (module-wide: a park by
# anyone refills it to ``full``). In shared mode ``full`` is 0, so that every operation
# takes the guard's slow branch, where prelude() answers True: the operation then runs
# its locked form. Single mode thus pays nothing per operation for threads.

# task -> [base, msg]: cancellations swallowed by operations that took effect, still owed
owed: Final[dict[asyncio.Task[Any], list[Any]]] = {}


@types.coroutine
def _bare_yield() -> Generator[None, None, None]:
    yield


def prelude() -> Awaitable[bool]:
    """Before an operation takes effect: raise the cancellation the current task owes
    itself, if any; yield once if the cooperative budget is spent. Its result is True
    if another thread may use csp (shared mode, ``csp._threads``): the operation must
    then take the csp lock (operations with no locked form ignore it). A plain
    function: when there is nothing to wait for it returns a finished future (awaiting
    one costs less than running a coroutine; in shared mode every operation comes
    here)."""
    if owed:
        _raise_owed()
    b = budget
    if b.full:  # single mode
        if b.left <= 0:
            b.left = BUDGET
            return _yield_then()
        return _NO
    # shared mode: every operation comes here; ``left`` counts down from 0
    if b.left <= -BUDGET:
        b.left = 0
        maybe_single()  # (between two operations: the only safe place to switch)
        return _yield_then()
    return _YES if shared.on else _NO


def _park_in_shared_mode() -> None:
    """Every ``BUDGET`` parks in shared mode, the check that switches back to single
    mode (``maybe_single``). The budget guard's own check (prelude) comes only after
    ``BUDGET`` operations in a row without a park, which a program whose operations all
    park never makes. A park is between two operations as far as the switch is
    concerned: its locked part is done and the csp lock is free."""
    budget.parks += 1
    if budget.parks >= BUDGET:
        budget.parks = 0
        maybe_single()


async def _yield_then() -> bool:
    """The budget's yield (a suspension like any other: Go preempts; tokio's budget),
    then whether the operation must lock."""
    await _bare_yield()
    return shared.on


async def yield_now() -> None:
    """A bare yield (``gosched``, ``sleep(0)``), after raising an owed cancellation."""
    if owed:
        _raise_owed()
    budget.left = budget.full
    await _bare_yield()


def _raise_owed() -> None:
    loop = _get_running_loop()
    task = _get_current_task(loop) if loop is not None else None
    if task is None:
        return
    o = owed.pop(task, None)
    if o is not None:
        if task.cancelling() > o[0]:
            raise _cancelled_error(o[1])
    elif owed:
        forget_done()  # owed by others: make sure no finished task lingers here


def forget_done(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Drop what finished tasks (or, given ``loop``, that loop's tasks) still owe: a
    loop closed before their re-delivery ran. Keeps :data:`owed` from growing."""
    # (list(owed) first: a copy made in one step, while another thread's loop may be
    # adding its own tasks)
    for t in [t for t in list(owed) if t.done() or (loop is not None and t.get_loop() is loop)]:
        owed.pop(t, None)


def owe(task: asyncio.Task[Any], base: int, msg: Any) -> None:
    """``task`` swallowed a ``CancelledError`` because its operation had taken effect:
    the cancellation stays owed while ``task.cancelling() > base``. It is raised by the
    task's next csp operation, or re-delivered at its next suspension (a callback
    queued now runs once the task's current step has ended)."""
    o = owed.get(task)
    if o is None:
        owed[task] = [base, msg]
        task.get_loop().call_soon(_redeliver, task)
    elif base < o[0]:
        o[0] = base  # merged with an earlier one: the earliest base rules, its message too


def _redeliver(task: asyncio.Task[Any]) -> None:
    """The task's step that swallowed the cancellation has ended: re-deliver it."""
    o = owed.get(task)
    if o is None:
        return  # raised by a csp operation meanwhile
    if task.done() or task.cancelling() <= o[0]:
        del owed[task]  # finished, or withdrawn by its canceller
        return
    w = parked_on(task)
    if w is not None and w.state is DONE:
        # It is about to resume from a completed operation, which must return
        # normally: look again once it has (its next operation may raise it first).
        task.get_loop().call_soon(_redeliver, task)
        return
    del owed[task]
    if _cancel_on_its_way(task, w):
        return  # merged with it: one CancelledError (the newest message), as asyncio
    # uncancel + cancel keeps the count as it is; cancel() reaches what it awaits now
    task.uncancel()
    task.cancel(o[1])


def _cancel_on_its_way(task: asyncio.Task[Any], w: Waiter | None) -> bool:
    """A newer cancellation request is already pending on ``task``: its csp waiter was
    withdrawn by it, or the Task records it (``_must_cancel``; for a goroutine csp
    drives, ``via_task``)."""
    if w is not None and w.state is CANCELLED:
        return True
    sched = _sched.schedulers.get(task.get_loop())
    g = sched.goroutines.get(task) if sched is not None else None
    if g is not None and g.proxy is not None:
        return g.via_task
    return _compat.must_cancel(task)


def parked_on(task: asyncio.Task[Any]) -> Waiter | None:
    """The csp waiter ``task`` is parked on, or None."""
    sched = _sched.schedulers.get(task.get_loop())
    g = sched.goroutines.get(task) if sched is not None else None
    if g is not None and g.proxy is not None:
        return g.cur
    w = _compat.fut_waiter(task)
    return w if type(w) is Waiter else None


# -- the waiter -------------------------------------------------------------------------


class _WaiterCore:
    """The part of the waiter that runs on every park: its fields, its constructor and
    ``__await__``. Its compiled twin is ``WaiterCore`` in ``csp/_speedups.c`` (used when
    the extension is built; ``CSP_NO_EXTENSIONS=1`` selects this one), where the waiter
    is its own iterator instead of a generator. The suite runs in both modes."""

    __slots__ = (
        "_asyncio_future_blocking",
        "base",
        "index",
        "next",
        "ok",
        "on_abort",
        "prev",
        "q",
        "reason",
        "state",
        "value",
        "waker",
    )

    # Set by __init__ (the rest is written before it is read: ``ok`` and ``index`` by
    # whoever completes the waiter, ``q``/``prev``/``next`` by WaitQ.push; ``on_abort``
    # and ``base`` are read with a default on the slow paths):
    _asyncio_future_blocking: bool
    state: int
    reason: str
    value: Any
    waker: Waker | None
    ok: bool
    index: int
    on_abort: Callable[[Waiter], None] | None
    base: int | None
    q: WaitQ | None
    prev: Any
    next: Any

    def __init__(self, reason: str, value: Any = None) -> None:
        # True from the start: a waiter is only ever made to be awaited at once.
        self._asyncio_future_blocking = True
        self.state = PENDING
        self.reason = reason
        self.value = value
        self.waker = None

    if TYPE_CHECKING:
        def withdraw(self, msg: Any = None) -> None: ...

    def complete(self, value: Any, ok: bool = True) -> bool:
        """Give the waiter its outcome and queue its task's wake-up; True.

        A waiter whose task's loop has been closed (its task can never run again) is
        withdrawn instead and the answer is False: the completer keeps what it meant
        to hand over and goes on to the next waiter (Go has no such task; asyncio
        leaves one behind when a loop is closed with tasks pending).

        Precondition: ``self.state is PENDING`` and it is in no queue (the completer
        took it out)."""
        r = self.waker
        if r is not None:
            sched = r.sched
            # (a loop whose drain runs now is open, as is the running loop: the hot
            # paths ask no loop)
            if (not sched.draining and sched.loop is not _get_running_loop()
                    and sched.loop.is_closed()):
                self.withdraw()
                return False
            self.state = DONE
            self.value = value
            self.ok = ok
            sched.wake(r)
            return True
        self.state = DONE
        self.value = value
        self.ok = ok
        return True

    def __await__(self) -> Generator[Waiter, None, None]:
        if self.state is PENDING:
            if not budget.full:  # shared mode: now and then, the check for a switch back
                _park_in_shared_mode()
            budget.left = budget.full  # a park: the cooperative budget starts again
            try:
                yield self  # type: ignore[misc]  # (always a Waiter)
            except BaseException as exc:
                if _thrown(self, exc):  # type: ignore[arg-type]
                    raise
        if self.state is CANCELLED:
            raise _cancelled_error(self.value)


def _thrown(w: Waiter, exc: BaseException) -> bool:
    """An exception reached a task parked on ``w`` (``Task.cancel()``'s, or one thrown
    in with ``coro.throw``/``close``): True if it is to be raised; False if the
    operation took effect first, so its outcome stands and the cancellation is owed."""
    if shared.on:
        with lock:
            state: int = w.state  # (moved while we were parked)
            if state is PENDING:
                w.withdraw()
    else:
        state = w.state  # (moved while we were parked)
        if state is PENDING:
            w.withdraw()
    if state is PENDING:
        # thrown in without cancel() (coro.throw, close): withdrawn above, so that
        # nothing completes it later
        return True
    if state is not DONE or not isinstance(exc, _CancelledError):
        return True
    w._absorb(exc)
    return False


if not TYPE_CHECKING:
    _speedups = _mode.speedups()
    if _speedups is not None:
        _speedups.setup(budget, _thrown, _cancelled_error, _get_running_loop, PENDING, DONE,
                        CANCELLED, _park_in_shared_mode)
        _WaiterCore = _speedups.WaiterCore


class Waiter(_WaiterCore):
    """What a parked task awaits: a single-assignment, future-like outcome.

    ``value`` is the outcome (the value received; for a parked sender, the value it
    offers until completed; for a cancelled waiter, the cancel message), ``ok`` is False
    when the waiter was completed by close rather than by a partner, ``index`` is the
    select case that fired (-1 otherwise). ``reason`` says what the task waits for
    ("chan receive", "select", ...) for deadlock reports and reprs. ``on_abort`` is
    called once, after the waiter left its queue, when it is withdrawn. ``q``/``prev``/
    ``next`` link it into a :class:`~csp._waitq.WaitQ`. (Fields, constructor and park:
    :class:`_WaiterCore`.)
    """

    __slots__ = ()

    # -- withdrawal (completion: _WaiterCore.complete) ----------------------------

    def withdraw(self, msg: Any = None) -> None:
        """PENDING -> CANCELLED: leave the queue, run ``on_abort``; wake nobody.

        Precondition: ``self.state is PENDING``."""
        self.state = CANCELLED
        self.value = msg  # (and the value a sender offered is let go at once)
        q = getattr(self, "q", None)
        if q is not None:
            q.unlink(self)
        f = getattr(self, "on_abort", None)
        if f is not None:
            self.on_abort = None
            f(self)

    # -- the Future-like protocol asyncio.Task uses -------------------------------

    # The loop of the task about to park here, asked from its own step: the running
    # loop (a C function, no Python frame).
    get_loop: Callable[[], asyncio.AbstractEventLoop] = staticmethod(_get_running_loop)  # type: ignore[assignment]

    def add_done_callback(self, fn: Callable[[Any], object], *,
                          context: contextvars.Context | None = None) -> None:
        """A Task parks here (from its own step): ``fn`` is its wake-up callback."""
        r = self.waker
        if r is not None:
            # a goroutine's Task (its body set the waker just before): csp drives it
            r.attach(self, fn, context)
            return
        loop = _get_running_loop()
        if loop is None:
            raise RuntimeError("a csp waiter needs a running event loop")
        sched = _sched.scheduler()
        ctx = context if context is not None else contextvars.copy_context()
        tw = _sched.TaskWake(_get_current_task(loop), fn, self, ctx, sched)
        if shared.on:  # (a partner on another thread may be completing it right now)
            with lock:
                if self.state is PENDING:
                    self.waker = tw
                    return
        elif self.state is PENDING:
            self.waker = tw
            return
        sched.wake(tw)

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        r = self.waker
        if type(r) is _sched.TaskWake and r.wakeup == fn:
            self.waker = None
            return 1
        return 0

    def cancel(self, msg: Any = None) -> bool:
        """``Task.cancel()`` of the task parked here."""
        if shared.on:  # (decided under the csp lock: a partner may complete it now)
            with lock:
                return self._cancel(msg)
        return self._cancel(msg)

    def _cancel(self, msg: Any) -> bool:
        r = self.waker
        if r is not None and r.proxy is self:
            return r.cancel(msg)
        if self.state is PENDING:
            self.withdraw(msg)
            if r is not None:
                r.sched.wake(r)
            return True
        if self.state is DONE and type(r) is _sched.TaskWake:
            task = r.task
            if task is not None and getattr(self, "base", None) is None:
                # The task's count already includes this request (asyncio counts, then
                # asks the awaited object): the base is just below it.
                self.base = task.cancelling() - 1
        return False

    def cancelled(self) -> bool:
        return self.state is CANCELLED

    def done(self) -> bool:
        r = self.waker
        if r is not None and r.proxy is self:
            # A goroutine's proxy (its Task's _fut_waiter): done while the goroutine is
            # not parked on a pending csp waiter, as a Task's awaited Future is done
            # once the Task is about to run (anyio's wait_all_tasks_blocked asks this).
            return r.parked() is None
        return self.state is not PENDING

    def result(self) -> None:
        if self.state is CANCELLED:
            raise _cancelled_error(self.value)

    def exception(self) -> BaseException | None:
        if self.state is CANCELLED:
            raise _cancelled_error(self.value)
        return None

    def _absorb(self, exc: asyncio.CancelledError) -> None:
        loop = _get_running_loop()
        task = _get_current_task(loop) if loop is not None else None
        if task is None:  # pragma: no cover - awaited outside a task
            return
        base = getattr(self, "base", None)
        if base is None:  # thrown in without a cancel() that reached us
            base = task.cancelling() - 1
        owe(task, base, exc.args[0] if exc.args else None)

    def __repr__(self) -> str:
        r = self.waker
        if r is not None and r.proxy is self:
            return repr(r)  # what a goroutine's Task shows as wait_for=
        state = ("pending", "done", "cancelled")[self.state]
        return f"<csp waiter {self.reason!r} {state}>"


if not TYPE_CHECKING and _speedups is not None:
    _speedups.setup_waiter_class(Waiter)


def _done_waiter() -> Waiter:
    w = Waiter("nothing")
    w.state = DONE
    return w


NOTHING: Final = _done_waiter()
"""A completed waiter with no outcome: what a goroutine's Task is woken with when csp
hands the coroutine back to it (``csp._drive``)."""


# -- an awaitable that is already done ----------------------------------------------


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


class _ReadyFuture(asyncio.Future[Any]):
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

_YES: Final[asyncio.Future[bool]] = _ReadyFuture(loop=_NoLoop())  # type: ignore[arg-type]
_YES.set_result(True)
_NO: Final[asyncio.Future[bool]] = _ReadyFuture(loop=_NoLoop())  # type: ignore[arg-type]
_NO.set_result(False)
