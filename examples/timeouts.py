"""Timeouts and heartbeats: select against time.After, and a worker that pulses.

Go patterns: Go by Example: Timeouts (`select` on the result and `time.After`), and
"Heartbeats" from Katherine Cox-Buday's "Concurrency in Go" (chapter 5): a worker
sends a pulse on every tick with a try-send, and its supervisor treats a missing pulse
as a dead worker. Shows: csp.after, csp.tick, select with a timeout case, try-send
(select + default), csp.after_func (Go: time.AfterFunc) closing a done channel.

    c1 := make(chan string, 1)
    go func() { time.Sleep(2 * time.Second); c1 <- "result 1" }()
    select {
    case res := <-c1:
        fmt.Println(res)
    case <-time.After(1 * time.Second):
        fmt.Println("timeout 1")
    }

    // Concurrency in Go: the worker's loop
    for {
        select {
        case <-done:
            return
        case <-pulse:            // pulse := time.Tick(pulseInterval)
            select {             // sendPulse: nobody listening? never mind
            case heartbeat <- struct{}{}:
            default:
            }
        case r := <-workGen:
            results <- r
        }
    }
    // ... and its supervisor
    select {
    case _, ok := <-heartbeat: ...
    case r, ok := <-results: ...
    case <-time.After(timeout):
        fmt.Println("worker goroutine is not healthy!")
        return
    }
"""

from __future__ import annotations

import csp

PULSE = 0.01  # seconds: durations are float seconds, not time.Duration


async def timeouts() -> None:
    c1 = csp.Chan[str](1)  # buffered: the late sender does not leak when nobody reads

    async def slow(c: csp.Chan[str], text: str) -> None:
        await csp.sleep(0.1)
        await c.send(text)

    csp.go(slow, c1, "result 1")
    i, res = await csp.select(c1.recv, csp.after(0.03).recv)
    print(res if i == 0 else "timeout 1")

    c2 = csp.Chan[str](1)
    csp.go(slow, c2, "result 2")
    i, res = await csp.select(c2.recv, csp.after(0.5).recv)
    print(res if i == 0 else "timeout 2")


def do_work(
    done: csp.Chan[None], stall_after: int | None = None
) -> tuple[csp.Chan[None], csp.Chan[int]]:
    """Start a worker: one result every 2 pulses, a heartbeat on every pulse."""
    heartbeat, results = csp.Chan[None](), csp.Chan[int]()

    async def run() -> None:
        try:
            pulse, work = csp.tick(PULSE), csp.tick(2 * PULSE)
            n = 0
            while True:
                i, _ = await csp.select(done.recv, pulse.recv, work.recv)
                if i == 0:
                    return
                if i == 1:
                    await csp.select((heartbeat.send, None), default=True)
                    continue
                n += 1
                if n == stall_after:
                    await csp.select()  # stuck forever: no more pulses (a bug, a hang)
                i, _ = await csp.select(done.recv, (results.send, n))
                if i == 0:
                    return
        finally:
            heartbeat.close()
            results.close()

    csp.go(run)
    return heartbeat, results


async def supervise(name: str, stall_after: int | None) -> None:
    done = csp.Chan[None]()
    stop_timer = csp.after_func(0.5, done.close)  # time.AfterFunc: stop it eventually
    heartbeat, results = do_work(done, stall_after)
    timeout = 10 * PULSE
    got: list[int] = []
    pulses = 0
    while True:
        i, v = await csp.select(heartbeat.recv_ok, results.recv_ok, csp.after(timeout).recv)
        if i == 2:
            print(f"{name}: no heartbeat for {timeout:.2f} s: worker is not healthy;"
                  f" results before it stalled: {got}")
            break
        _, ok = v
        if not ok:
            break
        if i == 0:
            pulses += 1
        else:
            got.append(v[0])
            if len(got) == 3:
                print(f"{name}: results {got}, heartbeats seen: {pulses > 0}")
                break
    if stop_timer.stop():  # the timer had not fired: close done ourselves
        done.close()


async def main() -> None:
    await timeouts()
    await supervise("healthy worker", stall_after=None)
    await supervise("stalling worker", stall_after=2)


if __name__ == "__main__":
    csp.run(main)
