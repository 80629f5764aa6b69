"""`exclusive_lock` leaves no `.NAME.lock` behind, after success or failure, and still lets only one
writer in: a lock file removed by its holder while another process had it open is never taken
as the lock (the inode check), shown by processes that race for it thousands of times."""

import fcntl
import multiprocessing
import os
from pathlib import Path

import pytest

from vae_edge.errors import BadInputError
from vae_edge.fsutil import atomic_directory, atomic_file, exclusive_lock


def litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".lock", ".partial", ".tmp")))


def test_no_lock_file_is_left_after_success_or_failure(tmp_path):
    with atomic_directory(tmp_path / "out") as staging:
        (staging / "file").write_text("ok")
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "failed"):
        raise RuntimeError("the export failed")
    with pytest.raises(KeyboardInterrupt), atomic_file(tmp_path / "x.png"):
        raise KeyboardInterrupt
    assert litter(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_lock_file_a_killed_process_left_is_taken_over_and_removed(tmp_path):
    stale = tmp_path / ".out.lock"
    stale.write_text("99999999")  # its holder is gone: no flock on it
    with exclusive_lock(tmp_path / "out"):
        assert stale.read_text() == str(os.getpid())
    assert not stale.exists()


def test_the_second_writer_is_refused_naming_the_holder(tmp_path):
    with exclusive_lock(tmp_path / "out"):
        with pytest.raises(BadInputError, match=rf"being written by another vae-edge process \(pid {os.getpid()}\)"):
            with exclusive_lock(tmp_path / "out"):
                pass
    with exclusive_lock(tmp_path / "out"):  # free again once released
        pass
    assert litter(tmp_path) == []


def test_a_lock_file_removed_between_open_and_flock_is_not_taken(tmp_path, monkeypatch):
    """The race the inode check exists for: the holder releases (removes the file) after this process
    opened it; flock then succeeds on a file nobody else can find, so the lock must be taken again."""
    lock_path = tmp_path / ".out.lock"
    real_flock, calls = fcntl.flock, []

    def flock_after_the_holder_left(descriptor, operation):
        calls.append(descriptor)
        if len(calls) == 1:
            lock_path.unlink()  # the holder's release, just before this flock
        return real_flock(descriptor, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_the_holder_left)
    with exclusive_lock(tmp_path / "out"):
        monkeypatch.setattr(fcntl, "flock", real_flock)
        assert len(calls) == 2  # tried again, on the file the name holds now
        assert lock_path.read_text() == str(os.getpid())
        with pytest.raises(BadInputError, match="another vae-edge process"):  # and that one excludes others
            with exclusive_lock(tmp_path / "out"):
                pass
    assert litter(tmp_path) == []


def _contend(folder: str, rounds: int) -> int:
    """Take the lock `rounds` times (refusals count as nothing); inside, prove to be alone and count."""
    target, inside, counter = Path(folder) / "out", Path(folder) / "inside", Path(folder) / "counter"
    held = 0
    for _ in range(rounds):
        try:
            with exclusive_lock(target):
                os.close(os.open(inside, os.O_CREAT | os.O_EXCL))  # FileExistsError if another holder is inside
                counter.write_text(str(int(counter.read_text()) + 1))
                inside.unlink()
                held += 1
        except BadInputError:
            pass
    return held


def test_processes_racing_for_the_lock_are_never_inside_together(tmp_path):
    (tmp_path / "counter").write_text("0")
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        held = pool.starmap(_contend, [(str(tmp_path), 1500)] * 3)
    assert int((tmp_path / "counter").read_text()) == sum(held) > 0  # every holder was alone (else FileExistsError)
    assert litter(tmp_path) == [] and not (tmp_path / "inside").exists()
