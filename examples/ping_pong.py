"""Ping-pong: two goroutines hit one ball back and forth over an unbuffered channel.

Go pattern: the "ball" game from Sameer Ajmani's talk "Advanced Go Concurrency
Patterns" (also Go 101: Channel Use Cases, "Dialogue (Ping-Pong)"). Shows: an
unbuffered channel as a rendezvous, `go`, FIFO receivers, `close` ending a `for
range`.

    type Ball struct{ hits int }

    func player(name string, table chan *Ball, done chan *Ball) {
        for ball := range table {
            ball.hits++
            fmt.Println(name, ball.hits)
            if ball.hits == 10 { done <- ball; continue }
            table <- ball
        }
    }

    func main() {
        table, done := make(chan *Ball), make(chan *Ball)
        go player("ping", table, done)
        go player("pong", table, done)
        table <- new(Ball) // toss the ball
        ball := <-done     // game over: grab it
        close(table)
        fmt.Println("game over after", ball.hits, "hits")
    }
"""

from __future__ import annotations

import csp


class Ball:
    def __init__(self) -> None:
        self.hits = 0


async def player(name: str, table: csp.Chan[Ball], done: csp.Chan[Ball]) -> None:
    async for ball in table:  # for ball := range table
        ball.hits += 1
        print(name, ball.hits)
        if ball.hits == 10:
            await done.send(ball)
            continue
        await table.send(ball)  # hit it back: the other player is parked on recv


async def main() -> None:
    table, done = csp.Chan[Ball](), csp.Chan[Ball]()
    csp.go(player, "ping", table, done)
    csp.go(player, "pong", table, done)
    await table.send(Ball())  # toss the ball: ping, started first, takes it
    ball = await done.recv()
    assert ball is not None
    table.close()
    print("game over after", ball.hits, "hits")


if __name__ == "__main__":
    csp.run(main)
