"""The Go reference: the same patterns in Go (benchmarks/go), run with ``go test -bench``.

Go's numbers are absolute (ops/s of Go itself), never part of a ratio: they show what
the same program costs where goroutines and channels are built into the runtime. They
run with ``-cpu 1`` (GOMAXPROCS=1), the single-core setting that matches one asyncio
loop.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent / "go"

# "BenchmarkSPSC/cap=64-2   2823292   43.28 ns/op" (the -N suffix is GOMAXPROCS when > 1)
_LINE = re.compile(r"^Benchmark(?P<name>\S+?)(?:-\d+)?\s+(?P<iters>\d+)\s+(?P<ns>[\d.]+) ns/op")


@dataclass
class GoRun:
    version: str
    cpu: int
    samples: dict[str, list[float]] = field(default_factory=dict)  # go_name -> ns/op
    iters: dict[str, list[int]] = field(default_factory=dict)
    error: str | None = None

    def ns_per_op(self, go_name: str) -> float | None:
        s = self.samples.get(go_name)
        return statistics.median(s) if s else None

    def ops_per_s(self, go_name: str) -> float | None:
        ns = self.ns_per_op(go_name)
        return 1e9 / ns if ns else None


def find_go() -> str | None:
    return shutil.which("go")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Never fetch anything: no dependencies, no toolchain downloads.
    env.update(GOTOOLCHAIN="local", GOPROXY="off", GOFLAGS="-mod=mod", GO111MODULE="on")
    return env


def parse(text: str) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m:
            out.setdefault(m["name"], []).append((int(m["iters"]), float(m["ns"])))
    return out


def run_go(names: list[str], benchtime: str = "200ms", count: int = 1,
           timeout: float = 600.0) -> GoRun:
    """Run the Go benchmarks whose names are in ``names``; never raises for a Go failure."""
    go = find_go()
    if go is None:
        return GoRun("", 1, error="no `go` toolchain on PATH")
    env = _env()
    version = subprocess.run([go, "version"], capture_output=True, text=True, env=env,
                             check=False).stdout.strip()
    tops = sorted({n.split("/")[0] for n in names})
    pattern = "^Benchmark(" + "|".join(re.escape(t) for t in tops) + ")$"
    cmd = [go, "test", "-run", "^$", "-bench", pattern, "-benchtime", benchtime,
           "-count", str(count), "-cpu", "1"]
    run = GoRun(version, 1)
    try:
        proc = subprocess.run(cmd, cwd=GO_DIR, capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        run.error = f"go test failed to run: {exc}"
        return run
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        run.error = "go test failed: " + (" / ".join(lines[-3:]) if lines else "no output")
    for name, pairs in parse(proc.stdout).items():
        run.samples[name] = [ns for _, ns in pairs]
        run.iters[name] = [it for it, _ in pairs]
    return run
