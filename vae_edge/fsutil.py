"""Atomic output folders: build in a temporary sibling, move into place only when complete."""

import contextlib
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
def atomic_directory(target, force: bool = False):
    """Yield a temporary folder that replaces `target` only if the block succeeds.

    On any exception, including KeyboardInterrupt, the temporary folder is removed and the
    previous `target` is left exactly as it was.
    """
    target = Path(target)
    check_writable(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
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
        shutil.rmtree(old, ignore_errors=True)
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


def write_text(path, text: str) -> Path:
    """Write a text file atomically."""
    with atomic_file(path) as partial:
        partial.write_text(text)
    return Path(path)


def write_json(path, data) -> Path:
    """Write `data` as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2) + "\n")
