"""Deadlock detection: the loops ``csp.run`` makes, and the watch that reads them.

Strategy. When every goroutine may be parked (the run queue drained idle and the
scheduler's count of driven goroutines covers them all), a :class:`Watch` looks closer:
every live task must be a goroutine parked on a pending csp waiter, and nothing else
may be pending on the loop (ready callbacks, timers, I/O, executor jobs), and this must
stay so for three loop iterations. Only then does it report; in doubt it never does.
During ``csp.run``'s shutdown the same look tells which tasks are stuck for good after
being cancelled (they are then abandoned, see ``csp._runtime``).

The asyncio loop's own queues are read for timers and I/O (``csp._compat``). uvloop
shows neither, so the loops ``csp.run`` makes keep their own account: timers made
through ``call_at``/``call_later`` are remembered, and any use of sockets, servers,
pipes, subprocesses or signals switches detection off for that loop. uvloop does not
show its ready queue either: while a check looks, the uvloop subclass counts the
callbacks scheduled meanwhile, so that a chain of callbacks is seen as work.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final

from csp import _compat, _dump, _threads
from csp._errors import DeadlockError
from csp._sched import Scheduler, schedulers
from csp._waiter import PENDING, Waiter

__all__ = [
    "AsyncioLoop", "Watch", "deadlock_error", "ignore_signal", "ignore_thread",
    "loop_factory", "parked_in_csp", "signal_handlers_calling_in", "State",
    "threads_calling_in",
]

_LOOPS = ("auto", "uvloop", "asyncio")


# -- loops that keep an account of timers and I/O ------------------------------------
class _Accounting:
    """Mixin for the loops ``csp.run`` makes: remembers timers, jobs and live I/O."""

    _csp_timers: list[asyncio.TimerHandle]
    _csp_jobs: int  # executor jobs in flight
    _csp_soon: int

    def _csp_init(self) -> None:
        self._csp_soon = 0  # callbacks scheduled, counted while a deadlock check looks
        self._csp_timers = []
        self._csp_jobs = 0

    def _csp_note_timer(self, h: asyncio.TimerHandle) -> asyncio.TimerHandle:
        if not hasattr(h, "when"):
            # uvloop runs sub-millisecond delays as plain ready handles: a callback
            # for the deadlock check's count (see _UVLoop._csp_watch_soon)
            self._csp_soon += 1
            return h
        timers = self._csp_timers
        timers.append(h)
        if len(timers) >= 256 and (len(timers) & (len(timers) - 1)) == 0:
            now = self.time()  # type: ignore[attr-defined]
            timers[:] = [t for t in timers if not t.cancelled() and t.when() > now]
        return h

    def _csp_pending_timers(self) -> list[asyncio.TimerHandle]:
        now = self.time()  # type: ignore[attr-defined]
        self._csp_timers[:] = [
            t for t in self._csp_timers if not t.cancelled() and t.when() > now
        ]
        return self._csp_timers

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = super().run_in_executor(executor, func, *args)  # type: ignore[misc]
        self._csp_jobs += 1

        def done(_: object) -> None:
            self._csp_jobs -= 1
            sched = schedulers.get(self)  # type: ignore[call-overload]
            if sched is not None and sched.on_all_parked is not None:
                sched.on_all_parked()

        fut.add_done_callback(done)
        return fut


class _LiveIO:
    """uvloop's live I/O, as far as Python can see it (uvloop shows no handles).

    Invariants: ``inflight`` counts the I/O calls (``getaddrinfo``, ``sock_*``,
    ``create_connection`` ...) that have started and not ended; ``fds`` holds the
    ``(kind, fd)`` of every ``add_reader`` / ``add_writer`` not removed; ``signals``
    every ``add_signal_handler`` not removed; ``transports`` every transport whose
    protocol csp follows (a server's connections, and what ``create_connection`` and
    the like return), from its ``connection_made`` until its ``connection_lost`` has
    run (a closed transport still sends its buffer); ``others`` the servers (live while
    they serve), subprocess transports (until the process exited and its pipes
    closed) and transports whose protocol cannot be followed (until closing), pruned
    whenever asked. ``opaque`` counts a server's protocols that could not be followed:
    I/O then stays live for good, in doubt.
    """

    __slots__ = ("fds", "inflight", "opaque", "others", "signals", "transports")

    def __init__(self) -> None:
        self.inflight = 0
        self.fds: set[tuple[str, int]] = set()
        self.signals: set[int] = set()
        self.transports: dict[int, Any] = {}
        self.others: list[Any] = []
        self.opaque = 0

    def track(self, result: Any) -> None:
        """Remember the transport or server an I/O call returned."""
        if isinstance(result, tuple) and len(result) == 2:
            transport, proto = result
        else:
            transport, proto = result, getattr(result, "get_protocol", lambda: None)()
        if hasattr(transport, "is_serving") or hasattr(transport, "get_returncode"):
            self.others.append(transport)
        elif hasattr(transport, "is_closing"):
            self.transports[id(transport)] = transport
            if proto is None or not self.follow_lost(proto, transport):
                del self.transports[id(transport)]
                self.others.append(transport)

    def follow_made(self, proto: Any) -> bool:
        """Count the transport ``proto`` is given as live from its connection_made to
        its connection_lost; False if ``proto`` cannot be followed."""
        made = proto.connection_made

        def connection_made(transport: Any) -> Any:
            _unwrap(proto, "connection_made")
            self.transports[id(transport)] = transport
            if not self.follow_lost(proto, transport):
                del self.transports[id(transport)]
                self.others.append(transport)
            return made(transport)

        return _wrap(proto, "connection_made", connection_made)

    def follow_lost(self, proto: Any, transport: Any) -> bool:
        lost = proto.connection_lost

        def connection_lost(exc: Any) -> Any:
            _unwrap(proto, "connection_lost")
            self.transports.pop(id(transport), None)
            return lost(exc)

        return _wrap(proto, "connection_lost", connection_lost)

    def live(self) -> str | None:
        """What I/O may still call back into the loop, or None."""
        self.others[:] = [h for h in self.others if _handle_live(h)]
        if self.inflight:
            return "I/O in flight"
        if self.fds:
            return "readers/writers"
        if self.signals:
            return "signal handlers"
        if self.opaque or self.transports or self.others:
            return "I/O"
        return None


def _wrap(proto: Any, name: str, fn: Callable[..., Any]) -> bool:
    """Shadow ``proto.name`` with ``fn`` (an instance attribute); False if it cannot be."""
    try:
        setattr(proto, name, fn)
    except (AttributeError, TypeError):
        return False
    return True


def _unwrap(proto: Any, name: str) -> None:
    """Remove the shadow ``_wrap`` put (no cycle proto -> wrapper -> proto is left)."""
    try:
        delattr(proto, name)
    except AttributeError:  # pragma: no cover - the program replaced it meanwhile
        pass


def _handle_live(h: Any) -> bool:
    serving = getattr(h, "is_serving", None)
    if serving is not None:
        return bool(serving())
    returncode = getattr(h, "get_returncode", None)
    if returncode is not None:  # a subprocess: until it exited and its pipes closed
        if returncode() is None:
            return True
        pipes = (h.get_pipe_transport(fd) for fd in (0, 1, 2))
        return any(p is not None and not p.is_closing() for p in pipes)
    return not h.is_closing()


def _fileno(fd: Any) -> int:
    return fd if isinstance(fd, int) else int(fd.fileno())


# uvloop's I/O entry points, by how _io_method_for follows them
_IO_CALLS = (  # coroutines: in flight until they end; what they return is tracked
    "create_connection", "create_unix_connection", "create_datagram_endpoint",
    "connect_accepted_socket", "connect_read_pipe", "connect_write_pipe",
    "subprocess_exec", "subprocess_shell", "sock_recv", "sock_recv_into",
    "sock_recvfrom", "sock_recvfrom_into", "sock_sendall", "sock_sendto", "sock_accept",
    "sock_connect", "getaddrinfo", "getnameinfo", "sendfile", "start_tls",
    "sock_sendfile",
)
_IO_SERVERS = ("create_server", "create_unix_server")  # ... and their connections
_IO_ADD = {"add_reader": "r", "add_writer": "w"}
_IO_REMOVE = {"remove_reader": "r", "remove_writer": "w"}


class AsyncioLoop(_Accounting, asyncio.SelectorEventLoop):  # type: ignore[misc]
    """The default asyncio loop; pending timers and I/O are read off the loop itself."""

    def __init__(self, selector: Any = None) -> None:
        super().__init__(selector)
        self._csp_init()

    def _csp_busy(self, exclude: object, io: bool = True,
                  own_timer: object = None) -> str | None:
        queues = _compat.loop_queues(self)
        assert queues is not None
        ready, scheduled, selector = queues
        # (a copy made in one step: another thread's call_soon_threadsafe appends to
        # the deque, and walking it while that happens raises RuntimeError)
        if any(h is not exclude for h in ready.copy()):
            return "ready callbacks"
        if any(not h.cancelled() and h is not own_timer for h in scheduled):
            return "timers"
        if io and len(selector.get_map()) > 1:  # more than the self-pipe
            return "I/O"
        if io and _compat.signal_handlers(self):  # (they share the self-pipe)
            return "signal handlers"
        if self._csp_jobs:
            return "executor jobs"
        return None


def _make_uvloop_class() -> type[asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platform without uvloop
        return None

    class _UVLoop(_Accounting, uvloop.Loop):  # type: ignore[misc]
        # the task factory, readable without a method call (csp.go checks it)
        _csp_task_factory: Any = None

        def __init__(self) -> None:
            super().__init__()
            self._csp_init()
            self._csp_live_io = _LiveIO()

        def set_task_factory(self, factory: Any) -> None:
            super().set_task_factory(factory)
            self._csp_task_factory = factory

        def call_later(  # type: ignore[override]
            self, delay: float, callback: Any, *args: Any, context: Any = None
        ) -> asyncio.TimerHandle:
            return self._csp_note_timer(
                super().call_later(delay, callback, *args, context=context)
            )

        def call_at(  # type: ignore[override]
            self, when: float, callback: Any, *args: Any, context: Any = None
        ) -> asyncio.TimerHandle:
            # As uvloop does, through call_later, so that the timer is noted once.
            return self.call_later(when - self.time(), callback, *args, context=context)

        def _csp_raw_call_at(self, when: float, callback: Any) -> asyncio.TimerHandle:
            # uvloop's call_at goes through self.call_later; its call_later does not.
            h: asyncio.TimerHandle = super().call_later(max(0.0, when - self.time()), callback)
            return h

        def _csp_busy(self, exclude: object, io: bool = True,
                      own_timer: object = None) -> str | None:
            if io:
                live = self._csp_live_io.live()
                if live is not None:
                    return live
            if self._csp_jobs:
                return "executor jobs"
            if self._csp_pending_timers():
                return "timers"
            if self._csp_soon:
                self._csp_soon = 0
                return "ready callbacks"
            return None

        # uvloop does not show its ready queue. While a deadlock check looks (a few
        # loop iterations, only when every goroutine seems parked), an instance
        # attribute shadows call_soon and counts the callbacks scheduled from Python
        # (tasks, futures, user code), so that a chain of callbacks is seen as work.

        def _csp_watch_soon(self, on: bool) -> None:
            d = self.__dict__
            if on:
                self._csp_soon = 0
                # a call_soon the program put on the instance is kept and called through
                self._csp_prev_soon = d.get("call_soon")
                self.call_soon = self._csp_counting_call_soon  # type: ignore[method-assign]
            else:
                prev = d.pop("_csp_prev_soon", None)
                if d.get("call_soon") == self._csp_counting_call_soon:
                    if prev is not None:
                        self.call_soon = prev  # type: ignore[method-assign]
                    else:
                        del d["call_soon"]
                self._csp_soon = 0

        def _csp_counting_call_soon(
            self, callback: Any, *args: Any, context: Any = None
        ) -> asyncio.Handle:
            self._csp_soon += 1
            prev = self.__dict__.get("_csp_prev_soon")
            if prev is not None:
                h: asyncio.Handle = prev(callback, *args, context=context)
            else:
                h = uvloop.Loop.call_soon(self, callback, *args, context=context)
            return h

        def call_soon_threadsafe(  # type: ignore[override]
            self, callback: Any, *args: Any, context: Any = None
        ) -> asyncio.Handle:
            # uvloop queues these without going through call_soon: count them too (an
            # unlocked += from another thread can only lose a count, and any count
            # above zero is enough)
            self._csp_soon += 1
            h: asyncio.Handle = super().call_soon_threadsafe(callback, *args, context=context)
            return h

    for name in (*_IO_CALLS, *_IO_SERVERS, *_IO_ADD, *_IO_REMOVE,
                 "add_signal_handler", "remove_signal_handler"):
        if hasattr(uvloop.Loop, name):
            setattr(_UVLoop, name, _io_method_for(_UVLoop, name))
    return _UVLoop


def _io_method_for(cls: type, name: str) -> Callable[..., Any]:
    """``name`` of uvloop's loop, followed in the loop's ``_csp_live_io``."""
    base = getattr(super(cls, cls), name)

    if name in _IO_CALLS or name in _IO_SERVERS:
        server = name in _IO_SERVERS

        async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            io: _LiveIO = self._csp_live_io
            if server:
                args, kwargs = _follow_connections(io, args, kwargs)
            io.inflight += 1
            try:
                result = await base(self, *args, **kwargs)
            finally:
                io.inflight -= 1
            io.track(result)
            return result

    elif name in _IO_ADD or name in _IO_REMOVE:
        kind = _IO_ADD.get(name) or _IO_REMOVE[name]
        add = name in _IO_ADD

        def method(self: Any, fd: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            result = base(self, fd, *args, **kwargs)
            fds: set[tuple[str, int]] = self._csp_live_io.fds
            (fds.add if add else fds.discard)((kind, _fileno(fd)))
            return result

    else:  # add_signal_handler / remove_signal_handler
        add = name == "add_signal_handler"

        def method(self: Any, sig: int, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            result = base(self, sig, *args, **kwargs)
            sigs: set[int] = self._csp_live_io.signals
            (sigs.add if add else sigs.discard)(sig)
            return result

    method.__name__ = name
    method.__qualname__ = f"{cls.__name__}.{name}"
    method.__doc__ = base.__doc__
    return method


def _follow_connections(io: _LiveIO, args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A server's protocol factory whose protocols report their transport to ``io``."""
    if args:
        factory, args = args[0], args[1:]
    else:
        factory = kwargs.pop("protocol_factory")

    def following() -> Any:
        proto = factory()
        if not io.follow_made(proto):
            io.opaque += 1  # cannot follow this protocol's connection: live for good
        return proto

    return (following, *args), kwargs


_uvloop_class: type[asyncio.AbstractEventLoop] | bool | None = False


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop]:
    global _uvloop_class
    if not isinstance(loop, str):
        raise TypeError(f"csp.run: loop must be 'auto', 'uvloop' or 'asyncio', got {loop!r}")
    if loop not in _LOOPS:
        raise ValueError(f"unknown loop {loop!r}: expected 'auto', 'uvloop' or 'asyncio'")
    if loop in ("auto", "uvloop"):
        if _uvloop_class is False:
            _uvloop_class = _make_uvloop_class()
        if _uvloop_class is not None:
            return _uvloop_class  # type: ignore[return-value]
        if loop == "uvloop":
            raise ValueError("loop='uvloop' but uvloop is not installed")
    return AsyncioLoop


# -- the watch -----------------------------------------------------------------------------


def parked_in_csp(task: asyncio.Task[Any], sched: Scheduler, plain: bool) -> Waiter | None:
    """The pending csp waiter ``task`` is parked on, or None. A plain Task (not a
    goroutine) counts only if ``plain``."""
    g = sched.goroutines.get(task)
    if g is not None:
        return g.parked()
    if not plain:
        return None
    w = _compat.fut_waiter(task)
    if type(w) is Waiter and w.state is PENDING:
        return w
    return None


def _only_stuck_complete(stuck_tasks: State,
                         waiting: list[tuple[asyncio.Task[Any], Any]]) -> bool:
    """Every task of ``waiting`` awaits a future only stuck tasks could complete: a
    stuck task's Task, or a future that a done callback of a stuck task completes
    (``asyncio.gather``, ``asyncio.wait``, ``asyncio.shield`` over them: the callback's
    closure holds it). Stuck: in ``stuck_tasks`` (parked in csp), or in ``waiting``
    and stuck by this rule: the largest such set, so that tasks awaiting each other's
    Tasks in a cycle are stuck too. Precondition: nothing else may run (the watch
    checks ready callbacks, timers, I/O, threads and signals besides)."""
    stuck = {t for t, _ in stuck_tasks} | {t for t, _ in waiting}
    fed: set[int] = set()  # ids of the futures a stuck task's done callback completes
    for t in stuck:
        for cb in _compat.fut_callbacks(t):
            for cell in getattr(cb, "__closure__", None) or ():
                try:
                    fed.add(id(cell.cell_contents))
                except ValueError:  # an empty cell
                    pass
    # The largest set: start from every task (they are all stuck or waiting: the
    # caller saw no other) and drop a waiting one whose future is neither; a drop means
    # it may go on (nothing else can run, but csp only judges futures whose completion
    # it understands), so one pass decides.
    return all(f in stuck or id(f) in fed for _, f in waiting)


EXIT_POLL: Final = 0.1
"""How often (s) csp.run's shutdown looks again while some task is still running."""
THREAD_POLL_MIN: Final = 0.01
THREAD_POLL_MAX: Final = 1.0
"""While another thread lives, the watch looks again after 0.01 s, 0.02 s, ... 1 s."""

State = list[tuple[asyncio.Task[Any], Waiter | None]]
"""Stuck tasks, each with the csp waiter it is parked on (None: it awaits a future
only stuck tasks could complete)."""

_ignored_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def ignore_thread(thread: threading.Thread) -> None:
    """Deadlock detection may decide while ``thread`` lives: it never calls into a loop
    csp watches (a test harness's watchdog timer, for example)."""
    _ignored_threads.add(thread)


_ignored_signals: set[int] = set()


def ignore_signal(sig: int) -> None:
    """Deadlock detection may decide while the program's handler for ``sig`` is
    installed: it never calls into a loop csp watches (a test harness's alarm)."""
    _ignored_signals.add(int(sig))


def unignore_signal(sig: int) -> None:
    """Undo :func:`ignore_signal`."""
    _ignored_signals.discard(int(sig))


def signal_handlers_calling_in() -> list[int]:
    """The signals whose Python handler (``signal.signal``) may call into the loop:
    every one the program installed except those ``ignore_signal`` named."""
    return [s for s in _compat.python_signal_handlers() if s not in _ignored_signals]


def threads_calling_in() -> int:
    """How many threads other than the caller's may still call into its loop: every
    thread (``threading``'s or not, also one that has not run Python code yet) except
    pool workers waiting for a job nobody queued and threads ``ignore_thread`` named.
    (Conservative: any of them might hold the loop and call ``call_soon_threadsafe``;
    a false deadlock report is worse than a late one.)"""
    others = _compat.thread_count()  # (all threads but the main one: all but mine)
    frames = _compat.current_frames()
    me = threading.get_ident()
    ignored = {t.ident for t in list(_ignored_threads) if t.is_alive()}
    exempt = 0
    for ident in frames:
        if ident != me and (ident in ignored or _compat.idle_pool_worker(ident, frames)):
            exempt += 1
    # (a thread that calls into Python from C is in frames but not in the count)
    named = sum(1 for ident in frames if ident != me) - exempt
    return max(others - exempt, named)


class Watch:
    """Confirms that every task of a loop is stuck in csp, over a few loop iterations.

    ``on_stuck(state)`` is called with the stuck tasks and their waiters once it is sure.
    ``exclude`` is a task that does not count (csp.run's supervisor). Otherwise a live
    task that is not a goroutine means no deadlock.

    With ``exiting`` (csp.run's shutdown: every task has been cancelled once), plain
    Tasks parked in csp count as stuck too, and what may still complete a csp
    operation is judged for exit, where Go just stops: open
    I/O does not count (a listening server), a task that awaits the Task of a stuck
    task is waiting on it, not live, and the watch looks again every ``EXIT_POLL``
    seconds (a task may block again without every goroutine being parked). Pending
    timers still count: one may complete a stuck operation (a sleep, a select on
    ``csp.after``), and which one would is not known here.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sched: Scheduler,
                 on_stuck: Callable[[State], None]) -> None:
        self.loop = loop
        self.sched = sched
        self.on_stuck = on_stuck
        self.exclude: asyncio.Task[Any] | None = None
        self.exiting = False
        self.enabled = True
        self.checking = False
        self.rounds = 0
        self.snapshot: State | None = None
        self.watched: set[asyncio.Task[Any]] = set()
        self.handle: asyncio.Handle | None = None
        # the look scheduled for when the next timer has fired (one at a time: a new
        # look replaces it, so it never counts as a pending timer itself)
        self.recheck: asyncio.TimerHandle | None = None
        self.thread_wait = THREAD_POLL_MIN / 2  # doubles while threads forbid a verdict
        self.for_threads = False  # the recheck is armed because threads forbade one
        self.last_look = -math.inf  # loop time of the last look started in shared mode
        self.recheck_when = math.inf  # when the armed recheck fires
        self.checks = 0  # checks finished (tests wait for one)
        self.graced = False  # this check has let new threads begin (see _check)

    def look(self, now_or_never: bool = False) -> None:
        """Every goroutine may be parked: start a check (unless one is running).

        While another thread may run csp code (shared mode, csp._threads), at most one
        look per ``thread_wait``: a look at every idle moment cost a few loop turns per
        hand-off between two threads (two loops ping-ponging spent half their time
        here); a recheck is armed for the rest, so a verdict comes at most that much
        later. ``now_or_never``: the recheck itself (it looks now)."""
        if self.checking or not self.enabled:
            return
        if _threads.shared.on and not self.exiting:
            now = self.loop.time()
            due = self.last_look + self.thread_wait
            if now < due and not now_or_never:
                if self.recheck is None or self.recheck_when > due:
                    self._recheck_at(due)
                return
            self.last_look = now
        if self.recheck is not None:
            if self.for_threads and _threads.shared.on and not self.exiting:
                # Threads forbade a verdict a moment ago and may still call in: leave
                # it to the recheck (a look at every idle moment would cost a few loop
                # turns per hand-off between two threads).
                return
            self.recheck.cancel()
            self.recheck = None
        self.for_threads = False
        self.checking = True
        self.graced = False
        self.rounds = 0
        self.snapshot = None
        watch = getattr(self.loop, "_csp_watch_soon", None)
        if watch is not None:
            watch(True)
        self.handle = self._soon(self._check)

    def _state(self) -> State | None:
        """Every live task parked in csp, with its waiter, and every task waiting (with
        waiter None) on a future only stuck tasks could complete; None if any is not."""
        out: State = []
        waiting: list[tuple[asyncio.Task[Any], Any]] = []  # (task, the future it awaits)
        goroutines = self.sched.goroutines
        for t in asyncio.all_tasks(self.loop):
            if t is self.exclude:
                continue
            w = parked_in_csp(t, self.sched, self.exiting)
            if w is None:
                fut = _compat.fut_waiter(t)
                if fut is not None and (self.exiting or t in goroutines):
                    waiting.append((t, fut))
                    continue
                if t not in goroutines and t not in self.watched:
                    self.watched.add(t)  # look again when it ends
                    t.add_done_callback(self._foreign_done)
                return None
            out.append((t, w))
        if waiting and not _only_stuck_complete(out, waiting):
            return None
        if not self.exiting or not out:
            # (at exit they go on once the parked ones are abandoned; if none is
            # parked, they wait on each other: they are abandoned themselves)
            out.extend((t, None) for t, _ in waiting)
        return out

    def _foreign_done(self, t: asyncio.Task[Any]) -> None:
        self.watched.discard(t)
        if self.enabled:
            self.look()

    def _soon(self, fn: Callable[[], None]) -> asyncio.Handle:
        """call_soon past the uvloop watch's counter (see _UVLoop._csp_watch_soon)."""
        return type(self.loop).call_soon(self.loop, fn)

    def _done_checking(self) -> None:
        self.checking = False
        self.checks += 1
        watch = getattr(self.loop, "_csp_watch_soon", None)
        if watch is not None:
            watch(False)

    def _check(self) -> None:
        try:
            self._check1()
        except BaseException:
            # (a bug here must not leave the watch "checking" for good: no verdict, and
            # no abandon at exit, for the rest of the run)
            if self.handle is None:
                self._done_checking()
            raise

    def _check1(self) -> None:
        self.handle = None
        if self.exiting and self.recheck is None:
            # At exit a task may block again without every goroutine being parked (one
            # awaits another's Task): whatever this look finds, look again in a while.
            self._recheck_at(self.loop.time() + EXIT_POLL)
        sched = self.sched
        if (not self.enabled or sched.runq  # cheap first: _state() is O(tasks)
                or not (self.exiting or sched.all_waiting())):
            self._done_checking()
            return
        # goroutines await asyncio futures (a sleep, I/O): what may complete them is
        # cheaper to see than the tasks, and usually there
        if sched.nforeign and self._busy():
            return
        state = self._state()
        if state is None:
            self._done_checking()
            return
        note_seen(sched, state)  # (for the minutes of a later dump or report)
        if self._busy():
            return
        if self.snapshot is not None and [(t, id(w)) for t, w in state] != [
            (t, id(w)) for t, w in self.snapshot
        ]:
            self.rounds = 0
        self.snapshot = state
        self.rounds += 1
        if self.rounds < 3:
            self.handle = self._soon(self._check)
            return
        if not self.exiting:
            if threads_calling_in() or signal_handlers_calling_in():
                # another thread may still call into the loop, or a signal handler of
                # the program's run: never decide while one may (look again in a
                # while; a thread's call-in shows as work)
                self._done_checking()
                self.thread_wait = min(THREAD_POLL_MAX, self.thread_wait * 2)
                self._recheck_at(self.loop.time() + self.thread_wait)
                self.for_threads = True
                return
            if not self.graced:
                # A thread started but not yet running Python is seen nowhere: give up
                # the GIL for two switch intervals (a thread waiting for it asks only
                # after one) so that it begins, then look again from the start (it may
                # have called in meanwhile, and ended).
                time.sleep(2 * sys.getswitchinterval())
                self.graced = True
                self.rounds = 0
                self.snapshot = None
                self.handle = self._soon(self._check)
                return
        self._done_checking()
        self.thread_wait = THREAD_POLL_MIN / 2
        self.on_stuck(state)

    def _busy(self) -> bool:
        """Something besides the tasks may still run: deal with it (look again when it
        may have run) and say so."""
        busy = self.loop._csp_busy(  # type: ignore[attr-defined]
            self.handle, not self.exiting, self.recheck)
        if busy is None:
            return False
        if busy == "timers":
            # Look again once the next timer has fired: it may wake nobody.
            self._done_checking()
            self._recheck_after_timers()
        elif busy == "ready callbacks":
            self.rounds = 0
            self.graced = False
            self.handle = self._soon(self._check)
        else:
            self._done_checking()
        return True

    def _recheck_after_timers(self) -> None:
        loop: Any = self.loop
        queues = _compat.loop_queues(loop)
        if isinstance(loop, AsyncioLoop) and queues is not None:
            whens = [h.when() for h in queues[1] if not h.cancelled() and h is not self.recheck]
        else:
            whens = [h.when() for h in loop._csp_pending_timers()]
        if not whens:
            self.look()
            return
        self._recheck_at(min(whens))

    def _recheck_at(self, when: float) -> None:
        """Look again at loop time ``when`` (a timer that does not count as pending)."""
        self.for_threads = False
        self.recheck_when = when
        loop: Any = self.loop
        if self.recheck is not None:
            self.recheck.cancel()
        raw = getattr(loop, "_csp_raw_call_at", None)
        if raw is not None:
            self.recheck = raw(when, self._recheck)
        else:
            self.recheck = loop.call_at(when, self._recheck)

    def _recheck(self) -> None:
        self.recheck = None
        self.recheck_when = math.inf
        self.for_threads = False
        self.look(now_or_never=True)

    def stop(self) -> None:
        self.enabled = False
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        if self.recheck is not None:
            self.recheck.cancel()
            self.recheck = None
        if self.checking:
            self._done_checking()


def note_seen(sched: Scheduler, state: State) -> None:
    """Remember when each goroutine of ``state`` (every live one: the watch looks when
    all are waiting) was first seen waiting on what it waits on now (``sched.seen``,
    rebuilt: ended goroutines drop out; see :func:`goroutine_entries`)."""
    now = sched.loop.time()
    seen = sched.seen
    fresh: dict[int, tuple[object, float]] = {}
    for t, w in state:
        g = sched.goroutines.get(t)
        if g is None:
            continue
        what = w if w is not None else _compat.fut_waiter(t)
        first = seen.get(g.id)
        fresh[g.id] = first if first is not None and first[0] is what else (what, now)
    sched.seen = fresh


def _minutes(sched: Scheduler, gid: int, what: object, now: float) -> int:
    first = sched.seen.get(gid)
    return int((now - first[1]) // 60) if first is not None and first[0] is what else 0


def goroutine_entries(sched: Scheduler, running: asyncio.Task[Any] | None) -> list[_dump.Entry]:
    """Every live goroutine of ``sched`` as a dump entry: ``running`` (the caller),
    parked in csp (the waiter's reason), awaiting an asyncio future (``IO wait``) or
    ``runnable``. How long: since csp first saw it in that state (a dump, a deadlock
    look: as Go's ``waitsince``, set when the collector first sees a goroutine blocked),
    in the loop's clock. Safe from another thread: it only reads, from copies."""
    now = sched.loop.time()
    seen = sched.seen
    fresh: dict[int, tuple[object, float]] = {}
    entries = []
    for t, g in list(sched.goroutines.items()):
        if t.done():
            continue
        w = g.parked()
        what: object = None
        if t is running:
            state = "running"
        elif w is not None:
            state, what = w.reason, w
        elif g.foreign:
            state, what = "IO wait", _compat.fut_waiter(t)
        else:
            state = "runnable"
        minutes = 0
        if what is not None:
            # the object itself, not its id: a waiter freed since the last dump may
            # leave its id to the next one the goroutine parks on (a new wait)
            first = seen.get(g.id)
            since = first[1] if first is not None and first[0] is what else now
            fresh[g.id] = (what, since)
            minutes = int((now - since) // 60)
        entries.append(_dump.Entry(g.id, state, g.coro, g.origin, minutes))
    sched.seen = fresh
    return entries


def deadlock_error(state: State,
                   sched: Scheduler) -> DeadlockError:
    """Go's report: ``all goroutines are asleep - deadlock!``, then every goroutine in
    the dump format (csp._dump): its state, stack and where it was created."""
    goroutines = sched.goroutines
    now = sched.loop.time()
    entries = []
    for t, w in state:
        g = goroutines.get(t)
        if g is None:
            entries.append(_dump.Entry(0, w.reason if w is not None else "IO wait",
                                       t.get_coro(), None))
        else:
            what = w if w is not None else _compat.fut_waiter(t)
            entries.append(_dump.Entry(g.id, w.reason if w is not None else "IO wait",
                                       g.coro, g.origin, _minutes(sched, g.id, what, now)))
    lines = ["all goroutines are asleep - deadlock!", "", *_dump.render(entries)]
    return DeadlockError("\n".join(lines))
