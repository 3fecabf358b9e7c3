"""Crash-safe file output: write to a temporary name beside the target, rename when complete."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic;
    on any exception it is removed and whatever was at ``path`` before stays untouched. Its
    name records this host and process, so temporaries that a killed writer (SIGKILL, a node
    lost) left behind are removed on the next write of the same output.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    final = Path(path)
    _make_folder(final.parent)
    remove_stale_temporaries(final)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(final), suffix=".tmp", dir=final.parent)
    except OSError as error:
        raise OutputError(f"{final.parent}: cannot write output {final.name} ({error.strerror})") from None
    os.close(fd)
    # mkstemp creates the file 0600; give the output the permissions a plain open() would,
    # so results on a shared cluster file system stay readable by the group.
    os.chmod(tmp_name, 0o666 & ~_current_umask())
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as error:
        if disk_full(error, final.parent):
            raise OutputError(f"{final}: disk full while writing ({error.strerror or error}); "
                              f"the previous file, if any, is unchanged") from None
        if final.is_dir():  # os.replace named the temporary file, which the user never sees
            raise OutputError(f"{final}: is a directory, cannot write the output there") from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def disk_full(error: OSError, folder: Path) -> bool:
    """Whether a failed write ran out of space: ENOSPC/EDQUOT, or a short write without an errno
    (numpy's ``tofile``: "N requested and M written") on a file system with (almost) no space left."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    with contextlib.suppress(OSError):
        return error.errno is None and shutil.disk_usage(folder).free < FULL_DISK_BYTES
    return False


FULL_DISK_BYTES = 1 << 20  # less free space than this after a short write: the disk is full


class OutputError(OSError):
    """An output cannot be written (read-only folder, disk full); the message names the path."""


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{error.filename or folder}: cannot create output folder ({error.strerror})") from None


def _host_tag() -> str:
    """This host's name as it appears in temporary file names (no dots: they separate fields)."""
    return socket.gethostname().replace(".", "_") or "host"


def _temp_prefix(final: Path) -> str:
    """``.{name}.{host}.{pid}.``: whose temporary it is, so stale ones can be told from live ones."""
    return f".{final.name}.{_host_tag()}.{os.getpid()}."


def remove_stale_temporaries(final: str | os.PathLike) -> list[Path]:
    """Delete temporaries of ``final`` left by writers on this host that no longer run; return them.

    Temporaries of live processes, and of other hosts (a shared file system), are left alone.
    """
    final, host = Path(final), _host_tag()
    removed = []
    for candidate in final.parent.glob(f".{glob.escape(final.name)}.{glob.escape(host)}.*.tmp"):
        pid_text = candidate.name[len(f".{final.name}.{host}."):].split(".", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def apply_umask(folder: str | os.PathLike) -> None:
    """Give ``folder`` and everything in it the modes a plain mkdir and open would have (staging
    folders from ``tempfile.mkdtemp`` are private, 0700)."""
    mask = _current_umask()
    for path in [Path(folder), *Path(folder).rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def _current_umask() -> int:
    mask = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` only when the block succeeds."""
    if not any(flag in mode for flag in "wx"):
        raise ValueError(f"atomic_open is for writing; got mode {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode.replace("x", "w"), **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a ValueError naming the file if it is not UTF-8 JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file, so not JSON") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from None


def read_json_object(path: str | os.PathLike, *, keys: tuple[str, ...] = (), what: str = "JSON file") -> dict:
    """A JSON object holding ``keys`` from the file ``what`` at ``path``; else a ValueError (or
    FileNotFoundError / IsADirectoryError) naming the file and what is wrong with it.

    >>> import tempfile, pathlib
    >>> plan = pathlib.Path(tempfile.mkdtemp()) / "plan.json"
    >>> _ = plan.write_text("[1, 2]")
    >>> read_json_object(plan, what="shard plan")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: .../plan.json: expected a JSON object, got a JSON array (not a shard plan)
    """
    data = read_json(require_file(path, what))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got a JSON {_JSON_TYPES.get(type(data), 'value')} "
                         f"(not a {what})")
    missing = [key for key in keys if key not in data]
    if missing:
        raise ValueError(f"{path}: no {missing[0]!r} key (not a {what})")
    return data


_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def write_json(path: str | os.PathLike, data: Any, *, indent: int = 2, sort_keys: bool = False,
               ensure_ascii: bool = True) -> None:
    """Write ``data`` as UTF-8 JSON (with a final newline) through :func:`atomic_open`."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)
        handle.write("\n")


class LockedError(RuntimeError):
    """Another live process holds the lock; the message names it (pid, host)."""


@contextmanager
def exclusive_lock(lock_file: str | os.PathLike, *, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` for the block, or raise LockedError naming the holder.

    A POSIX record lock (``fcntl.lockf``, which NFS and Lustre honour): the kernel releases it
    when the holder exits, however it dies, so a lock is never left stale. ``what`` names the
    locked thing in the message ("run folder results/runs/demo").
    """
    # Not the filelock package: it takes flock() locks, which Lustre mounted without -o flock does
    # not share between nodes, and it cannot name the holder; lockf() record locks do both here.
    import fcntl

    lock_file = Path(lock_file)
    _make_folder(lock_file.parent)
    handle = open(lock_file, "a+")
    try:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LockedError(f"{what} is in use by {holder} (lock {lock_file}); "
                              f"wait for it to end or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def require_file(path: str | os.PathLike, what: str = "input file") -> Path:
    """``path`` as a Path if it is a readable file; else FileNotFoundError / IsADirectoryError /
    PermissionError whose message names the path and the problem.

    >>> require_file("/", "corpus file")
    Traceback (most recent call last):
    ...
    IsADirectoryError: /: is a directory, not a corpus file
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, not a {what}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what}")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise PermissionError(f"{path}: {what} is not readable (permission denied)") from None
    return path
