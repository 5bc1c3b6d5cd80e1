"""Goroutines: ``csp.go``, ``csp.run``, ``gosched``, ``num_goroutine``.

Strategy. A goroutine is an ordinary ``asyncio.Task`` whose coroutine is its driver, a
:class:`~csp._drive.Goroutine` around the user's coroutine; the loop's
:class:`~csp._sched.Scheduler` keeps it, with its goroutine id, until it ends.
``csp.run`` makes main goroutine 1, turns an exception escaping any goroutine into a
"panic" (cancel everything, re-raise the first, give every later one to the loop's
exception handler, naming its goroutine), and lets the deadlock watch
(``csp._deadlock``) report a program in which everything is blocked on csp.

Exit never hangs: when main returns (or raises, or Ctrl-C cancels it), every task of
the loop is cancelled once, and ``run`` waits until they have ended. Those that then
block again in csp operations nothing can complete (the watch confirms it, as for a
deadlock) are *abandoned*: their waiters are withdrawn, their Tasks marked cancelled
without running, their coroutines closed, and one ``RuntimeWarning`` names them.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import sys
import types
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from inspect import CO_COROUTINE
from types import FunctionType
from typing import Any, Final, ParamSpec, TypeVar, TypeVarTuple, overload

from csp import _compat, _sched, _threads
from csp._chan import is_coro, is_coro_function
from csp._deadlock import AsyncioLoop, State, Watch, deadlock_error, loop_factory
from csp._drive import Goroutine
from csp._sched import Scheduler
from csp._waiter import PENDING, Waiter, forget_done, yield_now

__all__ = ["dump", "go", "gosched", "num_goroutine", "run"]

T = TypeVar("T")
P = ParamSpec("P")
Ts = TypeVarTuple("Ts")

_get_running_loop = _compat.get_running_loop
_get_current_task = _compat.get_current_task
_caller_frame = _compat.caller_frame
_Task = asyncio.Task

# csp.run's loops (tests replace _loop_factory to run csp.run on a loop of theirs)
_AsyncioLoop = AsyncioLoop
_loop_factory = loop_factory


def _is_coro_fn(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn) or is_coro_function(fn):
        return True
    if isinstance(fn, type) or not callable(fn):
        return False
    return inspect.iscoroutinefunction(type(fn).__call__)


def check_coro_fn(who: str, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Refuse anything but a coroutine function or a coroutine object (without calling
    ``fn``); True for a coroutine object (which takes no arguments)."""
    if is_coro(fn) or isinstance(fn, types.CoroutineType):
        if args or kwargs:
            fn.close()
            raise TypeError(f"{who}: arguments given with a coroutine object")
        return True
    if _is_coro_fn(fn):
        return False
    if callable(fn):
        raise TypeError(
            f"{who} needs a coroutine function (async def) or a coroutine, "
            f"got the plain callable {fn!r}"
        )
    raise TypeError(f"{who} needs a coroutine function or a coroutine, got {fn!r}")


def _make_coro(
    who: str, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Coroutine[Any, Any, Any]:
    """Build the coroutine ``fn(*args, **kwargs)``, rejecting anything else unseen."""
    if check_coro_fn(who, fn, args, kwargs):
        return fn  # type: ignore[no-any-return]
    coro = fn(*args, **kwargs)
    if not is_coro(coro):
        raise TypeError(f"{who}: {fn!r} did not return a coroutine")
    return coro


# How a goroutine's Task is made on a loop type: by calling asyncio.Task directly when
# the type's create_task is asyncio's or uvloop's own (and no task factory is set),
# else through loop.create_task. (Cached per scheduler: Scheduler.task_path.)
_OTHER: Final = 0
_STOCK: Final = 1
_task_path: dict[type, int] = {}


def _learn_task_path(cls: type) -> int:
    ct = getattr(cls, "create_task", None)
    path = _OTHER
    if ct is asyncio.BaseEventLoop.create_task:
        path = _STOCK
    else:
        uvloop = sys.modules.get("uvloop")
        if uvloop is not None and ct is uvloop.Loop.create_task:
            path = _STOCK
    _task_path[cls] = path
    return path


def _spawn(sched: Scheduler, coro: Coroutine[Any, Any, T], ctx: contextvars.Context,
           gid: int, origin: tuple[Any, int, int] | None) -> asyncio.Task[T]:
    """Start ``coro`` as goroutine ``gid`` on ``sched``'s loop."""
    loop = sched.loop
    g = Goroutine(coro, sched, ctx, gid)
    g.origin = origin
    path = sched.task_path
    if path < 0:
        path = sched.task_path = _task_path.get(type(loop)) or _learn_task_path(type(loop))
    if path == _STOCK and loop.get_task_factory() is None:
        # the loop's own create_task without a factory: what it does, minus its
        # bookkeeping (name, closed check: a running loop is not closed)
        task: asyncio.Task[T] = _Task(g, loop=loop, context=ctx)  # type: ignore[arg-type]
    else:
        task = loop.create_task(g, context=ctx)  # type: ignore[arg-type]
    if g.task is None:  # (an eager task factory may have run its first step already)
        g.task = task
    task.add_done_callback(sched.done_cb, context=sched.done_ctx)
    sched.goroutines[task] = g
    return task


@overload
def go(fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> asyncio.Task[T]: ...


@overload
def go(fn: Coroutine[Any, Any, T], /) -> asyncio.Task[T]: ...


def go(fn: Any, /, *args: Any, **kwargs: Any) -> asyncio.Task[Any]:
    """Start a goroutine on the running loop (Go: ``go f(x)``).

    ``fn`` is a coroutine function, called as ``fn(*args, **kwargs)``, or a coroutine
    object passed alone. Returns the ``asyncio.Task``; csp holds a strong reference to
    it until it finishes. The goroutine starts after the caller's current step (Go: the
    spawner continues first). Under :func:`csp.run` an exception escaping the goroutine
    ends the program (Go: an unrecovered panic); elsewhere it goes to the loop's
    exception handler as soon as the goroutine ends. Example::

        csp.go(worker, jobs, results)
    """
    loop = _get_running_loop()
    if loop is None:
        if is_coro(fn):
            fn.close()
        raise RuntimeError("csp.go() must be called with an event loop running")
    if type(fn) is FunctionType and fn.__code__.co_flags & CO_COROUTINE:
        coro = fn(*args, **kwargs) if kwargs else fn(*args)  # the common case, cheaply
    else:
        coro = _make_coro("csp.go()", fn, args, kwargs)
    last_loop, sched = _sched._last
    if loop is not last_loop or sched is None:
        sched = _sched.scheduler()
    sched.next_id += 1
    # where: the first caller outside csp (the report's "created by"), and its goroutine
    # where: the caller (the report's "created by"; csp's own callers fix it up with
    # created_by) and its goroutine; kept cheap: a code object and an offset
    f = _caller_frame(1)
    parent = sched.goroutines.get(_get_current_task(loop))
    origin = (f.f_code, f.f_lasti, parent.id if parent is not None else 0)
    return _spawn(sched, coro, contextvars.copy_context(), sched.next_id, origin)


def created_by(task: asyncio.Task[Any], depth: int) -> None:
    """Make the goroutine ``task`` (just started by ``go`` from inside csp) created by
    the caller ``depth`` frames above the caller of this function."""
    g = _sched.scheduler().goroutines.get(task)
    if g is not None and g.origin is not None:
        f = _caller_frame(depth + 1)
        g.origin = (f.f_code, f.f_lasti, g.origin[2])


async def gosched() -> None:
    """Yield to other goroutines once (Go: ``runtime.Gosched()``).

    The caller goes behind every goroutine that is runnable now, and resumes by itself;
    it orders nothing else. Use it in a long CPU-bound loop, which would otherwise
    starve every other goroutine. Example::

        for i, item in enumerate(items):
            crunch(item)
            if i % 1000 == 0:
                await csp.gosched()
    """
    await yield_now()


def num_goroutine() -> int:
    """Live goroutines of the running loop, main included under ``csp.run``.

    Go: ``runtime.NumGoroutine()``. Example::

        csp.go(csp.Chan[int]().recv)   # parks forever
        await csp.gosched()
        print(csp.num_goroutine())     # 2 under csp.run: main and the parked one
    """
    return _sched.scheduler().live_goroutines()


# -- csp.run ------------------------------------------------------------------------


class _Run:
    """State of one ``csp.run``: the first panic, the deadlock watch, the shutdown."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sched: Scheduler,
                 main: asyncio.Task[Any], supervisor: asyncio.Task[Any] | None) -> None:
        self.loop = loop
        self.sched = sched
        self.main = main
        self.panic: BaseException | None = None
        self.panic_task: asyncio.Task[Any] | None = None  # where it escaped, if a task
        self.closing = False
        # every task csp.run has cancelled (each is cancelled once)
        self.cancelled: set[asyncio.Task[Any]] = set()
        self.watch = Watch(loop, sched, self._deadlocked)
        self.watch.exclude = supervisor
        self.stuck: asyncio.Future[State] | None = None
        # resolved when main ends, or at the first panic (then shutdown waits for main,
        # or abandons it if it blocks again in its finally blocks)
        self.main_done: asyncio.Future[None] = loop.create_future()

    def cancel(self, t: asyncio.Task[Any]) -> None:
        if t not in self.cancelled:
            self.cancelled.add(t)
            try:
                t.cancel()
            except RecursionError:
                # Tasks awaiting each other's Tasks in a cycle: Task.cancel() passes the
                # request round it for ever (asyncio's own behaviour). They are stuck
                # for good; the shutdown abandons them.
                pass

    def on_panic(self, task: asyncio.Task[Any] | None, exc: BaseException) -> None:
        """An exception escaped ``task`` (None: an ``after_func`` function, a deadlock):
        the first is the panic run raises; every later one is reported."""
        if self.panic is not None:
            if exc is not self.panic:  # (main's is seen twice: its done callback, _main)
                self.report(task, exc)
            return
        self.panic = exc
        self.panic_task = task
        if self.closing:
            return  # everyone is being cancelled and awaited already
        self.watch.stop()
        if not self.main_done.done():
            self.main_done.set_result(None)
        if self.main is not asyncio.current_task():
            self.cancel(self.main)
        for t in list(self.sched.goroutines):
            if t is not self.main:
                self.cancel(t)

    def report(self, task: asyncio.Task[Any] | None, exc: BaseException) -> None:
        """Give the loop's exception handler an exception run will not raise (it has
        one to raise already, or is interrupted), as ``asyncio.run`` reports those of
        its shutdown. A cancellation is not an error: never reported."""
        if isinstance(exc, asyncio.CancelledError):
            return
        message = "unhandled exception during csp.run() shutdown"
        context: dict[str, Any] = {"message": message, "exception": exc}
        if task is not None:
            context["message"] = f"{message} in {_who(task, self.sched)}"
            context["task"] = task
        self.loop.call_exception_handler(context)

    def _deadlocked(self, state: State) -> None:
        if self.closing:
            if self.stuck is not None and not self.stuck.done():
                self.stuck.set_result(state)
            return
        self.on_panic(None, deadlock_error(state, self.sched))

    async def shutdown(self) -> None:
        """Cancel every task of the loop once; wait until all have ended, abandoning
        those that block again in csp operations nothing can complete."""
        self.closing = True
        loop = self.loop
        me = asyncio.current_task()
        watch = self.watch
        watch.exiting = True  # plain Tasks stuck in csp count too; see Watch
        watch.enabled = True
        while True:
            tasks = [t for t in asyncio.all_tasks(loop) if t is not me and not t.done()]
            if not tasks:
                return
            for t in tasks:
                self.cancel(t)
            stuck = self.stuck = loop.create_future()
            left = len(tasks)

            def one_done(_: asyncio.Task[Any], stuck: Any = stuck) -> None:
                nonlocal left
                left -= 1
                if left == 0 and not stuck.done():
                    stuck.set_result([])

            for t in tasks:
                t.add_done_callback(one_done)
            watch.look()  # after the cancellations queued above have been delivered
            try:
                state = await stuck
            except asyncio.CancelledError:
                # Ctrl-C (again) while waiting: abandon whatever is left
                state = [(t, w) for t in tasks if not t.done()
                         for w in [_parked_waiter(t, self.sched)]]
                self._abandon(state)
                raise
            finally:
                for t in tasks:
                    t.remove_done_callback(one_done)
                self.stuck = None
            if state:
                self._abandon(state)

    def _abandon(self, state: list[tuple[asyncio.Task[Any], Waiter | None]]) -> None:
        names = []
        for t, w in state:
            if t.done():
                continue
            if w is not None:
                with _threads.lock:  # (another thread could still complete it)
                    if w.state is PENDING:  # nothing may complete it now
                        w.withdraw()
            if w is not None:
                what = w.reason
            elif _compat.fut_waiter(t) is not None:
                what = "awaiting a stuck task"
            else:
                what = "running"
            who = _who(t, self.sched)
            _compat.abandon_task(t)
            try:
                t.get_coro().close()  # type: ignore[union-attr,unused-ignore]  # finally blocks run
            except BaseException as exc:
                what += f", and closing it raised {exc!r}"
                self.report(t, exc)  # (the warning names it; the handler gets it whole)
            names.append(f"{who} [{what}]")
        if names:
            warnings.warn(
                "csp.run: abandoned " + ("1 goroutine" if len(names) == 1 else
                                         f"{len(names)} goroutines")
                + " blocked, after being cancelled at exit, in operations nothing can "
                "complete: " + "; ".join(names),
                RuntimeWarning,
                stacklevel=1,
            )


def _who(t: asyncio.Task[Any], sched: Scheduler) -> str:
    """How csp.run's reports name a task: ``goroutine 3 worker()`` or ``task Task-7``.
    (A goroutine leaves the registry as it ends; its Task's coroutine is its driver.)"""
    g = sched.goroutines.get(t)
    if g is None:
        coro: object = t.get_coro()
        g = coro if type(coro) is Goroutine else None
    return f"goroutine {g.id} {g.name()}()" if g is not None else f"task {t.get_name()}"


def _parked_waiter(t: asyncio.Task[Any], sched: Scheduler) -> Waiter | None:
    g = sched.goroutines.get(t)
    if g is not None:
        return g.parked()
    w = _compat.fut_waiter(t)
    return w if type(w) is Waiter else None


async def _main(coro: Coroutine[Any, Any, T], opts: _Options) -> T:
    """The runner's task: start main as goroutine 1, supervise, shut down."""
    loop = asyncio.get_running_loop()
    sched = _sched.scheduler()
    if opts.sigquit:
        restore = _sigquit_dumps(loop)
        if restore is not None:
            opts.cleanups.append(restore)
    restore = _wake_on_signals(loop)
    if restore is not None:
        opts.cleanups.append(restore)
    main = _spawn(sched, coro, contextvars.copy_context(), 1, None)
    sched.main = main
    run = _Run(loop, sched, main, asyncio.current_task())
    sched.panic_handler = run.on_panic
    sched.on_all_parked = run.watch.look
    # Wait for main through a future of our own: a Ctrl-C that cancels this task must
    # not wait for main to finish cancelling (it may never), nor must a panic.
    main_done = run.main_done

    def main_ended(_: asyncio.Task[Any]) -> None:
        if not main_done.done():
            main_done.set_result(None)

    main.add_done_callback(main_ended)
    result: Any = None
    interrupted: asyncio.CancelledError | None = None
    try:
        try:
            await main_done
        except asyncio.CancelledError as exc:  # the runner cancelled us: Ctrl-C
            interrupted = exc
        else:
            if not main.done():
                pass  # a panic: the shutdown waits for main (or abandons it)
            elif main.cancelled():
                if run.panic is None:
                    interrupted = asyncio.CancelledError()  # main cancelled itself
            elif main.exception() is not None:
                run.on_panic(main, main.exception())  # type: ignore[arg-type]
            else:
                result = main.result()
    finally:
        try:
            await run.shutdown()
        except BaseException:  # Ctrl-C during the shutdown: the panic is not raised
            if run.panic is not None:
                run.report(run.panic_task, run.panic)
            raise
        finally:
            run.watch.stop()
            sched.on_all_parked = None
            sched.goroutines.pop(main, None)
            sched.main = None
            sched.panic_handler = None
            while opts.cleanups:
                opts.cleanups.pop()()
    if interrupted is not None:
        if run.panic is not None:  # (it escaped during the shutdown)
            run.report(run.panic_task, run.panic)
        raise interrupted
    if run.panic is not None:
        raise run.panic
    return result  # type: ignore[no-any-return]


@overload
def run(main: Callable[[*Ts], Awaitable[T]], /, *args: *Ts, loop: str = ...,
        debug: bool = ..., sigquit: bool = ...) -> T: ...


@overload
def run(main: Coroutine[Any, Any, T], /, *, loop: str = ..., debug: bool = ...,
        sigquit: bool = ...) -> T: ...


def run(  # type: ignore[misc]  # (mypy: an implementation of a *Ts overload)
    main: Any, /, *args: Any, loop: str = "auto", debug: bool = False, sigquit: bool = True
) -> Any:
    """Run ``main(*args)`` as the main goroutine on a new event loop (Go: the program).

    ``loop`` is ``"auto"`` (uvloop when importable, else asyncio), ``"uvloop"`` or
    ``"asyncio"``. When main returns, every goroutine still running is cancelled and
    awaited, then its result is returned; goroutines that block again, after being
    cancelled, in operations nothing can complete are abandoned with a
    ``RuntimeWarning``, so ``run`` never hangs at exit. If any goroutine raises,
    everything is cancelled and that first exception is re-raised; every further
    exception (another goroutine's, one raised by a ``finally`` while cancelled) goes
    to the loop's exception handler as ``"unhandled exception during csp.run()
    shutdown in goroutine 3 worker()"``, as ``asyncio.run`` reports those of its
    shutdown. If every goroutine is blocked forever on csp operations, raises
    :class:`DeadlockError`. On the main thread, ``SIGQUIT`` (Ctrl-\\) prints
    :func:`csp.dump` to stderr and exits with status 2, as a Go program does
    (``sigquit=False`` leaves the signal alone; the previous handler is restored when
    ``run`` returns). Ctrl-C cancels main and every goroutine, as ``asyncio.run``
    does; a signal always wakes the loop (on asyncio's loop, csp.run sets the wakeup fd
    to the loop's self-pipe unless one is set), so a loop asleep on a long timer never
    sleeps through it. Example::

        async def main() -> None:
            ch = csp.Chan[str]()
            csp.go(ch.send, "hello")
            print(await ch.recv())

        csp.run(main)
    """
    return run_with(main, args, _Options("csp.run", loop, debug, sigquit, None))


class _Options:
    """How :func:`run_with` runs main: ``csp.run``'s keywords and the loop class (None:
    csp.run's for ``loop``; ``csp.testing.run`` gives its own)."""

    __slots__ = ("cleanups", "debug", "factory", "loop", "name", "sigquit")

    def __init__(self, name: str, loop: str, debug: bool, sigquit: bool,
                 factory: Callable[[], asyncio.AbstractEventLoop] | None) -> None:
        self.name = name
        self.loop = loop
        self.debug = debug
        self.sigquit = sigquit
        self.factory = factory
        self.cleanups: list[Callable[[], None]] = []


def run_with(main: Any, args: tuple[Any, ...], opts: _Options) -> Any:
    """``csp.run`` (and ``csp.testing.run``) with ``opts``."""
    try:
        for kw in ("debug", "sigquit"):
            v = getattr(opts, kw)
            if v is not False and v is not True:
                raise TypeError(f"{opts.name}: {kw} must be True or False, got {v!r}")
        factory = opts.factory if opts.factory is not None else _loop_factory(opts.loop)
    except (TypeError, ValueError):
        if is_coro(main):
            main.close()
        raise
    if _get_running_loop() is not None:
        if is_coro(main):
            main.close()
        raise RuntimeError(f"{opts.name}() cannot be called from a running event loop")
    coro = _make_coro(f"{opts.name}()", main, args, {})
    with asyncio.Runner(debug=opts.debug, loop_factory=factory) as runner:
        try:
            return runner.run(_main(coro, opts))
        finally:
            _sched.forget_loop(runner.get_loop())
            forget_done(runner.get_loop())


# -- csp.dump and SIGQUIT --------------------------------------------------------------


def dump(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """Every goroutine of ``loop`` (default: the running loop) in Go's dump format.

    For each goroutine, in id order (main, 1, first under ``csp.run``)::

        goroutine 7 [chan receive, 3 minutes]:
        worker(...)
        \t/app/jobs.py:41
        created by main in goroutine 1
        \t/app/jobs.py:58

    The state is ``running`` (the caller), ``runnable``, what a parked goroutine waits
    for (``chan receive``, ``chan send``, ``select``, ``sync.Mutex.Lock``, ``sleep``,
    ...) or ``IO wait`` (an asyncio future); the minutes appear once a goroutine has
    been in that state for a minute since csp first saw it there (a dump or a deadlock
    look; Go's count is likewise approximate). Goroutines identical in all of this are
    grouped under the first. Callable from another thread with the loop, to look at a
    loop that is stuck (it only reads). ``RuntimeError`` if there is no loop to dump.
    """
    if loop is None:
        loop = _get_running_loop()
        if loop is None:
            raise RuntimeError("csp.dump: no running event loop (pass the loop: csp.dump(loop))")
    elif not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(f"csp.dump: expected an event loop, got {loop!r}")
    from csp import _dump
    from csp._deadlock import goroutine_entries

    sched = _sched.schedulers.get(loop)
    if sched is None:
        return ""
    running = _get_current_task(loop) if loop is _get_running_loop() else None
    return "\n".join(_dump.render(goroutine_entries(sched, running))) + "\n"


def _wake_on_signals(loop: asyncio.AbstractEventLoop) -> Callable[[], None] | None:
    """On the main thread, make every signal wake an asyncio selector loop: its
    self-pipe becomes the wakeup fd (as the loop's own ``add_signal_handler`` does),
    unless some wakeup fd is set already. uvloop sets its own. Returns what undoes it,
    or None.

    Without it, asyncio's loop can sleep through Ctrl-C: ``asyncio.Runner``'s SIGINT
    handler is a Python handler, run at the main thread's next bytecode, and a signal
    whose C handler ran just before the main thread entered ``epoll_wait`` (or ran in
    another thread) leaves the loop asleep until its next timer: an hour away under
    ``csp.sleep(3600)``."""
    import signal
    import threading

    fd = _compat.self_pipe_fd(loop)
    if fd is None or threading.current_thread() is not threading.main_thread():
        return None
    try:
        previous = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    except (ValueError, OSError):  # pragma: no cover - not the main interpreter
        return None
    if previous != -1:  # someone else's: theirs stays
        signal.set_wakeup_fd(previous)
        return None

    def restore() -> None:
        current = signal.set_wakeup_fd(-1)
        if current != fd:  # replaced since: leave the new one
            signal.set_wakeup_fd(current)

    return restore


def _sigquit_dumps(loop: asyncio.AbstractEventLoop) -> Callable[[], None] | None:
    """On the main thread, make SIGQUIT print the dump and exit with status 2 (Go);
    returns what restores the previous handler, or None if nothing was installed."""
    import signal
    import threading

    sig = getattr(signal, "SIGQUIT", None)
    if sig is None or threading.current_thread() is not threading.main_thread():
        return None
    from csp._deadlock import ignore_signal, unignore_signal

    def on_sigquit(signum: int, frame: object) -> None:
        import os

        sys.stderr.write(f"SIGQUIT: quit\n\n{dump(loop)}")
        sys.stderr.flush()
        os._exit(2)

    previous = signal.signal(sig, on_sigquit)
    ignore_signal(sig)  # it ends the program: it never completes a csp operation

    def restore() -> None:
        unignore_signal(sig)
        if signal.getsignal(sig) is on_sigquit:
            signal.signal(sig, previous)

    return restore
