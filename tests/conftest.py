"""Shared test fixtures: the reference data in tests/fixtures (see its README), a local HTTP server."""

from __future__ import annotations

import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = PROJECT_ROOT / "tests" / "fixtures"


def tiktoken_like(tokenizer, name: str = "reference"):
    """tiktoken's encoder over ``tokenizer``'s vocab (its ids follow merge order, so they are valid
    ranks) and special tokens: the peer whose ids ours must equal."""
    import tiktoken

    from scratchlm.tokenizer.pretokenize import GPT2_PATTERN

    specials = {special: tokenizer.token_id(special) for special in tokenizer.special_tokens}
    ranks = {token: token_id for token_id, token in tokenizer.vocab.items()
             if token.decode("utf-8", "replace") not in specials}
    return tiktoken.Encoding(name, pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=specials)


def as_in_a_terminal() -> None:
    """``preexec_fn`` for a child that stands for a command typed in a terminal, where Ctrl-C raises
    KeyboardInterrupt. A suite started as a background job of a script (``make test &``) runs with
    SIGINT ignored, as non-interactive shells start such jobs, and every child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """snakemake (of this environment) on the project's Snakefile in ``workdir``, with its config.yaml."""
    return [str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(PROJECT_ROOT / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), *args]


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures: GPT-2's tokenizer files, the CS336 tokenizer fixtures, numerical snapshots."""
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def reference_tokenizers_dir() -> Path:
    """tests/fixtures/reference-tokenizers (TinyStories 10K and OWT 32K in GPT-2 format)."""
    return FIXTURES_DIR / "reference-tokenizers"


@pytest.fixture
def full_disk(tmp_path) -> Iterator[Path]:
    """A folder on a real 64 KiB tmpfs, where larger writes run out of space (root only: skipped
    where mounting is not allowed)."""
    import subprocess

    folder = tmp_path / "full"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; misbehaves as configured on the server object."""

    server: _Server

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
        if srv.send_length:
            self.send_header("Content-Length", str(len(body) - start))
        else:  # the body ends when the connection closes, as with some old servers
            self.close_connection = True
        self.end_headers()
        payload = body[start:]
        if srv.stall:
            srv.release.wait(5)  # send nothing: the client's read times out
            return
        if srv.stall_after_half:  # half the body, then silence (the client times out or is killed)
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            srv.release.wait(5)
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
        self.stall_after_half = False
        self.send_length = True
        self.release = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def http_server() -> Iterator[_Server]:
    """An HTTP server on 127.0.0.1 serving ``.files`` (path -> bytes); it can drop, stall or fail requests."""
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
