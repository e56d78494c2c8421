"""Atomic file output: a reader never sees a half-written file.

Every writer in pointsup goes through :func:`atomic_write`: the content is written to a
temporary file in the destination folder, flushed to disk, and renamed over the destination
in one step (``os.replace``). If anything fails before the rename, the destination is left
exactly as it was and the temporary file is removed.

A write that the system refuses (a full disk, a read-only or missing folder, no permission, a
folder where the file should go) raises :class:`OutputWriteError`, one line naming the file
and the reason, which the command line shows without a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

from pointsup.errors import PointsupError


class OutputWriteError(PointsupError):
    """A file could not be written (disk full, read-only, permission...); nothing was replaced."""


_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EFBIG: "the file size limit is reached",
}


def describe_os_error(exc: OSError) -> str:
    """A short reason for ``exc`` in words (``"the disk is full"``), else its own message."""
    return _REASONS.get(exc.errno or -1, exc.strerror or str(exc))


def output_write_error(path: str | os.PathLike[str], exc: OSError) -> OutputWriteError:
    """The error to raise when writing ``path`` failed with ``exc``."""
    return OutputWriteError(f"cannot write {path}: {describe_os_error(exc)}")


def _current_umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _final_mode(destination: Path) -> int:
    """Permissions the written file gets: those of the file it replaces, else what ``open`` would
    give a new file (0o666 less the umask) rather than ``mkstemp``'s private 0o600."""
    try:
        return destination.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8", *, fsync: bool = True
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on clean exit, rename it to ``path``.

    Args:
        path: the destination file. Its parent folder is created if missing.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        encoding: text encoding (ignored for binary mode).
        fsync: flush the file to disk before the rename (off only for files that are cheap to
            make again, such as generated test images).

    Raises:
        OutputWriteError: the system refused the write; ``path`` is unchanged.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports modes 'w' and 'wb', not {mode!r}")
    destination = Path(path)
    try:
        if destination.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(destination))
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    except OSError as exc:
        raise output_write_error(destination, exc) from None
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), _final_mode(destination))
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp_name, destination)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise output_write_error(destination, exc) from None
        raise


def _encode_extra(obj: Any) -> Any:
    """JSON form of objects msgspec does not know: NumPy arrays and scalars become lists and numbers."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot write an object of type {type(obj).__name__} as JSON")


_ENCODER = msgspec.json.Encoder(enc_hook=_encode_extra)


def encode_json(data: Any, indent: int | None = None) -> bytes:
    """Serialise ``data`` to JSON bytes (msgspec: an order of magnitude faster than :mod:`json`
    on COCO-sized files). NumPy arrays and scalars are written as lists and numbers."""
    payload = _ENCODER.encode(data)
    return msgspec.json.format(payload, indent=indent) if indent else payload


def write_json_atomic(path: str | os.PathLike[str], data: Any, indent: int | None = None) -> None:
    """Serialise ``data`` as JSON into ``path`` atomically (see :func:`encode_json`)."""
    write_bytes_atomic(path, encode_json(data, indent))


def write_bytes_atomic(path: str | os.PathLike[str], payload: bytes, *, fsync: bool = True) -> None:
    """Write ``payload`` into ``path`` atomically."""
    with atomic_write(path, "wb", fsync=fsync) as handle:
        handle.write(payload)
