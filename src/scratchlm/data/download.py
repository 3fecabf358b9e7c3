"""Fetch a corpus file from https://, http://, file:// or a local path, safely.

Bytes stream into a temporary file beside the output that is renamed only when the transfer
is complete (and its optional sha256 matches), so an interrupted run never leaves a truncated
corpus under the final name. ``.gz`` sources are decompressed on the fly. HTTP transfers retry
with exponential back-off and resume with a ``Range`` request; a server that ignores ``Range``
resends the whole file and the part we already have is skipped, so the bytes are exact either way.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path
from typing import IO

from scratchlm import __version__
from scratchlm.fileio import atomic_open
from scratchlm.progress import Progress

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
# Client errors that will not go away by asking again; everything else (5xx, 408, 429,
# timeouts, dropped connections) is retried.
FATAL_HTTP_STATUS = frozenset(range(400, 500)) - {408, 416, 429}
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(OSError):
    """A download that cannot complete: HTTP error, retries used up, bad checksum, full disk."""


class _Sink:
    """Where the raw bytes go: a sha256 of them, gunzip if asked, then the output file."""

    def __init__(self, handle: IO[bytes], *, gunzip: bool, source: str) -> None:
        self.handle, self.source = handle, source
        self.sha256 = hashlib.sha256()
        self.gunzip = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if gunzip else None

    def write(self, raw: bytes) -> None:
        self.sha256.update(raw)
        if self.gunzip is None:
            self.handle.write(raw)
            return
        try:
            self.handle.write(self.gunzip.decompress(raw))
            while self.gunzip.eof and self.gunzip.unused_data:  # a file may hold several gzip members
                rest = self.gunzip.unused_data
                self.gunzip = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                self.handle.write(self.gunzip.decompress(rest))
        except zlib.error as error:
            raise DownloadError(f"{self.source}: not valid gzip data ({error})") from None

    def finish(self) -> str:
        """Check the gzip stream is complete; return the sha256 hex digest of the raw bytes."""
        if self.gunzip is not None and not self.gunzip.eof:
            raise DownloadError(f"{self.source}: gzip data ends early (truncated file)")
        return self.sha256.hexdigest()


class _HttpTransfer:
    """One HTTP(S) download with retries; remembers how many bytes it already has."""

    def __init__(self, url: str, sink: _Sink, *, timeout_s: float, chunk_size: int) -> None:
        self.url, self.sink, self.timeout_s, self.chunk_size = url, sink, timeout_s, chunk_size
        self.received = 0
        self.total: int | None = None
        self.use_range = True
        self.progress = Progress(f"download {Path(urllib.parse.urlparse(url).path).name}")

    def _open(self) -> http.client.HTTPResponse:
        headers = {"User-Agent": f"scratchlm/{__version__}"}
        if self.received and self.use_range:
            headers["Range"] = f"bytes={self.received}-"
        request = urllib.request.Request(self.url, headers=headers)
        return urllib.request.urlopen(request, timeout=self.timeout_s)

    def _bytes_to_skip(self, response: http.client.HTTPResponse) -> int:
        """How much of this response's body we already have; learns the total size."""
        if response.status == 206:
            match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != self.received:
                self.use_range = False  # a confused server: ask for the whole file next time
                raise ConnectionError(f"unexpected Content-Range {response.headers.get('Content-Range')!r}")
            if match.group(3) != "*":
                self.total = int(match.group(3))
            return 0
        length = response.headers.get("Content-Length")
        self.total = int(length) if length is not None else None
        if self.received:
            log.warning("%s: server ignored the Range request; skipping the first %d bytes", self.url, self.received)
        return self.received

    def attempt(self) -> None:
        """One request: append what is new to the sink; raise ConnectionError if cut short."""
        with self._open() as response:
            skip = self._bytes_to_skip(response)
            self.progress.total = self.total
            while chunk := response.read(self.chunk_size):
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                if chunk:
                    self.sink.write(chunk)
                    self.received += len(chunk)
                    self.progress.update(len(chunk))
        if skip or (self.total is not None and self.received < self.total):
            raise ConnectionError(f"connection closed after {self.received} of {self.total} bytes")
        if self.total is not None and self.received > self.total:
            raise DownloadError(f"{self.url}: server sent {self.received} bytes, more than the {self.total} announced")

    def run(self, *, retries: int, backoff_s: float) -> None:
        """Attempt until complete; ``retries`` counts consecutive attempts that made no progress."""
        failures = 0
        with self.progress:
            while True:
                before = self.received
                try:
                    self.attempt()
                    return
                except urllib.error.HTTPError as error:
                    if error.code in FATAL_HTTP_STATUS:
                        raise DownloadError(f"{self.url}: HTTP {error.code} {error.reason}") from None
                    if error.code == 416:  # Range Not Satisfiable: fall back to skipping
                        self.use_range = False
                    reason = f"HTTP {error.code} {error.reason}"
                except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as error:
                    reason = self._describe(error)
                failures = 1 if self.received > before else failures + 1
                if failures >= retries:
                    raise DownloadError(
                        f"{self.url}: gave up after {failures} attempt(s) without progress "
                        f"({self.received} of {self.total if self.total is not None else '?'} bytes): {reason}"
                    )
                delay = backoff_s * 2 ** (failures - 1)
                log.warning("%s: %s; retrying in %.1fs from byte %d", self.url, reason, delay, self.received)
                time.sleep(delay)

    def _describe(self, error: Exception) -> str:
        cause = getattr(error, "reason", error)
        if isinstance(cause, TimeoutError) or isinstance(error, TimeoutError):
            return f"no data for {self.timeout_s:g}s (timed out)"
        return f"{type(cause).__name__}: {cause}"


def local_source(source: str) -> Path | None:
    """The file a ``file://`` URL or plain path names; None for http(s) URLs."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # (one letter would be a Windows drive)
        raise ValueError(f"{source}: unsupported URL scheme {parsed.scheme!r} (use https, http, file or a path)")
    return Path(source)


def _copy_local(path: Path, sink: _Sink, chunk_size: int) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as src, Progress(f"copy {path.name}", total=path.stat().st_size) as progress:
        while chunk := src.read(chunk_size):
            sink.write(chunk)
            progress.update(len(chunk))


def download(source: str, output: str | os.PathLike, *, sha256: str | None = None, retries: int = 5,
             timeout_s: float = 60.0, backoff_s: float = 2.0, decompress: bool | None = None,
             chunk_size: int = CHUNK_SIZE) -> Path:
    """Download (or copy) ``source`` to ``output``; ``decompress`` defaults to "source ends in .gz".

    The output appears only when everything succeeded; a sha256 is of the bytes as transferred.
    """
    output = Path(output)
    local = local_source(source)
    if decompress is None:
        decompress = urllib.parse.urlparse(source).path.endswith(".gz")
    log.info("%s %s -> %s%s", "copying" if local else "downloading", source, output,
             " (gunzip)" if decompress else "")
    try:
        with atomic_open(output, "wb") as handle:
            sink = _Sink(handle, gunzip=decompress, source=source)
            if local is not None:
                _copy_local(local, sink, chunk_size)
            else:
                _HttpTransfer(source, sink, timeout_s=timeout_s, chunk_size=chunk_size).run(
                    retries=retries, backoff_s=backoff_s)
            digest = sink.finish()
            if sha256 and digest != sha256.lower():
                raise DownloadError(f"{source}: sha256 mismatch: expected {sha256.lower()}, got {digest}")
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DownloadError(f"{output}: disk full while writing ({error.strerror}); nothing was kept") from None
        raise
    log.info("wrote %s (%d bytes, sha256 of the source %s)", output, output.stat().st_size, digest)
    return output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``scratchlm download``."""
    parser.add_argument("source", help="https://, http://, file:// URL or a local path (.gz is decompressed)")
    parser.add_argument("output", help="file to write, e.g. results/data/owt_train.txt")
    parser.add_argument("--sha256", default=None, help="expected sha256 of the transferred (compressed) bytes")
    parser.add_argument("--retries", type=int, default=5, help="consecutive attempts without progress before giving up")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="socket timeout per read, in seconds")
    parser.add_argument("--backoff-s", type=float, default=2.0, help="first retry delay, doubled each failure")
    parser.add_argument("--no-decompress", dest="decompress", action="store_const", const=False, default=None,
                        help="keep .gz data compressed")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``scratchlm download``."""
    try:
        download(args.source, args.output, sha256=args.sha256, retries=args.retries, timeout_s=args.timeout_s,
                 backoff_s=args.backoff_s, decompress=args.decompress)
    except DownloadError as error:
        log.error("%s", error)
        return 1
    return 0
