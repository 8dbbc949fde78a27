"""The response writes of a connection: what one step of the event loop writes goes out in one system call."""

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


def test_a_response_written_in_one_step_goes_out_as_one_write():
    async def main():
        transport = RecordingTransport()
        writes = CoalescedWrites(transport, asyncio.get_running_loop())
        writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        writes.write(b"{}")
        assert transport.writes == []  # held until the step ends
        await asyncio.sleep(0)
        assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        writes.write(b"next")  # a later step's write is its own
        await asyncio.sleep(0)
        assert transport.writes[1:] == [b"next"]

    asyncio.run(main())


def test_close_sends_what_is_held_first_and_a_closed_transport_gets_nothing_more():
    async def main():
        transport = RecordingTransport()
        writes = CoalescedWrites(transport, asyncio.get_running_loop())
        writes.write(b"head")
        writes.write(b"body")
        writes.close()
        assert transport.writes == [b"headbody"] and transport.closed
        writes.write(b"late")
        await asyncio.sleep(0)
        assert transport.writes == [b"headbody"]
        assert writes.get_extra_info("peername") == ("127.0.0.1", 5)  # the rest is the transport's

    asyncio.run(main())
