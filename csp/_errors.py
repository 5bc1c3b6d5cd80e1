"""The exceptions csp raises for Go's panics and fatal errors.

A small, fixed set; each message is Go's own text. They live here but belong to the
package: ``__module__`` is ``"csp"``, so a traceback prints ``csp.DeadlockError: ...``
(the name users catch) rather than this private module, and pickling finds them as
``csp.<name>``.
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

    __module__ = "csp"


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

    __module__ = "csp"


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

    __module__ = "csp"


class WouldBlock(Exception):
    """Raised by the non-blocking channel calls when the operation cannot complete now.

    ``ch.send_nowait(v)`` raises it when no receiver is parked and the buffer is full
    (or there is none); ``ch.recv_nowait()`` and ``ch.recv_ok_nowait()`` raise it when
    no value is ready and the channel is not closed. It is not a :class:`ChannelError`:
    nothing was misused, the call would have had to block (Go: the ``default`` case of
    a one-case ``select``). Example::

        try:
            ch.send_nowait(v)
        except csp.WouldBlock:
            dropped += 1  # nobody ready and no room: drop it, as a select with default would
    """

    __module__ = "csp"
