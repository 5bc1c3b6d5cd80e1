"""Deadlock detection: Go's "fatal error: all goroutines are asleep - deadlock!".

Go pattern: the Go runtime's deadlock report (runtime.checkdead) on a classic
WaitGroup mistake: workers send results on an unbuffered channel, but main waits for
the WaitGroup before it reads them, so the workers block on their sends and main
blocks in Wait. The fix is the closer goroutine of `merge` in the Go blog's "Go
Concurrency Patterns: Pipelines and cancellation". The Go runtime notices that every
goroutine is asleep and aborts; `csp.run` raises `csp.DeadlockError` with the same
first line and where each goroutine sleeps. Shows: DeadlockError, WaitGroup, and the
usual fix: read the results while another goroutine waits and closes (a buffer with
room for every result works too).

    func main() {
        var wg sync.WaitGroup
        results := make(chan int)
        for i := 1; i <= 3; i++ {
            wg.Add(1)
            go func(n int) { defer wg.Done(); results <- n * n }(i)
        }
        wg.Wait()          // blocks: the workers are stuck on `results <- n*n`
        close(results)
        for r := range results { fmt.Println(r) }
    }
    // fatal error: all goroutines are asleep - deadlock!
    //
    // goroutine 1 [semacquire]: ...
    // goroutine 18 [chan send]: ...
"""

from __future__ import annotations

import csp


async def square(results: csp.Chan[int], n: int) -> None:
    await results.send(n * n)


async def broken() -> int:
    wg = csp.WaitGroup()
    results = csp.Chan[int]()
    for i in range(1, 4):
        wg.go(square, results, i)
    await wg.wait()  # every worker is parked on its send: nobody can go on
    results.close()
    return sum([r async for r in results])


async def fixed() -> int:
    wg = csp.WaitGroup()
    results = csp.Chan[int]()
    for i in range(1, 4):
        wg.go(square, results, i)

    async def closer() -> None:
        await wg.wait()
        results.close()

    csp.go(closer)  # wait in another goroutine; main reads meanwhile
    return sum([r async for r in results])


async def main() -> None:
    print("fixed: sum of squares", await fixed())


def describe(err: csp.DeadlockError) -> str:
    """The report without its file:line lines (they depend on where the example lives)."""
    lines = [line for line in str(err).splitlines() if line.strip() and line[0] != "\t"]
    return "\n".join(lines)


def run_broken(loop: str = "auto") -> None:
    try:
        csp.run(broken, loop=loop)
    except csp.DeadlockError as err:
        print("broken:", describe(err))


if __name__ == "__main__":
    run_broken()
    csp.run(main)
