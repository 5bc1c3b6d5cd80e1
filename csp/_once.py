"""Go 1.21's ``sync.OnceFunc``, ``OnceValue`` and ``OnceValues``: ``once_func``,
``once_value``, ``once_values``.

Strategy. Each wraps ``f`` in a callable that runs it at most once to completion and
remembers the outcome: the value, or the exception (Go: a panic in ``f`` panics again,
with the same value, on every call). A plain ``f`` gives a plain callable, guarded by
a ``threading.Lock`` (callers in any thread wait for the first call, as Go's do); an
``async def f`` gives an async callable built on :class:`csp.Once`, so concurrent
callers park on csp's waiter and a first call that is *cancelled* hands the call to
the next caller (the outcome of a cancelled call is not remembered).

Invariants (per callable): ``f`` is dropped once an outcome is remembered; the
outcome is assigned once; the same exception object is raised by every call, each
time with the traceback of the call that ran ``f`` (so tracebacks do not grow).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar, overload

from csp._runtime import _is_coro_fn
from csp._sync import Once

__all__ = ["once_func", "once_value", "once_values"]

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")


class _Outcome:
    """What the one completed call of ``f`` gave: a value or an exception."""

    __slots__ = ("done", "exc", "tb", "value")

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None
        self.exc: BaseException | None = None
        self.tb: TracebackType | None = None

    def run(self, f: Callable[[], Any]) -> None:
        try:
            self.value = f()
        except BaseException as exc:
            self.exc, self.tb = exc, exc.__traceback__
        self.done = True

    async def arun(self, f: Callable[[], Awaitable[Any]]) -> None:
        try:
            self.value = await f()
        except asyncio.CancelledError:
            raise  # not an outcome: the next caller runs f (as Once)
        except BaseException as exc:
            self.exc, self.tb = exc, exc.__traceback__
        self.done = True

    def result(self) -> Any:
        exc = self.exc
        if exc is not None:
            raise exc.with_traceback(self.tb)
        return self.value


def _once(who: str, f: Any) -> Callable[..., Any]:
    if not callable(f):
        raise TypeError(f"{who}: f must be callable, got {f!r}")
    out = _Outcome()
    box: list[Any] = [f]  # f, until an outcome is remembered

    if _is_coro_fn(f):
        once = Once()

        async def body() -> None:
            await out.arun(box[0])
            box.clear()

        async def acall() -> Any:
            if not out.done:
                await once.do(body)  # (returns once some caller's body completed)
            return out.result()

        acall.__doc__ = f"{who}({getattr(f, '__qualname__', f)!r}): runs it once."
        return acall

    lock = threading.Lock()

    def call() -> Any:
        if not out.done:
            with lock:
                if not out.done:
                    out.run(box[0])
                    box.clear()
        return out.result()

    call.__doc__ = f"{who}({getattr(f, '__qualname__', f)!r}): runs it once."
    return call


@overload
def once_func(  # type: ignore[overload-overlap]  # (an async f is also a callable)
    f: Callable[[], Coroutine[Any, Any, object]]
) -> Callable[[], Coroutine[Any, Any, None]]: ...


@overload
def once_func(f: Callable[[], object]) -> Callable[[], None]: ...


def once_func(f: Any) -> Any:
    """A callable that calls ``f()`` only once (Go 1.21: ``sync.OnceFunc``).

    Every call returns None; concurrent callers wait for the first call; if ``f``
    raised, every call raises that same exception. An ``async def f`` gives an async
    callable (a cancelled first call is not remembered: the next caller runs ``f``).
    Example::

        init = csp.once_func(setup)
        init(); init()   # setup ran once
    """
    call = _once("once_func", f)
    if inspect.iscoroutinefunction(call):
        async def afunc() -> None:
            await call()

        afunc.__doc__ = call.__doc__
        return afunc

    def func() -> None:
        call()

    func.__doc__ = call.__doc__
    return func


@overload
def once_value(f: Callable[[], Coroutine[Any, Any, T]]) -> Callable[[], Coroutine[Any, Any, T]]: ...


@overload
def once_value(f: Callable[[], T]) -> Callable[[], T]: ...


def once_value(f: Any) -> Any:
    """A callable that calls ``f()`` once and returns its value on every call (Go 1.21:
    ``sync.OnceValue``); if ``f`` raised, every call raises that same exception.
    Async ``f``: an async callable (see :func:`once_func`). Example::

        config = csp.once_value(load_config)
        assert config() is config()
    """
    return _once("once_value", f)


@overload
def once_values(
    f: Callable[[], Coroutine[Any, Any, tuple[T1, T2]]]
) -> Callable[[], Coroutine[Any, Any, tuple[T1, T2]]]: ...


@overload
def once_values(f: Callable[[], tuple[T1, T2]]) -> Callable[[], tuple[T1, T2]]: ...


def once_values(f: Any) -> Any:
    """Like :func:`once_value` for an ``f`` that returns two values (Go 1.21:
    ``sync.OnceValues``, typically a value and an error): every call returns the same
    pair. Example::

        read = csp.once_values(lambda: (open("x").read(), None))
        data, err = read()
    """
    return _once("once_values", f)
