"""A kill at any moment of ``physdiff study`` leaves ``--out`` as it was or complete; stale
temporaries of killed writers are cleaned up by the next run."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import physdiff

REPO = Path(__file__).resolve().parents[1]
TINY = dict(N=32, T=30, n_pairs=60, n_forward=500, n_trajectories=10)

_STUDY = textwrap.dedent(f"""
    import sys, physdiff
    physdiff.study("curie-weiss", out=sys.argv[1], force=True, seed=int(sys.argv[2]), **{TINY!r})
""")


def _files(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_sigkill_during_study_leaves_out_as_it_was_or_complete(tmp_path):
    out = tmp_path / "cw"
    physdiff.study("curie-weiss", out=out, seed=0, **TINY)
    before = _files(out)
    # find how long a run takes, then kill runs at several moments within it
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", _STUDY, str(tmp_path / "timing"), "1"], cwd=REPO, check=True)
    duration = time.monotonic() - t0
    for frac in (0.3, 0.6, 0.9):
        proc = subprocess.Popen([sys.executable, "-c", _STUDY, str(out), "1"], cwd=REPO)
        time.sleep(frac * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = _files(out)
        complete = sorted(after) == sorted(_files(tmp_path / "timing")) and after != before
        assert after == before or complete, frac
    physdiff.study("curie-weiss", out=out, force=True, seed=0, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cw", "timing"]  # stale temporaries removed
