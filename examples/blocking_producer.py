"""A blocking library on its own thread feeding a goroutine pipeline.

Go pattern: a producer that is not a goroutine you wrote (a sensor SDK, a database
cursor, a C library with a callback thread) hands its results to a pipeline over a
channel; the pipeline's stages are goroutines; the producer is told to stop with a
second channel. In Go every goroutine is alike; in Python the library runs on an OS
thread with no event loop, so it uses the channel's blocking calls: `send_blocking`
(which waits while the pipeline is busy: backpressure on the thread) and
`recv_blocking(timeout=...)`. Shows: `send_blocking`, `select_blocking` with a quit
channel, `close` from a thread, `wg.wait_blocking`, and the goroutines' side unchanged
(`async for`, `csp.select`).

    func sensor(readings chan<- Reading, quit <-chan struct{}) {  // the library
        defer close(readings)
        for i := 0; ; i++ {
            time.Sleep(time.Millisecond)       // blocking I/O
            select {
            case readings <- read(i):
            case <-quit:
                return
            }
        }
    }

The simulated library below blocks with `time.sleep` (1 ms per reading), as a real
one would block in I/O, and never touches asyncio.
"""

from __future__ import annotations

import threading
import time

import csp


def sensor_library(readings: csp.Chan[tuple[int, float]], quit: csp.Chan[None],
                   finished: csp.WaitGroup) -> None:
    """A blocking producer on its own thread (no event loop): one reading per ms."""
    try:
        i = 0
        while True:
            time.sleep(0.001)  # the library blocks in its I/O
            reading = (i, 20.0 + (i % 7) * 0.5)
            i += 1
            k, _ = csp.select_blocking((readings.send, reading), quit.recv)
            if k == 1:
                return  # told to stop
    finally:
        readings.close()  # from this thread: the pipeline's `async for` ends
        finished.done()


async def smooth(readings: csp.Chan[tuple[int, float]],
                 out: csp.Chan[tuple[int, float]]) -> None:
    """Stage 2: a moving average over the last 3 readings."""
    window: list[float] = []
    async for i, celsius in readings:
        window = [*window[-2:], celsius]
        await out.send((i, round(sum(window) / len(window), 2)))
    out.close()


async def main() -> None:
    readings = csp.Chan[tuple[int, float]]()  # unbuffered: the thread waits for us
    smoothed = csp.Chan[tuple[int, float]](4)
    quit = csp.Chan[None]()
    finished = csp.WaitGroup()
    finished.add(1)
    threading.Thread(target=sensor_library, args=(readings, quit, finished),
                     daemon=True).start()
    csp.go(smooth, readings, smoothed)
    for _ in range(6):
        i, avg = await smoothed.recv()  # type: ignore[misc]
        print(f"reading {i}: {avg:.2f} C")
    quit.close()  # the library's select sees it at its next reading
    rest = [v async for v in smoothed]  # what was already on its way
    assert all(i >= 6 for i, _ in rest)  # in order: nothing lost, nothing repeated
    await finished.wait()
    print("library stopped, pipeline drained")


if __name__ == "__main__":
    csp.run(main)
