"""Concurrent prime sieve: a daisy chain of filter goroutines, one per prime.

Go pattern: the concurrent prime sieve of the Go Playground examples and of the Go
distribution's test/chan/sieve1.go (after Doug McIlroy). Shows: chained goroutines,
unbuffered channels, direction by convention (each stage only sends on `out`),
`run` cancelling the goroutines still parked when main returns (as a Go program's
exit does).

    func generate(ch chan<- int) {
        for i := 2; ; i++ { ch <- i }
    }

    func filter(in <-chan int, out chan<- int, prime int) {
        for {
            i := <-in
            if i%prime != 0 { out <- i }
        }
    }

    func main() {
        ch := make(chan int)
        go generate(ch)
        for i := 0; i < 25; i++ {
            prime := <-ch
            fmt.Println(prime)
            ch1 := make(chan int)
            go filter(ch, ch1, prime)
            ch = ch1
        }
    }
"""

from __future__ import annotations

import csp


async def generate(ch: csp.Chan[int]) -> None:
    i = 2
    while True:
        await ch.send(i)
        i += 1


async def filter_multiples(inp: csp.Chan[int], out: csp.Chan[int], prime: int) -> None:
    while True:
        i = await inp.recv()
        assert i is not None  # nobody closes these channels
        if i % prime != 0:
            await out.send(i)


async def main() -> None:
    ch = csp.Chan[int]()
    csp.go(generate, ch)
    primes = []
    for _ in range(25):
        prime = await ch.recv()
        assert prime is not None
        primes.append(prime)
        ch1 = csp.Chan[int]()
        csp.go(filter_multiples, ch, ch1, prime)
        ch = ch1
    print(" ".join(map(str, primes)))
    print("goroutines in the chain:", csp.num_goroutine() - 1)  # all but main


if __name__ == "__main__":
    csp.run(main)
