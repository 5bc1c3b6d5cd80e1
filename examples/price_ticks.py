"""Price ticks: one feed fanned out to a fast and a slow consumer that may lag.

Go pattern: Go has no broadcast channel, so Go code hand-writes the fan-out (a
goroutine that copies each value into one channel per subscriber, with a `select {
case ch <- v: default: }` to drop for slow ones); tokio's `broadcast` channel does it
with a `Lagged` count, which is what `csp.Broadcast(cap, overflow="drop_oldest")`
gives. Shows: `Broadcast`, `subscribe`, the lagging mode and `sub.lagged`, `async for`
over a subscription, `close` ending every subscriber's loop.

    for v := range feed {
        for _, sub := range subs {
            select {
            case sub <- v:      // room: deliver
            default:            // full: this subscriber lags (drops this value)
            }
        }
    }
"""

from __future__ import annotations

import csp


async def consumer(sub: csp.RecvChan[float], gate: csp.Chan[None] | None,
                   seen: list[float]) -> None:
    if gate is not None:
        await gate.recv()  # busy elsewhere while the first ticks go out
    async for price in sub:
        seen.append(price)


async def main() -> None:
    feed = csp.Broadcast[float](cap=2, overflow="drop_oldest")
    fast, slow = feed.subscribe(), feed.subscribe()
    gate = csp.Chan[None]()
    seen: dict[str, list[float]] = {"fast": [], "slow": []}
    wg = csp.WaitGroup()
    wg.go(consumer, fast, None, seen["fast"])
    wg.go(consumer, slow, gate, seen["slow"])
    await csp.gosched()
    for i in range(8):
        await feed.send(100.0 + i / 4)  # never waits, whoever lags
        await csp.gosched()  # the next tick comes later: the fast consumer keeps up
    await gate.send(None)  # the slow one comes back: it finds the last two ticks
    feed.close()
    await wg.wait()
    for name, sub in (("fast", fast), ("slow", slow)):
        print(f"{name}: {len(seen[name])} ticks {seen[name]}, lagged {sub.lagged}")


if __name__ == "__main__":
    csp.run(main)
