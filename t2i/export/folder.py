"""The folder an export writes: OUT checked before any work, one export per OUT at a time, nothing replaced that an
export did not write, and a swap that a kill at any point leaves recoverable (t2i.export's docstring)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

from .. import paths
from ..errors import UserError
from ..files import check_writable

MARKER = "t2i_export.json"  # what an export writes first in its folder: which run and weights it holds, then its files


def full_disk(exc: BaseException) -> bool:
    """A full disk or quota, as Python's writers say it (OSError) or as safetensors' Rust writer does (its message)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return any(word in str(exc) for word in ("No space left", "StorageFull", "Disk quota exceeded"))


def check_out(out: Path) -> None:
    """OUT as given, before any work: a folder name (not ``.``, ``..`` or empty), not a symbolic link (refused rather
    than followed: an export replaces OUT by renaming, which would replace the link, not its target), in a folder that
    exists (created here when missing) and can be written."""
    out = Path(out)
    if out.name in ("", ".", ".."):
        raise UserError(f"export needs a folder name for OUT, not {str(out)!r}: e.g. exported/my-run")
    if out.is_symlink():
        raise UserError(f"{out} is a symbolic link (to {os.readlink(out)}): give the folder itself, or a new path")
    if out.parent.exists() and not out.parent.is_dir():
        raise UserError(f"cannot export into {out}: {out.parent} is a file")
    out.parent.mkdir(parents=True, exist_ok=True)
    check_writable(out, folder=True)


@contextmanager
def exclusive(out: Path):
    """Hold OUT's export lock (``.<name>.export.lock`` beside it, an flock the system releases when the process dies,
    so a killed export never blocks the next); a second export to the same OUT is refused in one line."""
    lock = out.parent / f".{out.name}.export.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another export to {out} is running (it holds {lock}); wait for it to finish") from None
        yield
    finally:
        os.close(fd)


def check_target(out: Path, run_dir: Path, overwrite: bool) -> None:
    """Refuse, in one line and before any work, an OUT export must not write: a file; a folder holding anything an
    export did not write (without ``--overwrite``, any non-empty folder); one that is or holds the run, the runs folder
    or the repository; a place where nothing can be written."""
    out = Path(out).resolve()
    for what, folder in (("the repository", paths.ROOT), ("the runs folder", paths.runs_dir()), ("the run", run_dir)):
        folder = Path(folder).resolve()
        if out == folder or folder.is_relative_to(out):
            raise UserError(f"refusing to export into {out}: it holds {what} ({folder}); choose a new folder")
    if out.exists() and not out.is_dir():
        raise UserError(f"cannot export into {out}: it is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise UserError(
                f"refusing to export into {out}: it is not empty and not an earlier export (no {MARKER}); "
                "choose a new or empty folder"
            )
        if not overwrite:
            raise UserError(f"{out} holds an earlier export; pass --overwrite to replace it")
        listed = json.loads((out / MARKER).read_text()).get("files")
        if listed is None:
            raise UserError(
                f"{out} holds an export that did not list its files (an older t2i): move what you want to "
                "keep out of it and remove it yourself, or choose a new folder"
            )
        others = sorted(
            str(f.relative_to(out)) for f in out.rglob("*") if f.is_file() and str(f.relative_to(out)) not in listed
        )
        if others:
            raise UserError(
                f"refusing to overwrite {out}: it holds {len(others)} file(s) the earlier export did not "
                f"write ({', '.join(others[:3])}{' ...' if len(others) > 3 else ''}); move them out first"
            )
    check_writable(out, folder=True)


def recover(out: Path) -> None:
    """Tidy what an export killed midway left beside ``out`` (only folders that carry an export's marker): a folder it
    was still writing is removed; an earlier export it had moved aside, in the instant between the two renames of
    :func:`swap_in`, is put back."""
    for stale in out.parent.glob(f".{out.name}.export-*"):
        if (stale / MARKER).is_file():
            shutil.rmtree(stale)
    for old in out.parent.glob(f".{out.name}.replaced-*"):
        if (old / MARKER).is_file():
            if out.exists():
                shutil.rmtree(old)
            else:
                os.replace(old, out)


def swap_in(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out``: an earlier export there is moved aside first and removed only once
    the new one is in place."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.replaced-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old)
