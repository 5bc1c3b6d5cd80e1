"""sync: Mutex, RWMutex, WaitGroup, Once, Cond, Semaphore and ErrGroup.

Strategy. Every primitive is a little state (a flag, a counter) plus FIFO queues
(:class:`~csp._waitq.WaitQ`) of parked :class:`~csp._waiter.Waiter` objects, and every
blocking method is its non-blocking twin plus a park. Nothing is ever *released and
then re-contended*: when a holder lets go and someone is queued, the resource is
handed straight to the head waiter (the waiter is completed, and owns the lock, tokens
or signal from that instant). Because ``csp._waiter`` guarantees that a completed
waiter returns normally even if its task is cancelled in the same instant, a hand-off
can never be lost; the cancellation is raised at the task's next csp operation or
suspension.

A waiter that is cancelled while still queued is withdrawn: it leaves its queue at
once, so queues only ever hold PENDING waiters; where the withdrawal changes who may go
next (a writer that was blocking new readers, a large semaphore request at the head of
the queue), its ``on_abort`` hook passes the resource on at once; a Once whose runner
was cancelled hands the call to the next waiter. A waiter whose task can never run
again (its loop was closed while it was parked) is withdrawn when a hand-off reaches
it, and the hand-off goes on to the next one (``WaitQ.give``), so no lock, token or
signal is given to a dead task.

No object here touches the event loop when it is created: they may be built before
any loop runs (Go's zero values), and a waiter binds to the loop of the task that
parks.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from _thread import get_ident as _get_ident
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, final

from csp import _mode
from csp._chan import OP_METHODS, OPS, is_coro
from csp._check import count
from csp._runtime import _make_coro, check_coro_fn, created_by
from csp._runtime import go as _go
from csp._threads import (
    BUDGET,
    enter,
    lock,
    no_loop_here,
    shared,
    thread_waker,
    timeout_of,
    wait_thread,
)
from csp._waiter import READY, Waiter, budget, owe, owed, prelude
from csp._waitq import WaitQ

if TYPE_CHECKING:
    from csp._context import Context

__all__ = ["Cond", "ErrGroup", "Mutex", "Once", "RWMutex", "Semaphore", "WaitGroup"]

T = TypeVar("T")

_CORO_CREATED = inspect.CORO_CREATED


class Locker(Protocol):
    """What :class:`Cond` needs of its lock (Go: ``sync.Locker``)."""

    async def lock(self) -> None: ...

    def unlock(self) -> None: ...


def _need_loop(who: str, fn: object) -> None:
    """Raise RuntimeError (closing a coroutine ``fn``) unless a loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if is_coro(fn):
            fn.close()
        raise RuntimeError(f"{who} must be called with an event loop running") from None


async def _relock(locker: Locker, signalled: bool) -> None:
    """Take ``locker`` again, however often the task is cancelled meanwhile.

    A cancellation caught while re-locking is re-raised once the lock is held, or,
    when the wait already took effect (``signalled``), stays owed: it is raised at the
    task's next csp operation or suspension (the wait must return normally: it
    consumed a signal).
    """
    task = asyncio.current_task()
    assert task is not None
    o = owed.get(task)  # a cancellation the wait itself absorbed: its base rules
    base = o[0] if o is not None else task.cancelling()
    exc: asyncio.CancelledError | None = None
    while True:
        try:
            await locker.lock()
            break
        except asyncio.CancelledError as e:
            exc = e
    if exc is not None:
        if signalled:
            owe(task, base, exc.args[0] if exc.args else None)
        else:
            raise exc


# -- Mutex ------------------------------------------------------------------------------


class _MutexCore:
    """The mutex's fields and operations; its compiled twin is ``MutexCore`` in
    ``csp/_speedups.c`` (csp._mode), whose ``lock()`` returns a ``ChanOp`` instead of
    a coroutine and whose ``async with`` methods are C calls.

    Invariants:
      * _waiters non-empty implies _locked (unlock hands the mutex to the head waiter
        instead of clearing _locked);
      * every waiter in _waiters is PENDING (a withdrawn one leaves the queue).
    """

    __slots__ = ("_locked", "_waiters")

    _locked: bool
    _waiters: WaitQ

    async def lock(self) -> None:
        """Lock the mutex, waiting (in FIFO order) while another task holds it."""
        budget.left -= 1
        if budget.left <= 0 or owed:  # (the budget guard: see csp._waiter)
            await prelude()
        if self.try_lock():
            return
        w = Waiter("sync.Mutex.Lock")
        self._waiters.push(w)
        await w

    def try_lock(self) -> bool:
        """Lock the mutex if it is free now and return True; else return False.

        Go: ``TryLock``. Never waits and never yields.
        """
        if self._locked:
            return False
        self._locked = True
        return True

    def unlock(self) -> None:
        """Unlock the mutex, handing it to the longest waiter if there is one.

        Raises ``RuntimeError("sync: unlock of unlocked mutex")`` if it is not locked.
        """
        if not self._locked:
            raise RuntimeError("sync: unlock of unlocked mutex")
        if not self._waiters.give(None):  # still locked: now theirs
            self._locked = False

    # ``async with mu:`` without a coroutine when it need not wait: __aenter__ and
    # __aexit__ are plain methods that return READY (a finished Future), else lock().

    def __aenter__(self) -> Awaitable[None]:
        budget.left -= 1
        if budget.left > 0 and not owed and self.try_lock():
            return READY
        return self.lock()

    def __aexit__(self, *exc_info: object) -> Awaitable[None]:
        self.unlock()
        return READY


_PureMutexCore: Final = _MutexCore  # (csp._dump names a compiled lock() after its code)

if not TYPE_CHECKING:
    _speedups = _mode.speedups()
    if _speedups is not None:
        _speedups.setup_sync(READY, _MutexCore.lock)
        _MutexCore = _speedups.MutexCore
        OP_METHODS[_MutexCore] = ("lock",)


@final
class Mutex(_MutexCore):
    """A mutual exclusion lock (Go: ``sync.Mutex``).

    ``await mu.lock()``, ``mu.unlock()``, ``mu.try_lock()``, or ``async with mu:``.

    Strictly FIFO: :meth:`unlock` with tasks queued hands the mutex straight to the
    one that has waited longest, so a newcomer never barges in (Go's starvation mode,
    always on). Not owned: any task may unlock it, as in Go. Not reentrant: a holder
    that locks again waits forever.

    Cancellation: a cancelled :meth:`lock` holds nothing and leaves nothing queued; a
    lock handed to a task that is cancelled in the same instant is kept by it
    (``lock()`` returns normally, the cancellation is raised at its next await).

    Example::

        mu = csp.Mutex()
        async with mu:
            counter += 1
    """

    __slots__ = ()

    def __init__(self) -> None:
        self._locked = False
        self._waiters = WaitQ()

    def _invariants(self) -> None:
        assert self._waiters.head is None or self._locked
        assert all(w.state == 0 for w in self._waiters)
        self._waiters._invariants()

    def __repr__(self) -> str:
        if not self._locked:
            return "<csp.Mutex unlocked>"
        return f"<csp.Mutex locked waiters={self._waiters.count()}>"


# -- RWMutex ----------------------------------------------------------------------------


@final
class RWMutex:
    """A reader/writer lock (Go: ``sync.RWMutex``): many readers or one writer.

    Read side: ``await rw.rlock()``, ``rw.runlock()``, ``rw.try_rlock()``, or
    ``async with rw.rlocker():``. Write side: ``await rw.lock()``, ``rw.unlock()``,
    ``rw.try_lock()``, or ``async with rw:``.

    Writer preference (Go): once a writer waits, new readers wait too, so a reader
    that read-locks again while a writer waits deadlocks, as in Go. When a writer
    unlocks, every reader that queued meanwhile is admitted before the next writer,
    which then waits for them: phases alternate and neither side starves. Waiting
    writers are served FIFO. Not owned: any task may unlock.

    Cancellation: a cancelled ``lock()``/``rlock()`` holds nothing; a cancelled writer
    that was holding new readers back lets them in. Example::

        rw = csp.RWMutex()
        async with rw.rlocker():
            value = table[key]
        async with rw:
            table[key] = value + 1
    """

    # Invariants:
    #   * _writer implies _readers == 0;
    #   * _wq non-empty implies _writer or _readers > 0 (else its head would hold it);
    #   * _rq non-empty implies _writer or _wq non-empty (readers queue only behind a
    #     writer that holds or waits);
    #   * every waiter in _rq and _wq is PENDING.

    __slots__ = ("_readers", "_rlocker", "_rq", "_wq", "_writer")

    def __init__(self) -> None:
        self._readers = 0
        self._writer = False
        self._rq = WaitQ()
        self._wq = WaitQ()
        self._rlocker: _RLocker | None = None

    # -- read side ---------------------------------------------------------------

    async def rlock(self) -> None:
        """Lock for reading; waits while a writer holds the lock or is waiting for it."""
        budget.left -= 1
        if budget.left <= 0 or owed:  # (the budget guard: see csp._waiter)
            await prelude()
        if self.try_rlock():
            return
        w = Waiter("sync.RWMutex.RLock")
        self._rq.push(w)
        await w

    def try_rlock(self) -> bool:
        """Lock for reading if that is possible now (no writer holds or waits)."""
        if self._writer or self._wq.head is not None:
            return False
        self._readers += 1
        return True

    def runlock(self) -> None:
        """Undo one read lock; the last reader out hands the lock to a waiting writer.

        Raises ``RuntimeError("sync: RUnlock of unlocked RWMutex")`` if no read lock
        is held.
        """
        if self._readers == 0:
            raise RuntimeError("sync: RUnlock of unlocked RWMutex")
        self._readers -= 1
        if self._readers == 0 and self._wq.head is not None:
            self._grant_writer()

    def rlocker(self) -> _RLocker:
        """The read side as a lock object (Go: ``RLocker()``).

        Its ``lock``/``unlock`` are ``rlock``/``runlock``, and ``async with`` on it
        holds a read lock. It keeps no state, so it is reusable and nestable (each
        ``async with`` takes one more read lock), and it can be given to :class:`Cond`.
        """
        r = self._rlocker
        if r is None:
            r = self._rlocker = _RLocker(self)
        return r

    # -- write side --------------------------------------------------------------

    async def lock(self) -> None:
        """Lock for writing; waits until no reader or writer holds the lock."""
        budget.left -= 1
        if budget.left <= 0 or owed:  # (the budget guard: see csp._waiter)
            await prelude()
        if self.try_lock():
            return
        w = Waiter("sync.RWMutex.Lock")
        w.on_abort = self._withdrew_writer
        self._wq.push(w)
        await w

    def try_lock(self) -> bool:
        """Lock for writing if nobody holds the lock now."""
        if self._writer or self._readers:
            return False
        self._writer = True  # _wq is empty here (invariant)
        return True

    def unlock(self) -> None:
        """Unlock the write side: admit all queued readers, else the next writer.

        Raises ``RuntimeError("sync: Unlock of unlocked RWMutex")`` if it is not
        write-locked.
        """
        if not self._writer:
            raise RuntimeError("sync: Unlock of unlocked RWMutex")
        self._writer = False
        if self._rq.head is not None:
            self._admit_readers()
        elif self._wq.head is not None:
            self._grant_writer()

    def __aenter__(self) -> Awaitable[None]:
        budget.left -= 1
        if budget.left > 0 and not owed and self.try_lock():
            return READY
        return self.lock()

    def __aexit__(self, *exc_info: object) -> Awaitable[None]:
        self.unlock()
        return READY

    # -- internals ---------------------------------------------------------------

    def _admit_readers(self) -> None:
        self._readers += self._rq.complete_all(None)

    def _grant_writer(self) -> None:
        # Nobody holds the lock: the longest-waiting writer takes it. (Held meanwhile,
        # so that a dead writer's withdrawal lets no reader in; if every waiting
        # writer was dead, the readers they held back enter.)
        self._writer = True
        if not self._wq.give(None):
            self._writer = False
            if self._rq.head is not None:
                self._admit_readers()

    def _withdrew_writer(self, w: Waiter) -> None:
        # A cancelled writer left; if it was the last one, the readers it held back
        # (queued behind it while readers hold the lock) may enter now.
        if self._wq.head is None and not self._writer and self._rq.head is not None:
            self._admit_readers()

    def _invariants(self) -> None:
        assert not self._writer or self._readers == 0
        assert self._wq.head is None or self._writer or self._readers > 0
        assert self._rq.head is None or self._writer or self._wq.head is not None
        assert all(w.state == 0 for w in self._rq)
        assert all(w.state == 0 for w in self._wq)
        self._rq._invariants()
        self._wq._invariants()

    def __repr__(self) -> str:
        if self._writer:
            state = "write-locked"
        elif self._readers:
            state = f"read-locked readers={self._readers}"
        else:
            state = "unlocked"
        return (
            f"<csp.RWMutex {state} reader_waiters={self._rq.count()} "
            f"writer_waiters={self._wq.count()}>"
        )


@final
class _RLocker:
    """The read side of a :class:`RWMutex` as a lock (Go: ``rw.RLocker()``)."""

    __slots__ = ("_rw",)

    def __init__(self, rw: RWMutex) -> None:
        self._rw = rw

    async def lock(self) -> None:
        await self._rw.rlock()

    def unlock(self) -> None:
        self._rw.runlock()

    def __aenter__(self) -> Awaitable[None]:
        rw = self._rw
        budget.left -= 1
        if budget.left > 0 and not owed and rw.try_rlock():
            return READY
        return rw.rlock()

    def __aexit__(self, *exc_info: object) -> Awaitable[None]:
        self._rw.runlock()
        return READY

    def __repr__(self) -> str:
        return f"<csp.RWMutex.rlocker of {self._rw!r}>"


# -- WaitGroup --------------------------------------------------------------------------


@final
class WaitGroup:
    """Wait for a collection of tasks to finish (Go: ``sync.WaitGroup``).

    ``wg.add(n)`` before starting work, ``wg.done()`` when a piece ends, and
    ``await wg.wait()`` blocks until the counter is zero (at once if it is zero now).
    When the counter reaches zero every waiter is released together. A group may be
    reused once its waits have returned. ``wg.go(fn, *args)`` (Go 1.25) does the
    add/start/done in one call. Example::

        wg = csp.WaitGroup()
        for url in urls:
            wg.go(fetch, url)
        await wg.wait()
    """

    # Invariants:
    #   * _n >= 0;
    #   * _waiters non-empty implies _n > 0 (reaching zero releases them all at once);
    #   * every waiter in _waiters is PENDING.

    __slots__ = ("_n", "_waiters")

    def __init__(self) -> None:
        self._n = 0
        self._waiters = WaitQ()

    def add(self, delta: int = 1) -> None:
        """Add ``delta`` (which may be negative) to the counter.

        Reaching zero releases every waiter. Going below zero raises
        ``RuntimeError("sync: negative WaitGroup counter")`` and leaves the counter
        unchanged. ``delta`` is an integer (``TypeError`` otherwise, a bool included).
        """
        if type(delta) is not int:
            delta = count("WaitGroup.add", "delta", delta)
        enter()
        if shared.on:  # (from any thread: csp._threads)
            with lock:
                self._add(delta)
        else:
            self._add(delta)

    def _add(self, delta: int) -> None:
        n = self._n + delta
        if n < 0:
            raise RuntimeError("sync: negative WaitGroup counter")
        self._n = n
        if n == 0:
            self._waiters.complete_all(None)

    def done(self) -> None:
        """Decrement the counter by one (Go: ``Done``). Safe from any thread."""
        n = self._n - 1  # the common case without a call; add() handles the rest
        if n <= 0 or shared.on or _get_ident() != shared.home:
            self.add(-1)  # (reaching zero, shared mode, or a thread csp did not see start)
        else:
            self._n = n

    async def wait(self) -> None:
        """Block until the counter is zero; return at once if it is zero now."""
        await self._wait("sync.WaitGroup.Wait")

    async def _wait(self, reason: str) -> None:
        budget.left -= 1
        if budget.left <= 0 or owed:  # (the budget guard: see csp._waiter)
            # (shared mode: look and park at once, as a channel operation does)
            if (shared.on and budget.left > -BUDGET and not owed) or await prelude():
                with lock:
                    if self._n == 0:
                        return
                    w = Waiter(reason)
                    self._waiters.push(w)
                await w
                return
        if self._n == 0:
            return
        w = Waiter(reason)
        self._waiters.push(w)
        await w

    def wait_blocking(self, timeout: float | None = None) -> None:
        """``wait`` for a thread with no running event loop: blocks the thread until
        the counter is zero. ``timeout`` (seconds, None for none) raises
        ``TimeoutError``. On a thread whose loop is running: ``RuntimeError`` (use
        ``await wg.wait()``)."""
        t = timeout_of("wait_blocking", timeout)
        no_loop_here("wait_blocking", "await wg.wait()")
        enter()
        with lock:
            if self._n == 0:
                return
            w = Waiter("sync.WaitGroup.Wait")
            tw = thread_waker(w)
            self._waiters.push(w)
        wait_thread(w, tw, t, "wait_blocking")

    def go(
        self, fn: Callable[..., Awaitable[T]] | Coroutine[Any, Any, T], *args: Any
    ) -> asyncio.Task[T]:
        """Run ``fn(*args)`` in a new goroutine counted by the group (Go 1.25 ``wg.Go``).

        Adds one to the counter now, in the caller (so a ``wait()`` that follows sees
        it), starts the goroutine with :func:`csp.go`, and calls :meth:`done` when it
        returns or is cancelled. If ``fn`` raises, ``done`` is *not* called (Go: a
        panic in f must not release Wait); the exception escapes the goroutine as
        any goroutine's would (under :func:`csp.run` it ends the program). Returns
        the goroutine's task. ``fn`` is checked before anything happens: a plain
        callable raises ``TypeError``.
        """
        _need_loop("WaitGroup.go()", fn)
        coro = _make_coro("WaitGroup.go()", fn, args, {})
        self.add(1)
        task: asyncio.Task[T] = _go(self._run(coro))
        created_by(task, 1)
        task.add_done_callback(functools.partial(self._unstarted, coro))
        return task

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            result = await coro
        except asyncio.CancelledError:
            self.done()
            raise
        self.done()
        return result

    def _unstarted(self, coro: Coroutine[Any, Any, Any], task: asyncio.Task[Any]) -> None:
        # A goroutine cancelled before its first step never ran _run: count it done.
        if (coro._unstarted if type(coro) in OPS  # type: ignore[attr-defined]
                else inspect.getcoroutinestate(coro) == _CORO_CREATED):
            coro.close()
            self.done()

    def _invariants(self) -> None:
        assert self._n >= 0
        assert self._waiters.head is None or self._n > 0
        assert all(w.state == 0 for w in self._waiters)

    def __repr__(self) -> str:
        return f"<csp.WaitGroup counter={self._n} waiters={self._waiters.count()}>"


# -- Once -------------------------------------------------------------------------------

_RUN = True  # a Once waiter completed with this value must run fn itself


@final
class Once:
    """Run a function exactly once (Go: ``sync.Once``).

    ``await once.do(fn)`` calls ``fn()`` (sync or async) if no call has completed
    yet; concurrent callers wait until that call has finished, then return. If
    ``fn`` raises, the exception reaches the caller that ran it, the waiting callers
    return normally and the Once counts as done (Go: a panic in f). If the running
    call is *cancelled*, the Once is not done: the longest-waiting caller (or else the
    next caller) runs ``fn``. Calling ``do`` on the same Once inside ``fn`` waits
    forever, as in Go. Example::

        once = csp.Once()
        await once.do(load_config)
    """

    # Invariants:
    #   * _done implies not _running and no waiters;
    #   * _waiters non-empty implies _running (someone is running fn);
    #   * every waiter in _waiters is PENDING.

    __slots__ = ("_done", "_running", "_waiters")

    def __init__(self) -> None:
        self._done = False
        self._running = False
        self._waiters = WaitQ()

    async def do(self, fn: Callable[[], object]) -> None:
        """Call ``fn()`` unless a call already completed; see the class docstring.

        ``fn`` must be callable (``TypeError`` at once, and the Once is not done).
        """
        if not callable(fn):
            raise TypeError(f"Once.do: fn must be callable, got {fn!r}")
        if self._done:
            return
        budget.left -= 1
        if budget.left <= 0 or owed:  # (the budget guard: see csp._waiter)
            await prelude()
        if self._running:
            w = Waiter("sync.Once.Do")
            self._waiters.push(w)
            await w
            if w.value is not _RUN:
                return  # done by another caller
            # The runner was cancelled and handed the call to us; _running stays set.
        else:
            self._running = True
        try:
            r = fn()
            if inspect.isawaitable(r):
                await r
        except asyncio.CancelledError:
            self._hand_on()
            raise
        except BaseException:
            self._finish()  # Go: a panicking f still counts as done
            raise
        self._finish()

    def _finish(self) -> None:
        self._done = True
        self._running = False
        self._waiters.complete_all(None)

    def _hand_on(self) -> None:
        """The running call was cancelled: let the longest waiter run fn instead."""
        if not self._waiters.give(_RUN):
            self._running = False

    def _invariants(self) -> None:
        assert not self._done or (not self._running and self._waiters.head is None)
        assert self._waiters.head is None or self._running
        assert all(w.state == 0 for w in self._waiters)

    def __repr__(self) -> str:
        if self._done:
            return "<csp.Once done>"
        if self._running:
            return f"<csp.Once running waiters={self._waiters.count()}>"
        return "<csp.Once not done>"


# -- Cond -------------------------------------------------------------------------------


@final
class Cond:
    """A condition variable (Go: ``sync.Cond``): tasks wait for a signal under a lock.

    ``locker`` (Go: ``c.L``, available as :attr:`L`) is a :class:`Mutex`, a
    :class:`RWMutex` (its write side) or ``rw.rlocker()``, or any object with
    ``async lock()`` and ``unlock()``. The caller of :meth:`wait` holds the lock;
    :meth:`signal` wakes the longest waiter and :meth:`broadcast` wakes them all;
    neither needs the lock, and neither is remembered when nobody waits. As in Go,
    check the condition in a loop. Example::

        async with mu:
            while not ready:
                await cond.wait()
    """

    # Invariants:
    #   * _waiters holds the tasks parked in wait(), longest first, all PENDING.

    __slots__ = ("L", "_waiters")

    def __init__(self, locker: Locker) -> None:
        if isinstance(locker, type) or not (callable(getattr(locker, "lock", None))
                                            and callable(getattr(locker, "unlock", None))):
            raise TypeError(f"Cond: locker must have lock() and unlock(), got {locker!r}")
        self.L = locker
        self._waiters = WaitQ()

    async def wait(self) -> None:
        """Release the lock, wait for a signal, and take the lock again.

        The lock is held again whenever this returns or raises. If the task is
        cancelled while waiting, the lock is re-acquired (waiting as long as it
        takes, through further cancellations) before ``CancelledError`` propagates.
        A wait that was signalled and cancelled in the same step returns normally
        (the signal is not lost) and the cancellation is raised at the task's next
        await. Calling it without holding the lock raises the lock's own error, e.g.
        ``RuntimeError("sync: unlock of unlocked mutex")``, and leaves nothing queued.
        """
        budget.left -= 1
        if budget.left <= 0 or owed:  # (the budget guard: see csp._waiter)
            await prelude()
        w = Waiter("sync.Cond.Wait")
        self._waiters.push(w)  # queue first, as Go does, then unlock
        try:
            self.L.unlock()
        except BaseException:
            w.withdraw()  # no task waits on it yet
            raise
        try:
            await w
        except asyncio.CancelledError:
            await _relock(self.L, signalled=False)
            raise
        await _relock(self.L, signalled=True)

    def signal(self) -> None:
        """Wake the task that has waited longest, if any (Go: ``Signal``)."""
        self._waiters.give(None)

    def broadcast(self) -> None:
        """Wake every waiting task (Go: ``Broadcast``)."""
        self._waiters.complete_all(None)

    def _invariants(self) -> None:
        assert all(w.state == 0 for w in self._waiters)
        self._waiters._invariants()

    def __repr__(self) -> str:
        return f"<csp.Cond waiters={self._waiters.count()} L={self.L!r}>"


# -- Semaphore --------------------------------------------------------------------------


@final
class Semaphore:
    """A weighted semaphore of ``n`` tokens (Go: ``semaphore.NewWeighted(n)``).

    ``await s.acquire(k)`` takes ``k`` tokens, ``s.release(k)`` gives them back,
    ``s.try_acquire(k)`` takes them only if that is possible now, and ``async with s:``
    holds one token. Strictly FIFO: a request is granted at once only when enough
    tokens are free *and* nobody is queued, and :meth:`release` grants queued requests
    from the head while the head fits, so a large request is never starved by smaller
    later ones. ``k == 0`` is allowed; ``k > n`` (or ``k < 0``) raises ``ValueError``.

    Cancellation: a cancelled :meth:`acquire` holds no tokens; if it was the head of
    the queue, the requests behind it that now fit are granted. Tokens granted to a
    task cancelled in the same instant are kept by it (``acquire`` returns normally).
    Example::

        sem = csp.Semaphore(4)
        async with sem:
            await fetch(url)
    """

    # Invariants:
    #   * 0 <= _cur <= _size;
    #   * _waiters non-empty implies the head request does not fit: its k exceeds
    #     _size - _cur (release and withdrawal grant from the head while it fits);
    #   * every waiter in _waiters is PENDING.

    __slots__ = ("_cur", "_size", "_waiters")

    def __init__(self, n: int) -> None:
        n = count("Semaphore", "n", n)
        if n < 0:
            raise ValueError(f"semaphore: negative size {n}")
        self._size = n
        self._cur = 0
        self._waiters = WaitQ()  # each waiter's value is the weight it asks for

    def _check_weight(self, who: str, k: int) -> int:
        if type(k) is not int:
            k = count(who, "k", k)
        if k < 0 or k > self._size:
            raise ValueError(f"semaphore: weight {k} out of range [0, {self._size}]")
        return k

    async def acquire(self, k: int = 1) -> None:
        """Take ``k`` tokens, waiting in FIFO order until they are free."""
        k = self._check_weight("Semaphore.acquire", k)
        budget.left -= 1
        if budget.left <= 0 or owed:  # (the budget guard: see csp._waiter)
            await prelude()
        if self._take(k):
            return
        w = Waiter("semaphore.Weighted.Acquire", k)
        w.on_abort = self._withdrew
        self._waiters.push(w)
        await w

    def try_acquire(self, k: int = 1) -> bool:
        """Take ``k`` tokens if they are free and nobody is queued; else return False."""
        k = self._check_weight("Semaphore.try_acquire", k)
        return self._take(k)

    def _take(self, k: int) -> bool:
        if self._size - self._cur >= k and self._waiters.head is None:
            self._cur += k
            return True
        return False

    def release(self, k: int = 1) -> None:
        """Give back ``k`` tokens and grant queued requests from the head while they fit.

        Raises ``RuntimeError("semaphore: released more than held")`` (and changes
        nothing) if fewer than ``k`` tokens are held.
        """
        if type(k) is not int:
            k = count("Semaphore.release", "k", k)
        if k < 0:
            raise ValueError(f"semaphore: negative weight {k}")
        if k > self._cur:
            raise RuntimeError("semaphore: released more than held")
        self._cur -= k
        self._grant()

    def _grant(self) -> None:
        """Grant queued requests from the head while the head fits."""
        q = self._waiters
        w = q.head
        while w is not None and self._size - self._cur >= w.value:
            q.pop()
            k = w.value  # (read first: completing lets go of it)
            if w.complete(None):  # (a dead one is withdrawn: this loop goes on)
                self._cur += k
            w = q.head

    def _withdrew(self, w: Waiter) -> None:
        self._grant()  # if it was the head, the requests behind it may fit now

    def __aenter__(self) -> Awaitable[None]:
        budget.left -= 1
        if budget.left > 0 and not owed and self._take(1):
            return READY
        return self.acquire()

    def __aexit__(self, *exc_info: object) -> Awaitable[None]:
        self.release()
        return READY

    def _invariants(self) -> None:
        assert 0 <= self._cur <= self._size
        if self._waiters.head is not None:
            assert self._waiters.head.value > self._size - self._cur
        assert all(w.state == 0 for w in self._waiters)
        self._waiters._invariants()

    def __repr__(self) -> str:
        return (
            f"<csp.Semaphore held={self._cur}/{self._size} "
            f"waiters={self._waiters.count()}>"
        )


# -- ErrGroup ---------------------------------------------------------------------------


_Fn = Callable[..., Awaitable[Any]] | Coroutine[Any, Any, Any]


class _Call:
    """One function of an ErrGroup; ``ended`` is set once its bookkeeping is done."""

    __slots__ = ("args", "ended", "fn")

    def __init__(self, fn: _Fn, args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.ended = False


@final
class ErrGroup:
    """Run functions as goroutines and collect the first error (Go: ``errgroup.Group``).

    ``g.go(fn, *args)`` starts ``fn(*args)`` in a goroutine; ``await g.wait()`` waits
    for every function started, then raises the first exception any of them raised
    (the first to *happen*, not the first started), or returns None. Exceptions
    raised by the functions are collected, not propagated as goroutine panics.

    ``g.set_limit(n)`` keeps at most ``n`` functions running. Python cannot block a
    plain call, so where Go's ``Go`` would block, ``g.go`` returns at once and the
    function's *start* is queued (FIFO) until a running one ends; ``wait()`` waits
    for queued functions too. :meth:`try_go` (Go's ``TryGo``) starts the function
    only if a slot is free now. ``set_limit(0)`` admits nobody, so ``wait()`` would
    wait forever once a function is queued.

    ``ErrGroup.with_context(parent)`` also returns a context derived from ``parent``
    that is cancelled when a function first raises, or when ``wait()`` returns (or
    raises the group's error), whichever comes first. Other functions are not
    interrupted: they should watch ``ctx.done()``. Example::

        g, ctx = csp.ErrGroup.with_context(csp.context.background())
        for url in urls:
            g.go(fetch, ctx, url)
        await g.wait()
    """

    # Invariants:
    #   * _limit < 0 (no limit) or _active <= _limit;
    #   * _queue non-empty implies _limit >= 0 and _active == _limit;
    #   * _wg's counter == _active + len(_queue);
    #   * _err is the first exception recorded, never replaced.

    __slots__ = ("_active", "_cancel", "_err", "_limit", "_queue", "_wg")

    def __init__(self) -> None:
        self._wg = WaitGroup()
        self._err: BaseException | None = None
        self._cancel: Callable[[BaseException | None], None] | None = None
        self._limit = -1
        self._active = 0
        self._queue: deque[_Call] = deque()

    @classmethod
    def with_context(cls, parent: Context) -> tuple[ErrGroup, Context]:
        """A new group and a context derived from ``parent`` (Go: ``WithContext``).

        The context is cancelled by the first function that raises, or when
        :meth:`wait` returns, whichever comes first. As in Go, the first error is
        the context's cause (``csp.context.cause(ctx)``).
        """
        from csp import _context

        parent = _context._check_parent(parent, "ErrGroup.with_context")
        ctx, cancel = _context.with_cancel_cause(parent)
        g = cls()
        g._cancel = cancel
        return g, ctx

    def go(self, fn: _Fn, *args: Any) -> None:
        """Run ``fn(*args)`` in a goroutine of the group.

        With a limit set and reached, the start is queued (FIFO) until a running
        function of the group ends. ``fn`` must be a coroutine function (or a
        coroutine object passed alone); anything else raises ``TypeError``.
        """
        _check_fn("ErrGroup.go()", fn, args)
        _need_loop("ErrGroup.go()", fn)
        self._wg.add(1)
        call = _Call(fn, args)
        if self._limit < 0 or self._active < self._limit:
            self._start(call)
        else:
            self._queue.append(call)

    def try_go(self, fn: _Fn, *args: Any) -> bool:
        """Start ``fn(*args)`` only if the limit allows it now (Go: ``TryGo``).

        Returns True if the function was started, False (and does nothing) if the
        group already runs its limit of functions.
        """
        _check_fn("ErrGroup.try_go()", fn, args)
        _need_loop("ErrGroup.try_go()", fn)
        if self._limit >= 0 and self._active >= self._limit:
            return False
        self._wg.add(1)
        self._start(_Call(fn, args))
        return True

    def set_limit(self, n: int) -> None:
        """Run at most ``n`` functions at once; ``n < 0`` removes the limit.

        Raises ``RuntimeError`` if functions of the group are still active or queued
        (Go: ``errgroup: modify limit while <k> goroutines in the group are still
        active``). ``n`` is an integer (``TypeError`` otherwise).
        """
        n = count("ErrGroup.set_limit", "n", n)
        k = self._active + len(self._queue)
        if k:
            raise RuntimeError(
                f"errgroup: modify limit while {k} goroutines in the group are still active"
            )
        self._limit = n if n >= 0 else -1

    async def wait(self) -> None:
        """Wait for every function of the group, then raise the first exception, if any.

        With a context, the context is cancelled once the functions have ended.
        """
        await self._wg._wait("errgroup.Group.Wait")
        if self._cancel is not None:
            self._cancel(self._err)
        if self._err is not None:
            raise self._err

    # -- internals ---------------------------------------------------------------

    def _start(self, call: _Call) -> None:
        self._active += 1
        task = _go(self._run(call))
        created_by(task, 2)  # (the caller of go / try_go)
        task.add_done_callback(functools.partial(self._reap, call))

    async def _run(self, call: _Call) -> None:
        try:
            fn = call.fn
            if is_coro(fn):
                await fn
            else:
                await fn(*call.args)  # type: ignore[operator]
        except asyncio.CancelledError:
            raise  # a cancelled function is not an error (nor a panic)
        except Exception as exc:
            if self._err is None:
                self._err = exc
                if self._cancel is not None:
                    self._cancel(exc)
        finally:
            call.ended = True
            self._end()

    def _reap(self, call: _Call, task: asyncio.Task[Any]) -> None:
        # A goroutine cancelled before its first step never ran _run's finally.
        if not call.ended:
            call.ended = True
            if is_coro(call.fn):
                call.fn.close()
            self._end()

    def _end(self) -> None:
        self._active -= 1
        if self._queue and (self._limit < 0 or self._active < self._limit):
            self._start(self._queue.popleft())
        self._wg.done()

    def _invariants(self) -> None:
        assert self._limit < 0 or self._active <= self._limit
        assert not self._queue or (self._limit >= 0 and self._active == self._limit)
        assert self._wg._n == self._active + len(self._queue)

    def __repr__(self) -> str:
        limit = "" if self._limit < 0 else f" limit={self._limit}"
        err = "" if self._err is None else f" err={self._err!r}"
        return f"<csp.ErrGroup active={self._active} queued={len(self._queue)}{limit}{err}>"


def _check_fn(who: str, fn: object, args: tuple[Any, ...]) -> None:
    check_coro_fn(who, fn, args, {})
