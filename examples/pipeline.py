"""Pipeline with cancellation: stop every stage early, with a done channel or a context.

Go pattern: the Go blog, "Go Concurrency Patterns: Pipelines and cancellation"
(Sameer Ajmani): stages `gen -> sq (fan-out to two workers) -> merge`, each stage
closing its output when done; the consumer stops after the first values and closes
`done`, which every stage selects on, so no goroutine is left blocked (no leak).
The same pipeline then runs on `context.WithCancel` / `WithTimeout`, the idiomatic
form since Go 1.7 (`case <-ctx.Done(): return ctx.Err()`). Shows: close + range,
select with a send case and a done case, fan-out/fan-in, context.with_cancel,
context.with_timeout, `num_goroutine` to check that nothing leaked.

    func sq(done <-chan struct{}, in <-chan int) <-chan int {
        out := make(chan int)
        go func() {
            defer close(out)
            for n := range in {
                select {
                case out <- n * n:
                case <-done:
                    return
                }
            }
        }()
        return out
    }

    func main() {
        done := make(chan struct{})
        defer close(done)              // tells every stage to stop
        in := gen(done, 1, 2, 3, ...)
        c1, c2 := sq(done, in), sq(done, in) // fan-out
        out := merge(done, c1, c2)     // fan-in
        fmt.Println(<-out, <-out, <-out)
    }
"""

from __future__ import annotations

import math

import csp
from csp import context


def gen(done: csp.Chan[None], *nums: int) -> csp.Chan[int]:
    out = csp.Chan[int]()

    async def run() -> None:
        try:
            for n in nums:
                i, _ = await csp.select((out.send, n), done.recv)
                if i == 1:
                    return
        finally:
            out.close()  # defer close(out)

    csp.go(run)
    return out


def sq(done: csp.Chan[None], inp: csp.Chan[int]) -> csp.Chan[int]:
    out = csp.Chan[int]()

    async def run() -> None:
        try:
            async for n in inp:
                i, _ = await csp.select((out.send, n * n), done.recv)
                if i == 1:
                    return
        finally:
            out.close()

    csp.go(run)
    return out


def merge(done: csp.Chan[None], *cs: csp.Chan[int]) -> csp.Chan[int]:
    wg = csp.WaitGroup()
    out = csp.Chan[int]()

    async def output(c: csp.Chan[int]) -> None:
        async for n in c:
            i, _ = await csp.select((out.send, n), done.recv)
            if i == 1:
                return

    for c in cs:
        wg.go(output, c)

    async def closer() -> None:
        await wg.wait()
        out.close()

    csp.go(closer)
    return out


async def settle() -> int:
    """Let the stopped stages run to their end; return how many goroutines remain."""
    for _ in range(100):
        if csp.num_goroutine() == 1:
            break
        await csp.gosched()
    return csp.num_goroutine() - 1


async def with_done_channel() -> None:
    done = csp.Chan[None]()
    inp = gen(done, *range(1, 1001))
    out = merge(done, sq(done, inp), sq(done, inp))
    first = [await out.recv() for _ in range(3)]
    # Two sq workers race, so which squares come first depends on scheduling.
    squares = all(v is not None and math.isqrt(v) ** 2 == v for v in first)
    print(f"done channel: took {len(first)} of 1000 values, all squares: {squares}")
    done.close()  # broadcast: every stage's select sees it
    print("goroutines left after close(done):", await settle())


# The same stages on a context: the done channel is ctx.done().


def count(ctx: context.Context) -> csp.Chan[int]:
    """An endless generator that stops when ctx is done."""
    out = csp.Chan[int]()

    async def run() -> None:
        n = 0
        try:
            while True:
                n += 1
                i, _ = await csp.select((out.send, n), ctx.done().recv)
                if i == 1:
                    return
        finally:
            out.close()

    csp.go(run)
    return out


async def with_context() -> None:
    ctx, cancel = context.with_cancel(context.background())
    out = merge(ctx.done(), sq(ctx.done(), count(ctx)))  # one worker: order is kept
    first = [await out.recv() for _ in range(5)]
    cancel()
    print("context: first five squares", first, "then", ctx.err())
    print("goroutines left after cancel():", await settle())

    # A deadline instead of an explicit cancel: a slow consumer runs out of time.
    ctx, cancel = context.with_timeout(context.background(), 0.05)
    try:
        out = sq(ctx.done(), count(ctx))
        got = 0
        while True:
            i, v = await csp.select(out.recv_ok, ctx.done().recv)
            if i == 1 or not v[1]:
                break
            got += 1
            await csp.sleep(0.002)  # slow work per value
        print(f"context with timeout: stopped by '{ctx.err()}', took some values: {got > 0}")
    finally:
        cancel()  # always call cancel (go vet's lostcancel check)
    print("goroutines left after the deadline:", await settle())


async def main() -> None:
    await with_done_channel()
    await with_context()


if __name__ == "__main__":
    csp.run(main)
