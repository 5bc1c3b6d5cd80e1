"""First response wins: ask several replicas, take the fastest, cancel the losers.

Go patterns: `First` from Rob Pike's talk "Go Concurrency Patterns" ("Avoid
timeout": replicate the servers, send the query to every replica, use the first
response) and Go 101: Channel Use Cases, "The first response wins". The result
channel has room for every replica so a loser's send never blocks (no goroutine
leak), and a context cancels the losers' work as soon as the winner is in. A second
round puts a deadline on the whole search (Google Search 2.1's `time.After(80 *
time.Millisecond)`). Shows: context.WithCancel, context.WithTimeout, `case
<-ctx.Done()`, a buffered result channel, WaitGroup to observe the losers stop.

    func First(ctx context.Context, query string, replicas ...Search) Result {
        ctx, cancel := context.WithCancel(ctx)
        defer cancel()                          // the losers see ctx.Done()
        c := make(chan Result, len(replicas))   // losers never block
        for _, replica := range replicas {
            go func(search Search) { c <- search(ctx, query) }(replica)
        }
        return <-c
    }

    func replica(ctx context.Context, query string) Result {
        select {
        case <-time.After(latency):
            return Result(query + " result")
        case <-ctx.Done():
            return Result(ctx.Err().Error())
        }
    }
"""

from __future__ import annotations

import csp
from csp import context


class Replica:
    def __init__(self, name: str, latency: float) -> None:
        self.name, self.latency = name, latency
        self.outcome = "not asked"

    async def search(self, ctx: context.Context, query: str) -> str:
        i, _ = await csp.select(csp.after(self.latency).recv, ctx.done().recv)
        if i == 0:
            self.outcome = "answered"
            return f"{query!r} result from {self.name}"
        self.outcome = f"stopped: {ctx.err()}"
        return self.outcome


async def first(ctx: context.Context, query: str, replicas: list[Replica],
                wg: csp.WaitGroup) -> str | None:
    ctx, cancel = context.with_cancel(ctx)
    try:
        c = csp.Chan[str](len(replicas))  # room for every answer: losers never block

        async def ask(r: Replica) -> None:
            await c.send(await r.search(ctx, query))

        for r in replicas:
            wg.go(ask, r)  # r is passed as an argument: no late-binding closure trap
        i, v = await csp.select(c.recv, ctx.done().recv)
        return v if i == 0 else None
    finally:
        cancel()  # defer cancel(): every loser sees ctx.done() closed


async def main() -> None:
    replicas = [Replica("eu", 0.2), Replica("us", 0.005), Replica("asia", 0.3)]
    wg = csp.WaitGroup()
    print("winner:", await first(context.background(), "golang", replicas, wg))
    await wg.wait()  # only to show that every loser stopped
    for r in replicas:
        print(f"  {r.name}: {r.outcome}")

    # Every replica is too slow for the deadline: the search gives up in time.
    slow = [Replica("eu", 0.2), Replica("us", 0.25)]
    ctx, cancel = context.with_timeout(context.background(), 0.02)
    try:
        got = await first(ctx, "golang", slow, wg)
        print("with a 20 ms deadline:", got or f"no result ({ctx.err()})")
    finally:
        cancel()
    await wg.wait()
    for r in slow:
        print(f"  {r.name}: {r.outcome}")


if __name__ == "__main__":
    csp.run(main)
