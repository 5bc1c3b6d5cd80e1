"""Priority select: a worker that always drains the urgent queue before the normal one.

Go pattern: Go's select picks uniformly among ready cases, so Go code that must prefer
one channel nests two selects (the idiom discussed in Go issue #52637, "proposal:
spec: add priority select"); tokio has `biased;`, core.async `:priority`. Shows:
`csp.select(..., priority=True)` (the first ready case in argument order), `recv_ok`
cases, closed channels dropping out of a select, a buffered channel as a queue.

    for {
        select {
        case job, ok := <-urgent:       // first: anything urgent?
            if ok { handle(job); continue }
            urgent = nil
        default:
        }
        select {                        // then whatever comes
        case job, ok := <-urgent: ...
        case job, ok := <-normal: ...
        }
    }
"""

from __future__ import annotations

import csp


async def worker(urgent: csp.Chan[str], normal: csp.Chan[str], out: list[str]) -> None:
    u: csp.Chan[str] = urgent
    n: csp.Chan[str] = normal
    while u is not csp.nil or n is not csp.nil:
        i, (job, ok) = await csp.select(u.recv_ok, n.recv_ok, priority=True)
        if not ok:  # that queue is closed and drained: it leaves the select (Go: = nil)
            if i == 0:
                u = csp.nil
            else:
                n = csp.nil
            continue
        out.append(f"{'urgent' if i == 0 else 'normal'}: {job}")


async def main() -> None:
    urgent, normal = csp.Chan[str](8), csp.Chan[str](8)
    for job in ["resize a.png", "resize b.png", "resize c.png"]:
        await normal.send(job)
    for job in ["page on-call", "rotate leaked key"]:
        await urgent.send(job)
    done: list[str] = []
    wg = csp.WaitGroup()
    wg.go(worker, urgent, normal, done)
    await csp.gosched()  # the worker drains what was queued, urgent first, then parks
    await normal.send("resize d.png")  # a parked select takes whatever comes first
    await urgent.send("restart db")
    urgent.close()
    normal.close()
    await wg.wait()
    for line in done:
        print(line)


if __name__ == "__main__":
    csp.run(main)
