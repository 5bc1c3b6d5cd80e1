"""Running the patterns: loops, warm-up, interleaved repetitions, integrity checks.

Fairness. For each loop and each bench, every implementation is warmed up, then the
repetitions run with the implementations interleaved in a rotated order (rep 0: csp,
asyncio, anyio; rep 1: asyncio, anyio, csp; ...), so a slow phase of the machine hits
all of them alike. Each sample runs on a fresh event loop of the same kind: csp under
``csp.run(main, loop=...)`` (what a csp program does), asyncio under
``asyncio.Runner(loop_factory=...)`` and anyio under ``anyio.run(...,
backend_options={"loop_factory": ...})``. The clock starts inside the loop, once the
coroutine runs, and stops when it has joined its tasks; loop creation and teardown are
not timed. A full garbage collection runs before every sample.

Integrity. Every sample's ``(count, checksum)`` is compared with the bench's expected
values. A mismatch, or an exception, is recorded as that implementation's error for the
bench; its numbers are then not reported, and the run exits non-zero.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

import csp
from benchmarks.patterns import BENCHES, Bench, Impl
from benchmarks.threads import THREAD_BENCHES

try:
    import uvloop
except ImportError:  # pragma: no cover - platforms without uvloop
    uvloop = None  # type: ignore[assignment]

LOOPS: tuple[str, ...] = ("asyncio", "uvloop") if uvloop is not None else ("asyncio",)

# Every bench: the default run's (BENCHES) and the extra groups' (the thread rows, in
# --full and under their own --pattern only).
ALL_BENCHES: list[Bench] = [*BENCHES, *THREAD_BENCHES]
ALL_PATTERNS: tuple[str, ...] = tuple(dict.fromkeys(b.pattern for b in ALL_BENCHES))
EXTRA_PATTERNS: tuple[str, ...] = tuple(dict.fromkeys(b.pattern for b in THREAD_BENCHES))

# A sample that takes longer than this is a hang, not a measurement.
SAMPLE_TIMEOUT = 300.0


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if loop == "uvloop":
        if uvloop is None:
            raise ValueError("uvloop is not installed")
        return uvloop.new_event_loop
    if loop == "asyncio":
        return asyncio.new_event_loop
    raise ValueError(f"unknown loop {loop!r}")


def run_sample(impl: str, fn: Impl, n: int, loop: str,
               timeout: float = SAMPLE_TIMEOUT) -> tuple[float, tuple[int, int]]:
    """Run ``fn(n)`` once on a fresh ``loop``; return (seconds, (count, checksum))."""

    async def timed() -> tuple[float, tuple[int, int]]:
        async with asyncio.timeout(timeout):
            t0 = time.perf_counter()
            got = await fn(n)
            t1 = time.perf_counter()
        return t1 - t0, got

    if impl == "csp":
        return csp.run(timed, loop=loop)
    if impl == "anyio":
        return anyio.run(timed, backend="asyncio",
                         backend_options={"loop_factory": loop_factory(loop)})
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(timed())


@dataclass
class Result:
    """The samples of one (bench, loop, implementation)."""

    bench: Bench
    loop: str
    impl: str
    n: int
    samples: list[float] = field(default_factory=list)  # seconds, in repetition order
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.samples)

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples)

    def ops_per_s(self, seconds: float | None = None) -> float:
        s = self.median_s if seconds is None else seconds
        return self.n / s if s > 0 else float("inf")

    @property
    def ops_range(self) -> tuple[float, float]:
        return self.ops_per_s(max(self.samples)), self.ops_per_s(min(self.samples))

    @property
    def ns_per_op(self) -> float:
        return self.median_s / self.n * 1e9


@dataclass
class Ratio:
    """impl vs baseline: median and min-max of the per-repetition ratios.

    Each repetition measures every implementation back to back, so the ratio of one
    repetition's pair is less noisy than a ratio of medians taken apart.
    """

    median: float
    low: float
    high: float


def ratio(res: Result, base: Result) -> Ratio | None:
    if not (res.ok and base.ok) or len(res.samples) != len(base.samples):
        return None
    rs = [b / r for r, b in zip(res.samples, base.samples, strict=True) if r > 0]
    if not rs:
        return None
    return Ratio(statistics.median(rs), min(rs), max(rs))


@dataclass
class Skipped:
    bench: Bench
    reason: str


@dataclass
class Plan:
    benches: list[Bench]
    impls: list[str]
    loops: list[str]
    size: str
    reps: int
    warmup: int

    def steps(self) -> int:
        per = self.warmup + self.reps
        return sum(
            len(self.impls_for(b)) * per * len(self.loops) for b in self.benches
        )

    def impls_for(self, bench: Bench) -> list[str]:
        return [i for i in self.impls if i in bench.impls]


def select_benches(patterns: Iterable[str] | None, extras: bool = False) -> list[Bench]:
    """Benches whose pattern family or key is in ``patterns``; when None, the default
    run's benches, plus the extra groups' (the thread rows) if ``extras``."""
    if not patterns:
        return list(ALL_BENCHES) if extras else list(BENCHES)
    wanted = set(patterns)
    return [b for b in ALL_BENCHES if b.pattern in wanted or b.key in wanted]


def split_available(benches: list[Bench]) -> tuple[list[Bench], list[Skipped]]:
    """Set aside benches that need csp names this csp does not have yet."""
    ok: list[Bench] = []
    skipped: list[Skipped] = []
    for b in benches:
        missing = b.missing()
        if missing:
            names = ", ".join(f"csp.{m}" for m in missing)
            skipped.append(Skipped(b, f"{names} not in this csp ({csp.__version__})"))
        else:
            ok.append(b)
    return ok, skipped


Progress = Callable[[str], None]


def run_plan(plan: Plan, progress: Progress | None = None) -> list[Result]:
    """Run every bench of the plan on every loop; see the module docstring."""
    results: list[Result] = []
    for loop in plan.loops:
        for bench in plan.benches:
            impls = plan.impls_for(bench)
            n = bench.sizes[plan.size]
            by_impl = {i: Result(bench, loop, i, n) for i in impls}
            results.extend(by_impl.values())

            def one(impl: str, record: bool, bench: Bench = bench, loop: str = loop,
                    by_impl: dict[str, Result] = by_impl, n: int = n) -> None:
                res = by_impl[impl]
                if progress is not None:
                    progress(f"{loop} · {bench.key} · {impl}")
                if res.error is not None:
                    return
                gc.collect()
                try:
                    seconds, got = run_sample(impl, bench.impls[impl], n, loop)
                    bench.check(n, got)
                except Exception as exc:  # recorded, reported, and the run fails
                    res.error = f"{type(exc).__name__}: {exc}"
                    return
                if record:
                    res.samples.append(seconds)

            for _ in range(plan.warmup):
                for impl in impls:
                    one(impl, record=False)
            for rep in range(plan.reps):
                k = rep % len(impls)
                for impl in impls[k:] + impls[:k]:
                    one(impl, record=True)
    return results


def baseline_of(results: list[Result], res: Result) -> Result | None:
    for r in results:
        if r.bench is res.bench and r.loop == res.loop and r.impl == res.bench.baseline:
            return r
    return None


def sample_records(results: list[Result]) -> list[dict[str, Any]]:
    """One JSON-able record per (bench, loop, impl) with every sample."""
    out: list[dict[str, Any]] = []
    for r in results:
        base = baseline_of(results, r)
        rat = ratio(r, base) if base is not None else None
        rec: dict[str, Any] = {
            "bench": r.bench.key,
            "pattern": r.bench.pattern,
            "group": r.bench.group,
            "baseline": r.bench.baseline,
            "title": r.bench.title,
            "go_name": r.bench.go_name,
            "go_ref": r.bench.go_ref,
            "loop": r.loop,
            "impl": r.impl,
            "uses": r.bench.labels.get(r.impl, ""),
            "unit": r.bench.unit,
            "n": r.n,
            "samples_s": r.samples,
            "error": r.error,
        }
        if r.ok:
            lo, hi = r.ops_range
            rec.update(
                median_s=r.median_s,
                ops_per_s=r.ops_per_s(),
                ops_per_s_min=lo,
                ops_per_s_max=hi,
                ns_per_op=r.ns_per_op,
            )
        if rat is not None:
            rec.update(ratio_vs_baseline=rat.median, ratio_min=rat.low, ratio_max=rat.high)
        if r.impl == "csp" and r.bench.goal is not None:
            rec["goal"] = r.bench.goal
        out.append(rec)
    return out
