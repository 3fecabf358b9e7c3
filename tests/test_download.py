"""The download stage against a real HTTP server on 127.0.0.1 (plain, gzip, dropped connections...)."""

from __future__ import annotations

import gzip
import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scratchlm import fileio
from scratchlm.cli import main
from scratchlm.data.download import DownloadError, download

DATA = b"".join(b"line %d: Once upon a time, caf\xc3\xa9 and stories.\n" % i for i in range(20_000))


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; misbehaves as configured on the server object."""

    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        if srv.failures_left > 0:
            srv.failures_left -= 1
            self.send_error(503)
            return
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and srv.honor_range:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if srv.stall:
            srv.release.wait(5)  # send nothing: the client's read times out
            return
        if srv.drops_left > 0:  # hang up half-way through the body
            srv.drops_left -= 1
            payload = payload[: len(payload) // 2]
            self.close_connection = True
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.honor_range = True
        self.drops_left = 0
        self.failures_left = 0
        self.stall = False
        self.release = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def fast(**kwargs):
    """Download options for tests: no waiting between retries, short timeouts, small chunks."""
    return {"retries": 3, "timeout_s": 2.0, "backoff_s": 0.0, "chunk_size": 4096} | kwargs


def assert_no_leftovers(directory: Path, *keep: str) -> None:
    assert sorted(p.name for p in directory.iterdir()) == sorted(keep)


def test_plain_file_with_checksum(server, tmp_path):
    server.files["/corpus.txt"] = DATA
    out = download(server.url("/corpus.txt"), tmp_path / "out.txt", sha256=hashlib.sha256(DATA).hexdigest(), **fast())
    assert out.read_bytes() == DATA
    assert server.requests == [("/corpus.txt", None)]
    assert_no_leftovers(tmp_path, "out.txt")


def test_gzip_is_decompressed_on_the_fly_including_multi_member(server, tmp_path):
    half = len(DATA) // 2
    server.files["/corpus.txt.gz"] = gzip.compress(DATA[:half]) + gzip.compress(DATA[half:])
    download(server.url("/corpus.txt.gz"), tmp_path / "out.txt", **fast())
    assert (tmp_path / "out.txt").read_bytes() == DATA


def test_checksum_is_of_the_transferred_bytes(server, tmp_path):
    packed = gzip.compress(DATA)
    server.files["/c.gz"] = packed
    download(server.url("/c.gz"), tmp_path / "out.txt", sha256=hashlib.sha256(packed).hexdigest().upper(), **fast())
    assert (tmp_path / "out.txt").read_bytes() == DATA


@pytest.mark.parametrize("honor_range", [True, False], ids=["range", "range-ignored"])
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_dropped_connection_resumes_with_exact_bytes(server, tmp_path, honor_range, compressed):
    server.files["/c.txt.gz" if compressed else "/c.txt"] = gzip.compress(DATA) if compressed else DATA
    server.honor_range, server.drops_left = honor_range, 2
    path = "/c.txt.gz" if compressed else "/c.txt"
    download(server.url(path), tmp_path / "out.txt", **fast())
    assert (tmp_path / "out.txt").read_bytes() == DATA
    ranges = [rng for _, rng in server.requests]
    assert len(ranges) == 3 and ranges[0] is None
    size = len(server.files[path])
    # The second request resumes where the first one was cut off (half of the body).
    assert ranges[1] == f"bytes={size // 2}-"
    assert_no_leftovers(tmp_path, "out.txt")


def test_not_found_fails_at_once_with_clear_message(server, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404"):
        download(server.url("/missing.txt"), tmp_path / "out.txt", **fast())
    assert len(server.requests) == 1  # a 404 is not retried
    assert_no_leftovers(tmp_path)


def test_server_errors_are_retried(server, tmp_path):
    server.files["/c.txt"] = DATA
    server.failures_left = 2
    download(server.url("/c.txt"), tmp_path / "out.txt", **fast())
    assert (tmp_path / "out.txt").read_bytes() == DATA
    with pytest.raises(DownloadError, match=r"gave up after 3 attempt.*HTTP 503"):
        server.failures_left = 5
        download(server.url("/c.txt"), tmp_path / "again.txt", **fast())
    assert not (tmp_path / "again.txt").exists()


def test_checksum_mismatch_keeps_previous_output(server, tmp_path):
    server.files["/c.txt"] = DATA
    out = tmp_path / "out.txt"
    out.write_bytes(b"previous")
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download(server.url("/c.txt"), out, sha256="0" * 64, **fast())
    assert out.read_bytes() == b"previous"
    assert_no_leftovers(tmp_path, "out.txt")


def test_timeout_gives_up_with_clear_message(server, tmp_path):
    server.files["/slow.txt"] = DATA
    server.stall = True
    with pytest.raises(DownloadError, match=r"timed out"):
        download(server.url("/slow.txt"), tmp_path / "out.txt", **fast(timeout_s=0.2, retries=2))
    assert len(server.requests) == 2
    assert_no_leftovers(tmp_path)


def test_truncated_gzip_is_an_error(server, tmp_path):
    server.files["/c.gz"] = gzip.compress(DATA)[:-100]
    with pytest.raises(DownloadError, match="ends early"):
        download(server.url("/c.gz"), tmp_path / "out.txt", **fast())
    assert_no_leftovers(tmp_path)


def test_full_disk_leaves_nothing(server, tmp_path, monkeypatch):
    server.files["/c.txt"] = DATA
    real_open = open
    # Every write to /dev/full fails with ENOSPC, as a full disk does.
    monkeypatch.setattr(fileio, "open", lambda path, mode, **kw: real_open("/dev/full", mode, **kw), raising=False)
    with pytest.raises(DownloadError, match="disk full"):
        download(server.url("/c.txt"), tmp_path / "out.txt", **fast())
    assert_no_leftovers(tmp_path)


def test_local_path_and_file_url(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(DATA)
    (src / "a.txt.gz").write_bytes(gzip.compress(DATA))
    download(str(src / "a.txt"), tmp_path / "plain.txt")
    download((src / "a.txt.gz").as_uri(), tmp_path / "unzipped.txt")
    download(str(src / "a.txt.gz"), tmp_path / "kept.gz", decompress=False)
    assert (tmp_path / "plain.txt").read_bytes() == DATA == (tmp_path / "unzipped.txt").read_bytes()
    assert gzip.decompress((tmp_path / "kept.gz").read_bytes()) == DATA
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        download(str(src / "missing.txt"), tmp_path / "x.txt")
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'"):
        download("ftp://example.org/a.txt", tmp_path / "x.txt")


def test_cli(server, tmp_path, capsys):
    server.files["/c.txt"] = DATA
    assert main(["download", server.url("/c.txt"), str(tmp_path / "out.txt"), "--retries", "1"]) == 0
    assert (tmp_path / "out.txt").read_bytes() == DATA
    assert main(["download", server.url("/nope.txt"), str(tmp_path / "nope.txt"), "--retries", "1"]) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert main(["download", str(tmp_path / "absent.txt"), str(tmp_path / "x.txt")]) == 1
    assert "absent.txt" in capsys.readouterr().err
