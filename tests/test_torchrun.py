"""`torchrun --nproc-per-node 2 -m physdiff train ...` (CPU ranks, gloo): the same bytes as one
process, also after one rank is killed and the run resumed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
ARGS = ["train", "swiss-roll", "--T", "40", "--hidden", "16", "--n-train", "2000", "--n-samples", "32",
        "--chunk", "5", "--device", "cpu", "--no-progress", "--checkpoint-every", "0", "--epochs", "12"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", MPLBACKEND="Agg")
    env.pop("WORLD_SIZE", None)
    return env


def _run(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker with RANK=rank (a child of the torchrun process)."""
    for task in Path(f"/proc/{parent}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in env:
                return int(child)
    return None


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    _run([sys.executable, "-m", "physdiff", *ARGS, "--out", "single"], root)
    return root


def test_two_ranks_give_the_single_process_bytes(single):
    _run([*TORCHRUN, "-m", "physdiff", *ARGS, "--out", "sharded"], single)
    assert (single / "single" / "model.safetensors").read_bytes() == \
        (single / "sharded" / "model.safetensors").read_bytes()
    import xarray as xr  # samples.nc records its command line: compare the values

    a, b = xr.open_dataset(single / "single" / "samples.nc"), xr.open_dataset(single / "sharded" / "samples.nc")
    assert bool((a["x"] == b["x"]).all())
    assert not (single / ".sharded.partial").exists()  # the shards are gone once merged


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find a rank's pid")
def test_a_killed_rank_resumes_to_the_same_bytes(single):
    out = "killed"
    cmd = [*TORCHRUN, "-m", "physdiff", *ARGS, "--out", out]
    proc = subprocess.Popen(cmd, cwd=single, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shard1 = single / f".{out}.partial" / "rank-1-of-2" / "config.json"
    deadline = time.monotonic() + 300
    while not shard1.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    pid = _rank_pid(proc.pid, 1)
    assert pid is not None, "rank 1 not found"
    os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    assert not (single / out).exists()  # nothing published by a killed run
    _run([*cmd, "--resume"], single)
    assert (single / "single" / "model.safetensors").read_bytes() == \
        (single / out / "model.safetensors").read_bytes()
    shutil.rmtree(single / out)
