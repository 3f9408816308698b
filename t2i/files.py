"""Files that several processes or a kill can catch half-done: atomic writes, and build-once locks.

- :func:`write_atomic`: a temporary file, fsync, rename: a reader sees the old file or the new one, never half.
- :func:`check_writable`: before a command does its work, prove it can write its output there.
- :func:`build_lock`: one process builds a cache (latents, preprocessed or synthetic shards, a judge, a tiny VAE)
  while the others wait, then find it built. It is a file lock beside the target, so it works before accelerate has
  started (the ranks of ``accelerate launch`` and ``srun`` build datasets before they agree on anything) and across
  jobs that share a data directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

from .errors import UserError


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file, fsync, rename over ``path``, fsync the folder: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def check_writable(path: Path, *, folder: bool = False) -> None:
    """Refuse, in one line and before any work, an output that cannot be written: a file whose name is a folder (or a
    folder whose name is a file), a parent that does not exist, or a place where creating a file fails (read-only,
    full, ``/proc``: permission bits alone do not tell, so a file is created there and removed)."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"cannot write into {path}: it is a file, not a folder")
    if not folder and path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder; name the file to write")
    parent = path if folder and path.is_dir() else path.parent
    while folder and not parent.exists() and parent != parent.parent:  # a folder is created with its parents
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: {parent} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".t2i-write-check-"):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot write {path}: {exc.strerror or exc} in {parent} (checked before doing the work)"
        ) from None


@contextlib.contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``target`` (a file or folder to build). Check whether the target is built inside
    the lock: the process that waited finds it done."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        yield
