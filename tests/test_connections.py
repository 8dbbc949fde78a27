"""The response writes of a connection: a head and its body go out in one write."""

import asyncio

from ortpipe.serve.connections import CoalescedWrites


class RecordingTransport(asyncio.Transport):
    """The transport's side that CoalescedWrites touches: each write as the socket would receive it."""

    def __init__(self):
        super().__init__()
        self.writes, self.closed = [], False

    def write(self, data):
        self.writes.append(bytes(data))

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 5) if name == "peername" else default


def test_a_head_and_its_body_go_out_as_one_write_as_soon_as_the_body_is_written():
    async def main():
        transport = RecordingTransport()
        writes = CoalescedWrites(transport, asyncio.get_running_loop())
        writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert transport.writes == []  # the head waits for its body
        writes.write(b"{}")
        assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        writes.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # a write alone goes out when the step ends
        assert len(transport.writes) == 1
        await asyncio.sleep(0)
        assert transport.writes[1:] == [b"HTTP/1.1 100 Continue\r\n\r\n"]

    asyncio.run(main())


def test_close_sends_what_is_held_first_and_a_closed_transport_gets_nothing_more():
    async def main():
        transport = RecordingTransport()
        writes = CoalescedWrites(transport, asyncio.get_running_loop())
        writes.write(b"head")
        writes.close()
        assert transport.writes == [b"head"] and transport.closed
        writes.write(b"late")
        await asyncio.sleep(0)
        assert transport.writes == [b"head"]
        assert writes.get_extra_info("peername") == ("127.0.0.1", 5)  # the rest is the transport's

    asyncio.run(main())
