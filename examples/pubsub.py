"""Pub/sub broadcast with subscribe and unsubscribe: a broker goroutine owns the set.

Go pattern: the generic `Broker` (icza's answer to "How to broadcast message using
channel" on Stack Overflow), itself the "stateful goroutine" of Go by Example:
Stateful Goroutines. One goroutine owns the subscriber set; everyone else talks to it
through channels, so no lock is needed. Shows: channels of channels, a `select` loop
over several request channels, try-send (select + default) so one slow subscriber
cannot block the broker, `close` ending each subscriber's `for range`.

    func (b *Broker[T]) Start() {
        subs := map[chan T]struct{}{}
        for {
            select {
            case <-b.stopCh:
                for msgCh := range subs { close(msgCh) }
                return
            case msgCh := <-b.subCh:
                subs[msgCh] = struct{}{}
            case msgCh := <-b.unsubCh:
                delete(subs, msgCh)
                close(msgCh)
            case msg := <-b.publishCh:
                for msgCh := range subs {
                    select {            // buffered: never block the broker
                    case msgCh <- msg:
                    default:            // subscriber too slow: drop the message
                    }
                }
            }
        }
    }

    func (b *Broker[T]) Subscribe() chan T {
        msgCh := make(chan T, 16)
        b.subCh <- msgCh
        return msgCh
    }
"""

from __future__ import annotations

from typing import Generic, TypeVar

import csp

T = TypeVar("T")


class Broker(Generic[T]):
    def __init__(self) -> None:
        self.stop_ch = csp.Chan[None]()
        self.publish_ch = csp.Chan[T]()
        self.sub_ch = csp.Chan[csp.Chan[T]]()
        self.unsub_ch = csp.Chan[csp.Chan[T]]()
        self.dropped = 0

    async def start(self) -> None:
        subs: dict[csp.Chan[T], None] = {}  # a dict keeps subscription order
        while True:
            i, v = await csp.select(
                self.stop_ch.recv, self.sub_ch.recv, self.unsub_ch.recv, self.publish_ch.recv
            )
            if i == 0:
                for msg_ch in subs:
                    msg_ch.close()
                return
            if i == 1:
                subs[v] = None
            elif i == 2:
                del subs[v]
                v.close()
            else:
                for msg_ch in subs:
                    j, _ = await csp.select((msg_ch.send, v), default=True)
                    if j == -1:
                        self.dropped += 1

    async def subscribe(self) -> csp.Chan[T]:
        msg_ch = csp.Chan[T](16)
        await self.sub_ch.send(msg_ch)
        return msg_ch

    async def unsubscribe(self, msg_ch: csp.Chan[T]) -> None:
        await self.unsub_ch.send(msg_ch)

    async def publish(self, msg: T) -> None:
        await self.publish_ch.send(msg)

    def stop(self) -> None:
        self.stop_ch.close()


async def main() -> None:
    broker = Broker[str]()
    csp.go(broker.start)
    wg = csp.WaitGroup()
    inbox: dict[str, list[str]] = {}

    async def subscriber(name: str, msgs: csp.Chan[str]) -> None:
        inbox[name] = [m async for m in msgs]  # ends when the broker closes msgs

    subs = {name: await broker.subscribe() for name in ("ann", "bob", "cid")}
    for name, msgs in subs.items():
        wg.go(subscriber, name, msgs)

    for n in (1, 2, 3):
        await broker.publish(f"news {n}")
    await broker.unsubscribe(subs["cid"])  # cid leaves: its channel is closed
    for n in (4, 5):
        await broker.publish(f"news {n}")
    late = await broker.subscribe()  # joins late: sees only what follows
    wg.go(subscriber, "dee", late)
    await broker.publish("news 6")
    broker.stop()
    await wg.wait()

    for name in sorted(inbox):
        print(f"{name}: {', '.join(inbox[name])}")
    print("dropped:", broker.dropped)


if __name__ == "__main__":
    csp.run(main)
