"""Rate limiting: one request per tick, then a bursty limiter that allows bursts of 3.

Go pattern: Go by Example: Rate Limiting. Shows: `time.Tick` (csp.tick), a buffered
channel pre-filled with tokens and refilled by a ticker goroutine (a bursty limiter,
Go 101: Channel Use Cases, "Rate limiting"), a Ticker that drops ticks for a slow
receiver instead of piling them up.

    requests := make(chan int, 5)
    for i := 1; i <= 5; i++ { requests <- i }
    close(requests)
    limiter := time.Tick(200 * time.Millisecond)
    for req := range requests {
        <-limiter
        fmt.Println("request", req, time.Now())
    }

    burstyLimiter := make(chan time.Time, 3)
    for i := 0; i < 3; i++ { burstyLimiter <- time.Now() }
    go func() {
        for t := range time.Tick(200 * time.Millisecond) { burstyLimiter <- t }
    }()
    burstyRequests := make(chan int, 5)
    for i := 1; i <= 5; i++ { burstyRequests <- i }
    close(burstyRequests)
    for req := range burstyRequests {
        <-burstyLimiter
        fmt.Println("request", req, time.Now())
    }

Instead of wall-clock times the program prints at which tick (elapsed time divided
by the interval, rounded) each request was served, so its output is exact.
"""

from __future__ import annotations

import asyncio

import csp

INTERVAL = 0.04  # Go's 200 * time.Millisecond, scaled down; durations are float seconds


def at_tick(start: float) -> int:
    return round((asyncio.get_running_loop().time() - start) / INTERVAL)


async def main() -> None:
    requests = csp.Chan[int](5)
    for i in range(1, 6):
        await requests.send(i)
    requests.close()

    start = asyncio.get_running_loop().time()
    limiter = csp.Ticker(INTERVAL)  # time.Tick, but stoppable
    async for req in requests:
        await limiter.c.recv()  # <-limiter
        print(f"request {req} served at tick {at_tick(start)}")
    limiter.stop()

    bursty = csp.Chan[float](3)
    now = asyncio.get_running_loop().time()
    for _ in range(3):
        await bursty.send(now)  # a burst of 3 is allowed at once

    async def refill() -> None:
        async for t in csp.tick(INTERVAL):  # for t := range time.Tick(...)
            await bursty.send(t)

    csp.go(refill)  # runs until main returns (csp.run then cancels it)
    bursty_requests = csp.Chan[int](5)
    for i in range(1, 6):
        await bursty_requests.send(i)
    bursty_requests.close()

    start = asyncio.get_running_loop().time()
    async for req in bursty_requests:
        await bursty.recv()
        print(f"bursty request {req} served at tick {at_tick(start)}")


if __name__ == "__main__":
    csp.run(main)
