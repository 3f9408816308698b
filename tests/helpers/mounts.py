"""A small real file system for the tests that need a full or a read-only disk: a tmpfs mounted for the test.
It needs root on Linux (as in CI); elsewhere those tests are skipped, saying why; their monkeypatched twins still
run."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: float, read_only: bool = False):
    """Mount a ``size_mb`` tmpfs at ``path`` for the block (``read_only``: every write fails with EROFS, root's too)."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={int(size_mb * 1024)}k" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or 'mount refused'}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def resize(path: Path, size_mb: float) -> None:
    """Give a mounted tmpfs more (or less) room, as freeing space on a full disk would."""
    subprocess.run(["mount", "-o", f"remount,size={int(size_mb * 1024)}k", str(path)], check=True)
