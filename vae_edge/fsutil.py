"""Atomic output folders: build in a temporary sibling, move into place only when complete."""

import contextlib
import fcntl
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path

from vae_edge.errors import BadInputError


def check_writable(target: Path, force: bool) -> None:
    """Refuse to replace a non-empty folder unless `force` is set."""
    if target.exists() and not target.is_dir():
        raise BadInputError(f"{target} exists and is not a folder; choose another output path")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise BadInputError(f"{target} already exists and is not empty; pass --force to replace it")


@contextlib.contextmanager
def exclusive_lock(target: Path):
    """Hold `.NAME.lock` beside `target` while writing it, so two processes never write one folder;
    the second is refused at once with a message naming the holder."""
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise BadInputError(f"{target} is being written by another vae-edge process (pid {holder}); "
                                "wait for it to finish or choose another output folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sweep_stale(target: Path) -> None:
    """Remove staging folders a killed process left beside `target` (call while holding its lock)."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(target.with_name(f".{target.name}.old"), ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(target, force: bool = False):
    """Yield a temporary folder that replaces `target` only if the block succeeds.

    On any exception, including KeyboardInterrupt (and SIGTERM, which the CLI turns into one),
    the temporary folder is removed and the previous `target` is left exactly as it was. The
    target is locked for the whole block, so a concurrent writer is refused, not interleaved.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target):
        check_writable(target, force)
        sweep_stale(target)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp makes it private; the result should be an ordinary folder
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            target.rename(old)
        try:
            staging.rename(target)
        except BaseException:
            if old is not None:
                old.rename(target)  # put the previous folder back
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path):
    """Yield a temporary path beside `path` to write; it replaces `path` only if the block succeeds,
    so readers see the old file or the new one, never half of one (a full disk keeps the old file)."""
    path = Path(path)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(descriptor)
    partial = Path(name)
    try:
        yield partial
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_bytes(path, data: bytes) -> Path:
    """Write a binary file atomically."""
    with atomic_file(path) as partial:
        partial.write_bytes(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    """Write a text file atomically."""
    with atomic_file(path) as partial:
        partial.write_text(text)
    return Path(path)


def write_json(path, data) -> Path:
    """Write `data` as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2) + "\n")
