"""Property-based fuzzing of both webhook endpoints (hypothesis, fixed seed).

Each example is one raw HTTP request written on a socket to the real intake app (its real
outbox, the daemon's own logging set-up): raw bytes, mutated real payloads, broken multipart
framing, bad header bytes, charsets and content encodings. Whatever arrives, the reply is
never a 5xx, no log line is an error or carries a traceback or the secret, and ``/healthz``
still answers 200 afterwards.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import socket
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from crosswatchd.config import Settings
from crosswatchd.logs import configure_logging
from crosswatchd.outbox import Outbox
from crosswatchd.web import build_app
from tests.intake_support import PLEX, SECRET, TAUTULLI, TEMPLATE

EXAMPLES = 2_200
REAL_PAYLOADS = [p.read_bytes() for p in sorted(PLEX.glob("*.json"))]
REAL_TAUTULLI = [p.read_bytes() for p in sorted(TAUTULLI.glob("*.json"))] + [TEMPLATE.read_bytes()]


class _Server:
    """The intake app served from its own event loop in a thread (hypothesis drives it
    synchronously, one socket per example)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        from aiohttp import web

        settings = Settings(
            data_dir=self.data_dir,
            plex={"accounts": ["testyboi", "melissar26", "user_redacted", "elan", "Aquarion"]},
            tautulli={"users": ["testyboi"]},
            http={"max_body_bytes": 65_536},
        )
        outbox = await Outbox.open(self.data_dir / "outbox.sqlite3", providers=["trakt"])
        runner = web.AppRunner(build_app(settings, outbox, SECRET), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()
        await outbox.close()

    def stop(self) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def request(self, raw: bytes, *, hang_up: bool = False) -> int:
        """Send *raw*, return the status of the reply (0: the server closed without one).

        ``hang_up``: close our side after sending, as a client that gives up mid-body does
        (the server may then close without an answer)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(raw)
            if hang_up:
                sock.shutdown(socket.SHUT_WR)
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return 0
                data += chunk
        return int(data.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream, secrets=[SECRET])
    yield stream
    structlog.reset_defaults()
    for handler in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(handler)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, log_stream: io.StringIO) -> Iterator[_Server]:
    srv = _Server(tmp_path_factory.mktemp("fuzz"))
    srv.start()
    yield srv
    srv.stop()


# -- strategies ------------------------------------------------------------------------------

header_bytes = st.binary(min_size=0, max_size=40).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
)


@st.composite
def mutated(draw: st.DrawFn, sources: list[bytes]) -> bytes:
    """A real payload with a few bytes flipped, cut, repeated or inserted."""
    body = bytearray(draw(st.sampled_from(sources)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup", "num"]))
        at = draw(st.integers(0, max(0, len(body) - 1)))
        if op == "flip" and body:
            body[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del body[at:]
        elif op == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "dup":
            body[at:at] = body[at : at + draw(st.integers(1, 64))]
        else:
            body[at:at] = draw(st.sampled_from([b"1e999", b"-1", b"99999999999999999999", b"null"]))
    return bytes(body)


def _encode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    return body


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A raw request, and whether it is cut short (a body shorter than its Content-Length)."""
    route = draw(st.sampled_from(["plex", "tautulli"]))
    payload = draw(
        st.one_of(
            st.binary(max_size=300),
            mutated(REAL_PAYLOADS if route == "plex" else REAL_TAUTULLI),
            st.sampled_from(REAL_PAYLOADS + REAL_TAUTULLI),
            st.builds(
                lambda v: orjson.dumps(v),
                st.recursive(
                    st.none()
                    | st.booleans()
                    | st.integers(-(2**63), 2**63 - 1)
                    | st.floats(allow_nan=False)
                    | st.text(max_size=20),
                    lambda inner: (
                        st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
                    ),
                    max_leaves=12,
                ),
            ),
        )
    )
    form = draw(st.sampled_from(["json", "multipart", "multipart-broken", "form", "raw"]))
    boundary = draw(st.sampled_from([b"B", b"----x", b"\xff\xfe", b""]))
    charset = draw(
        st.sampled_from(
            ["", "; charset=utf-8", "; charset=bogus", "; charset=utf-16", "; charset=latin-1"]
        )
    )
    if form == "json":
        ctype, body = b"application/json" + charset.encode(), payload
    elif form == "form":
        ctype = b"application/x-www-form-urlencoded" + charset.encode()
        body = b"payload=" + draw(st.sampled_from([payload, payload.replace(b"%", b"%25")]))
    elif form == "multipart":
        part_headers = draw(
            st.lists(
                st.sampled_from(
                    [
                        b'Content-Disposition: form-data; name="payload"',
                        b"Content-Disposition: form-data; name=payload",
                        b'Content-Disposition: form-data; name="thumb"; filename="t.jpg"',
                        b"Content-Type: application/json",
                        b"Content-Transfer-Encoding: base64",
                        b"Content-Encoding: gzip",
                        b": ",
                        b"na me: x",
                        b"X-Long: " + b"a" * 9000,
                    ]
                )
                | header_bytes,
                min_size=0,
                max_size=5,
            )
        )
        ctype = b"multipart/form-data; boundary=" + boundary
        body = (
            b"--"
            + boundary
            + b"\r\n"
            + b"".join(h + b"\r\n" for h in part_headers)
            + b"\r\n"
            + payload
            + b"\r\n--"
            + boundary
            + b"--\r\n"
        )
    elif form == "multipart-broken":
        ctype = b"multipart/form-data; boundary=" + boundary
        body = draw(st.sampled_from([b"--", b"--B\r\n", b"--B\r\n\r\n", b""])) + payload
    else:
        ctype, body = draw(header_bytes), payload
    encoding = draw(st.sampled_from(["", "gzip", "deflate", "br", "bogus", "gzip-lie"]))
    headers = [b"Host: fuzz", b"Connection: close", b"Content-Type: " + ctype]
    if encoding == "gzip-lie":
        headers.append(b"Content-Encoding: gzip")
    elif encoding:
        headers.append(b"Content-Encoding: " + encoding.encode())
        body = _encode(body, encoding)
    token = draw(st.sampled_from(["query", "header", "bad-header", "none"]))
    path = f"/webhook/{route}".encode()
    if token == "query":
        path += f"?token={SECRET}".encode()
    elif token == "header":
        headers.append(f"X-Crosswatchd-Token: {SECRET}".encode())
    elif token == "bad-header":
        headers.append(b"X-Crosswatchd-Token: " + draw(header_bytes))
    headers.extend(draw(st.lists(header_bytes.map(lambda b: b"X-F: " + b), max_size=2)))
    short = draw(st.sampled_from([0, 0, 0, -1, 5]))
    length = len(body) + short
    headers.append(f"Content-Length: {max(0, length)}".encode())
    raw = b"POST " + path + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body
    return raw, short > 0


@seed(20261205)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=requests())
def test_no_request_gets_a_5xx(server: _Server, request: tuple[bytes, bool]) -> None:
    raw, cut_short = request
    status = server.request(raw, hang_up=cut_short)
    assert status < 500, raw[:300]
    if not cut_short:
        assert status != 0, raw[:300]  # a whole request always gets an answer


@pytest.mark.timeout(60)
def test_after_the_fuzz_no_error_line_no_traceback_no_secret_and_healthz_answers(
    server: _Server, log_stream: io.StringIO
) -> None:
    """Runs after the fuzz in this module (file order): the log it left behind is clean."""
    status = server.request(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    text = log_stream.getvalue()
    assert SECRET not in text
    traced = [line[-1500:] for line in text.splitlines() if "Traceback" in line]
    assert traced == []
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines, "the fuzz should have left log lines"
    errors = [line for line in lines if line.get("level") in ("error", "critical")]
    assert errors == []
