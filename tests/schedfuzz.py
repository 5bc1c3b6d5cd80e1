"""A schedule fuzzer for csp tests: csp.run's asyncio loop with a shuffled ready queue.

What. :class:`FuzzLoop` is csp's own asyncio loop class (``csp._runtime._AsyncioLoop``,
so csp's deadlock bookkeeping still works) whose every iteration runs its ready
callbacks in a seeded random order instead of FIFO: task steps, csp's run-queue
drains, ``asyncio.timeout()`` and ``wait_for`` expiries, anyio's cancellation retries,
``call_soon`` callbacks. Callbacks queued *during* an iteration still wait for the
next one (as in asyncio), so what moves is the order of the things that became ready
in the same instant: a hand-off, a ``task.cancel()`` and a timeout racing for the
same task.

Why. On a plain loop the order of those events is fixed by the order the program
queued them, so a test reaches few of the interleavings a busy program meets; the
cancellation bugs live in exactly those races (a lock handed over, its task cancelled
and its timeout firing before it resumes). Shuffling reaches them with a handful of
seeds.

Time. By default the loop's clock is virtual: each iteration advances it by a small
seeded step (0 to 100 us), and an idle wait for a timer jumps to that timer, so short
timeouts (``timeout(1e-5)``) fire in the middle of the action as they would on a busy
machine, and a run is a pure function of its seed. ``fuzz_loop(seed,
virtual_time=False)`` keeps the real clock.

uvloop. Its ready queue lives in C and cannot be reordered: run the same scenarios on
it unfuzzed (their own seeded choices still vary).

Caveat. asyncio promises FIFO order for ``call_soon``; the fuzzer breaks that promise
on purpose. A property that holds only because of FIFO order (for example "raised
at the very next suspension", which an implementation may get from a ``call_soon``
queued before the task's own wake-up) is not something to assert under the fuzzer:
assert it with deterministic tests on the stock loops, and let fuzzed tests assert
what must hold in every order (ledgers, "eventually delivered", "never hangs").

Reproducing a failure. Tests print the seed at start (pytest shows it with the
captured output, also after a pytest-timeout) and put it in their failure messages and
test ids. Re-run that test id; the storm tests in test_cancellation.py also read
``CSP_STORM_SEED=<seed>[,<seed>...]`` to run only those seeds. Under the virtual clock a
run is a function of its seed (``random`` is re-seeded too: csp's select draws from it)
and of the order in which asyncio iterates sets of tasks (a TaskGroup cancelling its
children), which follows memory addresses: re-running the same test the same way
replays a failure in practice. On uvloop real timing varies, but most failing seeds
fail again.

Use::

    with fuzzed(seed):                 # csp.run(..., loop="asyncio") now uses FuzzLoop
        csp.run(main, loop="asyncio")

    result = run_watched(main, seed=seed, loop_name="asyncio", limit=20.0)

:func:`run_watched` runs ``csp.run`` in a helper thread: if it does not return within
``limit`` seconds it fails with the seed and a list of every task still alive (what
each awaits, its ``cancelling()``), instead of hanging the test session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import random
import sys
import threading
import traceback
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import csp
import csp._runtime as runtime
from csp._vtime import VirtualTimeLoop

# Per-iteration advances of the virtual clock: mostly none, sometimes up to 100 us.
_STEPS = (0.0, 0.0, 0.0, 0.0, 1e-6, 5e-6, 2e-5, 1e-4)


class _ShuffledReady(collections.deque):  # type: ignore[type-arg]
    """The loop's ready queue: the first ``popleft`` of an iteration shuffles the
    batch that iteration will run (``_run_once`` pops exactly that many)."""

    def __init__(self, loop: FuzzLoop, items: Any = ()) -> None:
        super().__init__(items)
        self._loop = loop

    def popleft(self) -> Any:
        loop = self._loop
        if loop._fuzz_fresh:
            loop._fuzz_fresh = False
            n = len(self)
            if n > 1:
                batch = list(self)[:n]
                loop.fuzz_rng.shuffle(batch)
                for i, h in enumerate(batch):  # in place: a concurrent append survives
                    self[i] = h
        return super().popleft()


class FuzzLoop:
    """What makes a loop fuzzed (a mixin of csp.run's asyncio loop, virtual-time or
    not: make one with :func:`fuzz_loop`): each iteration's ready callbacks run in a
    seeded random order, and a virtual clock advances by a small seeded step per
    iteration besides jumping to the next timer when idle (csp._vtime)."""

    _ready: Any
    now: float

    def _fuzz_init(self, seed: int, virtual_time: bool) -> None:
        self.fuzz_seed = seed
        self.fuzz_rng = random.Random(seed)
        self.fuzz_iterations = 0
        self._fuzz_fresh = False
        self._ready = _ShuffledReady(self, self._ready)
        self._virtual = virtual_time

    def _run_once(self) -> None:
        self.fuzz_iterations += 1
        if self._virtual:
            self.now += self.fuzz_rng.choice(_STEPS)
        self._fuzz_fresh = True
        super()._run_once()  # type: ignore[misc]


class _VirtualFuzzLoop(FuzzLoop, VirtualTimeLoop):
    def __init__(self, seed: int) -> None:
        super().__init__()
        self._fuzz_init(seed, True)


class _RealFuzzLoop(FuzzLoop, runtime._AsyncioLoop):  # type: ignore[misc]
    def __init__(self, seed: int) -> None:
        super().__init__()
        self._fuzz_init(seed, False)


def fuzz_loop(seed: int, *, virtual_time: bool = True) -> asyncio.AbstractEventLoop:
    """csp.run's asyncio loop, fuzzed with ``seed``: on a virtual clock (csp's, the
    one of ``csp.testing``) unless ``virtual_time=False``."""
    return (_VirtualFuzzLoop if virtual_time else _RealFuzzLoop)(seed)


@contextlib.contextmanager
def fuzzed(seed: int, *, virtual_time: bool = True) -> Iterator[None]:
    """Inside: ``csp.run(..., loop="asyncio")`` runs on ``FuzzLoop(seed)`` (as
    tests/vclock.py swaps in its loop), and ``random`` is seeded with ``seed``."""
    orig = runtime._loop_factory

    def factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
        if name == "asyncio":
            return lambda: fuzz_loop(seed, virtual_time=virtual_time)
        return orig(name)

    state = random.getstate()
    random.seed(seed)
    runtime._loop_factory = factory  # type: ignore[assignment]
    try:
        yield
    finally:
        runtime._loop_factory = orig  # type: ignore[assignment]
        random.setstate(state)


def describe_tasks(loop: asyncio.AbstractEventLoop) -> str:
    """Every task of ``loop`` still alive: repr (what it awaits) and ``cancelling()``.
    Call it on the loop's thread."""
    lines = []
    for t in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
        lines.append(f"  {t.get_name()}: cancelling()={t.cancelling()} {t!r}")
    return "\n".join(lines) or "  (no task alive)"


class Hang(AssertionError):
    """``csp.run`` did not return in time (raised by :func:`run_watched`)."""


def run_watched(
    main: Callable[..., Coroutine[Any, Any, Any]],
    *args: Any,
    seed: int,
    loop_name: str,
    fuzz: bool = True,
    limit: float = 20.0,
    describe: Callable[[], str] | None = None,
) -> Any:
    """``csp.run(main, *args, loop=loop_name)``, on ``FuzzLoop(seed)`` when ``fuzz``
    and ``loop_name == "asyncio"``, in a helper thread; returns its result or raises
    its exception. If it is still running after ``limit`` seconds, raises
    :class:`Hang` naming the seed, with :func:`describe_tasks` and ``describe()``
    (called on the loop's thread) in the message, then stops that loop."""
    print(f"[schedfuzz] seed={seed} loop={loop_name} fuzz={fuzz and loop_name == 'asyncio'}",
          flush=True)
    out: dict[str, Any] = {}
    loops: list[asyncio.AbstractEventLoop] = []

    async def entry() -> Any:
        loops.append(asyncio.get_running_loop())
        return await main(*args)

    def target() -> None:
        try:
            out["result"] = csp.run(entry, loop=loop_name)
        except BaseException as exc:  # handed to the caller
            out["error"] = exc

    ctx = fuzzed(seed) if fuzz and loop_name == "asyncio" else _seeded(seed)
    with ctx:
        th = threading.Thread(target=target, name=f"csp.run seed={seed}", daemon=True)
        th.start()
        th.join(limit)
        if th.is_alive():
            raise Hang(_hang_report(th, loops, seed, loop_name, limit, describe))
    if "error" in out:
        raise out["error"]
    return out.get("result")


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _hang_report(
    th: threading.Thread,
    loops: list[asyncio.AbstractEventLoop],
    seed: int,
    loop_name: str,
    limit: float,
    describe: Callable[[], str] | None,
) -> str:
    head = f"seed={seed} loop={loop_name}: csp.run did not return within {limit:g} s"
    if not loops:
        return head + " (main never started)"
    loop = loops[0]
    done = threading.Event()
    info: list[str] = []

    def look() -> None:
        try:
            info.append(describe_tasks(loop))
            if describe is not None:
                info.append(describe())
        except BaseException:
            info.append(traceback.format_exc())
        finally:
            done.set()

    try:
        loop.call_soon_threadsafe(look)
    except RuntimeError:  # closed meanwhile
        done.set()
    if not done.wait(2.0):
        frame = sys._current_frames().get(th.ident or -1)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "?"
        info.append("the loop does not run callbacks (busy in one step?); its thread:\n" + stack)
    # Stop it (the run, then Runner.close's clean-up); the thread is a daemon anyway.
    for _ in range(20):
        if not th.is_alive():
            break
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        th.join(0.1)
    return head + "; still alive:\n" + "\n".join(info)


def arun_fuzzed(loop_name: str, seed: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` under a plain ``asyncio.Runner`` (csp outside ``csp.run``): on the
    asyncio loop a ``FuzzLoop(seed)`` with the real clock, on uvloop the stock loop
    (its ready queue cannot be shuffled). ``random`` is seeded with ``seed`` too."""
    factory: Callable[[], asyncio.AbstractEventLoop]
    if loop_name == "asyncio":
        factory = functools.partial(fuzz_loop, seed, virtual_time=False)
    else:
        import uvloop

        factory = uvloop.new_event_loop
    with _seeded(seed), asyncio.Runner(loop_factory=factory) as r:
        print(f"schedfuzz: seed={seed} loop={loop_name}", flush=True)
        return r.run(fn(*args))
