"""Every use of a CPython or uvloop private internal, in one place, with a self-test.

csp needs a handful of things asyncio does not expose publicly. Each is wrapped here,
probed once at import where the interpreter could differ, and checked by
:func:`selftest` (run by the test suite and by CI on every supported Python), so that a
Python release that moves one of them (3.14 keeps the current task in thread state) is
this file's concern only. Where a probe fails, the fallback is slower but correct; where
there is no fallback, :func:`selftest` names what is missing.

What is used, and why:

* **the running loop without raising** (``asyncio._get_running_loop``): asked on every
  park, from C, so it must be the C function;
* **the current task** (``asyncio.tasks._current_tasks`` or ``_enter_task`` /
  ``_leave_task``): csp resumes a goroutine's coroutine itself, outside the Task's own
  step, and must make the Task current meanwhile so that ``asyncio.current_task()``,
  ``asyncio.timeout()`` and anyio see the right task;
* **what a Task awaits, and whether a cancellation is pending on it**
  (``task._fut_waiter``, ``task._must_cancel``): to re-deliver a cancellation a task
  owes (``csp._waiter``), csp looks whether the task is parked on one of csp's waiters,
  and does not overwrite a newer request already on its way;
* **ending a Task that cannot run any more** (``asyncio.Future.cancel(task)`` and
  ``task._log_destroy_pending``): ``csp.run`` abandons goroutines that block again,
  after being cancelled at exit, in operations nothing can complete;
* **the asyncio loop's queues** (``loop._ready``, ``loop._scheduled``,
  ``loop._selector``, ``loop._signal_handlers``): deadlock detection must know that
  nothing else is pending, and that no signal handler may still run;
* **a future's done callbacks** (``future._callbacks``): a task awaiting
  ``asyncio.gather`` / ``asyncio.wait`` over stuck goroutines is stuck too; the watch
  finds which future such a callback completes in its closure;
* **the threads' stacks and the caller's frame** (``sys._current_frames``,
  ``sys._getframe``; ``concurrent.futures.thread._worker``): a thread that may still
  call into the loop forbids a deadlock verdict, except a pool worker waiting for a
  job; ``csp.go`` keeps where each goroutine was created, for the report;
* **being told a thread is about to start, in the thread that starts it**
  (:func:`on_thread_start`: ``threading._start_new_thread``, 3.13's
  ``threading._start_joinable_thread``, wrapped): csp's shared mode must be on before a
  second thread runs (``csp._threads``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "CURRENT_TASKS_DICT",
    "get_running_loop",
    "abandon_task",
    "caller_frame",
    "current_frames",
    "current_tasks",
    "fut_callbacks",
    "fut_waiter",
    "get_current_task",
    "idle_pool_worker",
    "loop_queues",
    "must_cancel",
    "python_signal_handlers",
    "selftest",
    "signal_handlers",
    "thread_count",
]

get_running_loop: Final[Callable[[], asyncio.AbstractEventLoop | None]] = asyncio._get_running_loop
"""The running loop or None, without raising (asyncio's C function: the cheapest way)."""

_enter_task = asyncio.tasks._enter_task
_leave_task = asyncio.tasks._leave_task


def _probe_current_tasks() -> dict[Any, Any] | None:
    """asyncio's loop -> current task dict, if ``current_task()`` and ``_enter_task``
    both read and write it (CPython 3.11-3.13); else None.

    Writing the dict directly saves two C calls per goroutine switch. Probed, not
    assumed: an interpreter that keeps the current task elsewhere gets the functions.
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
            else:  # pragma: no cover - a different implementation
                _leave_task(key, d[key])
        finally:
            d.pop(key, None)
    except Exception:  # pragma: no cover - a different implementation
        return None
    return d if seen and not entered else None


class _TaskSwitch:
    """The fallback for asyncio's dict: ``s[loop] = task`` and ``del s[loop]`` call
    ``_enter_task`` / ``_leave_task``, so callers have one interface and no branch."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: dict[Any, Any] = {}

    def __setitem__(self, loop: Any, task: Any) -> None:
        _enter_task(loop, task)
        self._tasks[loop] = task

    def __delitem__(self, loop: Any) -> None:
        _leave_task(loop, self._tasks.pop(loop))

    def get(self, loop: Any) -> Any:
        return asyncio.current_task(loop)


_DICT = _probe_current_tasks()
CURRENT_TASKS_DICT: Final = _DICT is not None
"""True where csp writes asyncio's current-task dict directly (the fast path)."""

current_tasks: Final[Any] = _DICT if _DICT is not None else _TaskSwitch()
"""Make a task current on a loop and leave it: ``current_tasks[loop] = task`` ...
``del current_tasks[loop]``. Precondition: no task is current on that loop."""

get_current_task: Final[Callable[[Any], Any]] = current_tasks.get
"""``get_current_task(loop)``: the loop's current task or None (no running-loop check)."""


def fut_waiter(task: asyncio.Task[Any]) -> Any:
    """What ``task`` is parked on (a Future, a csp waiter), or None."""
    return getattr(task, "_fut_waiter", None)


def must_cancel(task: asyncio.Task[Any]) -> bool:
    """A cancellation request is pending on ``task`` (its ``_must_cancel``)."""
    return bool(getattr(task, "_must_cancel", False))


_future_cancel = asyncio.Future.cancel


def abandon_task(task: asyncio.Task[Any]) -> None:
    """Mark a Task that will never be stepped again as done (cancelled), without
    running its coroutine, and without the "Task was destroyed but it is pending!"
    report. Precondition: nothing will wake the Task any more (its waiter withdrawn)."""
    try:
        task._log_destroy_pending = False  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - a Task without the flag
        pass
    # what it awaits must not wake it once done (two stuck tasks awaiting each other)
    fut = fut_waiter(task)
    if isinstance(fut, asyncio.Future):
        for cb in fut_callbacks(fut):
            if getattr(cb, "__self__", None) is task:
                fut.remove_done_callback(cb)
    _future_cancel(task)


def loop_queues(loop: asyncio.AbstractEventLoop) -> tuple[Any, Any, Any] | None:
    """The asyncio loop's ready deque, timer heap and selector, or None if it has none
    of these (uvloop, other loops)."""
    try:
        return loop._ready, loop._scheduled, loop._selector  # type: ignore[attr-defined]
    except AttributeError:
        return None


def signal_handlers(loop: asyncio.AbstractEventLoop) -> int:
    """How many signal handlers ``loop.add_signal_handler`` has installed on an asyncio
    loop (0 for loops that do not keep them where asyncio does)."""
    return len(getattr(loop, "_signal_handlers", None) or ())


def self_pipe_fd(loop: asyncio.AbstractEventLoop) -> int | None:
    """The write end of an asyncio selector loop's self-pipe (what the loop's own
    ``add_signal_handler`` gives ``signal.set_wakeup_fd``: a byte there wakes the
    selector, and the loop drains it), or None for loops without one (uvloop)."""
    sock = getattr(loop, "_csock", None)
    fileno = getattr(sock, "fileno", None)
    if fileno is None or not isinstance(loop, asyncio.BaseEventLoop):
        return None
    fd = fileno()
    return fd if isinstance(fd, int) and fd >= 0 else None


def fut_callbacks(fut: asyncio.Future[Any]) -> list[Callable[..., Any]]:
    """The done callbacks registered on ``fut`` (without their contexts)."""
    cbs = getattr(fut, "_callbacks", None) or ()
    return [cb[0] if isinstance(cb, tuple) else cb for cb in cbs]


caller_frame: Final[Callable[[int], Any]] = sys._getframe
"""``caller_frame(depth)``: a frame of the calling thread's stack (``sys._getframe``)."""


def idle_pool_worker(ident: int | None, frames: dict[int, Any]) -> bool:
    """The thread ``ident`` is a ``concurrent.futures`` pool worker waiting for a job
    that nobody has queued yet: its innermost Python frame is the pool's worker loop
    (blocked in the queue's C ``get``) and that queue is empty (a job queued but not
    yet taken would run, and might call in). ``frames``: ``sys._current_frames()``."""
    mod = sys.modules.get("concurrent.futures.thread")
    worker = getattr(mod, "_worker", None)
    f = frames.get(ident) if ident is not None else None
    if f is None or worker is None or f.f_code is not worker.__code__:
        return False
    queue = f.f_locals.get("work_queue")
    return queue is not None and queue.empty()


def python_signal_handlers() -> list[int]:
    """The signals that have a Python handler of the program's (``signal.signal``),
    other than the default SIGINT handler, ``asyncio.Runner``'s and the no-op that
    ``loop.add_signal_handler`` installs (those are counted where they are known)."""
    import signal

    runner_sigint = getattr(getattr(asyncio, "Runner", None), "_on_sigint", None)
    loop_noop = getattr(sys.modules.get("asyncio.unix_events"), "_sighandler_noop", None)
    out = []
    for sig in signal.valid_signals():
        try:
            h = signal.getsignal(sig)
        except (OSError, ValueError):  # pragma: no cover - a signal Python cannot see
            continue
        if not callable(h) or h is signal.default_int_handler or h is loop_noop:
            continue
        fn = getattr(h, "func", h)  # (Runner installs a functools.partial of it)
        if runner_sigint is not None and getattr(fn, "__func__", None) is runner_sigint:
            continue
        out.append(int(sig))
    return out


def thread_count() -> int:
    """How many threads this process runs besides the main thread (``_thread._count()``:
    also those ``threading`` does not list, and those between two Python calls, which
    have no frame in ``sys._current_frames()``). A thread counts once it has begun."""
    import _thread

    return int(_thread._count())


current_frames: Final[Callable[[], dict[int, Any]]] = sys._current_frames
"""Each thread's innermost frame, by thread ident (``sys._current_frames``)."""


UNCANCEL_CLEARS_MUST_CANCEL: Final = sys.version_info >= (3, 13)
"""CPython 3.13+: ``Task.uncancel()`` down to 0 also withdraws a pending cancellation."""


def on_thread_start(fn: Callable[[], None]) -> None:
    """Call ``fn()`` in the thread that starts a ``threading.Thread``, before the new
    thread exists: ``threading``'s start function is wrapped (``_start_new_thread``
    up to 3.12, ``_start_joinable_thread`` since 3.13). (An audit hook would see every
    ``_thread`` start on 3.12+, but it runs on every audit event of the process: it
    made each ``sys._getframe`` 200 ns slower, logging's included.)"""
    import threading

    name = ("_start_joinable_thread" if hasattr(threading, "_start_joinable_thread")
            else "_start_new_thread")
    start = getattr(threading, name)
    if getattr(start, "__csp_hook__", False):
        return  # (a re-imported csp: one wrapper is enough)

    def starting(*args: Any, **kwargs: Any) -> Any:
        fn()
        return start(*args, **kwargs)

    starting.__csp_hook__ = True  # type: ignore[attr-defined]
    starting.__wrapped__ = start  # type: ignore[attr-defined]
    setattr(threading, name, starting)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def pool_idents(pool: Any) -> set[int | None]:
    """Thread idents of a ThreadPoolExecutor's workers (self-test only)."""
    return {t.ident for t in getattr(pool, "_threads", ())}


def selftest() -> list[str]:
    """Check every internal used above on this interpreter; return what is wrong
    (an empty list when all is well). Run by the test suite on every Python."""
    problems: list[str] = []

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        if get_current_task(loop) is not me:
            problems.append("get_current_task(loop) is not asyncio.current_task()")
        fut = loop.create_future()

        async def parked() -> None:
            await fut

        t = asyncio.ensure_future(parked())
        await asyncio.sleep(0)
        if fut_waiter(t) is not fut:
            problems.append("task._fut_waiter does not show the awaited future")
        pending = asyncio.ensure_future(asyncio.sleep(0))  # not started: no waiter
        pending.cancel()
        if not must_cancel(pending) or must_cancel(t):
            problems.append("task._must_cancel does not show a pending cancellation")
        try:
            await pending
        except asyncio.CancelledError:
            pass
        # current_tasks: switch to another task and back, as the goroutine driver does
        del current_tasks[loop]
        try:
            current_tasks[loop] = t
            try:
                if asyncio.current_task() is not t:
                    problems.append("current_tasks[loop] = task does not make it current")
            finally:
                del current_tasks[loop]
        finally:
            current_tasks[loop] = me
        if asyncio.current_task() is not me:
            problems.append("current_tasks did not restore the running task")
        fut.set_result(None)
        await t
        # abandon_task on a task parked forever
        never = loop.create_future()

        async def stuck() -> None:
            await never

        s = asyncio.ensure_future(stuck())
        await asyncio.sleep(0)
        abandon_task(s)
        if not (s.done() and s.cancelled()):
            problems.append("abandon_task did not end the task")
        s.get_coro().close()
        q = loop_queues(loop)
        if type(loop) is asyncio.SelectorEventLoop or isinstance(loop, asyncio.BaseEventLoop):
            if q is None:
                problems.append("asyncio loop without _ready/_scheduled/_selector")
            else:
                ready, scheduled, selector = q
                if not hasattr(ready, "popleft") or not isinstance(scheduled, list):
                    problems.append("loop._ready / loop._scheduled changed type")
                if not hasattr(selector, "get_map"):
                    problems.append("loop._selector has no get_map()")
                if self_pipe_fd(loop) is None:
                    problems.append("asyncio loop without a self-pipe (loop._csock)")
            if hasattr(loop, "add_signal_handler") and os.name == "posix":
                import signal

                loop.add_signal_handler(signal.SIGUSR2, lambda: None)
                try:
                    if signal_handlers(loop) != 1:
                        problems.append("loop._signal_handlers does not show a handler")
                finally:
                    loop.remove_signal_handler(signal.SIGUSR2)
        # python_signal_handlers: a handler of the program's shows; asyncio's do not
        if os.name == "posix" and threading_main():
            import signal

            prev = signal.signal(signal.SIGUSR2, lambda *_: None)
            try:
                if int(signal.SIGUSR2) not in python_signal_handlers():
                    problems.append("python_signal_handlers misses a signal.signal handler")
            finally:
                signal.signal(signal.SIGUSR2, prev)
            if int(signal.SIGUSR2) in python_signal_handlers():
                problems.append("python_signal_handlers shows a restored default")
        # thread_count: a thread that has not run Python code yet counts
        import _thread
        import threading as _threading

        release_raw = _threading.Event()
        begun = _threading.Event()
        before = thread_count()
        def raw() -> None:
            begun.set()
            release_raw.wait(5)

        _thread.start_new_thread(raw, ())
        begun.wait(5)
        if thread_count() != before + 1:
            problems.append("_thread._count() does not count a running thread")
        release_raw.set()
        # fut_callbacks shows a done callback (the deadlock watch reads closures)
        probe_fut = loop.create_future()

        def cb(_: object) -> None:
            pass

        probe_fut.add_done_callback(cb)
        if fut_callbacks(probe_fut) != [cb]:
            problems.append("future._callbacks does not show the done callbacks")
        probe_fut.cancel()
        # idle_pool_worker: a pool worker waiting for a job, and not while it runs one
        import concurrent.futures
        import threading

        running = threading.Event()
        release = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            def job() -> None:
                running.set()
                release.wait(5)

            f = pool.submit(job)
            running.wait(5)
            (worker,) = [t for t in threading.enumerate() if t.ident in pool_idents(pool)]
            if idle_pool_worker(worker.ident, current_frames()):
                problems.append("idle_pool_worker: a worker running a job seen as idle")
            release.set()
            f.result(5)
            for _ in range(500):
                if idle_pool_worker(worker.ident, current_frames()):
                    break
                time.sleep(0.01)
            else:
                problems.append("idle_pool_worker: a waiting worker not seen as idle")

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(probe())
    finally:
        loop.close()
    problems.extend(_selftest_thread_start())
    return problems


def _selftest_thread_start() -> list[str]:
    """csp's shared mode is on before a started thread runs (csp._threads)."""
    import threading

    from csp import _threads

    seen: list[bool] = []
    was, _threads.shared.on = _threads.shared.on, False
    try:
        t = threading.Thread(target=lambda: seen.append(_threads.shared.on))
        t.start()
        t.join()
    finally:
        _threads.shared.on = was or _threads.shared.on
    return [] if seen == [True] else ["on_thread_start: a started thread ran in single mode"]
