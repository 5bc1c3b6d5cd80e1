"""The run queue: where every csp wake-up goes, and the one loop callback that runs them.

Strategy. Completing a csp waiter does not call ``loop.call_soon`` for each wake-up: it
appends the waiting task's *runnable* to its loop's run queue (:meth:`Scheduler.wake`),
and one loop callback, :meth:`Scheduler.drain`, runs what is queued, up to
``DRAIN_BUDGET`` wake-ups before it lets the loop poll for I/O and run its other
callbacks. A chain of hand-offs (ping-pong, pipelines) therefore costs one loop
iteration per batch of wake-ups instead of one per wake-up.

A runnable is an object with a ``run()`` method and a ``sched``:

* a :class:`csp._drive.Goroutine` resumes a goroutine's coroutine itself (csp drives
  only the tasks ``csp.go`` created, and main under ``csp.run``);
* a :class:`TaskWake` calls the wake-up callback a plain asyncio Task gave the waiter it
  parks on, so that asyncio steps the Task exactly as it would after a Future.

A goroutine that yields (``gosched()``, ``asyncio.sleep(0)``) goes to the back of the
queue, behind a *barrier*: the drain stops there and lets the loop run the callbacks it
has queued meanwhile (the first steps of goroutines just started, for one), so the
yielder runs after every goroutine that was runnable when it yielded (Go's order).

Invariants:
  * ``scheduled`` is True iff a drain callback is queued on the loop;
  * ``runq`` is non-empty only while ``scheduled`` is True;
  * a runnable is in ``runq`` at most once (a waiter is completed or withdrawn once);
  * ``barrier`` is True iff ``_BARRIER`` is in ``runq``;
  * ``draining`` is True only while :meth:`drain` runs, so its loop is open (a closed
    loop's waiters are skipped: ``Waiter.complete`` asks this first, for free);
  * ``nparked`` counts the goroutines csp drives (parked in csp, or queued to be
    resumed by it), ``nforeign`` those whose Task awaits something else (an asyncio
    Future, another Task: ``Goroutine.foreign``); they only decide when the deadlock
    watch looks: when ``nparked + nforeign`` covers every goroutine.
"""

from __future__ import annotations

import _thread
import asyncio
import contextvars
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from csp import _compat, _mode
from csp._threads import lock, shared

if TYPE_CHECKING:
    from csp._drive import Goroutine
    from csp._waiter import Waiter

__all__ = ["DRAIN_BUDGET", "Runnable", "Scheduler", "TaskWake", "forget_loop", "scheduler"]

# How many wake-ups one drain may run before it lets the event loop poll for I/O and
# run its other callbacks (fairness; Go preempts after ~10 ms for the same end). 512
# let a new goroutine wait 255 ping-pong round trips before it first ran, and cost the
# same as 64 to within noise.
DRAIN_BUDGET: Final = 64

_get_running_loop = _compat.get_running_loop
_get_ident = _thread.get_ident


class Runnable(Protocol):
    """What the run queue holds."""

    @property
    def sched(self) -> Scheduler: ...

    def run(self) -> None: ...


class Waker(Runnable, Protocol):
    """What a waiter wakes (``Waiter.waker``): a goroutine's driver or a TaskWake."""

    @property
    def proxy(self) -> Waiter | None: ...

    def attach(self, w: Waiter, wakeup: Callable[[Any], object],
               ctx: contextvars.Context | None) -> None: ...

    def cancel(self, msg: Any = None) -> bool: ...

    def parked(self) -> Waiter | None:
        """The pending csp waiter its task is parked on, or None."""


class _Barrier:
    """Queued in front of the goroutines that yielded during a drain: the drain stops
    here, so that they run after the loop's own ready callbacks."""

    __slots__ = ()
    sched: Scheduler

    def run(self) -> None:  # pragma: no cover - the drain never runs it
        raise AssertionError("the barrier is not run")

    def __repr__(self) -> str:
        return "<csp yield barrier>"


_BARRIER: Final = _Barrier()


class _SchedulerCore:
    """The run queue's fields and its two hot methods. Its compiled twin is
    ``SchedulerCore`` in ``csp/_speedups.c`` (see csp._mode); the rest of the scheduler
    is :class:`Scheduler`."""

    __slots__ = ("barrier", "draining", "loop", "runq", "scheduled", "tid")

    barrier: bool
    draining: bool
    loop: asyncio.AbstractEventLoop
    runq: deque[Runnable]
    scheduled: bool
    tid: int

    if TYPE_CHECKING:
        def _wake_from_thread(self, r: Runnable) -> None: ...
        def _reschedule(self) -> None: ...

    def wake(self, r: Runnable) -> None:
        """Queue ``r`` to run in this loop's next drain (from any thread)."""
        if shared.on and self.tid != _get_ident():
            self._wake_from_thread(r)
            return
        self.runq.append(r)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.drain)

    def drain(self) -> None:
        """The loop callback that runs queued wake-ups."""
        runq = self.runq
        popleft = runq.popleft
        budget = DRAIN_BUDGET
        self.draining = True
        while runq and budget:
            r = popleft()
            if r is _BARRIER:
                self.barrier = False
                break
            budget -= 1
            try:
                r.run()
            except (SystemExit, KeyboardInterrupt):
                # A Task's step re-raised them, as asyncio does: the loop stops, but
                # what is queued still runs if the loop runs again (clean-up).
                self.draining = False
                self._reschedule()
                raise
            except BaseException as exc:  # a csp bug: do not strand the others
                self.loop.call_exception_handler(
                    {"message": f"Exception in csp wake-up of {r!r}", "exception": exc}
                )
        self.draining = False
        if runq and runq[0] is _BARRIER:  # the budget ran out right at the barrier:
            popleft()  # the loop runs its callbacks before the next drain anyway
            self.barrier = False
        self._reschedule()


if not TYPE_CHECKING:
    _speedups = _mode.speedups()
    if _speedups is not None:
        _speedups.setup_sched(_BARRIER, DRAIN_BUDGET, shared)
        _SchedulerCore = _speedups.SchedulerCore


class Scheduler(_SchedulerCore):
    """One event loop's run queue, plus the goroutine registry ``csp.run`` reads."""

    __slots__ = (
        "__weakref__",
        "armed",
        "done_cb",
        "done_ctx",
        "goroutines",
        "inbox",
        "main",
        "next_id",
        "nforeign",
        "nparked",
        "on_all_parked",
        "panic_handler",
        "seen",
        "task_path",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.tid = _get_ident()  # the loop's thread (made from its own step)
        self.runq = deque()
        # wake-ups handed over by other threads (csp._threads), and whether a
        # call_soon_threadsafe to take them is on its way
        self.inbox: deque[Runnable] = deque()
        self.armed = False
        self.scheduled = False
        self.draining = False  # True while drain() runs: its loop is open
        self.barrier = False
        self.nparked = 0
        self.nforeign = 0
        # goroutine Task -> its driver (main is goroutine 1 under csp.run)
        self.goroutines: dict[asyncio.Task[Any], Goroutine] = {}
        self.next_id = 1
        self.main: asyncio.Task[Any] | None = None
        # set by csp.run: called when every goroutine may be parked (deadlock watch)
        self.on_all_parked: Callable[[], None] | None = None
        # set by csp.run: called with a goroutine's escaping exception
        self.panic_handler: Callable[[asyncio.Task[Any] | None, BaseException], None] | None = None
        # every goroutine's Task gets this done callback (csp._runtime), run in an empty
        # context (since 3.12 the loop's exception handler enters the task's own)
        self.done_cb: Callable[[asyncio.Task[Any]], None] = self.goroutine_done
        self.done_ctx = contextvars.Context()
        # how csp.go makes a Task on this loop (csp._runtime), once known
        self.task_path = -1
        # goroutine id -> (what it waits on, when a dump first saw it waiting); held
        # until the next dump replaces it
        self.seen: dict[int, tuple[object, float]] = {}

    # -- the entry points ---------------------------------------------------------

    def _wake_from_thread(self, r: Runnable) -> None:
        """Another thread completed a waiter of this loop's (holding the csp lock): the
        runnable goes to the inbox, and one call_soon_threadsafe per batch takes the
        inbox over on the loop's thread."""
        self.inbox.append(r)
        if not self.armed:
            self.armed = True
            try:
                self.loop.call_soon_threadsafe(self._take_inbox)
            except RuntimeError:  # closed meanwhile: nothing there runs again
                self.armed = False

    def _take_inbox(self) -> None:
        """On the loop's thread: run what other threads handed over, in their order."""
        with lock:
            batch = self.inbox
            self.inbox = deque()
            self.armed = False
        self.runq.extend(batch)
        if not self.scheduled and self.runq:
            # Run them now, from this callback: a drain queued with call_soon would
            # wait for the loop's next turn, one more select() (and, with the GIL,
            # one more chance for the other thread to take it) per hand-off.
            self.scheduled = True
            self.drain()

    def push_yield(self, r: Runnable) -> None:
        """Queue a goroutine that yielded: behind everything runnable now, and behind
        the loop's ready callbacks (the drain stops at the barrier)."""
        if not self.barrier:
            self.barrier = True
            self.runq.append(_BARRIER)
        self.wake(r)

    def _reschedule(self) -> None:
        if self.runq:
            self.loop.call_soon(self.drain)
            return
        self.scheduled = False
        # Nothing left to run: if every goroutine is parked, csp.run looks closer.
        if (self.on_all_parked is not None  # (all_waiting(), inlined)
                and self.nparked + self.nforeign >= len(self.goroutines)):
            self.on_all_parked()

    # -- bookkeeping ----------------------------------------------------------------

    def goroutine_done(self, task: asyncio.Task[Any]) -> None:
        """A goroutine's Task is done (its done callback): it leaves the registry; an
        exception escaping it is reported (Go: an unrecovered panic); maybe everyone
        left is parked now."""
        g = self.goroutines.pop(task, None)
        if g is not None:
            g.task = None  # the Task holds its goroutine (its coroutine): no cycle left
            if g.foreign:  # (abandoned at exit while it awaited a Future)
                g.foreign = False
                self.nforeign -= 1
            elif g.proxy is not None:  # (abandoned at exit while parked in csp)
                g.proxy = None
                self.nparked -= 1
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                if self.panic_handler is not None:
                    self.panic_handler(task, exc)
                else:
                    self.loop.call_exception_handler(
                        {"message": "Exception in goroutine", "exception": exc, "task": task}
                    )
        if (self.on_all_parked is not None  # (all_waiting(), inlined)
                and self.nparked + self.nforeign >= len(self.goroutines)):
            self.maybe_all_parked()

    def all_waiting(self) -> bool:
        """Every goroutine may be waiting: parked in csp, or its Task on something else."""
        return self.nparked + self.nforeign >= len(self.goroutines)

    def maybe_all_parked(self) -> None:
        """Every goroutine may be parked: unless a wake-up is queued (the drain that
        runs it looks when it ends idle), let csp.run's deadlock watch look. The look
        is O(goroutines), so it must stay rare."""
        if not self.runq and self.on_all_parked is not None:
            self.on_all_parked()

    def live_goroutines(self) -> int:
        """Goroutines not yet done (a done one leaves the registry a callback later)."""
        return sum(1 for t in self.goroutines if not t.done())

    def _invariants(self) -> None:
        assert self.scheduled or not self.runq
        assert self.barrier == (_BARRIER in self.runq)
        assert len({id(r) for r in self.runq}) == len(self.runq)

    def __repr__(self) -> str:
        return (
            f"<csp.Scheduler runq={len(self.runq)} driven={self.nparked} "
            f"awaiting={self.nforeign} "
            f"goroutines={len(self.goroutines)}>"
        )


def _spent(_: object) -> None:  # pragma: no cover - a TaskWake runs once
    raise AssertionError("a TaskWake runs once")


class TaskWake:
    """The runnable of a plain asyncio Task parked on a csp waiter: it calls the
    Task's wake-up callback with the waiter, in the Task's context, and asyncio steps
    the Task (its ``fut.result()`` then reads the waiter's outcome).

    ``task`` is the parked Task (for the cancellation bookkeeping in csp._waiter).
    """

    __slots__ = ("ctx", "sched", "task", "w", "wakeup")

    # a plain Task's waiter is never a goroutine's proxy (see Waiter.cancel)
    proxy: Final = None

    def __init__(self, task: asyncio.Task[Any] | None, wakeup: Callable[[Any], object],
                 w: Waiter, ctx: contextvars.Context, sched: Scheduler) -> None:
        self.task: asyncio.Task[Any] | None = task
        self.wakeup = wakeup
        self.w: Waiter | None = w
        self.ctx = ctx
        self.sched = sched

    def run(self) -> None:
        # Once: let go of everything first (no waiter <-> runnable cycle), and keep
        # nothing that leads to the Task in this frame after the step (3.12+ links a
        # finished coroutine's frame to this one through f_back: an exception's
        # traceback would keep the Task alive in a cycle).
        w: Any = self.w
        wakeup: Any = self.wakeup
        self.w = self.task = None
        self.wakeup = _spent
        self.ctx.run(wakeup, w)
        wakeup = w = None

    def attach(self, w: Waiter, wakeup: Callable[[Any], object],
               ctx: contextvars.Context | None) -> None:
        raise RuntimeError("a csp waiter supports a single waiting task")

    def cancel(self, msg: Any = None) -> bool:  # pragma: no cover - never a proxy
        raise AssertionError("TaskWake is never a proxy")

    def parked(self) -> Waiter | None:
        w = self.w
        return w if w is not None and not w.done() else None

    def __repr__(self) -> str:
        return f"<csp wake-up of {self.task!r}>"


# -- one scheduler per loop -------------------------------------------------------------

# The last scheduler asked for, with its loop: one tuple, replaced in one store, so
# that a thread never pairs one loop with another loop's scheduler.
_last: tuple[asyncio.AbstractEventLoop | None, Scheduler | None] = (None, None)
schedulers: dict[asyncio.AbstractEventLoop, Scheduler] = {}


def scheduler() -> Scheduler:
    """The running loop's scheduler (created on first use)."""
    loop = _get_running_loop()
    last_loop, last_sched = _last
    if loop is last_loop and last_sched is not None:
        return last_sched
    if loop is None:
        raise RuntimeError("no running event loop: csp operations must run inside a task")
    return _scheduler_of(loop)


def _scheduler_of(loop: asyncio.AbstractEventLoop) -> Scheduler:
    global _last
    sched = schedulers.get(loop)
    if sched is None:
        with lock:
            sched = schedulers.get(loop)
            if sched is None:
                # A loop closed by hand (not by csp.run or asyncio.run) is let go here:
                # its scheduler would keep its pending goroutines alive, so that their
                # Tasks were never destroyed ("Task was destroyed but it is pending").
                for lp in [lp for lp in list(schedulers) if lp.is_closed()]:
                    schedulers.pop(lp, None)
                sched = schedulers[loop] = Scheduler(loop)
    _last = (loop, sched)
    return sched


def forget_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Drop the scheduler of a loop that is closing."""
    global _last
    with lock:
        schedulers.pop(loop, None)
        if _last[0] is loop:
            _last = (None, None)
