"""A TCP chat server: a goroutine per connection, a hub of channels, backpressure,
and graceful shutdown through a context.

Go pattern: the hub of the Gorilla WebSocket chat example (hub.go and client.go:
register / unregister / broadcast channels, a buffered `send` channel per client with
a readPump and a writePump, a client too slow to keep up is dropped), served over
plain TCP with the `for { conn := ln.Accept(); go handle(conn) }` loop of package
net, and shut down gracefully through a context, as `http.Server.Shutdown` does.

    func (h *Hub) run(ctx context.Context) {
        for {
            select {
            case <-ctx.Done():
                for c := range h.clients { c.send <- "* server shutting down"; close(c.send) }
                return
            case c := <-h.register:
                h.clients[c] = true
            case c := <-h.unregister:
                if _, ok := h.clients[c]; ok { delete(h.clients, c); close(c.send) }
            case msg := <-h.broadcast:
                for c := range h.clients {
                    select {
                    case c.send <- msg:
                    default:             // its buffer is full: too slow, drop it
                        close(c.send)
                        delete(h.clients, c)
                    }
                }
            }
        }
    }

Backpressure, both ways: `broadcast` is unbuffered, so a connection's reader waits
for the hub before it reads the next line (and TCP flow control then slows the sender
down); each writer waits for the socket (`await writer.drain()`) before it takes the
next message, and the hub never waits for a writer: a full `send` buffer drops that
client instead of stalling the room.

Shows: csp.go per connection (from asyncio.start_server's callback), a select loop
over register/unregister/broadcast channels, try-send with default, context.with_cancel
trees (server -> connection), csp.context.scope around plain asyncio reads and
drains, WaitGroup for shutdown, real sockets.

main() starts the server on 127.0.0.1 with port 0 (the OS picks a free port), runs
three real clients over real sockets (alice talks, bob listens, carol never reads and
is dropped), then shuts the server down and prints what each client saw.
"""

from __future__ import annotations

import asyncio
import socket

import csp
from csp import context

OUTBOX = 32  # messages buffered per client before it counts as too slow


class Client:
    """One connection as the hub sees it."""

    def __init__(self, name: str, ctx: context.Context, cancel: context.CancelFunc) -> None:
        self.name = name
        self.send = csp.Chan[str](OUTBOX)  # Go: send chan []byte (buffered)
        self.ctx, self.cancel = ctx, cancel  # cancelled on shutdown or when dropped
        self.dropped = False


async def try_send(ch: csp.Chan[str], msg: str) -> bool:
    """Go: ``select { case ch <- msg: return true; default: return false }``."""
    i, _ = await csp.select((ch.send, msg), default=True)
    return i == 0


class Hub:
    """Owns the set of clients; everyone else talks to it through its channels."""

    def __init__(self) -> None:
        self.register = csp.Chan[Client]()
        self.unregister = csp.Chan[Client]()
        self.broadcast = csp.Chan[str]()  # unbuffered: readers wait for the hub
        self.clients: dict[Client, None] = {}  # only run() touches it

    async def run(self, ctx: context.Context) -> None:
        while True:
            i, v = await csp.select(
                ctx.done().recv, self.register.recv, self.unregister.recv, self.broadcast.recv
            )
            if i == 0:
                for c in self.clients:
                    await try_send(c.send, "* server shutting down")
                    c.send.close()
                self.clients.clear()
                return
            if i == 1:
                self.clients[v] = None
                await try_send(v.send, f"welcome {v.name} ({len(self.clients)} online)")
                await self.deliver(f"* {v.name} joined", skip=v)
            elif i == 2:
                if v in self.clients:
                    del self.clients[v]
                    v.send.close()
                    await self.deliver(f"* {v.name} left")
            else:
                await self.deliver(v)

    async def deliver(self, msg: str, skip: Client | None = None) -> None:
        slow = [c for c in self.clients if c is not skip and not await try_send(c.send, msg)]
        for c in slow:
            del self.clients[c]
            c.dropped = True
            c.send.close()
            c.cancel()  # its writer may be stuck waiting for the socket
        for c in slow:
            await self.deliver(f"* {c.name} left (too slow)")


class Server:
    """Accepts connections and runs one goroutine per connection plus the hub."""

    def __init__(self) -> None:
        self.hub = Hub()
        self.ctx, self.cancel = context.with_cancel(context.background())
        self.conns = csp.WaitGroup()
        self.stopped = csp.Chan[None]()
        self.listener: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen on 127.0.0.1, on a free port the OS picks; return the port."""
        self.listener = await asyncio.start_server(self.accept, "127.0.0.1", 0)
        csp.go(self.serve)
        return int(self.listener.sockets[0].getsockname()[1])

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Go: conn, err := ln.Accept(); go handle(conn)
        # Small socket buffers, so that a client that stops reading fills them soon.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        writer.transport.set_write_buffer_limits(high=16384)
        self.conns.go(self.handle, reader, writer)

    async def serve(self) -> None:
        hub_done = csp.Chan[None]()

        async def hub() -> None:
            await self.hub.run(self.ctx)
            hub_done.close()

        csp.go(hub)
        await self.ctx.done().recv()  # shutdown requested
        assert self.listener is not None
        self.listener.close()  # stop accepting; open connections finish below
        await self.conns.wait()
        await hub_done.recv()
        self.stopped.close()

    async def shutdown(self) -> None:
        """Go: srv.Shutdown(ctx): stop accepting, say goodbye, wait for every connection."""
        self.cancel()
        await self.stopped.recv()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ctx, cancel = context.with_cancel(self.ctx)  # this connection's context
        try:
            async with context.scope(ctx):  # plain asyncio reads stop with the context
                name = (await reader.readline()).decode().strip()
        except (context.Canceled, ConnectionError):
            name = ""
        if not name:
            cancel()
            writer.close()
            return
        c = Client(name, ctx, cancel)
        i, _ = await csp.select((self.hub.register.send, c), ctx.done().recv)
        if i == 1:
            writer.close()
            return
        written = csp.Chan[None]()
        csp.go(self.write_pump, c, writer, written)
        await self.read_pump(c, reader)
        # Leaving: tell the hub, unless it is shutting down too (then it does not listen).
        await csp.select((self.hub.unregister.send, c), self.ctx.done().recv)
        await written.recv()  # the writer has sent what was queued and closed the socket
        cancel()

    async def read_pump(self, c: Client, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                async with context.scope(c.ctx):
                    line = await reader.readline()
            except (context.Canceled, ConnectionError):
                return
            if not line:
                return  # EOF: the client left
            msg = f"{c.name}: {line.decode().rstrip()}"
            # Unbuffered: wait for the hub before reading the next line (backpressure).
            i, _ = await csp.select((self.hub.broadcast.send, msg), c.ctx.done().recv)
            if i == 1:
                return

    async def write_pump(self, c: Client, writer: asyncio.StreamWriter,
                         written: csp.Chan[None]) -> None:
        try:
            async for msg in c.send:  # ends when the hub closes c.send
                writer.write(msg.encode() + b"\n")
                if c.ctx.err() is None:
                    try:
                        async with context.scope(c.ctx):
                            await writer.drain()  # wait while the socket is full
                    except context.Canceled:
                        pass  # dropped (checked below) or shutting down (keep writing)
                    except ConnectionError:
                        break
                if c.dropped:
                    break
        finally:
            if c.dropped:
                writer.transport.abort()  # too slow: discard what it did not read
            else:
                writer.close()  # flushes what is buffered, then closes
            written.close()


# -- real clients over real sockets -------------------------------------------------


class Chatter:
    """A test client: reads lines, counts chat lines, keeps the system lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.chat = 0
        self.system: list[str] = []

    @classmethod
    async def connect(cls, port: int, name: str, rcvbuf: int = 0) -> tuple[Chatter, str]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # a small receive window: this client's socket fills up quickly
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(f"{name}\n".encode())
        self = cls(reader, writer)
        welcome = (await reader.readline()).decode().rstrip()
        return self, welcome

    async def read_until(self, last: str) -> None:
        """Read lines until ``last`` arrives (or the server closes the connection)."""
        while True:
            line = (await self.reader.readline()).decode().rstrip()
            if not line:
                return
            if line.startswith("* "):
                self.system.append(line)
            else:
                self.chat += 1
            if line == last:
                return


async def main() -> None:
    server = Server()
    port = await server.start()
    print("chat server listening on 127.0.0.1 (port chosen by the OS)")
    alice, welcome = await Chatter.connect(port, "alice")
    print("alice:", welcome)
    bob, welcome = await Chatter.connect(port, "bob")
    print("bob:", welcome)
    carol, welcome = await Chatter.connect(port, "carol", rcvbuf=4096)
    print("carol:", welcome, "(and from now on reads nothing)")

    # alice talks: 600 lines of 1000 bytes, 20 at a time, each batch until it comes back.
    n, batch, pad = 600, 20, "x" * 991
    listening = asyncio.create_task(bob.read_until(f"alice: {n - 1:04d} {pad}"))
    for start in range(0, n, batch):
        for k in range(start, start + batch):
            alice.writer.write(f"{k:04d} {pad}\n".encode())
        await alice.writer.drain()
        await alice.read_until(f"alice: {start + batch - 1:04d} {pad}")
    await listening
    print(f"alice sent {n} lines; alice got {alice.chat} back, bob got {bob.chat}")

    try:  # carol reads at last: what was still buffered for her, then the end
        await carol.read_until("never")
    except ConnectionResetError:  # the server aborted the connection (a TCP reset)
        pass
    print(f"carol: disconnected by the server after {'fewer' if carol.chat < n else 'all'}"
          f" than {n} lines")

    bob.writer.close()  # bob leaves; the server notices EOF
    await alice.read_until("* bob left")
    await server.shutdown()  # graceful: goodbye to everyone, wait for every connection
    await alice.read_until("")  # to EOF
    print("alice saw:", ", ".join(line[2:] for line in alice.system))
    print("bob saw:", ", ".join(line[2:] for line in bob.system))
    for _ in range(100):  # let the finished goroutines be reaped
        if csp.num_goroutine() == 1:
            break
        await csp.gosched()
    print("server stopped; goroutines left:", csp.num_goroutine() - 1)


if __name__ == "__main__":
    csp.run(main)
