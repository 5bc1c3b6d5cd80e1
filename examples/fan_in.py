"""Fan-in: merge several channels into one, two ways.

Go patterns: `merge` from the Go blog "Go Concurrency Patterns: Pipelines and
cancellation" (one forwarding goroutine per input plus a WaitGroup that closes the
output), and the two-input `select` merge that switches a finished input off by
setting its channel variable to nil (a nil channel's case is never chosen).
Shows: WaitGroup, close + range, select over receive cases, `csp.nil`.

    func merge(cs ...<-chan int) <-chan int {
        var wg sync.WaitGroup
        out := make(chan int)
        output := func(c <-chan int) {
            for n := range c { out <- n }
            wg.Done()
        }
        wg.Add(len(cs))
        for _, c := range cs { go output(c) }
        go func() { wg.Wait(); close(out) }()
        return out
    }

    func merge2(a, b <-chan int) <-chan int {
        out := make(chan int)
        go func() {
            defer close(out)
            for a != nil || b != nil {
                select {
                case v, ok := <-a:
                    if !ok { a = nil; continue }
                    out <- v
                case v, ok := <-b:
                    if !ok { b = nil; continue }
                    out <- v
                }
            }
        }()
        return out
    }

The arrival order of merged values depends on scheduling (in Go and here), so the
program prints them sorted.
"""

from __future__ import annotations

import csp


def gen(*nums: int) -> csp.Chan[int]:
    """A generator goroutine: sends `nums`, then closes its channel."""
    out = csp.Chan[int]()

    async def run() -> None:
        for n in nums:
            await out.send(n)
        out.close()

    csp.go(run)
    return out


def merge(*cs: csp.Chan[int]) -> csp.Chan[int]:
    wg = csp.WaitGroup()
    out = csp.Chan[int]()

    async def output(c: csp.Chan[int]) -> None:
        async for n in c:
            await out.send(n)
        wg.done()

    wg.add(len(cs))
    for c in cs:
        csp.go(output, c)  # pass c as an argument: no late-binding closure trap

    async def closer() -> None:
        await wg.wait()
        out.close()

    csp.go(closer)
    return out


def merge2(a: csp.Chan[int], b: csp.Chan[int]) -> csp.Chan[int]:
    out = csp.Chan[int]()

    async def run() -> None:
        nonlocal a, b
        try:
            while a is not csp.nil or b is not csp.nil:
                i, (v, ok) = await csp.select(a.recv_ok, b.recv_ok)
                if not ok:
                    if i == 0:
                        a = csp.nil  # a is drained: its case is never chosen again
                    else:
                        b = csp.nil
                    continue
                await out.send(v)
        finally:
            out.close()

    csp.go(run)
    return out


async def main() -> None:
    merged = merge(gen(1, 2, 3), gen(10, 20), gen(100, 200, 300, 400))
    got = [n async for n in merged]
    print("merge: ", sorted(got), "count", len(got))

    got = [n async for n in merge2(gen(1, 3, 5, 7), gen(2, 4, 6))]
    print("merge2:", sorted(got), "count", len(got))


if __name__ == "__main__":
    csp.run(main)
