"""The differential harness: one scenario, run by a goroutine and by the Tasks asyncio
steps, must give one trace.

A *program* is ``async def program(kind) -> trace``: it starts the task(s) under test
with :func:`start` and returns, as plain data, what it observed (values, exception
types and messages, ``cancelling()`` counts, what other tasks saw, how tasks ended).
:func:`run_kinds` runs it once per kind, each on a fresh loop (asyncio or uvloop):

* ``"task"``: the tasks under test are plain ``asyncio.Task`` objects. csp does not
  drive them (they park on a csp waiter as on a Future and asyncio steps them), so this
  is asyncio's behaviour: the reference;
* ``"go"``: they are goroutines (``csp.go``): csp drives them between csp parks
  (``csp._drive``). API.md allows no difference here except where a test says so (a
  goroutine's bare yield follows Go's order; its Task's coroutine is csp's driver,
  which ``get_coro()`` returns; while csp drives it the Task's ``wait_for=`` is it);
* ``"subclass"``: every Task of the program (the ones under test, the program's own
  task, helpers, TaskGroup and anyio children) is a :class:`SubclassTask`, made by the
  loop's task factory: csp must not care what class a Task is;
* ``"eager"`` and ``"go_eager"`` (CPython 3.12+): every Task is created by
  ``asyncio.create_eager_task_factory`` (it runs its first step inside
  ``create_task``), and the tasks under test are plain Tasks, or goroutines. An eager
  start changes who runs first, so ``"go_eager"`` is compared with ``"eager"``, not
  with the lazy reference.

:func:`same` asserts that every kind gave its reference's trace and returns the
reference trace, which the test then compares with the expected one.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from conftest import loop_factory

import csp
from csp import _sched, _waiter

Program = Callable[[str], Coroutine[Any, Any, Any]]

EAGER = sys.version_info >= (3, 12)
KINDS: tuple[str, ...] = ("go", "task", "subclass") + (("go_eager", "eager") if EAGER else ())
REFERENCE: dict[str, str] = {"go": "task", "task": "task", "subclass": "task",
                             "go_eager": "eager", "eager": "eager"}
GOROUTINE_KINDS = frozenset({"go", "go_eager"})


class SubclassTask(asyncio.Task):  # type: ignore[type-arg]
    """A Task subclass: csp must treat it exactly as ``asyncio.Task``."""


def _subclass_factory(loop: asyncio.AbstractEventLoop, coro: Any,
                      **kw: Any) -> asyncio.Task[Any]:
    return SubclassTask(coro, loop=loop, **kw)


def task_factory(kind: str) -> Any:
    """The loop task factory of ``kind`` (None: the loop's own)."""
    if kind == "subclass":
        return _subclass_factory
    if kind in ("eager", "go_eager"):
        return asyncio.create_eager_task_factory(asyncio.Task)  # type: ignore[attr-defined]
    return None


def kinds_for(loop_name: str) -> tuple[str, ...]:
    """The kinds that run on ``loop_name``. (uvloop passes ``eager_start=`` to a task
    factory, which CPython 3.13.0's ``create_eager_task_factory()`` rejects: not csp.)"""
    if loop_name == "uvloop" and sys.version_info >= (3, 13):
        return tuple(k for k in KINDS if "eager" not in k)
    return KINDS


def start(kind: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Start the task under test: a goroutine, or a Task the loop makes (plain, a
    subclass, eager: the kind's task factory is installed)."""
    if kind in GOROUTINE_KINDS:
        return csp.go(coro)
    return asyncio.get_running_loop().create_task(coro)


def run_kind(kind: str, loop_name: str, program: Program) -> Any:
    """Run ``program(kind)`` in a Task of its own on a fresh loop; return its result."""
    async def top() -> Any:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(task_factory(kind))
        try:
            return await loop.create_task(program(kind))
        finally:
            loop.set_task_factory(None)

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as r:
        return r.run(top())


def run_kinds(loop_name: str, program: Program,
              kinds: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {k: run_kind(k, loop_name, program) for k in (kinds or kinds_for(loop_name))}


def same(out: dict[str, Any]) -> Any:
    """Every kind's trace equals its reference's; returns the lazy reference's."""
    for kind, got in out.items():
        ref = out[REFERENCE[kind]]
        assert got == ref, f"{kind} != {REFERENCE[kind]}:\n  {got!r}\n  {ref!r}"
    return out["task"]


def differential(loop_name: str, program: Program) -> Any:
    """``same(run_kinds(loop_name, program))``."""
    return same(run_kinds(loop_name, program))


def is_goroutine(kind: str) -> bool:
    return kind in GOROUTINE_KINDS


def driven(t: asyncio.Task[Any]) -> bool:
    """csp drives ``t`` now: it is a goroutine whose Task is parked on its proxy."""
    g = _sched.scheduler().goroutines.get(t)
    return g is not None and g.proxy is not None


def parked(t: asyncio.Task[Any]) -> bool:
    """``t`` is parked on a pending csp waiter (a completed one whose task has not
    resumed yet does not count)."""
    w = _waiter.parked_on(t)
    return w is not None and w.state is _waiter.PENDING


def check_driven(kind: str, t: asyncio.Task[Any]) -> None:
    """The scenario is what it says: a goroutine that parked in csp is driven by csp;
    a plain Task never is."""
    assert driven(t) is is_goroutine(kind), (kind, t)


# -- helpers for programs -------------------------------------------------------------


def me() -> asyncio.Task[Any]:
    t = asyncio.current_task()
    assert t is not None
    return t


async def spin(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def until(pred: Callable[[], bool], n: int = 50) -> None:
    """Yield to the loop until ``pred()`` holds (at most ``n`` times)."""
    for _ in range(n):
        if pred():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def finish(*tasks: asyncio.Task[Any]) -> None:
    """Wait for the scenario's tasks; a hang fails (they are cancelled after 2 s)."""
    try:
        async with asyncio.timeout(2):
            await asyncio.wait(tasks)
    except TimeoutError:
        for t in tasks:
            t.cancel()
        raise AssertionError("a task of the scenario hangs") from None


def resolve_soon(f: asyncio.Future[Any], v: Any) -> None:
    """Someone else (a loop callback) gives ``f`` its result, unless it is done."""
    f.get_loop().call_soon(lambda: f.done() or f.set_result(v))


def new_future(loop: asyncio.AbstractEventLoop, fut: str = "c") -> asyncio.Future[Any]:
    """An asyncio Future (C), or a pure-Python one (``asyncio.futures._PyFuture``, as
    third-party future classes are)."""
    if fut == "py":
        return asyncio.futures._PyFuture(loop=loop)  # type: ignore[attr-defined,no-any-return]
    return loop.create_future()


_ADDR = re.compile(r"0x[0-9a-fA-F]+")
# (CPython 3.13.0's loop.create_task names a task made by a task factory 'None')
_TASKNAME = re.compile(r"Task-\d+|(?<=name=')None(?=')")
# anyio's cancel reason names the scope and the cancelling task (with its repr)
_SCOPE = re.compile(r"cancel scope [0-9a-f]+( by <.*>)?$")
_ANYIO_MSG = re.compile(r"^Cancelled via cancel scope .*")
# a goroutine's Task has csp's done callback: not part of what is compared
_GO_CB = re.compile(r" cb=\[Scheduler\.goroutine_done\(\)\]|Scheduler\.goroutine_done\(\), ")


def norm(x: Any) -> Any:
    """Strings without addresses, task numbers, task class names and anyio's scope
    names; exceptions as (type name, args); containers recursively."""
    if isinstance(x, str):
        s = _ADDR.sub("0x", x)
        s = _TASKNAME.sub("Task-N", s)
        s = _ANYIO_MSG.sub("anyio scope", s)
        s = _SCOPE.sub("cancel scope N", s)
        s = s.replace("SubclassTask", "Task")
        return _GO_CB.sub("", s)
    if isinstance(x, BaseException):
        return (type(x).__name__, norm(x.args))
    if isinstance(x, (list, tuple)):
        return type(x)(norm(v) for v in x)
    return x


def outcome_of(t: asyncio.Task[Any]) -> tuple[Any, ...]:
    """How the task ended, as data. For a cancelled task, the CancelledError's args as
    two successive ``result()`` calls see them (asyncio keeps a ``cancel(msg)``
    message for both)."""
    if not t.done():
        return ("pending",)
    if t.cancelled():
        msgs = []
        for _ in range(2):
            try:
                t.result()
            except asyncio.CancelledError as e:
                msgs.append(norm(e.args))
        return ("cancelled", *msgs)
    exc = t.exception()
    if exc is not None:
        return ("exception", norm(exc))
    return ("result", norm(t.result()))
