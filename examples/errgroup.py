"""errgroup: run tasks in parallel, stop them all at the first error, report it.

Go pattern: golang.org/x/sync/errgroup, its package examples "Example (JustErrors)"
and "Example (Parallel)", with `WithContext` so the first failure cancels the others,
and `SetLimit` for bounded parallelism. Shows: csp.ErrGroup, ErrGroup.with_context,
set_limit, `case <-ctx.Done(): return ctx.Err()`, and csp.context.scope, which
cancels plain asyncio awaits (a socket read, an HTTP call) when the context ends.

    g, ctx := errgroup.WithContext(context.Background())
    for _, url := range urls {
        url := url // Go <= 1.21: a fresh copy for the closure
        g.Go(func() error {
            req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
            resp, err := http.DefaultClient.Do(req)  // cancelled with ctx
            if err == nil { resp.Body.Close() }
            return err
        })
    }
    if err := g.Wait(); err != nil {
        fmt.Println("first error:", err)     // the others were cancelled
    }

    var g errgroup.Group
    g.SetLimit(2)                  // at most 2 at once
    for _, f := range files { g.Go(func() error { return process(f) }) }
    err := g.Wait()
"""

from __future__ import annotations

import asyncio

import csp
from csp import context

# url -> (latency in seconds, error or None)
SITES = {
    "https://golang.org": (0.05, None),
    "https://pkg.go.dev": (0.08, None),
    "https://bad.example": (0.01, ConnectionRefusedError("connection refused")),
    "https://go.dev/blog": (0.06, None),
}


async def http_get(url: str) -> int:
    """Stands for an asyncio HTTP client call: plain asyncio, knows nothing of csp."""
    latency, err = SITES[url]
    await asyncio.sleep(latency)
    if err is not None:
        raise err
    return 200


async def main() -> None:
    g, ctx = csp.ErrGroup.with_context(context.background())
    outcome: dict[str, str] = {}

    async def fetch(url: str) -> None:
        try:
            async with context.scope(ctx):  # the request is cancelled with ctx
                outcome[url] = f"HTTP {await http_get(url)}"
        except context.Canceled as err:
            outcome[url] = f"cancelled ({err})"
            raise
        except OSError as err:
            outcome[url] = f"failed ({err})"
            raise RuntimeError(f"fetch {url}: {err}") from err

    for url in SITES:
        g.go(fetch, url)
    try:
        await g.wait()
        print("all fetched")
    except RuntimeError as err:
        print("first error:", err)
    for url in sorted(outcome):
        print(f"  {url}: {outcome[url]}")
    print("ctx after wait:", ctx.err())

    # Bounded parallelism: never more than 2 at once, all results kept.
    g = csp.ErrGroup()
    g.set_limit(2)
    running = peak = 0
    sizes: dict[int, int] = {}

    async def process(n: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await csp.sleep(0.002)
        sizes[n] = n * n
        running -= 1

    for n in range(8):
        g.go(process, n)
    await g.wait()
    print(f"set_limit(2): {len(sizes)} tasks, at most {peak} at once,"
          f" results {[sizes[n] for n in range(8)]}")


if __name__ == "__main__":
    csp.run(main)
