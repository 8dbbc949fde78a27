"""Connections that cannot hold the server (a bounded, timed request head and a bound on open connections),
and each response sent in one write.

uvicorn's httptools protocol accepts a request head of any size and waits for it forever (a 100 MiB header
line was read whole before the 401; 300 half-sent heads were held for 30 s; idle sockets filled a
128-descriptor limit). :func:`guarded_protocol` returns that protocol with three bounds:

- a request head (request line and headers) over ``max_head_bytes`` is answered ``431`` and closed;
- a head not complete within ``head_timeout_s`` of its first byte (or of the connection, for a connection
  that sends nothing) is closed — idle keep-alive connections are closed by uvicorn's own keep-alive timeout;
- past ``max_connections`` open connections, a new one is closed at once.

Bodies are bounded by ``--max-body`` where they are read (:func:`ortpipe.serve.asgi.read_body`), with the
same timeout between two parts of a body.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024


def _close_with(transport, status: int, reason: str, message: str) -> None:
    body = json.dumps({"error": message, "error_type": "validation"}).encode()
    transport.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: "
                    f"{len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
    transport.close()


class CoalescedWrites:
    """A response's head and body, written in one step of the event loop, sent in one system call.

    uvicorn writes a response's head and its body apart: two sends, two packets, and two wake-ups of the
    client for every answer. A write is held until the next one, which goes out with it at once, or until
    the step ends (or the transport closes): a head and its body go as one, as soon as the body is written.
    Everything else is the transport's.
    """

    def __init__(self, transport, loop):
        self._transport, self._loop, self._held = transport, loop, None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = data
            self._loop.call_soon(self._flush)
        else:
            data, self._held = self._held + data, None
            self._send(data)

    def _flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            self._send(data)

    def _send(self, data: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name):
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded, timed request head, a connection bound, and each response's
    writes coalesced (:class:`CoalescedWrites`)."""

    max_head_bytes = MAX_HEAD_BYTES
    head_timeout_s = 10.0
    max_connections = 1024

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_bytes, self._head_timer, self._in_head, self._heads = 0, None, True, 0
        if len(self.connections) > self.max_connections:
            transport.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head and self._head_timer is None:  # a keep-alive connection's next request begins
            self._arm_head_timer()
        heads_before = self._heads
        super().data_received(data)
        # bytes that finished no head and no body count towards the head being read (a chunk that finished
        # one holds body bytes too, and maybe a pipelined request's start: not counted)
        if self._in_head and self._heads == heads_before and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._cancel_head_timer()
                _close_with(self.transport, 431, "Request Header Fields Too Large",
                            f"the request line and headers are over {self.max_head_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        self._heads += 1
        self._cancel_head_timer()
        super().on_headers_complete()
        self.cycle.transport = CoalescedWrites(self.transport, self.loop)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._heads += 1

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if getattr(self, "_head_timer", None) is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(head_timeout_s: float, max_connections: int, max_head_bytes: int = MAX_HEAD_BYTES) -> type:
    """:class:`GuardedHttpToolsProtocol` with these bounds, for ``uvicorn.Config(http=…)``."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {
        "head_timeout_s": head_timeout_s, "max_connections": max_connections, "max_head_bytes": max_head_bytes})
