"""csp/_pytest_plugin.py: ``@pytest.mark.csp``, the leak check, ``csp_leak_check``.

Invariants: a marked ``async def`` test runs as main under csp.run (csp.testing.run
with ``virtual_time=True``), fixtures included; it fails when goroutines it started
are alive once they have all had their turn to end or block, with their dump, unless
``leak_check=False``; a deadlock fails it with the DeadlockError report; bad options
are usage errors naming the test; the fixture gives the same check to tests run by
pytest-asyncio and anyio. Each inner test session runs in its own pytester directory.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytest_asyncio")


def run_inner(pytester: pytest.Pytester, src: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner=src)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    # (pytest-benchmark and hypothesis cost 1.5 s per inner session: not needed here)
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:benchmark",
                              "-p", "no:hypothesispytest", *args)


HEADER = "import asyncio\nimport pytest\nimport csp\n\n"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_marked_test_runs_under_csp_run(pytester: pytest.Pytester, loop: str) -> None:
    pytest.importorskip(loop)
    r = run_inner(pytester, HEADER + f"""
@pytest.fixture
def value():
    return 41

@pytest.mark.csp(loop="{loop}")
async def test_it(value, tmp_path):
    ch = csp.Chan[int]()
    csp.go(ch.send, value + 1)
    assert await ch.recv() == 42
    assert csp.num_goroutine() == 1  # main: the test itself is goroutine 1
    assert type(asyncio.get_running_loop()).__module__.startswith("csp")
    assert tmp_path.is_dir()
""")
    r.assert_outcomes(passed=1)


def test_a_failing_assertion_fails_the_test(pytester: pytest.Pytester) -> None:
    r = run_inner(pytester, HEADER + """
@pytest.mark.csp
async def test_it():
    ch = csp.Chan[int](1)
    await ch.send(1)
    assert await ch.recv() == 2
""")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*assert 1 == 2*"])


def test_a_leaking_test_fails_with_the_dump(pytester: pytest.Pytester) -> None:
    r = run_inner(pytester, HEADER + """
@pytest.mark.csp
async def test_leak():
    stuck = csp.Chan[int]()
    for _ in range(2):
        csp.go(stuck.recv)
""")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines([
        "*the test leaked goroutines: 2 goroutines still alive (Go: goleak)",
        "goroutine 2 [[]chan receive[]]:",
        "csp.Chan.recv(...)",
        "created by test_leak in goroutine 1",
        "*test_inner.py:10",
        "... and 1 more goroutine blocked at the same place (goroutine 3)",
    ])


def test_leak_check_false(pytester: pytest.Pytester) -> None:
    r = run_inner(pytester, HEADER + """
@pytest.mark.csp(leak_check=False)
async def test_leak():
    csp.go(csp.Chan[int]().recv)
""")
    r.assert_outcomes(passed=1)


def test_goroutines_that_end_after_the_body_are_no_leak(pytester: pytest.Pytester) -> None:
    r = run_inner(pytester, HEADER + """
@pytest.mark.csp
async def test_it():
    jobs = csp.Chan[int]()
    done = []
    async def worker():
        async for j in jobs:
            done.append(j)
        for _ in range(20):
            await csp.gosched()   # still busy for a while after main's body ends
    for _ in range(4):
        csp.go(worker)
    for i in range(8):
        await jobs.send(i)
    jobs.close()
""")
    r.assert_outcomes(passed=1)


def test_a_deadlock_fails_with_the_report(pytester: pytest.Pytester) -> None:
    r = run_inner(pytester, HEADER + """
@pytest.mark.csp
async def test_stuck():
    await csp.Chan[int]().recv()
""")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines([
        "csp.DeadlockError: all goroutines are asleep - deadlock!",
        "goroutine 1 [[]chan receive[]]:",
    ])
    assert "During handling" not in r.stdout.str()


def test_virtual_time(pytester: pytest.Pytester) -> None:
    r = run_inner(pytester, HEADER + """
@pytest.mark.csp(virtual_time=True)
async def test_it():
    ctx, cancel = csp.context.with_timeout(csp.context.background(), 3600)
    await ctx.done().recv()
    assert asyncio.get_running_loop().time() == 3600.0

@pytest.mark.csp(virtual_time=True, loop="uvloop")
async def test_uvloop():
    pass
""")
    r.assert_outcomes(passed=1, failed=1)
    r.stdout.fnmatch_lines(["*loop='uvloop' cannot be honoured*"])


@pytest.mark.parametrize("mark,text", [
    ("csp(True)", "options are keywords (loop, virtual_time, leak_check), got positional (True,)"),
    ("csp(leaks=False)", "unknown option 'leaks' (expected loop, virtual_time, leak_check)"),
    ("csp(leak_check='no')", "leak_check must be True or False, got 'no'"),
    ("csp(loop='trio')", "unknown loop 'trio'"),
])
def test_bad_options(pytester: pytest.Pytester, mark: str, text: str) -> None:
    r = run_inner(pytester, HEADER + f"""
@pytest.mark.{mark}
async def test_it():
    pass
""")
    assert r.ret != 0
    assert text in r.stdout.str() + r.stderr.str()


def test_a_sync_test_cannot_be_marked(pytester: pytest.Pytester) -> None:
    r = run_inner(pytester, HEADER + """
@pytest.mark.csp
def test_it():
    pass
""")
    assert r.ret != 0
    assert "the test must be an async def" in r.stdout.str() + r.stderr.str()


def test_csp_and_asyncio_markers_together(pytester: pytest.Pytester) -> None:
    r = run_inner(pytester, HEADER + """
@pytest.mark.csp
@pytest.mark.asyncio
async def test_it():
    pass
""")
    assert r.ret != 0
    assert ("has both @pytest.mark.csp and @pytest.mark.asyncio: use one"
            in r.stdout.str() + r.stderr.str())


def test_leak_check_fixture_with_pytest_asyncio(pytester: pytest.Pytester) -> None:
    r = run_inner(pytester, HEADER + """
@pytest.mark.asyncio
async def test_clean(csp_leak_check):
    ch = csp.Chan[int]()
    csp.go(ch.send, 1)
    assert await ch.recv() == 1

@pytest.mark.asyncio
async def test_leak(csp_leak_check):
    csp.go(csp.Chan[int]().recv)

@pytest.mark.asyncio
async def test_unchecked():
    csp.go(csp.Chan[int]().recv)
""")
    r.assert_outcomes(passed=2, failed=1)
    r.stdout.fnmatch_lines([
        "*test_leak*",
        "the test leaked goroutines: 1 goroutine still alive (Go: goleak)",
        "goroutine * [[]chan receive[]]:",
        "created by test_leak",
    ])


def test_leak_check_fixture_with_anyio(pytester: pytest.Pytester) -> None:
    pytest.importorskip("anyio")
    r = run_inner(pytester, HEADER + """
@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.anyio
async def test_clean(csp_leak_check):
    ch = csp.Chan[int]()
    csp.go(ch.send, 1)
    assert await ch.recv() == 1

@pytest.mark.anyio
async def test_leak(csp_leak_check):
    csp.go(csp.Chan[int]().recv)
""")
    r.assert_outcomes(passed=1, failed=1)
    r.stdout.fnmatch_lines(["the test leaked goroutines: 1 goroutine still alive*"])


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    r = pytester.runpytest("-p", "no:benchmark", "-p", "no:hypothesispytest", "--markers")
    r.stdout.fnmatch_lines(["@pytest.mark.csp(loop='auto', virtual_time=False, leak_check=True)*"])


def test_a_tuple_of_loops_makes_one_test_per_loop(pytester: pytest.Pytester) -> None:
    pytest.importorskip("uvloop")
    r = run_inner(pytester, HEADER + """
seen = []

@pytest.mark.csp(loop=("asyncio", "uvloop"))
async def test_it(tmp_path):
    seen.append(type(asyncio.get_running_loop()).__mro__[2].__module__)
    assert tmp_path.is_dir()

def test_seen():
    assert seen == ["asyncio.unix_events", "uvloop"]
""", "-v")
    r.assert_outcomes(passed=3)
    r.stdout.fnmatch_lines(["*test_it[[]asyncio[]] PASSED*", "*test_it[[]uvloop[]] PASSED*"])
