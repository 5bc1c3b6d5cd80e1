"""csp: Go's concurrency model (goroutines, channels, select, ...) for asyncio.

The public surface is re-exported here; the implementation lives in private modules.
``csp.run(main)`` runs a program; ``csp.go(f, x)`` starts a goroutine; ``csp.Chan``
and ``csp.select`` move values between them. See the README for the Go -> csp table.
``csp.compiled`` says whether the core runs compiled or as pure Python.
Example::

    import csp

    async def main() -> None:
        ch = csp.Chan[str]()
        csp.go(ch.send, "hello")      # go func() { ch <- "hello" }()
        print(await ch.recv())        # fmt.Println(<-ch)

    csp.run(main)
"""

from csp import _mode, atomic, context, nats, testing  # _mode first: it picks the build
from csp._broadcast import Broadcast
from csp._chan import Chan, RecvChan, SendChan, nil
from csp._errors import ChannelError, ClosedChannelError, DeadlockError, WouldBlock
from csp._once import once_func, once_value, once_values
from csp._runtime import dump, go, gosched, num_goroutine, run
from csp._select import select, select_blocking
from csp._sync import Cond, ErrGroup, Mutex, Once, RWMutex, Semaphore, WaitGroup
from csp._time import Ticker, Timer, after, after_func, sleep, tick

__all__ = [
    "Broadcast",
    "Chan",
    "ChannelError",
    "ClosedChannelError",
    "Cond",
    "DeadlockError",
    "ErrGroup",
    "Mutex",
    "Once",
    "RWMutex",
    "RecvChan",
    "Semaphore",
    "SendChan",
    "Ticker",
    "Timer",
    "WaitGroup",
    "WouldBlock",
    "after",
    "after_func",
    "atomic",
    "compiled",
    "context",
    "nats",
    "dump",
    "go",
    "gosched",
    "nil",
    "num_goroutine",
    "once_func",
    "once_value",
    "once_values",
    "run",
    "select",
    "select_blocking",
    "sleep",
    "testing",
    "tick",
]

__version__ = "0.1.0"

#: True when csp's core runs from compiled extension modules, False for pure Python
#: (no compiler at install time, or ``CSP_NO_EXTENSIONS=1``). See docs/compiled.md.
compiled: bool = _mode.compiled()
