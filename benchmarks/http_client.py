"""What the load benchmarks and the tests use to talk to a real server: a free port, a server process, a
minimal keep-alive HTTP client, and the event loop the clients run on."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(command: list[str], port: int, ready_timeout: float = 120.0, env: dict | None = None,
           headers: dict | None = None, log: Path | None = None):
    """Run ``command`` (a server on 127.0.0.1:``port``); yield (url, process) once ``/ready`` answers 200.

    ``headers`` go with each ``/ready`` poll (an ``Authorization`` for a server started with ``--api-key``);
    the server's stderr is written to ``log`` (for a test to read every line it printed), else to a temporary
    file: never a pipe, which a server's access log would fill and then block on.

    The process is terminated (SIGTERM, then SIGKILL after 30 s) on the way out.
    """
    import httpx

    err = open(log, "w") if log is not None else tempfile.TemporaryFile("w+")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, text=True, env=env)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                err.flush()
                said = log.read_text() if log is not None else (err.seek(0), err.read())[1]
                raise RuntimeError(f"{command[:4]} exited: {said[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1, headers=headers).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[:4]} not ready within {ready_timeout} s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        err.close()


class RawHttpClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: one connection, one request at a time.

    The load generator shares the cores with the server, so its own cost per request is part of what
    a run measures: this client does only what a JSON POST needs (about a fifth of aiohttp's cost
    here), the way wrk or h2load would if this machine had them.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader, self._writer = reader, writer

    @classmethod
    async def connect(cls, url: str) -> "RawHttpClient":
        """A connection to ``http://HOST:PORT``."""
        host, port = url.removeprefix("http://").rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    async def post_json(self, path: str, payload) -> tuple[int, bytes]:
        """POST ``payload`` as JSON; returns (status, body). Needs a Content-Length answer (no chunks)."""
        body = json.dumps(payload).encode()
        self._writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        status = int((await self._reader.readline()).split(b" ", 2)[1])
        length = None
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"the answer to POST {path} has no Content-Length; this client needs one")
        return status, await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


def run_client(coroutine):
    """Run the load generator's coroutine on uvloop where installed (as the server does), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
