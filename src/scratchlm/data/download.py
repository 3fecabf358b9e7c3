"""Fetch a corpus file from https://, http://, file:// or a local path, safely.

HTTP bytes go to a partial file beside the output, ``.{name}.part``, that survives failures and
kills: the next attempt, in this process or a later one, resumes it with a ``Range`` request
(like ``wget -c``). A server that ignores ``Range`` resends the whole file, so the partial file is
restarted from byte 0. The output appears only when the transfer is complete: decompressed from
the partial file (``.gz`` sources) or renamed from it, with its optional sha256 checked.

Completeness policy: a transfer counts as complete only when something proves it: the size the
server announced (``Content-Length`` or ``Content-Range``), chunked transfer encoding (its last
chunk), a gzip stream's own end marker and CRC, or a configured ``sha256``. A server that sends
none of these and closes the connection could have stopped half-way, so such a download is
refused unless the caller opts in with ``allow_unverified=True`` (``allow_unverified: true`` in the
corpus config).
"""

from __future__ import annotations

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
from typing import IO, BinaryIO

from scratchlm import __version__
from scratchlm.fileio import atomic_open, exclusive_lock, require_file
from scratchlm.progress import progress_bar
from scratchlm.settings import DownloadSettings, SourceSettings, default_of

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
# Client errors that will not go away by asking again; everything else (5xx, 408, 429,
# timeouts, dropped connections) is retried.
FATAL_HTTP_STATUS = frozenset(range(400, 500)) - {408, 416, 429}
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(OSError):
    """A download that cannot complete: HTTP error, retries used up, bad checksum, full disk."""


class _Gunzip:
    """Streaming gunzip into ``handle``, including files of several gzip members."""

    def __init__(self, handle: IO[bytes], *, source: str) -> None:
        self.handle, self.source = handle, source
        self.stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def write(self, raw: bytes) -> None:
        try:
            self.handle.write(self.stream.decompress(raw))
            while self.stream.eof and self.stream.unused_data:  # a file may hold several gzip members
                rest = self.stream.unused_data
                self.stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                self.handle.write(self.stream.decompress(rest))
        except zlib.error as error:
            raise DownloadError(f"{self.source}: not valid gzip data ({error})") from None

    def finish(self) -> None:
        """Check that the gzip stream ended with its trailer (length and CRC checked by zlib)."""
        if not self.stream.eof:
            raise DownloadError(f"{self.source}: gzip data ends early (truncated file)")


class _HttpTransfer:
    """One HTTP(S) download into a partial file, with retries; resumes what the file already holds."""

    def __init__(self, url: str, part: BinaryIO, *, timeout_s: float, chunk_size: int) -> None:
        self.url, self.part, self.timeout_s, self.chunk_size = url, part, timeout_s, chunk_size
        self.received = part.seek(0, os.SEEK_END)
        self.total: int | None = None
        self.chunked = False  # http.client checks the terminating chunk, so a chunked body is complete
        self.progress = progress_bar(f"download {Path(urllib.parse.urlparse(url).path).name}")

    @property
    def proven_complete(self) -> bool:
        """Whether the server said how much to expect (and we got exactly that) or used chunked encoding."""
        return self.chunked or (self.total is not None and self.received == self.total)

    def _open(self) -> http.client.HTTPResponse:
        headers = {"User-Agent": f"scratchlm/{__version__}"}
        if self.received:
            headers["Range"] = f"bytes={self.received}-"
        request = urllib.request.Request(self.url, headers=headers)
        return urllib.request.urlopen(request, timeout=self.timeout_s)

    def _start_response(self, response: http.client.HTTPResponse) -> None:
        """Learn the total size; a full (200) answer to a Range request restarts the partial file."""
        self.chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
        if response.status == 206:
            match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != self.received:
                self._restart(f"unexpected Content-Range {response.headers.get('Content-Range')!r}")
                raise ConnectionError(f"unexpected Content-Range {response.headers.get('Content-Range')!r}")
            self.total = int(match.group(3)) if match.group(3) != "*" else None
            return
        if self.received:
            self._restart("the server ignored the Range request")
        length = response.headers.get("Content-Length")
        self.total = int(length) if length is not None else None

    def _restart(self, why: str) -> None:
        log.warning("%s: %s; restarting the partial file from byte 0 (had %d bytes)", self.url, why, self.received)
        self.part.seek(0)
        self.part.truncate()
        self.received = 0
        self.progress.reset(total=self.progress.total)

    def attempt(self) -> None:
        """One request: append what is new to the partial file; raise ConnectionError if cut short."""
        with self._open() as response:
            self._start_response(response)
            self.progress.total = self.total
            self.progress.refresh()
            while chunk := response.read(self.chunk_size):
                self.part.write(chunk)
                self.received += len(chunk)
                self.progress.update(len(chunk))
        self.part.flush()
        if self.total is not None and self.received < self.total:
            raise ConnectionError(f"connection closed after {self.received} of {self.total} bytes")
        if self.total is not None and self.received > self.total:
            self._restart(f"server sent {self.received} bytes, more than the {self.total} announced")
            raise DownloadError(f"{self.url}: server sent more bytes than the {self.total} it announced")

    def run(self, *, retries: int, backoff_s: float) -> None:
        """Attempt until complete; ``retries`` counts consecutive attempts that made no progress."""
        # Not urllib3's Retry or tenacity: they retry a request, while this loop resumes one partial
        # file (Range from its size, restarting it on a 200 or 416) and counts only attempts that
        # brought no bytes, so a slow, flaky server still finishes a 12 GB file.
        failures = 0
        with self.progress:
            self.progress.update(self.received)
            while True:
                before = self.received
                try:
                    self.attempt()
                    return
                except urllib.error.HTTPError as error:
                    if error.code == 416 and self.received:  # Range Not Satisfiable: start over
                        self._restart("the server refused the Range request (HTTP 416)")
                    elif error.code in FATAL_HTTP_STATUS:
                        raise DownloadError(f"{self.url}: HTTP {error.code} {error.reason}") from None
                    reason = f"HTTP {error.code} {error.reason}"
                except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as error:
                    reason = self._describe(error)
                failures = 1 if self.received > before else failures + 1
                if failures >= retries:
                    raise DownloadError(
                        f"{self.url}: gave up after {failures} attempt(s) without progress "
                        f"({self.received} of {self.total if self.total is not None else '?'} bytes kept in "
                        f"{self.part.name}; run again to resume): {reason}"
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


def partial_path(output: str | os.PathLike) -> Path:
    """Where the bytes of an HTTP download of ``output`` collect until it is complete."""
    output = Path(output)
    return output.with_name(f".{output.name}.part")


def download_source(source: SourceSettings, output: str | os.PathLike, settings: DownloadSettings, *,
                    decompress: bool | None = None) -> Path:
    """``download`` of a corpus split's source with the download settings: the rule's and the command's entry."""
    return download(source.url, output, sha256=source.sha256, allow_unverified=source.allow_unverified,
                    decompress=decompress, **settings.model_dump())


def download(source: str, output: str | os.PathLike, *, sha256: str | None = None,
             retries: int = default_of(DownloadSettings, "retries"),
             timeout_s: float = default_of(DownloadSettings, "timeout_s"),
             backoff_s: float = default_of(DownloadSettings, "backoff_s"), decompress: bool | None = None,
             allow_unverified: bool = default_of(SourceSettings, "allow_unverified"),
             chunk_size: int = CHUNK_SIZE) -> Path:
    """Download (or copy) ``source`` to ``output``; ``decompress`` defaults to "source ends in .gz".

    The output appears only when everything succeeded; a sha256 is of the bytes as transferred.
    ``allow_unverified`` accepts an HTTP transfer whose completeness nothing proves (module doc).
    """
    output = Path(output)
    local = local_source(source)
    if decompress is None:
        decompress = urllib.parse.urlparse(source).path.endswith(".gz")
    log.info("%s %s -> %s%s", "copying" if local else "downloading", source, output,
             " (gunzip)" if decompress else "")
    try:
        if local is not None:
            require_file(local, "source file")
            _finish(local, output, source=source, sha256=sha256, decompress=decompress, rename=False)
        else:
            _download_http(source, output, sha256=sha256, retries=retries, timeout_s=timeout_s, backoff_s=backoff_s,
                           decompress=decompress, allow_unverified=allow_unverified, chunk_size=chunk_size)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DownloadError(f"{output}: disk full while writing ({error.strerror}); "
                                f"the partial download is kept to resume") from None
        raise
    log.info("wrote %s (%d bytes)", output, output.stat().st_size)
    return output


def _download_http(url: str, output: Path, *, sha256: str | None, retries: int, timeout_s: float,
                   backoff_s: float, decompress: bool, allow_unverified: bool, chunk_size: int) -> None:
    part = partial_path(output)
    origin, lock = part.with_name(part.name + ".source"), part.with_name(part.name + ".lock")
    with exclusive_lock(lock, what=f"download of {output}"):
        if part.exists() and (not origin.exists() or origin.read_text().strip() != url):
            log.warning("%s: left by a download of another source; starting over", part)
            part.unlink()
        origin.write_text(url + "\n")
        try:
            _fetch_and_finish(url, part, output, sha256=sha256, retries=retries, timeout_s=timeout_s,
                              backoff_s=backoff_s, decompress=decompress, allow_unverified=allow_unverified,
                              chunk_size=chunk_size)
        finally:
            if not part.exists() or part.stat().st_size == 0:  # done, or nothing worth resuming
                for leftover in (part, origin, lock):
                    leftover.unlink(missing_ok=True)


def _fetch_and_finish(url: str, part: Path, output: Path, *, sha256: str | None, retries: int, timeout_s: float,
                      backoff_s: float, decompress: bool, allow_unverified: bool, chunk_size: int) -> None:
    with open(part, "ab+") as handle:
        if handle.tell():
            log.info("%s: resuming from byte %d of the partial file %s", url, handle.tell(), part)
        transfer = _HttpTransfer(url, handle, timeout_s=timeout_s, chunk_size=chunk_size)
        transfer.run(retries=retries, backoff_s=backoff_s)
        os.fsync(handle.fileno())
    if not (transfer.proven_complete or sha256 or decompress or allow_unverified):
        part.unlink()
        raise DownloadError(
            f"{url}: the server sent {transfer.received} bytes with no Content-Length and no chunked encoding, "
            f"so nothing proves the file is complete; set its sha256 in the corpus config "
            f"(or allow_unverified: true to accept it as is)")
    try:
        _finish(part, output, source=url, sha256=sha256, decompress=decompress, rename=True)
    except DownloadError:
        part.unlink()  # corrupt bytes: resuming them would fail again
        raise


def _finish(raw: Path, output: Path, *, source: str, sha256: str | None, decompress: bool, rename: bool) -> None:
    """Check the sha256 of ``raw`` and put its content at ``output``: gunzipped, renamed or copied."""
    if rename and not decompress and not sha256:
        os.replace(raw, output)  # the partial file is complete: it becomes the output
        return
    digest = hashlib.sha256()
    with open(raw, "rb") as src, atomic_open(output, "wb") as out:
        sink = _Gunzip(out, source=source) if decompress else out
        with progress_bar(f"{'gunzip' if decompress else 'copy'} {raw.name}", total=raw.stat().st_size) as progress:
            while chunk := src.read(CHUNK_SIZE):
                digest.update(chunk)
                sink.write(chunk)
                progress.update(len(chunk))
        if decompress:
            sink.finish()
        if sha256 and digest.hexdigest() != sha256.lower():
            raise DownloadError(f"{source}: sha256 mismatch: expected {sha256.lower()}, got {digest.hexdigest()}")
    if rename:
        raw.unlink()
