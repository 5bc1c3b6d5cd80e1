"""Worker pool: a fixed number of goroutines ranging over one jobs channel.

Go pattern: Go by Example: Worker Pools. Shows: buffered channels, fan-out (several
workers receive from one channel, each job goes to exactly one), `close` ending
every worker's `for range`, collecting a known number of results, WaitGroup.

    func worker(id int, jobs <-chan int, results chan<- int) {
        for j := range jobs {
            fmt.Println("worker", id, "started  job", j)
            time.Sleep(time.Second)
            fmt.Println("worker", id, "finished job", j)
            results <- j * 2
        }
    }

    func main() {
        const numJobs = 5
        jobs := make(chan int, numJobs)
        results := make(chan int, numJobs)
        for w := 1; w <= 3; w++ {
            go worker(w, jobs, results)
        }
        for j := 1; j <= numJobs; j++ {
            jobs <- j
        }
        close(jobs)
        for a := 1; a <= numJobs; a++ {
            <-results
        }
    }

Which worker gets which job depends on timing, so the program prints each job's
result in job order and how many workers took part. The whole run takes about three
"job durations" (9 jobs, 3 workers), not nine.
"""

from __future__ import annotations

import asyncio
import collections

import csp

JOB_SECONDS = 0.02  # Go's time.Second, scaled down: durations are float seconds


async def worker(wid: int, jobs: csp.Chan[int], results: csp.Chan[tuple[int, int, int]]) -> None:
    async for j in jobs:  # for j := range jobs
        await csp.sleep(JOB_SECONDS)  # never time.sleep() in a goroutine: it blocks all
        await results.send((j, j * 2, wid))


async def main() -> None:
    num_jobs = 9
    jobs = csp.Chan[int](num_jobs)
    results = csp.Chan[tuple[int, int, int]](num_jobs)
    for w in (1, 2, 3):
        csp.go(worker, w, jobs, results)
    start = asyncio.get_running_loop().time()
    for j in range(1, num_jobs + 1):
        await jobs.send(j)
    jobs.close()
    got = []
    for _ in range(num_jobs):
        r = await results.recv()
        assert r is not None  # results is never closed: None would mean closed
        got.append(r)
    elapsed = asyncio.get_running_loop().time() - start

    per_worker = collections.Counter(wid for _, _, wid in got)
    for j, doubled, _ in sorted(got):
        print(f"job {j} -> {doubled}")
    print(f"{sum(per_worker.values())} jobs done by {len(per_worker)} workers")
    # 9 jobs on 3 workers take about 3 job durations; one worker would need 9.
    print("ran in parallel:", elapsed < 6 * JOB_SECONDS)


if __name__ == "__main__":
    csp.run(main)
