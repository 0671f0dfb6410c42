"""A loopback HTTP server for model files that honours Range requests and can drop a transfer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.loopback import serving


@dataclass
class FileServer:
    url: str
    ranges: list[str | None] = field(default_factory=list)
    # Total bytes served after which the connection drops once (then reset to None).
    cut_after: int | None = None
    sent: int = 0


class _RangeHandler(SimpleHTTPRequestHandler):
    """http.server's file handler plus single ``bytes=N-`` ranges, which fsspec sends."""

    state: FileServer

    def do_GET(self) -> None:
        self.state.ranges.append(self.headers.get("Range"))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start, end = 0, len(data) - 1
        wanted = self.headers.get("Range")
        if wanted:
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            start, end = int(first), min(int(last) if last else end, end)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start : end + 1]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        state = self.state
        if state.cut_after is not None and state.sent + len(body) > state.cut_after:
            self.wfile.write(body[: state.cut_after - state.sent])
            state.cut_after = None
            self.close_connection = True
            return
        state.sent += len(body)
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[FileServer]:
    """Serve ``tmp_path / "www"`` on a free loopback port."""
    root = tmp_path / "www"
    root.mkdir()
    state = FileServer(url="")
    handler = type("Handler", (_RangeHandler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    with serving(server) as state.url:
        yield state
