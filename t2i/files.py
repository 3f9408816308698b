"""Files that several processes or a kill can catch half-done: atomic writes, and build-once locks.

- :func:`write_atomic`: a temporary file, fsync, rename: a reader sees the old file or the new one, never half.
- :func:`build_lock`: one process builds a cache (latents, preprocessed or synthetic shards, a judge, a tiny VAE)
  while the others wait, then find it built. It is a file lock beside the target, so it works before accelerate has
  started (the ranks of ``accelerate launch`` and ``srun`` build datasets before they agree on anything) and across
  jobs that share a data directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock


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


@contextlib.contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``target`` (a file or folder to build). Check whether the target is built inside
    the lock: the process that waited finds it done."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        yield
