"""File helpers: content hashes and atomic writes. A leaf: imports nothing of sparseft."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


TEMP_PATTERNS = (".*.tmp", ".*.tmp-*")  # what the atomic writers below leave behind when killed


def os_error(exc: BaseException, path: str | Path) -> BaseException:
    """``exc`` as an ``OSError`` naming ``path`` when it is one (or a library's wrapped "no space
    left on device"), so that the command line can say what happened where; else ``exc``."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return OSError(exc.errno, exc.strerror, str(path))
    text = str(exc)
    if "No space left on device" in text or "os error 28" in text:
        return OSError(errno.ENOSPC, "No space left on device", str(path))
    return exc


def check_writable(directory: str | Path, where: str) -> None:
    """Refuse (``PermissionError`` naming ``where``) a directory where no file can be created;
    a directory that does not exist yet is judged by its nearest existing parent."""
    directory = Path(directory)
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"{where}: {directory}: {probe} is a file, not a directory")
    try:
        fd, name = tempfile.mkstemp(prefix=".sparseft-probe.tmp-", dir=probe)
    except OSError as exc:
        raise PermissionError(f"{where}: {directory} is not writable ({exc.strerror or exc})") from exc
    os.close(fd)
    os.unlink(name)


def current_umask() -> int:
    """The process umask (read from ``/proc`` where possible: setting it to read it back is not
    thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | Path) -> None:
    """Give ``path`` (a file, or a folder and everything in it) the modes a plain ``open``/``mkdir``
    gives under the current umask: ``mkdtemp`` makes 0700 folders and some writers (safetensors)
    0600 files, which a group sharing models could not read."""
    mask = current_umask()
    path = Path(path)
    for p in [path, *(path.rglob("*") if path.is_dir() else ())]:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def save_torch(obj: object, path: str | Path) -> None:
    """``torch.save`` into memory, then one Python write, so that a full disk raises
    ``OSError(ENOSPC)`` (torch's writer raises an opaque ``RuntimeError``, also when it writes
    through a Python file: "unexpected pos ...")."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with open(path, "wb") as f:
        f.write(buffer.getbuffer())


def write_file_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp_path)`` then rename the result onto ``path``: a reader sees the old file
    or the complete new one, never a half-written one. Write errors name ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        follow_umask(tmp)
        os.replace(tmp, path)
    except Exception as exc:
        raise os_error(exc, path) from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """``path.write_text(text)``, atomically."""
    return write_file_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_directory_atomically(directory: str | Path, write: Callable[[Path], object], *, overwrite: bool) -> Path:
    """Run ``write(tmp_dir)`` then move the result to ``directory`` in one rename.

    A non-empty existing ``directory`` is refused unless ``overwrite``.
    """
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())) and not overwrite:
        raise FileExistsError(f"{directory} exists and is not empty; pass overwrite=True to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        try:
            write(tmp)
        except Exception as exc:
            raise os_error(exc, directory) from exc
        follow_umask(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-old-", dir=directory.parent))
            os.replace(directory, old / "x")
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory
