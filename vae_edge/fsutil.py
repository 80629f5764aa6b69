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
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should be an ordinary folder
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
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path, data) -> Path:
    """Write `data` as indented JSON with a trailing newline."""
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return Path(path)
