"""Showing the results: rich tables, Go's benchmark format, JSON, a PNG chart."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from benchmarks.gobench import GoRun
from benchmarks.machine import describe
from benchmarks.patterns import GROUPS, Bench, Group
from benchmarks.runner import ALL_BENCHES, Result, Skipped, baseline_of, ratio

IMPL_NAMES = {"csp": "csp", "asyncio": "asyncio", "anyio": "anyio", "janus": "janus",
              "culsans": "culsans"}
NA = "n/a"  # an implementation that has no version of a bench (janus across two loops)


def human(x: float) -> str:
    """3 significant digits with k/M/G: 1234567 -> '1.23M'."""
    if not math.isfinite(x):
        return "inf"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div * 0.9995:  # so that 999,999.7 is "1M", not "1000k"
            v = x / div
            return f"{v:.3g}{suffix}" if v < 100 else f"{v:.0f}{suffix}"
    return f"{x:.3g}"


DASH = "\u2013"  # en dash, for ranges


def human_range(lo: float, hi: float) -> str:
    """'1.5-2.4M' (en dash) when both ends share a suffix, else '980k-1.2M'."""
    a, b = human(lo), human(hi)
    if a[-1:].isalpha() and a[-1:] == b[-1:]:
        return f"{a[:-1]}{DASH}{b}"
    return f"{a}{DASH}{b}"


def _find(results: Sequence[Result], bench: Bench, loop: str, impl: str) -> Result | None:
    for r in results:
        if r.bench is bench and r.loop == loop and r.impl == impl:
            return r
    return None


def groups_of(benches: Sequence[Bench]) -> list[Group]:
    """The groups these benches belong to, in the order they first appear."""
    return [GROUPS[g] for g in dict.fromkeys(b.group for b in benches)]


def group_impls(group: Group, impls: Sequence[str]) -> list[str]:
    """The requested implementations that this group's tables have columns for."""
    return [i for i in impls if i in group.impls]


def goal_text(goal: float | None, rival: str) -> str:
    return f"≥{goal:g}x" if goal is not None else f"> {rival}"


def goal_met(results: Sequence[Result], bench: Bench, loop: str) -> bool | None:
    """Did csp meet its goal on this loop: the ratio goal, and ahead of the group's
    rival (anyio; culsans for the thread rows)?"""
    res = _find(results, bench, loop, "csp")
    if res is None or not res.ok:
        return None
    verdicts: list[bool] = []
    base = baseline_of(list(results), res)
    if bench.goal is not None and base is not None:
        rat = ratio(res, base)
        if rat is None:
            return None
        verdicts.append(rat.median >= bench.goal)
    other = _find(results, bench, loop, bench.peers.rival)
    if other is not None and other.ok:
        verdicts.append(res.median_s < other.median_s)
    return all(verdicts) if verdicts else None


def loop_table(results: Sequence[Result], loop: str, impls: Sequence[str],
               reps: int, go: GoRun | None, group: Group = GROUPS["channels"]) -> Table:
    benches = list(dict.fromkeys(r.bench for r in results
                                 if r.loop == loop and r.bench.group == group.name))
    impls = group_impls(group, impls)
    baseline = group.baseline
    what = f", {group.title}" if group.title else ""
    table = Table(
        title=f"[bold]{loop}[/] loop{what}: ops/s, median of {reps} (min{DASH}max below); "
        f"ratio = ops/s ÷ {baseline}'s on this loop",
        title_justify="left",
        show_lines=True,
    )
    table.add_column("pattern", no_wrap=True)
    for impl in impls:
        table.add_column(IMPL_NAMES[impl], justify="right")
    has_base = baseline in impls
    others = [i for i in impls if i != baseline]
    if has_base:
        for impl in others:
            table.add_column(f"{impl} ratio", justify="right")
        if "csp" in impls:
            table.add_column("csp goal", justify="center")
    if go is not None:
        table.add_column("Go (reference)", justify="right", style="cyan")

    for bench in benches:
        row: list[Text | str] = [Text.assemble(bench.title, "\n", (bench.unit, "dim"))]
        for impl in impls:
            res = _find(results, bench, loop, impl)
            if res is None:
                row.append(Text(NA, style="dim") if bench.not_applicable(impl) else "")
            elif not res.ok:
                row.append(Text("ERROR", style="bold red"))
            else:
                lo, hi = res.ops_range
                row.append(Text.assemble(human(res.ops_per_s()), "\n",
                                         (human_range(lo, hi), "dim")))
        if has_base:
            base = _find(results, bench, loop, baseline)
            for impl in others:
                res = _find(results, bench, loop, impl)
                rat = ratio(res, base) if res is not None and base is not None else None
                if rat is None:
                    row.append("—")
                    continue
                style = "green" if rat.median >= 1.0 else "red"
                row.append(Text.assemble((f"{rat.median:.2f}x", f"bold {style}"), "\n",
                                         (f"{rat.low:.2f}{DASH}{rat.high:.2f}", "dim")))
            if "csp" in impls:
                met = goal_met(results, bench, loop)
                goal = goal_text(bench.goal, group.rival)
                if met is None:
                    row.append(Text(goal, style="dim"))
                else:
                    row.append(Text.assemble(goal, " ", ("✓", "green") if met else ("✗", "red")))
        if go is not None:
            ops = go.ops_per_s(bench.go_ref)
            row.append(human(ops) if ops else "—")
        table.add_row(*row)
    return table


def uses_table(benches: Sequence[Bench], impls: Sequence[str]) -> Table:
    what = "".join(f", {g.title}" for g in groups_of(benches) if g.title)
    table = Table(title=f"what each implementation uses{what}", title_justify="left",
                  show_header=True, box=None, padding=(0, 2))
    table.add_column("pattern", style="dim", no_wrap=True)
    for impl in impls:
        table.add_column(IMPL_NAMES[impl])
    for b in benches:
        table.add_row(b.title, *[b.labels.get(i, "") for i in impls])
    return table


def _secs(s: float) -> str:
    return f"{s:.2f} s" if s >= 1 else f"{s * 1000:.0f} ms"


def scale_table(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(
        title="[bold]scale[/]: N tasks parked on a channel receive, then all woken",
        title_justify="left",
    )
    for col, just in (("impl", "left"), ("loop", "left"), ("N", "right"),
                      ("spawn + park", "right"), ("wake all + finish", "right"),
                      ("RSS growth", "right"), ("bytes/task (RSS)", "right"),
                      ("bytes/task (tracemalloc)", "right"), ("peak RSS", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        if r.get("error"):
            table.add_row(r["impl"], r["loop"], human(r["n"]),
                          Text(r["error"], style="bold red"), "", "", "", "", "")
            continue
        traced = r.get("traced_bytes_per_task")
        table.add_row(
            r["impl"], r["loop"], human(r["n"]),
            _secs(r["spawn_s"]), _secs(r["wake_s"]),
            f"{r['rss_growth_bytes'] / 2**20:.0f} MiB",
            f"{r['rss_bytes_per_task']:.0f}",
            f"{traced:.0f}" if traced is not None else "—",
            f"{r['peak_rss_bytes'] / 2**20:.0f} MiB",
        )
    return table


def scale_goals(rows: Sequence[dict[str, Any]], goal_n: int, rss_goal: int,
                wake_goal: float) -> list[str]:
    """Verdicts on the csp scale goals (they are stated for ``goal_n`` goroutines)."""
    lines = []
    for r in rows:
        if r["impl"] != "csp" or r.get("error"):
            continue
        if r["n"] < goal_n:
            lines.append(f"csp scale goals are stated for N={goal_n:,} (run --full); "
                         f"this run used N={r['n']:,}")
            break
        rss_ok = r["peak_rss_bytes"] < rss_goal
        wake_ok = r["wake_s"] < wake_goal
        lines.append(
            f"csp on {r['loop']}, N={r['n']:,}: peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB "
            f"(goal < {rss_goal / 2**30:g} GiB {'✓' if rss_ok else '✗'}), wake all + finish "
            f"{r['wake_s']:.1f} s (goal < {wake_goal:g} s {'✓' if wake_ok else '✗'})"
        )
    return lines


def print_report(console: Console, results: Sequence[Result], impls: Sequence[str],
                 loops: Sequence[str], reps: int, go: GoRun | None,
                 skipped: Sequence[Skipped], machine_line: str) -> None:
    benches = list(dict.fromkeys(r.bench for r in results))
    groups = groups_of(benches)
    for group in groups:
        for loop in loops:
            if any(r.loop == loop and r.bench.group == group.name for r in results):
                console.print(loop_table(results, loop, impls, reps, go, group))
                console.print()
    for group in groups:
        console.print(uses_table([b for b in benches if b.group == group.name],
                                 group_impls(group, impls)))
        console.print()
    judgeable = [b for b in benches if b.baseline in impls]
    if "csp" in impls and judgeable:
        for loop in loops:
            verdicts = [(b, goal_met(results, b, loop)) for b in judgeable]
            judged = [(b, m) for b, m in verdicts if m is not None]
            if not judged:
                continue
            missed = [b.key for b, m in judged if not m]
            line = f"csp goals on {loop}: {sum(1 for _, m in judged if m)}/{len(judged)} met"
            console.print(line + (f"; missed: {', '.join(missed)}" if missed else ""))
    for s in skipped:
        console.print(f"[yellow]skipped[/] {s.bench.key}: {escape(s.reason)}")
    if go is not None:
        if go.error:
            console.print(f"[yellow]Go reference:[/] {escape(go.error)}")
        else:
            console.print(f"Go (reference): {go.version}, GOMAXPROCS=1, benchmarks/go "
                          "(absolute ops/s; not part of any ratio)")
    for r in results:
        if r.error:
            console.print(f"[bold red]error[/] {r.loop} · {r.bench.key} · {r.impl}: "
                          f"{escape(r.error)}")
    console.print(f"[dim]{machine_line}[/]")


# -- Go's benchmark text format -----------------------------------------------------------


def go_format(results: Sequence[Result], machine: dict[str, Any], go: GoRun | None,
              out: IO[str]) -> None:
    """One line per sample, as ``go test -bench`` prints them, for ``benchstat``.

    Names are ``Benchmark<Pattern>/impl=<impl>/loop=<loop>`` so that ``benchstat -col /impl``
    puts the implementations side by side.
    """
    out.write("goos: linux\n" if machine.get("platform", "").startswith("Linux")
              else f"goos: {machine.get('platform', '')}\n")
    out.write(f"goarch: {machine.get('machine', '')}\n")
    out.write("pkg: benchmarks\n")
    out.write(f"cpu: {machine.get('cpu', '')}\n")
    for r in results:
        if not r.ok:
            continue
        name = f"Benchmark{r.bench.go_name}/impl={r.impl}/loop={r.loop}"
        for s in r.samples:
            out.write(f"{name} \t{r.n:>10d}\t{s / r.n * 1e9:12.1f} ns/op\n")
    if go is not None and not go.error:
        for gname, samples in go.samples.items():
            iters = go.iters.get(gname, [0] * len(samples))
            for it, ns in zip(iters, samples, strict=False):
                out.write(f"Benchmark{gname}/impl=go/loop=go \t{it:>10d}\t{ns:12.1f} ns/op\n")


# -- Markdown (for the README), rendered from the JSON document ---------------------------


def _markdown_group(doc: dict[str, Any], loop: str, group: Group, impls: Sequence[str],
                    benches: Sequence[str], by: dict[tuple[str, str], dict[str, Any]],
                    titles: dict[str, tuple[str, str]], na: dict[str, dict[str, str]],
                    go_names: dict[str, str], go_ns: dict[str, list[float]]) -> list[str]:
    """The Markdown table of one group of benches on one loop."""
    baseline = group.baseline
    others = [i for i in impls if i != baseline]
    head = ["pattern", *impls, *(f"{i} ratio" for i in others if baseline in impls)]
    if "csp" in impls and baseline in impls:
        head.append("csp goal")
    if go_ns:
        head.append("Go (reference)")
    what = f", {group.title}" if group.title else ""
    lines = [f"**{loop} loop**{what}: ops/s, median of {doc['config']['reps']} "
             f"(min{DASH}max); ratio = ops/s {chr(0xF7)} {baseline}'s on this loop", "",
             "| " + " | ".join(head) + " |",
             "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |"]
    for key in benches:
        title, unit = titles[key]
        row = [f"{title} · {unit}"]
        for impl in impls:
            r = by.get((key, impl))
            if r is None or r.get("error"):
                empty = NA if impl in na.get(key, {}) else ""
                row.append("ERROR" if r is not None else empty)
            else:
                row.append(f"{human(r['ops_per_s'])} "
                           f"({human_range(r['ops_per_s_min'], r['ops_per_s_max'])})")
        if baseline in impls:
            for impl in others:
                r = by.get((key, impl))
                if r is None or "ratio_vs_baseline" not in r:
                    row.append("—")
                else:
                    row.append(f"**{r['ratio_vs_baseline']:.2f}x** "
                               f"({r['ratio_min']:.2f}{DASH}{r['ratio_max']:.2f})")
            if "csp" in impls:
                c, a = by.get((key, "csp")), by.get((key, group.rival))
                goal = c.get("goal") if c else None
                verdicts = []
                if c and goal is not None and "ratio_vs_baseline" in c:
                    verdicts.append(c["ratio_vs_baseline"] >= goal)
                if c and a and "median_s" in c and "median_s" in a:
                    verdicts.append(c["median_s"] < a["median_s"])
                text = goal_text(goal, group.rival)
                if verdicts:
                    text += " ✓" if all(verdicts) else " ✗"
                row.append(text)
        if go_ns:
            ns = go_ns.get(go_names.get(key, ""))
            row.append(human(1e9 / statistics.median(ns)) if ns else "—")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def markdown(doc: dict[str, Any]) -> str:
    """Markdown tables of a run, from the document ``--json`` writes."""
    recs = doc["results"]
    impls = doc["config"]["impls"]
    go = doc.get("go") or {}
    go_ns = go.get("ns_per_op") or {}
    titles = {r["bench"]: (r["title"], r["unit"]) for r in recs}
    go_names = {b.key: b.go_ref for b in ALL_BENCHES}
    go_names.update({r["bench"]: r.get("go_ref", r["go_name"]) for r in recs if "go_name" in r})
    na = {b.key: b.extra.get("na", {}) for b in ALL_BENCHES}
    group_of = {r["bench"]: r.get("group", "channels") for r in recs}
    lines: list[str] = []
    for loop in doc["config"]["loops"]:
        by = {(r["bench"], r["impl"]): r for r in recs if r["loop"] == loop}
        if not by:
            continue
        loop_benches = list(dict.fromkeys(r["bench"] for r in recs if r["loop"] == loop))
        for gname in dict.fromkeys(group_of[k] for k in loop_benches):
            group = GROUPS[gname]
            lines += _markdown_group(doc, loop, group, group_impls(group, impls),
                                     [k for k in loop_benches if group_of[k] == gname],
                                     by, titles, na, go_names, go_ns)
    scale_rows = doc.get("scale") or []
    if scale_rows:
        lines += ["**scale**: N tasks parked on a channel receive, then all woken", "",
                  "| impl | loop | N | spawn + park | wake all + finish | bytes/task (RSS) "
                  "| bytes/task (tracemalloc) | peak RSS |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in scale_rows:
            if r.get("error"):
                lines.append(f"| {r['impl']} | {r['loop']} | {r['n']:,} | ERROR | | | | |")
                continue
            traced = r.get("traced_bytes_per_task")
            lines.append(
                f"| {r['impl']} | {r['loop']} | {r['n']:,} | {_secs(r['spawn_s'])} | "
                f"{_secs(r['wake_s'])} | {r['rss_bytes_per_task']:.0f} | "
                f"{'—' if traced is None else f'{traced:.0f}'} | "
                f"{r['peak_rss_bytes'] / 2**20:.0f} MiB |"
            )
        lines.append("")
    return "\n".join(lines)


def modes_markdown(docs: dict[str, dict[str, Any]]) -> str:
    """csp's ratio against each row's baseline, one column per build (``--modes``): the
    asyncio loop / uvloop in each cell."""
    builds = list(docs)
    first = docs[builds[0]]
    loops = first["config"]["loops"]
    ratios: dict[str, dict[tuple[str, str], float]] = {
        b: {(r["bench"], r["loop"]): r["ratio_vs_baseline"] for r in d["results"]
            if r["impl"] == "csp" and "ratio_vs_baseline" in r}
        for b, d in docs.items()}
    titles = {r["bench"]: r["title"] for d in docs.values() for r in d["results"]}
    benches = list(dict.fromkeys(r["bench"] for r in first["results"] if r["impl"] == "csp"))
    lines = [f"csp's ratio (ops/s {chr(0xF7)} the row's baseline's), "
             f"{' / '.join(loops)}, median of {first['config']['reps']}", "",
             "| pattern | " + " | ".join(builds) + " |",
             "| --- | " + " | ".join(["---:"] * len(builds)) + " |"]
    for key in benches:
        cells = []
        for b in builds:
            got = [ratios[b].get((key, loop)) for loop in loops]
            cells.append(" / ".join("—" if x is None else f"{x:.2f}x" for x in got))
        lines.append(f"| {titles[key]} | " + " | ".join(cells) + " |")
    lines += ["", *(f"{b}: {describe(d['machine'])}" for b, d in docs.items())]
    return "\n".join(lines)


# -- JSON ----------------------------------------------------------------------------------


def write_json(path: str | Path, doc: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")


# -- PNG chart ---------------------------------------------------------------------------

_TICKS = (0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 3, 5, 10, 20, 50)
PLOT_HINT = "the --plot chart needs matplotlib: pip install -e '.[plot]'"


def write_plot(path: str | Path, results: Sequence[Result], impls: Sequence[str],
               loops: Sequence[str], machine_line: str) -> None:
    """Bar chart of each implementation's ratio vs its row's baseline (asyncio; janus
    for the thread rows), one panel per loop.

    Raises ImportError with :data:`PLOT_HINT` when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    except ImportError as exc:
        raise ImportError(PLOT_HINT) from exc

    benches = list(dict.fromkeys(r.bench for r in results))
    baselines = list(dict.fromkeys(b.baseline for b in benches))
    others = [i for i in impls if i not in baselines]
    loops = [lp for lp in loops if any(r.loop == lp for r in results)]
    if not others or not loops or not benches:
        raise ValueError("nothing to plot: the chart shows ratios vs asyncio, "
                         "so it needs asyncio and at least one other implementation")
    colors = {"csp": "#1f77b4", "anyio": "#ff7f0e", "culsans": "#2ca02c"}
    fig, axes = plt.subplots(len(loops), 1, figsize=(max(8, 0.9 * len(benches) + 2),
                                                     3.6 * len(loops)), squeeze=False)
    width = 0.8 / len(others)
    for ax, loop in zip(axes[:, 0], loops, strict=True):
        for k, impl in enumerate(others):
            xs, ys, lo, hi = [], [], [], []
            for j, b in enumerate(benches):
                res = _find(results, b, loop, impl)
                base = _find(results, b, loop, b.baseline)
                rat = ratio(res, base) if res is not None and base is not None else None
                if rat is None:
                    continue
                xs.append(j + (k - (len(others) - 1) / 2) * width)
                ys.append(rat.median)
                lo.append(rat.median - rat.low)
                hi.append(rat.high - rat.median)
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=impl,
                   color=colors.get(impl))
            for x, y, h in zip(xs, ys, hi, strict=True):
                ax.annotate(f"{y:.2g}", (x, y + h), textcoords="offset points",
                            xytext=(0, 2), ha="center", fontsize=6)
        for j, b in enumerate(benches):
            if b.goal is not None and "csp" in others:
                ax.hlines(b.goal, j - 0.45, j + 0.45, colors="black", linestyles="dotted",
                          linewidth=1)
        ax.axhline(1.0, color="gray", linewidth=1)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(FixedLocator(_TICKS))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}x"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_ylabel(f"ops/s relative to {' / '.join(baselines)} (higher is faster)")
        ax.set_title(f"{loop} loop", loc="left")
        ax.set_xticks(range(len(benches)))
        ax.set_xticklabels([b.key for b in benches], rotation=30, ha="right", fontsize=8)
        ax.legend(loc="upper right", fontsize=8)
    vs = "; ".join(f"{', '.join(i for i in others if i in g.impls)} vs {g.baseline}"
                   + (f" ({g.title})" if g.title else "") for g in groups_of(benches))
    fig.suptitle(f"{vs} (ratio of ops/s; dotted: csp goal)", fontsize=10)
    fig.text(0.01, 0.005, machine_line, fontsize=6, color="gray")
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    fig.savefig(path, dpi=120)
    plt.close(fig)
