"""The exceptions csp raises for Go's panics and fatal errors.

A small, fixed set; each message is Go's own text.
"""

from __future__ import annotations

__all__ = ["ChannelError", "ClosedChannelError", "DeadlockError", "WouldBlock"]


class ChannelError(RuntimeError):
    """A misuse of a channel, such as ``close(csp.nil)`` (Go: a runtime panic).

    Example::

        try:
            csp.nil.close()
        except csp.ChannelError as err:
            print(err)  # close of nil channel
    """


class ClosedChannelError(ChannelError):
    """Send on, or close of, a closed channel.

    Go: the panics ``send on closed channel`` and ``close of closed channel``.
    Example::

        ch = csp.Chan[int](1)
        ch.close()
        try:
            await ch.send(1)
        except csp.ClosedChannelError as err:
            print(err)  # send on closed channel
    """


class DeadlockError(RuntimeError):
    """Raised by :func:`csp.run` when every goroutine is blocked forever.

    Go: ``fatal error: all goroutines are asleep - deadlock!``. The message starts
    with that text (without ``fatal error:``) and lists where each goroutine waits.
    Example::

        async def main() -> None:
            await csp.Chan[int]().recv()  # nobody will ever send

        try:
            csp.run(main)
        except csp.DeadlockError as err:
            print(err)  # all goroutines are asleep - deadlock! ... [chan receive] ...
    """


class WouldBlock(Exception):
    """Raised by the non-blocking channel calls (``send_nowait``, ``recv_nowait``,
    ``recv_ok_nowait``) when the operation cannot complete now.

    Not a :class:`ChannelError`: nothing is wrong with the channel. Example::

        try:
            v = ch.recv_nowait()
        except csp.WouldBlock:
            v = None  # nothing ready
    """
