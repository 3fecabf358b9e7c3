"""The download stage against a real HTTP server on 127.0.0.1 (plain, gzip, dropped connections...)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from scratchlm.cli import main
from scratchlm.data.download import DownloadError, download

DATA = b"".join(b"line %d: Once upon a time, caf\xc3\xa9 and stories.\n" % i for i in range(20_000))


def fast(**kwargs):
    """Download options for tests: no waiting between retries, short timeouts, small chunks."""
    return {"retries": 3, "timeout_s": 2.0, "backoff_s": 0.0, "chunk_size": 4096} | kwargs


def assert_no_leftovers(directory: Path, *keep: str) -> None:
    assert sorted(p.name for p in directory.iterdir()) == sorted(keep)


def test_plain_file_with_checksum(http_server, tmp_path):
    http_server.files["/corpus.txt"] = DATA
    out = download(http_server.url("/corpus.txt"), tmp_path / "out.txt", sha256=hashlib.sha256(DATA).hexdigest(),
                   **fast())
    assert out.read_bytes() == DATA
    assert http_server.requests == [("/corpus.txt", None)]
    assert_no_leftovers(tmp_path, "out.txt")


def test_gzip_is_decompressed_on_the_fly_including_multi_member(http_server, tmp_path):
    half = len(DATA) // 2
    http_server.files["/corpus.txt.gz"] = gzip.compress(DATA[:half]) + gzip.compress(DATA[half:])
    download(http_server.url("/corpus.txt.gz"), tmp_path / "out.txt", **fast())
    assert (tmp_path / "out.txt").read_bytes() == DATA


def test_checksum_is_of_the_transferred_bytes(http_server, tmp_path):
    packed = gzip.compress(DATA)
    http_server.files["/c.gz"] = packed
    download(http_server.url("/c.gz"), tmp_path / "out.txt", sha256=hashlib.sha256(packed).hexdigest().upper(),
             **fast())
    assert (tmp_path / "out.txt").read_bytes() == DATA


@pytest.mark.parametrize("honor_range", [True, False], ids=["range", "range-ignored"])
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_dropped_connection_resumes_with_exact_bytes(http_server, tmp_path, honor_range, compressed):
    http_server.files["/c.txt.gz" if compressed else "/c.txt"] = gzip.compress(DATA) if compressed else DATA
    http_server.honor_range, http_server.drops_left = honor_range, 2
    path = "/c.txt.gz" if compressed else "/c.txt"
    download(http_server.url(path), tmp_path / "out.txt", **fast())
    assert (tmp_path / "out.txt").read_bytes() == DATA
    ranges = [rng for _, rng in http_server.requests]
    assert len(ranges) == 3 and ranges[0] is None
    size = len(http_server.files[path])
    # The second request resumes where the first one was cut off (half of the body).
    assert ranges[1] == f"bytes={size // 2}-"
    assert_no_leftovers(tmp_path, "out.txt")


def test_not_found_fails_at_once_with_clear_message(http_server, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404"):
        download(http_server.url("/missing.txt"), tmp_path / "out.txt", **fast())
    assert len(http_server.requests) == 1  # a 404 is not retried
    assert_no_leftovers(tmp_path)


def test_server_errors_are_retried(http_server, tmp_path):
    http_server.files["/c.txt"] = DATA
    http_server.failures_left = 2
    download(http_server.url("/c.txt"), tmp_path / "out.txt", **fast())
    assert (tmp_path / "out.txt").read_bytes() == DATA
    with pytest.raises(DownloadError, match=r"gave up after 3 attempt.*HTTP 503"):
        http_server.failures_left = 5
        download(http_server.url("/c.txt"), tmp_path / "again.txt", **fast())
    assert not (tmp_path / "again.txt").exists()


def test_checksum_mismatch_keeps_previous_output(http_server, tmp_path):
    http_server.files["/c.txt"] = DATA
    out = tmp_path / "out.txt"
    out.write_bytes(b"previous")
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download(http_server.url("/c.txt"), out, sha256="0" * 64, **fast())
    assert out.read_bytes() == b"previous"
    assert_no_leftovers(tmp_path, "out.txt")


def test_timeout_gives_up_with_clear_message(http_server, tmp_path):
    http_server.files["/slow.txt"] = DATA
    http_server.stall = True
    with pytest.raises(DownloadError, match=r"timed out"):
        download(http_server.url("/slow.txt"), tmp_path / "out.txt", **fast(timeout_s=0.2, retries=2))
    assert len(http_server.requests) == 2
    assert_no_leftovers(tmp_path)


def test_truncated_gzip_is_an_error(http_server, tmp_path):
    http_server.files["/c.gz"] = gzip.compress(DATA)[:-100]
    with pytest.raises(DownloadError, match="ends early"):
        download(http_server.url("/c.gz"), tmp_path / "out.txt", **fast())
    assert_no_leftovers(tmp_path)


def test_full_disk_leaves_nothing(http_server, tmp_path, monkeypatch):
    from scratchlm.data import download as module

    http_server.files["/c.txt"] = DATA
    real_open = open
    # Every write to /dev/full fails with ENOSPC, as a full disk does.
    monkeypatch.setattr(module, "open", lambda path, mode, **kw: real_open("/dev/full", mode.replace("+", ""), **kw),
                        raising=False)
    with pytest.raises(DownloadError, match="disk full"):
        download(http_server.url("/c.txt"), tmp_path / "out.txt", **fast())
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


def test_cli(http_server, tmp_path, capsys):
    http_server.files["/c.txt"] = DATA
    assert main(["download", http_server.url("/c.txt"), str(tmp_path / "out.txt"), "--retries", "1"]) == 0
    assert (tmp_path / "out.txt").read_bytes() == DATA
    assert main(["download", http_server.url("/nope.txt"), str(tmp_path / "nope.txt"), "--retries", "1"]) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert main(["download", str(tmp_path / "absent.txt"), str(tmp_path / "x.txt")]) == 1
    assert "absent.txt" in capsys.readouterr().err


# --- completeness policy and resuming across processes (issue 11) ---------------------------


def test_truncated_transfer_without_length_is_refused(http_server, tmp_path):
    """No Content-Length, connection closed half-way: once accepted as the whole file."""
    http_server.files["/c.txt"] = DATA
    http_server.send_length, http_server.drops_left = False, 1
    with pytest.raises(DownloadError, match="nothing proves the file is complete"):
        download(http_server.url("/c.txt"), tmp_path / "out.txt", **fast())
    assert_no_leftovers(tmp_path)


def test_unverifiable_transfer_passes_with_sha256_or_opt_in(http_server, tmp_path):
    http_server.files["/c.txt"] = DATA
    http_server.send_length = False
    download(http_server.url("/c.txt"), tmp_path / "a.txt", sha256=hashlib.sha256(DATA).hexdigest(), **fast())
    download(http_server.url("/c.txt"), tmp_path / "b.txt", allow_unverified=True, **fast())
    assert (tmp_path / "a.txt").read_bytes() == DATA == (tmp_path / "b.txt").read_bytes()
    http_server.drops_left = 1  # a cut-off body fails its checksum
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download(http_server.url("/c.txt"), tmp_path / "c.txt", sha256=hashlib.sha256(DATA).hexdigest(), **fast())
    assert_no_leftovers(tmp_path, "a.txt", "b.txt")


def test_gzip_without_length_is_proven_by_its_trailer(http_server, tmp_path):
    http_server.files["/c.gz"] = gzip.compress(DATA)
    http_server.send_length = False
    download(http_server.url("/c.gz"), tmp_path / "out.txt", **fast())
    assert (tmp_path / "out.txt").read_bytes() == DATA
    http_server.drops_left = 1
    with pytest.raises(DownloadError, match="ends early"):
        download(http_server.url("/c.gz"), tmp_path / "cut.txt", **fast())


def test_failed_download_resumes_in_a_later_call(http_server, tmp_path):
    http_server.files["/c.txt"] = DATA
    http_server.stall_after_half = True
    with pytest.raises(DownloadError, match="run again to resume"):
        download(http_server.url("/c.txt"), tmp_path / "out.txt", **fast(timeout_s=0.3, retries=1))
    kept = (tmp_path / ".out.txt.part").stat().st_size
    assert 0 < kept <= len(DATA) // 2
    http_server.stall_after_half = False
    download(http_server.url("/c.txt"), tmp_path / "out.txt", **fast())
    assert (tmp_path / "out.txt").read_bytes() == DATA
    assert http_server.requests[-1] == ("/c.txt", f"bytes={kept}-")
    assert_no_leftovers(tmp_path, "out.txt")


def test_sigkilled_download_resumes_from_its_partial_file(http_server, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    http_server.files["/c.txt"] = DATA
    http_server.stall_after_half = True
    out = tmp_path / "out.txt"
    child = subprocess.Popen([sys.executable, "-m", "scratchlm.cli", "download", http_server.url("/c.txt"), str(out),
                              "--timeout-s", "30"], stderr=subprocess.DEVNULL)
    part = tmp_path / ".out.txt.part"
    deadline = time.monotonic() + 20
    while not (part.exists() and part.stat().st_size >= len(DATA) // 4) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    kept = part.stat().st_size
    assert 0 < kept <= len(DATA) // 2 and not out.exists()
    http_server.stall_after_half = False
    download(http_server.url("/c.txt"), out, **fast())
    assert out.read_bytes() == DATA
    assert http_server.requests[-1] == ("/c.txt", f"bytes={kept}-")
    assert_no_leftovers(tmp_path, "out.txt")


def test_partial_file_of_another_source_is_not_resumed(http_server, tmp_path):
    http_server.files["/a.txt"], http_server.files["/b.txt"] = DATA, DATA[::-1]
    (tmp_path / ".out.txt.part").write_bytes(DATA[:1000])
    (tmp_path / ".out.txt.part.source").write_text(http_server.url("/a.txt") + "\n")
    download(http_server.url("/b.txt"), tmp_path / "out.txt", **fast())
    assert (tmp_path / "out.txt").read_bytes() == DATA[::-1]
    assert http_server.requests == [("/b.txt", None)]


def test_local_directory_is_named_as_such(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory, not a source file"):
        download(str(tmp_path), tmp_path / "x.txt")
