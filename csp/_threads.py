"""Threads and several event loops: the one lock, and when csp takes it.

Strategy. csp runs in one of two modes, process-wide (``shared.on``):

* *single* (False): the process runs one Python thread, so csp's state (channels'
  buffers and queues, waiters, select rings, wait groups) is touched by that thread
  alone and no operation takes a lock: single-loop programs pay one attribute test
  per operation for everything in this module;
* *shared* (True): another thread may run csp code. Every read-modify-write of csp
  state then happens with :data:`lock` held: one process-wide re-entrant lock (Go's
  per-channel locks folded into one, so that a select over channels fed by several
  threads needs no lock order, and the claim of a waiter is decided under the same
  lock as the queues it sits in). A wake-up that crosses threads goes through the
  woken loop's inbox: one ``call_soon_threadsafe`` per batch (``csp._sched``); a
  thread with no loop parks on a :class:`ThreadWake` (a ``_thread`` lock it blocks on).

The switch to *shared* is made by the thread that starts another thread, inside
``Thread.start()``, before the new thread exists (``csp._compat.on_thread_start``
wraps ``threading``'s start function): that thread is then between two operations,
so no operation is ever half-done without the lock when a second thread begins. The
switch back to *single* happens on the main thread once it is the only thread left,
at a budget refill (``BUDGET`` operations in a row without a park,
``csp._waiter.prelude``) or every ``BUDGET`` parks (``_park_in_shared_mode``: a park
restarts the count of the first, so a program whose operations all park would never
reach it).

A thread csp did not see start (started from C, or with ``_thread`` directly)
switches shared mode on at its first call that may come from any thread (the blocking
calls, ``*_nowait``, ``close``; they look), then waits until every running loop csp
knows has passed a safe point (one callback each, at most :data:`HANDSHAKE` seconds
each), so that operations those loops began without the lock are over.

The locking rule (free-threaded CPython included: nothing here relies on the GIL for a
multi-step update):
  * while ``shared.on``, a waiter changes state, a queue or buffer changes, a waiter
    gets its waker, and a scheduler's inbox changes, only with :data:`lock` held;
  * a loop's run queue is touched only by that loop's thread; other threads hand
    runnables over through its inbox;
  * nothing that may block, nor any user code, runs with :data:`lock` held (loop
    methods called under it: ``call_soon_threadsafe`` only).

Invariants:
  * ``shared.on`` is True whenever two Python threads csp knows of are alive;
  * it turns False only on the main thread, when ``_thread._count()`` is 0 and no
    thread csp did not see start has ever called in (``shared.strangers == 0``).
"""

from __future__ import annotations

import _thread
import threading
import weakref
from typing import TYPE_CHECKING, Any, Final

from csp import _compat, _mode

if TYPE_CHECKING:
    from csp._waiter import Waiter

__all__ = [
    "BUDGET", "HANDSHAKE", "ThreadWake", "budget", "enter", "lock", "maybe_single",
    "no_loop_here", "shared", "timeout_of", "wait_thread",
]

HANDSHAKE: Final = 1.0
"""Seconds a stranger thread waits for each running loop to pass a safe point."""

lock: Final = threading.RLock()
"""The csp lock: held for every update of csp state while ``shared.on``."""

_get_ident = _thread.get_ident
_allocate_lock = _thread.allocate_lock


BUDGET: Final = 256
"""At most this many csp operations in a row without suspending, then one yield."""


class _BudgetCore:
    """The budget's counts (its compiled twin: ``BudgetCore``, csp/_speedups.c):
    ``full`` and ``left`` (the cooperative budget), and ``parks``, the parks made in
    shared mode since its last check for a switch back (``csp._waiter``)."""

    __slots__ = ("full", "left", "parks")

    full: int
    left: int
    parks: int


class _SharedCore:
    """The mode flag (its compiled twin: ``SharedCore``, csp/_speedups.c)."""

    __slots__ = ("on",)

    on: bool


if not TYPE_CHECKING:
    _speedups = _mode.speedups()
    if _speedups is not None:
        _BudgetCore = _speedups.BudgetCore
        _SharedCore = _speedups.SharedCore


class _Budget(_BudgetCore):
    """The cooperative budget (``csp._waiter``), which also carries the mode: ``full``
    is what a refill writes, ``BUDGET`` in single mode and 0 in shared mode, where
    every operation's guard takes its slow branch (``prelude()``) and learns there
    that it must lock."""

    __slots__ = ()

    def __init__(self) -> None:
        self.full = self.left = BUDGET
        self.parks = 0

    def __repr__(self) -> str:
        return f"<csp budget left={self.left} full={self.full}>"


budget: Final = _Budget()


class _Shared(_SharedCore):
    """The process-wide mode (see the module docstring)."""

    __slots__ = ("forced", "home", "quiet", "strangers")

    def __init__(self) -> None:
        self.on = _compat.thread_count() > 0  # (imported while other threads run)
        self.strangers = 0  # threads csp did not see start that called in
        # in single mode, the one thread that runs csp code (a call from any other is
        # a stranger's): the importing thread, then the main thread
        self.home = _get_ident()
        # threads that never call into csp (pytest-timeout's watchdog): they do not
        # keep shared mode on
        self.quiet: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        self.forced = False  # shared mode for good (tests: the whole suite in it)

    def __repr__(self) -> str:
        return f"<csp threads shared={self.on} strangers={self.strangers}>"


shared: Final = _Shared()


def _set(on: bool) -> None:
    """Switch the mode (the caller is between two operations, and alone, or holds the
    lock while the others are not yet in csp)."""
    shared.on = on
    budget.full = budget.left = 0 if on else BUDGET


def _thread_starting() -> None:
    """A thread is about to be started, by the caller, between two operations."""
    if not shared.on:
        _set(True)


if shared.on:
    _set(True)


_compat.on_thread_start(_thread_starting)


def maybe_single() -> None:
    """Back to single mode if the main thread is the only thread left that may call
    into csp (called at a budget refill: the caller is between two operations)."""
    if not shared.on or shared.strangers or shared.forced or not _compat.threading_main():
        return
    others = _compat.thread_count()
    if others:
        others -= sum(1 for t in list(shared.quiet) if t.is_alive())
    if others <= 0:
        # a thread started from C is not in the count, and one that called in while
        # shared mode was on is no stranger (enter() did not look): one running Python
        # code now (parked in a blocking call, say) shows in the frames
        me = _get_ident()
        quiet = {t.ident for t in list(shared.quiet) if t.is_alive()}
        others = sum(1 for ident in _compat.current_frames()
                     if ident != me and ident not in quiet)
    if others <= 0:
        with lock:  # (nobody else can hold it: nobody else calls in)
            shared.home = _get_ident()
            _set(False)


def ignore_thread(thread: threading.Thread) -> None:
    """``thread`` never calls into csp: it does not keep shared mode on."""
    shared.quiet.add(thread)


def force_shared() -> None:
    """Shared mode for the rest of the process, threads or not (tests)."""
    shared.forced = True
    _set(True)


def enter() -> None:
    """A call that may come from any thread: if this thread is one csp did not see
    start, turn shared mode on and wait for the loops csp knows to pass a safe point."""
    if shared.on:
        return
    me = _get_ident()
    if me == shared.home:
        return
    with lock:
        shared.strangers += 1
        _set(True)
    _handshake(me)


def _handshake(me: int) -> None:
    from csp import _sched

    for sched in list(_sched.schedulers.values()):
        loop = sched.loop
        if sched.tid == me or loop.is_closed() or not loop.is_running():
            continue
        done = _allocate_lock()
        done.acquire()
        try:
            loop.call_soon_threadsafe(_safe_point, done)
        except RuntimeError:  # closed meanwhile
            continue
        done.acquire(timeout=HANDSHAKE)


def _safe_point(done: Any) -> None:
    """On a loop's thread, between two operations: an operation it was inside when
    shared mode went on may have stored its single-mode budget count back over the 0
    ``_set`` wrote (``budget.left -= 1`` is a load and a store): every later operation
    must take the guard's slow branch, so the count starts again from ``full``."""
    budget.left = budget.full
    done.release()


def no_loop_here(call: str, fix: str) -> None:
    """A blocking call must not run on a thread whose event loop is running."""
    loop = _compat.get_running_loop()
    if loop is not None:
        raise RuntimeError(
            f"{call} called on a thread whose event loop is running: it would block "
            f"every task of {loop!r}; use {fix} there"
        )


class _NoLoop:
    """What a thread's waker shows as its loop: it never closes."""

    __slots__ = ()

    def is_closed(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<csp: a thread with no event loop>"


_NO_LOOP: Final = _NoLoop()


class ThreadWake:
    """The waker of a waiter a thread with no loop blocks on (``send_blocking``,
    ``recv_blocking``, ``select_blocking``, ``wait_blocking``): it is its own
    scheduler, and waking it releases the lock the thread waits on.

    Invariant: ``gate`` is held until the waiter leaves PENDING (released exactly once,
    by :meth:`wake`)."""

    __slots__ = ("gate", "thread")

    proxy: Final = None
    draining: Final = False
    loop: Final = _NO_LOOP

    def __init__(self) -> None:
        self.gate = _allocate_lock()
        self.gate.acquire()
        self.thread = threading.current_thread().name

    @property
    def sched(self) -> ThreadWake:
        return self

    def wake(self, r: Any) -> None:
        self.gate.release()

    def run(self) -> None:  # pragma: no cover - never queued on a loop
        raise AssertionError("a thread's waker is not run by a loop")

    def attach(self, w: Waiter, wakeup: Any, ctx: Any) -> None:
        raise RuntimeError("a csp waiter supports a single waiting task")

    def cancel(self, msg: Any = None) -> bool:  # pragma: no cover - never a proxy
        raise AssertionError("a thread's waker is never a proxy")

    def parked(self) -> Waiter | None:  # pragma: no cover - no goroutine
        return None

    def __repr__(self) -> str:
        return f"<csp wake-up of thread {self.thread!r}>"


def thread_waker(w: Waiter) -> ThreadWake:
    """Make this thread the one that waits on ``w`` (before ``w`` is queued)."""
    tw = ThreadWake()
    # (it stands in for a loop's Scheduler where Waiter.complete looks: draining, loop,
    # wake; the Waker protocol names the Scheduler class)
    w.waker = tw  # type: ignore[assignment]
    return tw


def timeout_of(call: str, timeout: object) -> float:
    """``timeout`` as lock.acquire wants it: -1 for None (no limit), else seconds >= 0."""
    if timeout is None:
        return -1.0
    from csp._check import duration

    t = duration(call, "timeout", timeout)
    if t == float("inf"):
        return -1.0
    return t if t > 0 else 0.0


def wait_thread(w: Waiter, tw: ThreadWake, timeout: float, call: str) -> None:
    """Block this thread until ``w`` (parked with waker ``tw``, under :data:`lock`)
    leaves PENDING. If ``timeout`` passes first it is withdrawn (took no effect) and
    ``TimeoutError`` raised, unless it completed meanwhile (then it returns: the
    operation took effect). Interrupted (KeyboardInterrupt): withdrawn likewise."""
    try:
        if tw.gate.acquire(timeout=min(timeout, threading.TIMEOUT_MAX)
                           if timeout >= 0 else -1):
            return
    except BaseException:
        with lock:
            if w.state == 0:  # PENDING
                w.withdraw()
        raise
    with lock:
        if w.state == 0:  # PENDING
            w.withdraw()
            raise TimeoutError(f"{call}: timed out after {timeout:g} s")

