"""Remote worker pool: the jobs and results channels live on NATS JetStream, the workers
in three other processes, and one of them is killed midway.

Go pattern: Go by Example: Worker Pools, with the workers in other processes (what Go's
old netchan was for). Shows: `csp.nats.LocalServer` (a nats-server for local runs),
`hub.chan` shared by name between processes, fan-out where each job goes to exactly
one worker, a worker process killed with SIGKILL, `select` with `csp.after` as a quiet
timer, sending again the jobs whose results never came, `close` ending every process's
`async for`.

    for w := 1; w <= 3; w++ { go worker(w, jobs, results) }   // here: processes
    for j := 0; j < numJobs; j++ { jobs <- j }
    for len(done) < numJobs {
        select {
        case r := <-results:  done[r.job] = r.square
        case <-time.After(quiet):  resend(missing(done))      // a worker died
        }
    }
    close(jobs)

A job that the killed worker had fetched but not yet claimed goes to another worker
after ``ack_wait``; one it had claimed dies with it (as a value received by a goroutine
that then crashes), so the main process sends the missing jobs again once results stop
coming. Every job is done exactly once, whichever worker took it.
"""

from __future__ import annotations

import asyncio
import collections
import sys

import csp
import csp.nats

N_JOBS = 30
WORKERS = 3
ACK_WAIT = 0.5  # seconds before a value fetched by a vanished receiver is redelivered
QUIET = 4 * ACK_WAIT  # no result for this long: the missing jobs are lost, send again


async def worker(url: str, wid: int) -> None:
    """A worker process: square each job until the jobs channel is closed."""
    async with await csp.nats.connect(url, ack_wait=ACK_WAIT) as hub:
        jobs = await hub.chan("jobs", cap=8)
        results = await hub.chan("results", cap=64)
        await results.send({"hello": wid})
        async for j in jobs:
            await csp.sleep(0.005)  # the work
            await results.send({"job": j, "square": j * j, "worker": wid})


async def main() -> None:
    with csp.nats.LocalServer() as srv:
        async with await csp.nats.connect(srv.url, ack_wait=ACK_WAIT) as hub:
            jobs = await hub.chan("jobs", cap=8)
            results = await hub.chan("results", cap=64)
            procs = [
                await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--worker", srv.url, str(w))
                for w in range(WORKERS)
            ]
            for _ in procs:  # every worker is connected and listening
                assert "hello" in await results.recv()
            feeders = csp.WaitGroup()

            async def feed(todo: list[int]) -> None:
                for j in todo:
                    await jobs.send(j)
                feeders.done()

            feeders.add(1)
            csp.go(feed, list(range(N_JOBS)))
            done: dict[int, int] = {}
            times_done: collections.Counter[int] = collections.Counter()
            killed = False
            while len(done) < N_JOBS:
                i, r = await csp.select(results.recv, csp.after(QUIET).recv)
                if i == 1:  # quiet: the jobs still missing died with the killed worker
                    feeders.add(1)
                    csp.go(feed, [j for j in range(N_JOBS) if j not in done])
                    continue
                done[r["job"]] = r["square"]
                times_done[r["job"]] += 1
                if len(done) == 10 and not killed:
                    procs[0].kill()  # SIGKILL, in the middle of its work
                    await procs[0].wait()
                    killed = True
            await feeders.wait()
            await jobs.close()  # every other worker's `async for` ends
            codes = [await p.wait() for p in procs[1:]]
    print(f"jobs done: {len(done)} of {N_JOBS}")
    print(f"each done exactly once: {all(n == 1 for n in times_done.values())}")
    print(f"sum of squares: {sum(done.values())}")
    print(f"worker 0 killed; workers 1 and 2 ended on close with exit codes {codes}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        csp.run(worker(sys.argv[2], int(sys.argv[3])))
    else:
        csp.run(main)
