"""Graceful channel closing with many senders: the "stop channel" idiom.

Go pattern: Go 101, "How to Gracefully Close Channels". A channel must be closed by
its (only) sender, so with many senders nobody closes the data channel at all:

1. N senders, 1 receiver: the receiver closes an extra `stop` channel; every sender
   selects on it beside its send, so all of them stop; the data channel is simply
   dropped (it is garbage once nobody uses it).
2. M receivers, N senders: anyone may ask a moderator goroutine to close `stop`,
   through a cap-1 `to_stop` channel with a try-send (select + default), so the
   request never blocks and `stop` is closed exactly once.

Shows: select with a send case and a receive case, try-receive and try-send
(select + default), close as a broadcast, a cap-1 signalling channel, WaitGroup.go.

    // 1. N senders, 1 receiver (Go 101)
    for i := 0; i < NumSenders; i++ {
        go func() {
            for {
                select {           // try-receive: leave as early as possible
                case <-stopCh:
                    return
                default:
                }
                select {
                case <-stopCh:
                    return
                case dataCh <- value:
                }
            }
        }()
    }
    go func() {                    // the receiver
        for value := range dataCh {
            if done(value) { close(stopCh); return }
        }
    }()

    // 2. M receivers, N senders: the moderator
    toStop := make(chan string, 1)
    go func() { stoppedBy = <-toStop; close(stopCh) }()
    // a sender or receiver that wants to stop everything:
    select {
    case toStop <- "receiver#" + id:
    default:
    }

Because the data channel is unbuffered, every send that completed was received:
the totals match exactly, whatever the interleaving.
"""

from __future__ import annotations

import csp


async def n_senders_one_receiver() -> None:
    data, stop = csp.Chan[int](), csp.Chan[None]()
    senders = csp.WaitGroup()
    sent = [0] * 10
    received = 0

    async def sender(sid: int) -> None:
        value = sid * 1000
        while True:
            i, _ = await csp.select(stop.recv, default=True)  # already stopped?
            if i == 0:
                return
            i, _ = await csp.select(stop.recv, (data.send, value))
            if i == 0:
                return
            sent[sid] += 1
            value += 1

    async def receiver() -> None:
        nonlocal received
        async for _ in data:  # never ends by close: nobody closes `data`
            received += 1
            if received == 50:
                stop.close()  # the one receiver is the only closer of `stop`
                return

    for sid in range(10):
        senders.go(sender, sid)
    await receiver()
    await senders.wait()
    print(f"N senders, 1 receiver: received {received}, senders completed {sum(sent)} sends,"
          f" {len(sent)} senders stopped")


async def m_receivers_n_senders() -> None:
    data, stop = csp.Chan[int](), csp.Chan[None]()
    to_stop = csp.Chan[str](1)
    stopped_by = ""
    everyone = csp.WaitGroup()
    sent = received = 0

    async def moderator() -> None:
        nonlocal stopped_by
        stopped_by = await to_stop.recv() or ""
        stop.close()

    async def sender(sid: int) -> None:
        nonlocal sent
        for value in range(sid * 1000, sid * 1000 + 500):
            i, _ = await csp.select(stop.recv, default=True)
            if i == 0:
                return
            i, _ = await csp.select(stop.recv, (data.send, value))
            if i == 0:
                return
            sent += 1
        # ran out of values: ask for the stop (never blocks; one request wins)
        await csp.select((to_stop.send, f"sender#{sid}"), default=True)

    async def receiver(rid: int) -> None:
        nonlocal received
        while True:
            i, _ = await csp.select(stop.recv, default=True)
            if i == 0:
                return
            i, _ = await csp.select(stop.recv, data.recv)
            if i == 0:
                return
            received += 1
            if received >= 100:
                await csp.select((to_stop.send, f"receiver#{rid}"), default=True)
                return

    csp.go(moderator)
    for sid in range(10):
        everyone.go(sender, sid)
    for rid in range(3):
        everyone.go(receiver, rid)
    await everyone.wait()
    print(f"M receivers, N senders: stop requested by a {stopped_by.split('#')[0]},"
          f" >= 100 received: {received >= 100}, sends == receives: {sent == received}")


async def main() -> None:
    await n_senders_one_receiver()
    await m_receivers_n_senders()


if __name__ == "__main__":
    csp.run(main)
