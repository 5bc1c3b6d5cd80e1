"""Semaphore-limited fetches: start a goroutine per URL, but let only N fetch at once.

Go patterns: the x/sync/semaphore package example "Example (WorkerPool)" (acquire one
token per task; acquiring all N tokens at the end waits for every task), and the
counting semaphore built from a buffered channel, from "Effective Go" (Channels:
`var sem = make(chan int, MaxOutstanding)`) and Go 101: Channel Use Cases.
Shows: csp.Semaphore (Go: semaphore.Weighted), a cap-N channel as a semaphore,
WaitGroup.

    sem := semaphore.NewWeighted(int64(maxWorkers))
    for i := range out {
        if err := sem.Acquire(ctx, 1); err != nil { break }
        go func(i int) {
            defer sem.Release(1)
            out[i] = fetch(urls[i])
        }(i)
    }
    // Acquire all tokens: waits until every goroutine has released its one.
    if err := sem.Acquire(ctx, int64(maxWorkers)); err != nil { ... }

    // Effective Go: the same limit with a buffered channel
    var sem = make(chan struct{}, MaxOutstanding)
    func handle(r *Request) {
        sem <- struct{}{}  // wait for an active slot
        process(r)
        <-sem              // done; let the next request run
    }
"""

from __future__ import annotations

import csp

URLS = [f"https://example.com/page/{i}" for i in range(10)]


class Stats:
    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0


async def fetch(url: str, stats: Stats) -> int:
    """Stands for a real HTTP request (aiohttp, httpx): any awaitable I/O works."""
    stats.in_flight += 1
    stats.peak = max(stats.peak, stats.in_flight)
    await csp.sleep(0.005)
    stats.in_flight -= 1
    return len(url)


async def with_weighted_semaphore(max_workers: int) -> None:
    sem = csp.Semaphore(max_workers)
    stats = Stats()
    out = [0] * len(URLS)

    async def get(i: int) -> None:
        try:
            out[i] = await fetch(URLS[i], stats)
        finally:
            sem.release(1)

    for i in range(len(URLS)):
        await sem.acquire(1)  # blocks the loop here while max_workers are busy
        csp.go(get, i)
    await sem.acquire(max_workers)  # all tokens back: every fetch has finished
    print(f"Semaphore({max_workers}): {len(out)} pages, {sum(out)} bytes, "
          f"at most {stats.peak} fetches at once")


async def with_channel_semaphore(max_outstanding: int) -> None:
    sem = csp.Chan[None](max_outstanding)
    stats = Stats()
    sizes: list[int] = []
    wg = csp.WaitGroup()

    async def handle(url: str) -> None:
        await sem.send(None)  # wait for an active slot
        try:
            sizes.append(await fetch(url, stats))
        finally:
            await sem.recv()  # done; let the next one run

    for url in URLS:
        wg.go(handle, url)  # all goroutines start; the channel limits the fetches
    await wg.wait()
    print(f"Chan({max_outstanding}) as a semaphore: {len(sizes)} pages, {sum(sizes)} bytes, "
          f"at most {stats.peak} fetches at once")


async def main() -> None:
    await with_weighted_semaphore(3)
    await with_channel_semaphore(2)


if __name__ == "__main__":
    csp.run(main)
