"""Files in and out: atomic output folders and files (built in a temporary sibling, moved into place only when
complete), locks, and array files read back with one-line errors."""

import contextlib
import fcntl
import glob
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from vae_edge.errors import BadInputError, first_line


def check_writable(target: Path, force: bool) -> None:
    """Refuse to replace a non-empty folder unless `force` is set."""
    if target.exists() and not target.is_dir():
        raise BadInputError(f"{target} exists and is not a folder; choose another output path")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise BadInputError(f"{target} already exists and is not empty; pass --force to replace it")


def as_users(error: OSError, path) -> OSError:
    """`error` naming `path`, the user's, instead of the internal file (`.NAME.lock`, `.NAME.x.partial`)
    it happened to: the same type and errno, so the command line still maps it to its exit status."""
    return OSError(error.errno, error.strerror or str(error), str(path))


def _lock_file(lock_path: Path) -> int:
    """An open descriptor of `lock_path` that this process holds an exclusive flock on, or BlockingIOError.

    The holder removes the file when it is done (`exclusive_lock`), so a descriptor locked after the
    name went away, or came to name a newer file, locks nothing anyone else sees: check that the name
    still names the inode that is locked (fstat against stat), and try again if not."""
    while True:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = os.fstat(descriptor)
            try:
                named = os.stat(lock_path)
            except FileNotFoundError:
                named = None
            if named is not None and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
                return descriptor
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)  # a released and removed lock file: lock the one its name holds now


@contextlib.contextmanager
def exclusive_lock(target: Path):
    """Hold `.NAME.lock` beside `target` while writing it, so two processes never write one folder;
    the second is refused at once with a message naming the holder. The lock file is removed when
    the block ends, whether it succeeded or not (one a killed process left is taken over and removed)."""
    target = Path(target)
    lock_path = target.parent / f".{target.name}.lock"
    try:
        descriptor = _lock_file(lock_path)
    except BlockingIOError:
        try:
            holder = lock_path.read_text().strip() or "?"
        except OSError:  # released and removed meanwhile
            holder = "?"
        raise BadInputError(f"{target} is being written by another vae-edge process (pid {holder}); "
                            "wait for it to finish or choose another output folder") from None
    except OSError as error:
        raise as_users(error, target) from None
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, str(os.getpid()).encode())
        yield
    finally:
        lock_path.unlink(missing_ok=True)  # while still locked: a waiter then finds the name gone and retries
        os.close(descriptor)


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
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        except OSError as error:
            raise as_users(error, target) from None
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
    try:
        descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as error:
        raise as_users(error, path) from None
    os.close(descriptor)
    partial = Path(name)
    try:
        yield partial
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except OSError as error:  # a full disk, a folder where the file goes: name the user's path
        partial.unlink(missing_ok=True)
        if error.filename in (None, str(partial), partial):
            raise as_users(error, path) from None
        raise
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


def write_npz(path, arrays: dict) -> Path:
    """Write named numpy arrays as a compressed `.npz`, atomically."""
    with atomic_file(path) as partial, open(partial, "wb") as stream:
        np.savez_compressed(stream, **arrays)
    return Path(path)


def read_arrays(path, expected: str = "") -> np.ndarray | dict[str, np.ndarray]:
    """A `.npy` file's array, or every array of an `.npz` by name, read whole. A file that is neither, or was
    cut short, is a one-line BadInputError (`not EXPECTED (...)` when the caller says what it should be)
    instead of numpy's or zipfile's exception; pickles are never loaded."""
    path = Path(path)
    problem = f"{path}: not {expected}" if expected else f"{path}: cannot read this array file"
    try:
        with open(path, "rb") as stream:
            is_npy = stream.read(6) == b"\x93NUMPY"
    except OSError as error:
        raise as_users(error, path) from None
    if not is_npy and not zipfile.is_zipfile(path):
        raise BadInputError(f"{problem} (not a whole .npy or .npz: another format, or cut short)")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise BadInputError(f"{problem} ({first_line(error)})") from None
    except OSError as error:
        raise as_users(error, path) from None


def write_json(path, data) -> Path:
    """Write `data` as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2) + "\n")
