"""logstats: summarize an access log with a pipeline of goroutines, under a deadline,
stopping everything at the first malformed line.

Go pattern: a feeder goroutine, a fanned-out pool of workers, `errgroup.WithContext`
(the first error cancels the rest) and `context.WithTimeout` for the whole job; the
worked example of docs/porting.md, which shows the Go original in full and ports it
step by step. Shows: ErrGroup.with_context, context.with_timeout, select on
`ctx.done()`, a blocking library call moved off the loop with `asyncio.to_thread`,
Go durations as float seconds, `(value, error)` returns as exceptions.

Run it on the built-in sample (`python examples/log_stats.py`) or on a file of lines
like `10.0.0.7 GET /api/users 200 87ms` (`python examples/log_stats.py access.log`).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from dataclasses import dataclass, field

import csp
from csp import context


@dataclass
class Record:
    ip: str
    path: str
    status: int
    latency: float  # seconds (Go: time.Duration)


@dataclass
class Stats:
    # Go guards these with a sync.Mutex. Here add() never awaits, so no other
    # goroutine can run in the middle of it: no lock needed (keep one if it awaited).
    by_status: dict[int, int] = field(default_factory=dict)
    by_owner: dict[str, int] = field(default_factory=dict)
    slow: int = 0

    def add(self, r: Record, owner: str) -> None:
        self.by_status[r.status] = self.by_status.get(r.status, 0) + 1
        self.by_owner[owner] = self.by_owner.get(owner, 0) + 1
        if r.latency > 0.250:  # Go: 250*time.Millisecond
            self.slow += 1


class ParseError(ValueError):
    """Go returned `fmt.Errorf(...)`; Python raises."""


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def parse_duration(s: str) -> float:
    """A small time.ParseDuration: "87ms" -> 0.087 (float seconds)."""
    m = _DURATION.fullmatch(s)
    if m is None:
        raise ValueError(s)
    return float(m[1]) * _UNITS[m[2]]


def parse(line: str) -> Record:
    """Turn "10.0.0.7 GET /api/users 200 87ms" into a Record."""
    f = line.split()
    if len(f) != 5:
        raise ParseError(f'malformed line "{line}"')
    try:
        status = int(f[3])
    except ValueError:
        raise ParseError(f'bad status in "{line}"') from None
    try:
        latency = parse_duration(f[4])
    except ValueError:
        raise ParseError(f'bad latency in "{line}"') from None
    return Record(ip=f[0], path=f[2], status=status, latency=latency)


def slow_lookup(ip: str) -> str:
    """The slow, *blocking* part (think socket.gethostbyaddr or a whois client)."""
    time.sleep(0.002)  # blocking: fine in a thread, fatal in a goroutine
    return "internal" if ip.startswith("10.") else "external"


class Owners:
    """Caches the slow lookup."""

    def __init__(self) -> None:
        self.cache: dict[str, str] = {}

    async def lookup(self, ip: str) -> str:
        owner = self.cache.get(ip)
        if owner is not None:
            return owner
        # Go's goroutine may block in a syscall; ours must not block the loop.
        owner = await asyncio.to_thread(slow_lookup, ip)
        self.cache[ip] = owner
        return owner


async def run(ctx: context.Context, lines: list[str], workers: int,
              timeout: float = 2.0) -> Stats:
    ctx, cancel = context.with_timeout(ctx, timeout)  # Go: 2*time.Second
    try:
        g, gctx = csp.ErrGroup.with_context(ctx)
        raw = csp.Chan[str]()

        async def feed() -> None:  # stage 1: feed the lines
            try:
                for line in lines:
                    i, _ = await csp.select((raw.send, line), gctx.done().recv)
                    if i == 1:
                        raise gctx.err() or context.Canceled()
            finally:
                raw.close()  # defer close(raw)

        stats, owners = Stats(), Owners()

        async def work() -> None:  # stage 2: parse, look up, count; fanned out
            async for line in raw:
                r = parse(line)  # raises: cancels gctx, the feeder stops, so does everyone
                stats.add(r, await owners.lookup(r.ip))

        g.go(feed)
        for _ in range(workers):
            g.go(work)
        await g.wait()  # raises the first error
        return stats
    finally:
        cancel()  # defer cancel()


def sample() -> list[str]:
    """A deterministic access log: 240 lines from 12 hosts (6 internal, 6 external)."""
    paths = ["/", "/api/users", "/api/orders", "/static/app.js", "/login"]
    statuses = [200, 200, 200, 304, 404, 500, 200, 201]
    lines = []
    for i in range(240):
        ip = f"10.0.0.{i % 12}" if i % 2 else f"203.0.113.{i % 12}"
        latency = f"{(i * 37) % 400}ms"
        lines.append(f"{ip} GET {paths[i % 5]} {statuses[i % 8]} {latency}")
    return lines


def report(stats: Stats) -> None:
    for code in sorted(stats.by_status):
        print(f"status {code}: {stats.by_status[code]}")
    print(f"internal: {stats.by_owner.get('internal', 0)}, "
          f"external: {stats.by_owner.get('external', 0)}, slow (> 250ms): {stats.slow}")


async def main(path: str | None = None) -> int:
    """With a path, behave like the Go program; without, run the built-in demo."""
    if path is not None:
        with open(path) as f:
            lines = f.read().splitlines()
        try:
            report(await run(context.background(), lines, 4))
        except (ParseError, context.DeadlineExceeded) as err:
            print("logstats:", err)
            return 1  # Go: os.Exit(1)
        return 0
    lines = sample()
    report(await run(context.background(), lines, 4))
    # A malformed line: the first error stops every stage.
    bad = [*lines[:100], "oops", *lines[100:]]
    # A deadline too short for the slow lookups.
    for bad_lines, timeout in ((bad, 2.0), (lines, 0.001)):
        try:
            report(await run(context.background(), bad_lines, 4, timeout))
        except (ParseError, context.DeadlineExceeded) as err:
            print("logstats:", err)
    return 0


if __name__ == "__main__":
    sys.exit(csp.run(main, *sys.argv[1:2]))
