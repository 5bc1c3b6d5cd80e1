"""csp's benchmark suite: ``python -m benchmarks`` (``--help`` for the options).

Channel patterns (ping-pong, SPSC streams, fan-in, worker pool, pipeline, select,
end-of-stream), locks and spawn/join, each written with csp, asyncio and anyio
(:mod:`benchmarks.patterns`), run on the asyncio loop and uvloop with the
implementations interleaved (:mod:`benchmarks.runner`), checked for item count and
checksum after every sample, and reported as ops/s and ratios against asyncio on the
same loop (:mod:`benchmarks.report`). :mod:`benchmarks.scale` measures memory and
wake-up time of many parked tasks; ``benchmarks/go`` holds the same patterns in Go
(``--go``) as an absolute reference. The thread rows (:mod:`benchmarks.threads`,
``--pattern threads``, included in ``--full``) put a plain thread or a second event
loop on one end of a channel and compare csp with janus (their baseline) and culsans.

rich, janus and culsans (the ``bench`` extra) and matplotlib (the ``plot`` extra, for
``--plot``) are imported here only, never by ``csp``.
"""
