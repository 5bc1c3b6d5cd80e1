"""Goroutines: ``csp.go``, ``csp.run`` and deadlock detection.

Strategy. A goroutine is an ordinary ``asyncio.Task``; the loop's
:class:`~csp._park.Scheduler` keeps a strong reference to it (and its goroutine id)
until it ends. ``csp.run`` makes main goroutine 1, turns an exception escaping any
goroutine into a "panic" (cancel everything, re-raise the first), and watches for
deadlock: when every goroutine may be parked, a check confirms that every live task
is a goroutine parked in csp, that nothing else is pending on the loop (ready
callbacks, timers, I/O, executor jobs), and that this stays so for a few loop
iterations. Only then is :class:`DeadlockError` raised; in doubt it never is.

uvloop shows no pending timers or I/O, so the loops ``run`` creates keep their own
account: timers made through ``call_at``/``call_later`` are remembered, and any use of
sockets, servers, pipes, subprocesses or signals switches detection off for that loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import sys
import types
from collections.abc import Awaitable, Callable, Coroutine
from inspect import CO_COROUTINE
from types import FunctionType
from typing import Any, Final, TypeVar

from csp import _park
from csp._errors import DeadlockError
from csp._park import Scheduler, Waiter, parked_on

T = TypeVar("T")

_get_running_loop = asyncio._get_running_loop
_Task = asyncio.Task

_LOOPS = ("auto", "uvloop", "asyncio")
_CSP_DIR = os.path.dirname(os.path.abspath(__file__))


def _is_coro_fn(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    if isinstance(fn, type) or not callable(fn):
        return False
    return inspect.iscoroutinefunction(type(fn).__call__)


def _make_coro(
    who: str, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Coroutine[Any, Any, Any]:
    """Build the coroutine ``fn(*args, **kwargs)``, rejecting anything else unseen."""
    if inspect.iscoroutine(fn) or isinstance(fn, types.CoroutineType):
        if args or kwargs:
            fn.close()
            raise TypeError(f"{who}: arguments given with a coroutine object")
        return fn
    if _is_coro_fn(fn):
        coro = fn(*args, **kwargs)
        if not inspect.iscoroutine(coro):
            raise TypeError(f"{who}: {fn!r} did not return a coroutine")
        return coro
    if callable(fn):
        raise TypeError(
            f"{who} needs a coroutine function (async def) or a coroutine, "
            f"got the plain callable {fn!r}"
        )
    raise TypeError(f"{who} needs a coroutine function or a coroutine, got {fn!r}")


# How go() makes a goroutine's Task on a loop type: by calling asyncio.Task directly
# when the type's create_task is asyncio's or uvloop's own (and no task factory is
# set), else through loop.create_task. (Cached per scheduler: Scheduler.task_path.)
_STOCK_ASYNCIO: Final = 1
_STOCK_UVLOOP: Final = 2
_CSP_UVLOOP: Final = 3  # csp.run's uvloop: it keeps its task factory in an attribute
_OTHER: Final = 0
_task_path: dict[type, int] = {}


def _learn_task_path(cls: type) -> int:
    ct = getattr(cls, "create_task", None)
    path = _OTHER
    if ct is asyncio.BaseEventLoop.create_task:
        path = _STOCK_ASYNCIO
    else:
        uvloop = sys.modules.get("uvloop")
        if uvloop is not None and ct is uvloop.Loop.create_task:
            path = _CSP_UVLOOP if hasattr(cls, "_csp_task_factory") else _STOCK_UVLOOP
    _task_path[cls] = path
    return path


def go(fn: Callable[..., Awaitable[T]] | Coroutine[Any, Any, T], *args: Any,
       **kwargs: Any) -> asyncio.Task[T]:
    """Start a goroutine on the running loop (Go: ``go f(x)``).

    ``fn`` is a coroutine function, called as ``fn(*args, **kwargs)``, or a coroutine
    object passed alone. Returns the ``asyncio.Task``; csp holds a strong reference to
    it until it finishes. Under :func:`csp.run` an exception escaping the goroutine
    ends the program (Go: an unrecovered panic); elsewhere it goes to the loop's
    exception handler as soon as the goroutine ends. Example::

        csp.go(worker, jobs, results)
    """
    loop = _get_running_loop()
    if loop is None:
        if inspect.iscoroutine(fn):
            fn.close()
        raise RuntimeError("csp.go() must be called with an event loop running")
    if type(fn) is FunctionType and fn.__code__.co_flags & CO_COROUTINE:
        # the common case, checked cheaply
        coro = fn(*args, **kwargs) if kwargs else fn(*args)
    else:
        coro = _make_coro("csp.go()", fn, args, kwargs)
    sched = _park._last_sched if loop is _park._last_loop else _park.scheduler()
    assert sched is not None
    ctx = contextvars.copy_context()
    path = sched.task_path
    if path < 0:
        path = sched.task_path = _task_path.get(type(loop)) or _learn_task_path(type(loop))
    if (
        (path == _STOCK_ASYNCIO and loop._task_factory is None)  # type: ignore[attr-defined]
        or (path == _CSP_UVLOOP and loop._csp_task_factory is None)  # type: ignore[attr-defined]
        or (path == _STOCK_UVLOOP and loop.get_task_factory() is None)
    ):
        # the loop's own create_task without a task factory: what it does, minus its
        # bookkeeping (name, closed check: a running loop is not closed)
        task: asyncio.Task[T] = _Task(coro, loop=loop, context=ctx)
    else:
        task = loop.create_task(coro, context=ctx)
    task.add_done_callback(sched.done_cb, context=sched.done_ctx)
    sched.next_id += 1
    sched.goroutines[task] = sched.next_id
    return task


async def gosched() -> None:
    """Yield to other tasks once (Go: ``runtime.Gosched()``).

    The caller stays runnable and resumes by itself; it orders nothing. Use it in a
    long CPU-bound loop, which would otherwise starve every other goroutine. Example::

        for i, item in enumerate(items):
            crunch(item)
            if i % 1000 == 0:
                await csp.gosched()
    """
    await asyncio.sleep(0)


def num_goroutine() -> int:
    """Live goroutines of the running loop, main included under ``csp.run``.

    Go: ``runtime.NumGoroutine()``. Example::

        csp.go(csp.Chan[int]().recv)   # parks forever
        await csp.gosched()
        print(csp.num_goroutine())     # 2 under csp.run: main and the parked one
    """
    return _park.scheduler().live_goroutines()


# -- loops that keep an account of timers and I/O ------------------------------------


class _Accounting:
    """Mixin for the loops ``csp.run`` makes: remembers timers and I/O use."""

    _csp_timers: list[asyncio.TimerHandle]
    _csp_io: int  # >0: I/O was used; deadlock detection declines to decide
    _csp_jobs: int  # executor jobs in flight
    _csp_soon: int

    def _csp_init(self) -> None:
        self._csp_soon = 0  # callbacks scheduled, counted while a deadlock check looks
        self._csp_timers = []
        self._csp_io = 0
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
            sched = _park._schedulers.get(self)  # type: ignore[call-overload]
            if sched is not None and sched.on_all_parked is not None:
                sched.on_all_parked()

        fut.add_done_callback(done)
        return fut


_IO_METHODS = (
    "create_server", "create_connection", "create_unix_server", "create_unix_connection",
    "create_datagram_endpoint", "connect_accepted_socket", "connect_read_pipe",
    "connect_write_pipe", "subprocess_exec", "subprocess_shell", "add_reader", "add_writer",
    "add_signal_handler", "sock_recv", "sock_recv_into", "sock_recvfrom", "sock_sendall",
    "sock_sendto", "sock_accept", "sock_connect", "getaddrinfo", "getnameinfo",
    "sendfile", "start_tls",
)


class _AsyncioLoop(_Accounting, asyncio.SelectorEventLoop):  # type: ignore[misc]
    """The default asyncio loop; pending timers and I/O are read off the loop itself."""

    def __init__(self) -> None:
        super().__init__()
        self._csp_init()

    def _csp_busy(self, exclude: object) -> str | None:
        if any(h is not exclude for h in self._ready):  # type: ignore[attr-defined]
            return "ready callbacks"
        if any(not h.cancelled() and h is not exclude for h in self._scheduled):  # type: ignore[attr-defined]
            return "timers"
        if len(self._selector.get_map()) > 1:  # type: ignore[attr-defined]  # > self-pipe
            return "I/O"
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

        def _csp_busy(self, exclude: object) -> str | None:
            if self._csp_io:
                return "I/O"
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

    for name in _IO_METHODS:
        if hasattr(uvloop.Loop, name):
            setattr(_UVLoop, name, _io_method_for(_UVLoop, name))
    return _UVLoop


def _io_method_for(cls: type, name: str) -> Callable[..., Any]:
    base = getattr(super(cls, cls), name)

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        self._csp_io += 1
        return base(self, *args, **kwargs)

    method.__name__ = name
    method.__qualname__ = f"{cls.__name__}.{name}"
    return method


_uvloop_class: type[asyncio.AbstractEventLoop] | bool | None = False


def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop]:
    global _uvloop_class
    if loop not in _LOOPS:
        raise ValueError(f"unknown loop {loop!r}: expected 'auto', 'uvloop' or 'asyncio'")
    if loop in ("auto", "uvloop"):
        if _uvloop_class is False:
            _uvloop_class = _make_uvloop_class()
        if _uvloop_class is not None:
            return _uvloop_class  # type: ignore[return-value]
        if loop == "uvloop":
            raise ValueError("loop='uvloop' but uvloop is not installed")
    return _AsyncioLoop


# -- csp.run ------------------------------------------------------------------------


def _where(task: asyncio.Task[Any]) -> str:
    """The innermost frame of ``task`` outside csp, as 'func() at file:line'."""
    coro: Any = task.get_coro()
    frame = outer = None
    while coro is not None:
        f = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if f is None:
            break
        outer = outer or f
        if not os.path.abspath(f.f_code.co_filename).startswith(_CSP_DIR + os.sep):
            frame = f
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    frame = frame or outer  # a goroutine started on a csp method itself (go(mu.lock))
    if frame is None:
        return "(unknown)"
    return f"{frame.f_code.co_name}() at {frame.f_code.co_filename}:{frame.f_lineno}"


class _Run:
    """State of one ``csp.run``: the first panic, and the deadlock watch."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sched: Scheduler,
                 main: asyncio.Task[Any]) -> None:
        self.loop = loop
        self.sched = sched
        self.main = main
        self.panic: BaseException | None = None
        self.cleaning = False
        self.checking = False
        self.rounds = 0
        self.snapshot: list[tuple[asyncio.Task[Any], Waiter]] | None = None
        self.watched: set[asyncio.Task[Any]] = set()
        self.handle: asyncio.Handle | None = None
        self.supervisor: asyncio.Task[Any] | None = None  # csp.run's own task

    def on_panic(self, task: asyncio.Task[Any] | None, exc: BaseException) -> None:
        if self.panic is not None:
            return
        self.panic = exc
        self.sched.on_all_parked = None
        if self.cleaning:
            return  # main is already cancelling and awaiting everyone
        if self.main is not asyncio.current_task():
            self.main.cancel()
        for t in list(self.sched.goroutines):
            if t is not self.main:
                t.cancel()

    # Deadlock watch ------------------------------------------------------------

    def maybe_all_parked(self) -> None:
        if self.checking or self.panic is not None:
            return
        self.checking = True
        self.rounds = 0
        self.snapshot = None
        watch = getattr(self.loop, "_csp_watch_soon", None)
        if watch is not None:
            watch(True)
        self.handle = self._soon(self._check)

    def _state(self) -> list[tuple[asyncio.Task[Any], Waiter]] | None:
        """Every live task parked in csp, with its waiter; None if any is not."""
        tasks = asyncio.all_tasks(self.loop)
        goroutines = self.sched.goroutines
        out = []
        for t in tasks:
            if t is self.supervisor:
                continue  # it only waits for main
            if t not in goroutines:
                if t not in self.watched:  # re-check when it ends
                    self.watched.add(t)
                    t.add_done_callback(self._foreign_done)
                return None
            w = parked_on(t)
            if w is None:
                return None
            out.append((t, w))
        return out

    def _foreign_done(self, t: asyncio.Task[Any]) -> None:
        self.watched.discard(t)
        if self.sched.on_all_parked is not None:
            self.maybe_all_parked()

    def _soon(self, fn: Callable[[], None]) -> asyncio.Handle:
        """call_soon past the uvloop watch's counter (see _UVLoop._csp_watch_soon)."""
        return type(self.loop).call_soon(self.loop, fn)

    def _done_checking(self) -> None:
        self.checking = False
        watch = getattr(self.loop, "_csp_watch_soon", None)
        if watch is not None:
            watch(False)

    def _check(self) -> None:
        self.handle = None
        if self.panic is not None or self.sched.on_all_parked is None:
            self._done_checking()
            return
        if self.sched.runq or self.sched.yieldq:  # cheap first: _state() is O(tasks)
            self._done_checking()
            return
        state = self._state()
        if state is None:
            self._done_checking()
            return
        busy = self.loop._csp_busy(self.handle)  # type: ignore[attr-defined]
        if busy == "timers":
            # Look again once the next timer has fired: it may wake nobody.
            self._done_checking()
            self._recheck_after_timers()
            return
        if busy == "ready callbacks":
            self.rounds = 0
            self.handle = self._soon(self._check)
            return
        if busy is not None:
            self._done_checking()
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
        self._done_checking()
        self.on_panic(None, self._deadlock_error(state))

    def _recheck_after_timers(self) -> None:
        loop: Any = self.loop
        if isinstance(loop, _AsyncioLoop):
            whens = [h.when() for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        else:
            whens = [h.when() for h in loop._csp_pending_timers()]
        if not whens:
            self.maybe_all_parked()
            return
        when = min(whens)
        raw = getattr(loop, "_csp_raw_call_at", None)
        if raw is not None:
            raw(when, self.maybe_all_parked)
        else:
            loop.call_at(when, self.maybe_all_parked)

    def _deadlock_error(self, state: list[tuple[asyncio.Task[Any], Waiter]]) -> DeadlockError:
        ids = self.sched.goroutines
        lines = ["all goroutines are asleep - deadlock!", ""]
        for t, w in sorted(state, key=lambda tw: ids.get(tw[0], 0)):
            lines.append(f"goroutine {ids.get(t, '?')} [{w.reason}]:")
            lines.append(f"    {_where(t)}")
        return DeadlockError("\n".join(lines))


async def _main(coro: Coroutine[Any, Any, T]) -> T:
    """The runner's task: start main as goroutine 1, supervise, clean up."""
    loop = asyncio.get_running_loop()
    sched = _park.scheduler()
    # main runs as a goroutine of its own (resumed directly like any other); this
    # supervising task only waits for it and is not counted as a goroutine.
    ctx = contextvars.copy_context()
    main: asyncio.Task[T] = loop.create_task(coro, context=ctx)
    main.add_done_callback(sched.done_cb, context=sched.done_ctx)
    sched.goroutines[main] = 1
    sched.main = main
    run = _Run(loop, sched, main)
    run.supervisor = asyncio.current_task()
    sched.panic_handler = run.on_panic
    sched.on_all_parked = run.maybe_all_parked
    result: Any = None
    interrupted: asyncio.CancelledError | None = None
    try:
        try:
            result = await main
        except asyncio.CancelledError as exc:
            if not main.done():  # the runner itself was cancelled (Ctrl-C): stop main
                interrupted = exc
                main.cancel()
            elif run.panic is None:
                raise  # main ended cancelled (it cancelled itself): as asyncio.run
        except BaseException as exc:
            run.on_panic(main, exc)
    finally:
        run.cleaning = True
        sched.on_all_parked = None
        await _cancel_all(sched)
        sched.goroutines.pop(main, None)
        sched.main = None
        sched.panic_handler = None
    if interrupted is not None:
        raise interrupted
    if run.panic is not None:
        raise run.panic
    return result  # type: ignore[no-any-return]


async def _cancel_all(sched: Scheduler) -> None:
    """Cancel every goroutine of the loop and wait until all have ended.

    A goroutine already being cancelled (by a panic or deadlock) is not cancelled
    again, so that its ``finally`` blocks may await their clean-up undisturbed.
    """
    while sched.goroutines:
        tasks = list(sched.goroutines)
        for t in tasks:
            if not t.cancelling():
                t.cancel()
        await asyncio.wait(tasks)


def run(main: Callable[..., Awaitable[T]] | Coroutine[Any, Any, T], *args: Any,
        loop: str = "auto", debug: bool = False) -> T:
    """Run ``main(*args)`` as the main goroutine on a new event loop (Go: the program).

    ``loop`` is ``"auto"`` (uvloop when importable, else asyncio), ``"uvloop"`` or
    ``"asyncio"``. When main returns, every goroutine still running is cancelled and
    awaited, then its result is returned. If any goroutine raises, everything is
    cancelled and that first exception is re-raised. If every goroutine is blocked
    forever on csp operations, raises :class:`DeadlockError`. Example::

        async def main() -> None:
            ch = csp.Chan[str]()
            csp.go(ch.send, "hello")
            print(await ch.recv())

        csp.run(main)
    """
    try:
        factory = _loop_factory(loop)
    except ValueError:
        if inspect.iscoroutine(main):
            main.close()
        raise
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        if inspect.iscoroutine(main):
            main.close()
        raise RuntimeError("csp.run() cannot be called from a running event loop")
    coro = _make_coro("csp.run()", main, args, {})
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        try:
            result: T = runner.run(_main(coro))
            return result
        finally:
            _park.forget_loop(runner.get_loop())

