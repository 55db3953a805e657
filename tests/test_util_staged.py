"""staged_output: a run's output directory is written as one transaction."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from physdiff._util import atomic_path, clean_stale, staged_output


def _snapshot(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _siblings(d: Path) -> list[str]:
    return sorted(p.name for p in d.parent.iterdir() if p.name != d.name)


def test_new_directory_appears_complete(tmp_path):
    out = tmp_path / "a" / "run"
    with staged_output(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".run.tmp-")
        assert not out.exists()
        (tmp / "x.txt").write_text("1")
    assert _snapshot(out) == {"x.txt": b"1"}
    assert _siblings(out) == []


def test_existing_run_refused_without_force(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old").write_text("old")
    with pytest.raises(FileExistsError, match=r"run.*--force"):
        with staged_output(out):
            pass
    assert _snapshot(out) == {"old": b"old"}


def test_empty_existing_directory_is_fine(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with staged_output(out) as tmp:
        (tmp / "x").write_text("new")
    assert _snapshot(out) == {"x": b"new"}


def test_out_is_a_file(tmp_path):
    out = tmp_path / "run"
    out.write_text("file")
    with pytest.raises(FileExistsError, match="not a directory"):
        with staged_output(out, force=True):
            pass
    assert out.read_text() == "file"


def test_force_replaces_only_on_success(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "a").write_text("old a")
    (out / "b").write_text("old b")
    before = _snapshot(out)
    with pytest.raises(RuntimeError):
        with staged_output(out, force=True) as tmp:
            (tmp / "a").write_text("new a")
            raise RuntimeError("boom")
    assert _snapshot(out) == before
    assert _siblings(out) == []
    with staged_output(out, force=True) as tmp:
        (tmp / "a").write_text("new a")
    assert _snapshot(out) == {"a": b"new a"}  # nothing of the old run is mixed in
    assert _siblings(out) == []


def test_resume_starts_from_a_copy(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "a").write_text("old a")
    with pytest.raises(RuntimeError):
        with staged_output(out, resume=True) as tmp:
            assert (tmp / "a").read_text() == "old a"
            (tmp / "a").write_text("changed")
            raise RuntimeError
    assert (out / "a").read_text() == "old a"
    with staged_output(out, resume=True) as tmp:
        (tmp / "b").write_text("b")
    assert _snapshot(out) == {"a": b"old a", "b": b"b"}


def test_symlink_is_followed_not_replaced(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "old").write_text("old")
    link = tmp_path / "link"
    link.symlink_to(real)
    with staged_output(link, force=True) as tmp:
        assert tmp.parent == real.parent
        (tmp / "new").write_text("new")
    assert link.is_symlink() and link.resolve() == real
    assert _snapshot(real) == {"new": b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_dangling_symlink_creates_target(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target")
    with staged_output(link) as tmp:
        (tmp / "f").write_text("x")
    assert link.is_symlink() and (tmp_path / "target" / "f").read_text() == "x"


def test_unwritable_parent_refused_up_front(tmp_path, monkeypatch):
    parent = tmp_path / "ro"
    parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == parent else real_access(p, mode))
    with pytest.raises(PermissionError, match=str(parent)):
        with staged_output(parent / "run"):
            raise AssertionError("the body must not run")


def test_parent_is_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(FileExistsError, match="is a file"):
        with staged_output(tmp_path / "f" / "run"):
            pass


_KILLED = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from physdiff._util import staged_output
    with staged_output(sys.argv[1], force=True) as tmp:
        (tmp / "a").write_text("new")
        print("ready", flush=True)
        time.sleep(60)
""")


def test_kill_leaves_old_run_and_next_run_cleans_up(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "a").write_text("old")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _snapshot(out) == {"a": b"old"}
    stale = [s for s in _siblings(out) if s != ".run.lock"]  # the lock file stays (its lock died with the process)
    assert len(stale) == 1 and stale[0].startswith(f".run.tmp-{proc.pid}-")
    with staged_output(out, force=True) as tmp:
        (tmp / "a").write_text("newer")
    assert _snapshot(out) == {"a": b"newer"}
    assert _siblings(out) == []


def test_live_owner_is_left_alone(tmp_path):
    out = tmp_path / "run"
    mine = tmp_path / f".run.tmp-{os.getpid()}-abcd"
    mine.mkdir()
    assert clean_stale(out) == []
    assert mine.exists()


def test_interrupted_replacement_is_restored(tmp_path):
    # a kill between the two renames of the non-Linux replacement leaves only .run.old-<pid>-*
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    old = tmp_path / f".run.old-{pid}-abcd"
    old.mkdir()
    (old / "a").write_text("old")
    clean_stale(tmp_path / "run")
    assert (tmp_path / "run" / "a").read_text() == "old" and not old.exists()


def test_atomic_path_cleans_stale_temporaries(tmp_path):
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    stale = tmp_path / f".x.nc.tmp-{dead}-zzzz"
    stale.write_text("half")
    with atomic_path(tmp_path / "x.nc") as tmp:
        tmp.write_text("whole")
    assert (tmp_path / "x.nc").read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nc"]


def test_force_without_rename_exchange(tmp_path, monkeypatch):
    import physdiff._util as u

    monkeypatch.setattr(u, "_exchange", lambda a, b: False)
    out = tmp_path / "run"
    out.mkdir()
    (out / "a").write_text("old")
    with staged_output(out, force=True) as tmp:
        (tmp / "b").write_text("new")
    assert _snapshot(out) == {"b": b"new"}
    assert _siblings(out) == []


def test_unwritable_parent_found_by_probing(tmp_path, monkeypatch):
    # os.access says yes to root even where nothing can be created (read-only mounts, EPERM): probe
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match="not writable.*Permission denied"):
        with staged_output(tmp_path / "run"):
            raise AssertionError("the body must not run")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=str(ro)):
            with staged_output(ro / "run"):
                pass
    finally:
        ro.chmod(0o755)


def test_a_second_writer_of_the_same_output_is_refused(tmp_path):
    out = tmp_path / "run"
    with staged_output(out) as tmp:
        (tmp / "a").write_text("first")
        with pytest.raises(FileExistsError, match="another running physdiff process"):
            with staged_output(out):
                pass
    assert (out / "a").read_text() == "first"
    assert _siblings(out) == []
