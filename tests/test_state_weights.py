"""Tests of the state-weight scan (physdiff.experiments.state_weights) and of the shared state-weight /
memorisation measurement (phase_transition.state_weights_and_memorization).

A stand-in model that samples the exact Curie-Weiss law reproduces the exact share of the + state
and its ratio within 4 binomial standard errors and copies training configurations no more often
than fresh samples do (or than it copies an independent exact set); a model that returns its
training configurations is fully memorised; the scan trains one model per P with a fixed number of
optimizer steps, writes its files and reuses its checkpoints.
"""

import hashlib
import math

import numpy as np
import pytest
import xarray as xr

from physdiff import datasets
from physdiff.experiments import phase_transition as pt
from physdiff.experiments import state_weights as sw
from physdiff.theory import curie_weiss as cw

BETA = 1.5


class _Config:
    def __init__(self, seed):
        self.seed = seed


class StandIn:
    """A Curie-Weiss "model" with a training set of P exact configurations made as
    ``physdiff train curie-weiss`` makes it (seeded, with its sha256), that samples either the exact
    law (``mode="exact"``) or its own training set (``mode="copy"``)."""

    def __init__(self, N, P, H, seed=0, mode="exact", fingerprint=True):
        self.N, self.h, self.mode = N, H / N, mode
        self.config = _Config(seed)
        self.train = datasets.curie_weiss(P, N, BETA, self.h, seed=seed)
        sha = hashlib.sha256(np.ascontiguousarray(self.train, dtype=np.float32).tobytes()).hexdigest()
        self.data = {"dataset": "curie-weiss", "N": N, "beta": BETA, "h": self.h, "n_train": P,
                     "sha256": sha if fingerprint else "0" * 64}

    def sample(self, n, seed=None):
        rng = np.random.default_rng(seed)
        if self.mode == "copy":
            return self.train[rng.integers(0, len(self.train), n)]
        return datasets.curie_weiss(n, self.N, BETA, self.h, seed=rng)


def test_epochs_for_steps():
    assert sw.epochs_for_steps(1890, 4096, 64) == 30       # 64 minibatches per epoch
    assert sw.epochs_for_steps(1890, 1024, 64) == 119      # ceil(1890 / 16)
    assert sw.epochs_for_steps(1890, 16, 64) == 1890       # one minibatch of 16 per epoch
    assert sw.epochs_for_steps(10, 10**6, 64) == 1
    for P in (1, 16, 100, 4000):
        per = math.ceil(P / min(64, P))
        E = sw.epochs_for_steps(1000, P, 64)
        assert 1000 <= E * per < 1000 + per  # at least the steps asked for, within one epoch
    with pytest.raises(ValueError):
        sw.epochs_for_steps(0, 10, 64)


def test_state_weights_of_exact_samples_and_of_a_copier():
    N, H, n = 16, 0.5, 3000
    models = [StandIn(N, 256, H, seed=2), StandIn(N, 32, H, seed=1, mode="copy"),
              StandIn(N, 64, H, seed=3, fingerprint=False)]
    ds, mem = pt.state_weights_and_memorization(models, ["a", "b", "c"], n_generate=n, seed=0, log=lambda *_: None)
    # sorted by P, input order kept in input_index
    np.testing.assert_array_equal(ds["P"], [32, 64, 256])
    np.testing.assert_array_equal(ds["input_index"], [1, 2, 0])
    M, Pm = cw.magnetization_distribution(N, BETA, H / N)
    p = float(Pm[M > 0].sum() + 0.5 * Pm[M == 0].sum())
    assert ds.attrs["share_plus_exact"] == pytest.approx(p, rel=1e-12)
    assert ds.attrs["ratio_large_N"] == pytest.approx(math.exp(2 * H * cw.m_star(BETA)), rel=1e-12)
    # exact samples (rows 1 and 2): share and ratio within 4 binomial / delta-method standard errors
    se = math.sqrt(p * (1 - p) / n)
    for k in (1, 2):
        assert abs(float(ds["share_plus"][k]) - p) < 4 * se
        assert abs(float(ds["ratio"][k]) - p / (1 - p)) < 4 * se / (1 - p) ** 2
    s = float(ds["share_plus"][0])
    assert float(ds["ratio"][0]) == pytest.approx(s / (1 - s))
    assert float(ds["ratio_stderr"][0]) == pytest.approx(float(ds["share_plus_stderr"][0]) / (1 - s) ** 2)
    # the copier reproduces its training set's share (binomial resampling of it) and is fully memorised
    st = float(ds["share_plus_train"][0])
    assert st == pytest.approx(float(np.mean(models[1].train.sum(1) > 0) + 0.5 * np.mean(models[1].train.sum(1) == 0)))
    assert abs(s - st) < 4 * math.sqrt(st * (1 - st) / n) + 1e-12
    assert float(mem["memorized_share"][0]) == 1.0 and float(mem["overlap_max_mean"][0]) == pytest.approx(1.0)
    # exact samples copy training configurations as often as fresh exact samples do
    c, c0 = float(mem["memorized_share"][2]), float(mem["memorized_share_baseline"][2])
    q = (c + c0) / 2
    assert abs(c - c0) <= 4 * math.sqrt(2 * q * (1 - q) / n) + 1e-12
    cr = float(mem["memorized_share_reference"][2])  # the same samples against an independent exact set
    q = (c + cr) / 2
    assert abs(c - cr) <= 4 * math.sqrt(2 * q * (1 - q) / n) + 1e-12
    assert c0 > 0.0  # at N = 16 the all-up/all-down configurations repeat: the baseline is not 0
    # copies of rare configurations (P q(a) < 0.01): an exact sampler makes fewer than 1 in 100
    assert float(mem["rare_copy_share"][2]) < 0.01 + 4 * math.sqrt(0.01 / n)
    assert float(mem["rare_copy_share_baseline"][2]) < 0.01 + 4 * math.sqrt(0.01 / n)
    # the copier copies every rare configuration it makes; its excess over the independent set is
    # what memorisation means
    assert float(mem["rare_copy_share"][0]) == pytest.approx(float(mem["rare_share"][0]))
    assert float(mem["rare_copy_share"][0]) > 0.1 and float(mem["rare_copy_share_reference"][0]) < 0.02
    assert float(mem["memorized_share_reference"][0]) < 0.9
    assert float(mem["overlap_max_mean_reference"][0]) < float(mem["overlap_max_mean"][0])
    # unverifiable training set: memorisation not checked
    assert int(mem["memorization_checked"][1]) == 0 and np.isnan(float(mem["memorized_share"][1]))
    assert np.all(np.diff(mem["collapse_time"].values) < 0)  # more data, earlier collapse
    with pytest.raises(ValueError, match="one label per model"):
        pt.state_weights_and_memorization(models, ["a"], n_generate=10)
    with pytest.raises(ValueError, match="same data law"):
        pt.state_weights_and_memorization([models[0], StandIn(12, 16, H)], ["a", "b"], n_generate=10)


def test_scan_end_to_end(tmp_path):
    out = tmp_path / "sw"
    lines = []
    kw = dict(N=8, beta=BETA, H=0.5, P_values=(128, 8), steps=6, n_generate=200, overrides={"T": 25, "hidden": 16},
              log=lines.append, command="test")
    summary = sw.state_weight_scan(out, **kw)
    for name in sw.OUTPUTS + ("P8/config.json", "P128/model.safetensors"):
        assert (out / name).is_file(), name
    with xr.open_dataset(out / "state_weights.nc", engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["P"], [8, 128])
        # the same number of optimizer steps: 6 epochs of one minibatch of 8, 3 epochs of two of 64
        np.testing.assert_array_equal(ds["epochs"], [6, 3])
        np.testing.assert_array_equal(ds["optimizer_steps"], [6, 6])
        assert ds.attrs["command"] == "test" and ds.attrs["training"] == "fixed optimizer steps"
    with xr.open_dataset(out / "memorization.nc", engine="h5netcdf") as ds:
        assert np.all(ds["memorization_checked"].values == 1)  # training sets regenerated from the seed
    assert [r["P"] for r in summary["rows"]] == [8, 128]
    assert all(0.0 <= r["share_plus"] <= 1.0 for r in summary["rows"])
    with pytest.raises(FileExistsError):
        sw.state_weight_scan(out, **kw)
    # without the outputs, the checkpoints are reused rather than retrained
    for name in sw.OUTPUTS:
        (out / name).unlink()
    lines.clear()
    again = sw.state_weight_scan(out, **kw)
    assert sum("reusing" in ln for ln in lines) == 2
    assert [r["share_plus"] for r in again["rows"]] == [r["share_plus"] for r in summary["rows"]]
    with pytest.raises(ValueError, match="not both"):
        sw.state_weight_scan(tmp_path / "x", steps=5, epochs=5)
