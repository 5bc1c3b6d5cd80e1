"""csp.context: Go's package context (cancellation trees, deadlines, request values).

A context carries a cancellation signal (``ctx.done()``, a channel closed when the
context ends, usable in ``csp.select``), an optional deadline and request-scoped
values down a call tree. ``scope(ctx)`` bridges it to asyncio cancellation so plain
asyncio code stops when the context ends. The implementation lives in
``csp._context``. Example::

    import csp
    from csp import context

    async def main() -> None:
        ctx, cancel = context.with_timeout(context.background(), 1.0)
        try:
            i, _ = await csp.select(work.recv, ctx.done().recv)
            if i == 1:
                print(ctx.err())  # context deadline exceeded
        finally:
            cancel()
"""

from __future__ import annotations

from csp._context import (
    Canceled,
    CancelFunc,
    Context,
    DeadlineExceeded,
    Scope,
    after_func,
    background,
    cause,
    notify_context,
    scope,
    todo,
    with_cancel,
    with_cancel_cause,
    with_deadline,
    with_deadline_cause,
    with_timeout,
    with_timeout_cause,
    with_value,
    without_cancel,
)

__all__ = [
    "CancelFunc",
    "Canceled",
    "Context",
    "DeadlineExceeded",
    "Scope",
    "after_func",
    "background",
    "cause",
    "notify_context",
    "scope",
    "todo",
    "with_cancel",
    "with_cancel_cause",
    "with_deadline",
    "with_deadline_cause",
    "with_timeout",
    "with_timeout_cause",
    "with_value",
    "without_cancel",
]
