"""The exceptions csp raises for Go's panics and fatal errors.

A small, fixed set; each message is Go's own text.
"""

from __future__ import annotations

__all__ = ["ChannelError", "ClosedChannelError", "DeadlockError"]


class ChannelError(RuntimeError):
    """A misuse of a channel, such as ``close(csp.nil)`` (Go: a runtime panic)."""


class ClosedChannelError(ChannelError):
    """Send on, or close of, a closed channel.

    Go: the panics ``send on closed channel`` and ``close of closed channel``.
    """


class DeadlockError(RuntimeError):
    """Raised by :func:`csp.run` when every goroutine is blocked forever.

    Go: ``fatal error: all goroutines are asleep - deadlock!``. The message starts
    with that text (without ``fatal error:``) and lists where each goroutine waits.
    """
