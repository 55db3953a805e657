"""physdiff.jobs: train and sample runs are transactions that survive kills and refuse bad input early.

Kill tests run the job in a subprocess on a tiny config and SIGKILL it; everything uses small
Swiss-roll / Curie-Weiss settings (seconds)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from physdiff import PhysdiffError, ddpm, jobs

REPO = Path(__file__).resolve().parents[1]
TINY = dict(n_train=300, epochs=2, T=25, hidden=8, n_samples=16)


def _tiny_train(out, **kw):
    opts = {**TINY, **kw}
    return jobs.train("swiss-roll", out, progress=False, log=None, quality=opts.pop("quality", True), **opts)


def _snapshot(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def _siblings(d: Path) -> list[str]:
    return sorted(p.name for p in d.parent.iterdir() if p.name != d.name)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------ train


def test_train_writes_every_output_and_returns_the_datasets(tmp_path):
    out = tmp_path / "run"
    res = _tiny_train(out, seed=3)
    assert isinstance(res, jobs.TrainResult) and set(res.datasets) == {"samples", "loss", "quality"}
    assert sorted(p.name for p in out.iterdir()) == sorted(jobs.TRAIN_OUTPUTS)
    assert _siblings(out) == []  # no temporaries, no partial checkpoint left
    with xr.open_dataset(out / "samples.nc") as ds:
        assert ds["x"].shape == (16, 2) and ds.attrs["seed"] == 3 and ds.attrs["Conventions"] == "CF-1.10"
    with xr.open_dataset(out / "quality.nc") as ds:
        assert float(ds["sliced_wasserstein_baseline"]) > 0 and ds["sliced_wasserstein"].attrs["units"] == "1"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["trained"] and cfg["epochs_done"] == cfg["epochs_planned"] == 2
    assert set(cfg["files"]) == {"model.safetensors"}
    m = ddpm.load(out)
    assert torch.equal(m.model.W1, res.model.model.W1)


def test_existing_run_refused_and_failed_force_leaves_it_byte_identical(tmp_path, monkeypatch):
    out = tmp_path / "run"
    _tiny_train(out, quality=False)
    before = _snapshot(out)
    with pytest.raises(FileExistsError, match="--force"):
        _tiny_train(out, quality=False)
    from physdiff import plotting

    def boom(*a, **k):
        raise RuntimeError("disk full while plotting")

    monkeypatch.setattr(plotting, "save_figure", boom)  # fails after the new model is complete
    with pytest.raises(RuntimeError, match="disk full"):
        _tiny_train(out, quality=False, seed=7, force=True)
    assert _snapshot(out) == before
    monkeypatch.undo()
    _tiny_train(out, quality=False, seed=7, force=True)
    assert _snapshot(out)["model.safetensors"] != before["model.safetensors"]
    assert _siblings(out) == []


def test_symlinked_out_is_followed(tmp_path):
    real = tmp_path / "real"
    link = tmp_path / "link"
    link.symlink_to(real)
    _tiny_train(link, quality=False)
    assert link.is_symlink() and (real / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


@pytest.mark.parametrize("kw, match", [
    (dict(n_samples=0), "n_samples must be >= 1, got 0"),
    (dict(n_train=0), "n_train must be >= 2, got 0"),
    (dict(epochs=-1), "epochs must be >= 0"),
    (dict(epochs=0), "epochs=0 would leave the randomly initialised nets untrained"),
    (dict(checkpoint_every=-1), "checkpoint_every must be >= 0"),
    (dict(seed=-1), "seed must be"),
    (dict(device="tpu"), "device"),
    (dict(bogus=1), "unknown option"),
])
def test_bad_arguments_fail_before_any_work(tmp_path, kw, match):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        _tiny_train(tmp_path / "run", **kw)
    assert time.perf_counter() - t0 < 2.0
    assert not (tmp_path / "run").exists() and list(tmp_path.iterdir()) == []


def test_unwritable_parent_refused_up_front(tmp_path, monkeypatch):
    parent = tmp_path / "ro"
    parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == parent else real_access(p, mode))
    t0 = time.perf_counter()
    with pytest.raises(PermissionError, match=str(parent)):
        _tiny_train(parent / "run")
    assert time.perf_counter() - t0 < 2.0


def test_interrupted_run_must_be_resumed_or_forced(tmp_path):
    out = tmp_path / "run"
    partial = jobs.partial_dir(out)
    with pytest.raises(RuntimeError):  # an exception mid-training leaves the checkpoint
        jobs.train("swiss-roll", out, progress=False, log=_raise_after("trained "), quality=False, **TINY)
    assert (partial / "config.json").is_file() and not out.exists()
    with pytest.raises(FileExistsError, match="--resume.*--force"):
        _tiny_train(out, quality=False)
    _tiny_train(out, quality=False, resume=True)
    assert not partial.exists() and (out / "model.safetensors").is_file()


def _raise_after(word):
    def log(msg):
        if msg.startswith(word):
            raise RuntimeError("stop")
    return log


# ------------------------------------------------------------------------------------ sample


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    _tiny_train(out, quality=False)
    torch.set_num_threads(n)
    return out


def test_sample_file_and_directory(trained, tmp_path):
    ds = jobs.sample(trained, 8, out=tmp_path / "s.nc", progress=False)
    assert ds["x"].shape == (8, 2) and (tmp_path / "s.png").is_file()
    with pytest.raises(FileExistsError, match="--force"):
        jobs.sample(trained, 8, out=tmp_path / "s.nc", progress=False)
    jobs.sample(trained, 8, out=tmp_path / "dir", progress=False)
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["samples.nc", "samples.png"]


@pytest.mark.parametrize("kw, match", [(dict(n=0), "n must be >= 1"), (dict(steps=0), "steps must be >= 1"),
                                       (dict(sampler="euler"), "sampler"), (dict(steps=10**6), r"steps \(CLI --steps\) must be <=")])
def test_sample_bad_arguments(trained, tmp_path, kw, match):
    args = {"n": 4, **kw}
    with pytest.raises(ValueError, match=match):
        jobs.sample(trained, args.pop("n"), out=tmp_path / "s.nc", progress=False, **args)
    assert not (tmp_path / "s.nc").exists()


def test_swapped_weights_are_refused(trained, tmp_path):
    other = tmp_path / "other"
    _tiny_train(other, quality=False, seed=5)  # same shapes, other weights
    victim = tmp_path / "victim"
    victim.mkdir()
    for f in ("config.json", "model.safetensors"):
        (victim / f).write_bytes((trained / f).read_bytes())
    (victim / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(PhysdiffError, match="SHA-256.*replaced or edited"):
        ddpm.load(victim)
    with pytest.raises(PhysdiffError, match="SHA-256"):
        jobs.sample(victim, 4, progress=False)


def _partial_checkpoint(path: Path) -> Path:
    x0 = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    cfg = ddpm.TrainConfig(T=6, hidden=4, epochs=3, chunk=2, batch=32, device="cpu")

    def stop(model, steps, epoch):
        if steps == [3, 4] and epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ddpm.train(x0, cfg, progress=False, log=None, checkpoint=path, checkpoint_every=0, on_epoch=stop)
    return path


def test_partial_checkpoint_needs_allow_partial_and_warns(tmp_path):
    ck = _partial_checkpoint(tmp_path / "ck")
    with pytest.raises(PhysdiffError, match="partial.*allow_partial"):
        jobs.sample(ck, 4, progress=False)
    with pytest.warns(UserWarning, match="partial"):
        ds = jobs.sample(ck, 4, progress=False, allow_partial=True)
    assert ds.attrs["trained"] == 0 and ds.attrs["epochs_planned"] == 3


# ------------------------------------------------------------------------------------ kills

KILL_JOB = dict(n_train=1000, epochs=4, T=6, hidden=8, chunk=2, n_samples=8, quality=False, checkpoint_every=0.0,
                schedule={"name": "linear", "beta_start": 0.02, "beta_end": 0.5})

_TRAIN_SCRIPT = textwrap.dedent(f"""
    import sys, torch
    torch.set_num_threads(1)
    from physdiff import jobs
    from physdiff.ddpm import fused
    fused.MODE = "never"  # no numba compilation in the subprocess
    jobs.train("swiss-roll", sys.argv[1], progress=False, force=sys.argv[2] == "1", **{KILL_JOB!r})
""")


@pytest.fixture
def no_fused(monkeypatch):
    from physdiff.ddpm import fused

    monkeypatch.setattr(fused, "MODE", "never")


def _train_here(out, **kw):
    return jobs.train("swiss-roll", out, progress=False, log=None, **{**KILL_JOB, **kw})


def _killed_train(out, kill_when, force=False, timeout=300):
    """Run the tiny training job in a subprocess and SIGKILL it once ``kill_when()`` is true."""
    proc = subprocess.Popen([sys.executable, "-c", _TRAIN_SCRIPT, str(out), str(int(force))], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            if kill_when():
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == -signal.SIGKILL, f"the job ended (status {rc}) before the kill: {proc.stderr.read()}"


def _listed(partial: Path) -> list[str]:
    try:
        return list(json.loads((partial / "config.json").read_text())["files"])
    except (OSError, ValueError, KeyError):
        return []


@pytest.mark.slow
def test_resume_after_sigkill_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, no_fused):
    ref = tmp_path / "ref"
    _train_here(ref)
    out = tmp_path / "run"
    partial = jobs.partial_dir(out)
    # kill once the second chunk is running (one finished chunk and a running-chunk overlay saved)
    _killed_train(out, kill_when=lambda: any(f.startswith("running-0003") for f in _listed(partial)))
    assert not out.exists() and partial.is_dir()
    assert "nets-0001-0002.safetensors" in _listed(partial)
    with pytest.raises(FileExistsError, match="--resume"):  # neither resume nor force: the checkpoint is kept
        _train_here(out)
    _train_here(out, resume=True)
    a, b = ddpm.load(ref), ddpm.load(out)
    for name in ("W1", "b1", "W2", "b2"):
        assert torch.equal(getattr(a.model, name), getattr(b.model, name)), name
    np.testing.assert_array_equal(a.loss_history, b.loss_history)
    assert (ref / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    assert _siblings(out) == ["ref"]  # the partial checkpoint and every temporary are gone


@pytest.mark.slow
def test_sigkill_during_forced_run_leaves_the_old_run_and_is_cleaned_up(tmp_path, no_fused):
    out = tmp_path / "run"
    _train_here(out)
    before = _snapshot(out)
    partial = jobs.partial_dir(out)
    for trigger in (lambda: len(_listed(partial)) >= 2,  # during training
                    lambda: any(p.name.startswith(".run.tmp-") and (p / "model.safetensors").exists()
                                for p in tmp_path.iterdir())):  # after the new model is staged
        _killed_train(out, force=True, kill_when=trigger)
        assert _snapshot(out) == before
    _train_here(out, force=True)
    assert _siblings(out) == []  # stale temporaries of the killed runs removed, partial gone
    assert _snapshot(out)["model.safetensors"] == before["model.safetensors"]  # same seed, same bytes


_SAMPLE_SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from physdiff import jobs
    jobs.sample(sys.argv[1], 20000, out=sys.argv[2], progress=False, force=True)
""")


@pytest.mark.slow
def test_sigkill_during_sample_leaves_the_old_file_or_a_complete_one(trained, tmp_path):
    target = tmp_path / "s.nc"
    jobs.sample(trained, 8, out=target, progress=False)
    old = target.read_bytes()
    for delay in (0.5, 2.0):
        proc = subprocess.Popen([sys.executable, "-c", _SAMPLE_SCRIPT, str(trained), str(target)], cwd=REPO)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if target.read_bytes() != old:
            with xr.open_dataset(target) as ds:
                assert ds["x"].shape == (20000, 2)
    jobs.sample(trained, 8, out=target, progress=False, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.nc", "s.png"]
