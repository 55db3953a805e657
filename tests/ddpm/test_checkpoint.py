"""Checkpoints vouch for themselves: hashes of every weights file, partial state, loss-free overlays."""

import json

import numpy as np
import pytest
import torch

from physdiff import PhysdiffError, ddpm
from physdiff.ddpm import TrainConfig


def _data():
    return np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)


CFG = TrainConfig(T=6, hidden=5, epochs=3, chunk=2, batch=32, seed=0, device="cpu")


class Stop(Exception):
    pass


def _interrupted(path, at=(3, 4), epoch=1):
    def stop(model, steps, e):
        if steps == list(at) and e == epoch:
            raise Stop

    with pytest.raises(Stop):
        ddpm.train(_data(), CFG, progress=False, log=None, checkpoint=path, checkpoint_every=0, on_epoch=stop)
    return path


def test_config_records_hashes_and_progress(tmp_path):
    m = ddpm.train(_data(), CFG, progress=False, log=None)
    m.save(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert meta["trained"] and meta["epochs_done"] == meta["epochs_planned"] == 3
    assert list(meta["files"]) == ["model.safetensors"] and len(meta["files"]["model.safetensors"]) == 64
    part = json.loads((_interrupted(tmp_path / "part") / "config.json").read_text())
    assert not part["trained"] and part["epochs_done"] == 0 and part["epochs_done_max"] == 3
    assert part["train_state"]["file"] == "running-0003-0004-e2.safetensors"


@pytest.mark.parametrize("victim", ["model.safetensors", "nets-0001-0002.safetensors",
                                    "running-0003-0004-e2.safetensors"])
def test_an_edited_weights_file_is_refused(tmp_path, victim):
    ck = _interrupted(tmp_path / "ck")
    raw = bytearray((ck / victim).read_bytes())
    raw[-5] ^= 0x01  # one bit of the last tensor's data: still a valid safetensors file
    (ck / victim).write_bytes(bytes(raw))
    with pytest.raises(PhysdiffError, match=f"{victim} does not match the SHA-256"):
        ddpm.load(ck, allow_partial=True)


def test_a_missing_overlay_is_reported(tmp_path):
    ck = _interrupted(tmp_path / "ck")
    (ck / "nets-0001-0002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="nets-0001-0002"):
        ddpm.load(ck, allow_partial=True)


def test_kill_leftovers_are_swept_and_resume_is_exact(tmp_path):
    ck = _interrupted(tmp_path / "ck")
    (ck / "running-0005-0006-e1.safetensors").write_bytes(b"half-written by a killed save")
    resumed = ddpm.train(_data(), CFG, progress=False, log=None, resume=ck, checkpoint=ck)
    full = ddpm.train(_data(), CFG, progress=False, log=None)
    assert torch.equal(resumed.model.W1, full.model.W1) and torch.equal(resumed.model.b2, full.model.b2)
    assert sorted(p.name for p in ck.iterdir()) == ["config.json", "model.safetensors"]


def test_format_1_checkpoint_loads_with_a_warning(tmp_path):
    m = ddpm.train(_data(), CFG, progress=False, log=None)
    m.save(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    meta["format_version"] = 1
    del meta["files"]
    (tmp_path / "ck" / "config.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="cannot be verified"):
        old = ddpm.load(tmp_path / "ck")
    assert torch.equal(old.model.W2, m.model.W2)


def test_one_dimensional_x0_is_refused():
    with pytest.raises(ValueError, match=r"shape \(n, d\).*reshape\(-1, 1\)"):
        ddpm.train(np.arange(10, dtype=np.float32), CFG, progress=False, log=None)
    with pytest.raises(ValueError, match="n >= 2"):
        ddpm.train(np.ones((1, 3), np.float32), CFG, progress=False, log=None)
