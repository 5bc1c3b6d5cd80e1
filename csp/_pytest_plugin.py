"""The pytest plugin (``pytest11`` entry point ``csp``): ``@pytest.mark.csp`` and the
goroutine leak check (Go: uber's goleak).

* ``@pytest.mark.csp`` on an ``async def`` test runs it as main under ``csp.run``
  (``loop=`` as csp.run's; a tuple such as ``loop=("asyncio", "uvloop")`` makes one
  test per loop) or, with ``virtual_time=True``, under ``csp.testing.run``.
  A test that deadlocks fails with the ``DeadlockError`` report instead of hanging.
* The leak check (on by default, ``leak_check=False`` turns it off): when the test's
  body has returned, the goroutines it started get their turn until each has ended or
  is blocked (parked in csp, or awaiting a future); any still alive fail the test, with
  their dump. ``csp.run`` then cancels them as usual.
* The ``csp_leak_check`` fixture gives the same check to tests that other plugins run
  (pytest-asyncio, anyio): goroutines started during the test and still alive when it
  ends fail it.

Disable the plugin with ``-p no:csp``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

from csp import _compat, _dump, _sched
from csp._deadlock import goroutine_entries

__all__ = ["csp_leak_check"]

_OPTIONS = ("loop", "virtual_time", "leak_check")
SETTLE_ROUNDS = 1000
"""How many loop turns the leak check gives goroutines to end or block."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "csp(loop='auto', virtual_time=False, leak_check=True): run an async def test as "
        "main under csp.run (csp.testing.run with virtual_time=True); fail it if "
        "goroutines it started outlive it",
    )


_LOOP_PARAM = "csp_loop"
"""The parameter a ``loop=("asyncio", "uvloop")`` marker adds: one test per loop."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    mark = metafunc.definition.get_closest_marker("csp")
    loops = mark.kwargs.get("loop") if mark is not None else None
    if isinstance(loops, (tuple, list)):
        if not loops or not all(isinstance(x, str) for x in loops):
            raise pytest.UsageError(
                f"@pytest.mark.csp on {metafunc.definition.nodeid}: loop must be a loop "
                f"name or a non-empty tuple of them, got {loops!r}")
        metafunc.fixturenames.append(_LOOP_PARAM)  # (not an argument of the test)
        metafunc.parametrize(_LOOP_PARAM, list(loops), ids=list(loops))


def _options(item: pytest.Function, mark: pytest.Mark) -> tuple[str, bool, bool]:
    where = f"@pytest.mark.csp on {item.nodeid}"
    if mark.args:
        raise pytest.UsageError(f"{where}: options are keywords ({', '.join(_OPTIONS)}), "
                                f"got positional {mark.args!r}")
    unknown = sorted(set(mark.kwargs) - set(_OPTIONS))
    if unknown:
        raise pytest.UsageError(f"{where}: unknown option {unknown[0]!r} "
                                f"(expected {', '.join(_OPTIONS)})")
    loop = mark.kwargs.get("loop", "asyncio" if mark.kwargs.get("virtual_time") else "auto")
    callspec = getattr(item, "callspec", None)
    if isinstance(loop, (tuple, list)) and callspec is not None:
        loop = callspec.params[_LOOP_PARAM]  # (this test's loop of the tuple)
    virtual = mark.kwargs.get("virtual_time", False)
    leaks = mark.kwargs.get("leak_check", True)
    for name, v in (("virtual_time", virtual), ("leak_check", leaks)):
        if v is not True and v is not False:
            raise pytest.UsageError(f"{where}: {name} must be True or False, got {v!r}")
    return loop, virtual, leaks


def _alive(sched: _sched.Scheduler, skip: object) -> list[asyncio.Task[Any]]:
    return [t for t in list(sched.goroutines) if t is not skip and not t.done()]


def _settled(sched: _sched.Scheduler, skip: object) -> bool:
    """Every goroutine but ``skip`` has ended or is blocked (parked in csp, or its Task
    awaits a future), and nothing is queued to run."""
    if sched.runq:
        return False
    for t, g in list(sched.goroutines.items()):
        if t is skip or t.done():
            continue
        if g.parked() is None and not g.foreign:
            return False
    return True


def leak_report(sched: _sched.Scheduler, tasks: list[asyncio.Task[Any]], what: str) -> str:
    """The failure message: how many goroutines leaked, then their dump."""
    ids = {sched.goroutines[t].id for t in tasks if t in sched.goroutines}
    entries = [e for e in goroutine_entries(sched, None) if e.gid in ids]
    noun = "goroutine" if len(ids) == 1 else "goroutines"
    return (f"{what}: {len(ids)} {noun} still alive (Go: goleak)\n\n"
            + "\n".join(_dump.render(entries)))


async def _settle(sched: _sched.Scheduler, skip: object) -> None:
    for _ in range(SETTLE_ROUNDS):
        if _settled(sched, skip):
            return
        await asyncio.sleep(0)


def _run_marked(item: pytest.Function, mark: pytest.Mark) -> None:
    import csp
    import csp.testing

    loop, virtual, leak_check = _options(item, mark)
    fn = item.obj
    kwargs = {a: item.funcargs[a] for a in item._fixtureinfo.argnames if a != _LOOP_PARAM}
    failures: list[str] = []

    async def main() -> None:
        await fn(**kwargs)
        if leak_check:
            sched = _sched.scheduler()
            me = _compat.get_current_task(asyncio.get_running_loop())
            await _settle(sched, me)
            alive = _alive(sched, me)
            if alive:
                failures.append(leak_report(sched, alive, "the test leaked goroutines"))

    try:
        if virtual:
            csp.testing.run(main, loop=loop)
        else:
            csp.run(main, loop=loop, sigquit=False)
    except csp.DeadlockError as exc:
        failures.append(f"csp.DeadlockError: {exc}")  # (failed below: no chained report)
    if failures:
        pytest.fail(failures[0], pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    mark = pyfuncitem.get_closest_marker("csp")
    if mark is None:
        return None
    if pyfuncitem.get_closest_marker("asyncio") is not None:
        raise pytest.UsageError(
            f"{pyfuncitem.nodeid} has both @pytest.mark.csp and @pytest.mark.asyncio: "
            "use one (csp runs the test under csp.run; for a pytest-asyncio test use "
            "the csp_leak_check fixture)")
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        raise pytest.UsageError(
            f"@pytest.mark.csp on {pyfuncitem.nodeid}: the test must be an async def")
    _run_marked(pyfuncitem, mark)
    return True


def _all_goroutines() -> dict[asyncio.Task[Any], _sched.Scheduler]:
    return {t: s for s in list(_sched.schedulers.values()) for t in list(s.goroutines)}


_BEFORE = pytest.StashKey[set[asyncio.Task[Any]]]()
_CHECKED = pytest.StashKey[bool]()


def _fresh(item: pytest.Item) -> dict[asyncio.Task[Any], _sched.Scheduler]:
    before = item.stash[_BEFORE]
    return {t: s for t, s in _all_goroutines().items() if t not in before}


def _fail_if_alive(fresh: dict[asyncio.Task[Any], _sched.Scheduler]) -> None:
    by_sched: dict[int, tuple[_sched.Scheduler, list[asyncio.Task[Any]]]] = {}
    for t, s in fresh.items():
        if not t.done():
            by_sched.setdefault(id(s), (s, []))[1].append(t)
    if by_sched:
        pytest.fail("\n\n".join(leak_report(s, ts, "the test leaked goroutines")
                                 for s, ts in by_sched.values()), pytrace=False)


async def _check_in_loop(item: pytest.Item) -> None:
    """The check, from the test's own loop right after its body (before its plugin
    tears the loop down and cancels what is left)."""
    item.stash[_CHECKED] = True
    fresh = _fresh(item)
    loop = asyncio.get_running_loop()
    for sched in {id(s): s for s in fresh.values()}.values():
        if sched.loop is loop:
            await _settle(sched, _compat.get_current_task(loop))
    _fail_if_alive(fresh)


def _check_leaks(item: pytest.Item) -> None:
    """The check from outside any loop (a sync test; a body that did not finish):
    idle open loops first run until their goroutines have ended or blocked."""
    if _BEFORE not in item.stash or item.stash.get(_CHECKED, False):
        return
    item.stash[_CHECKED] = True
    fresh = _fresh(item)
    for sched in {id(s): s for s in fresh.values()}.values():
        loop = sched.loop
        if not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(_settle(sched, None))
    _fail_if_alive(fresh)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    result = yield
    _check_leaks(item)  # (done already from the loop for async tests)
    return result


@pytest.fixture
def csp_leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if goroutines it started are still alive when it ends (Go:
    goleak), for tests other plugins run (pytest-asyncio, anyio). For an ``async def``
    test the check runs in the test's own loop right after its body, once every
    goroutine has had its turn to end or block; the failure shows their dump."""
    item = request.node
    item.stash[_BEFORE] = set(_all_goroutines())
    orig = getattr(item, "obj", None)
    if not inspect.iscoroutinefunction(orig):
        yield
        return
    assert orig is not None

    @functools.wraps(orig)
    async def checked(*args: Any, **kwargs: Any) -> Any:
        result = await orig(*args, **kwargs)
        await _check_in_loop(item)
        return result

    item.obj = checked
    try:
        yield
    finally:
        item.obj = orig
