"""The state-weights study and the shared state-weight / memorisation measurement.

A stand-in model that samples the exact Curie-Weiss law reproduces the exact share of the + state
and its ratio within 4 binomial standard errors and copies training configurations no more often
than fresh samples do (or than it copies an independent exact set); a model that returns its
training configurations is fully memorised; the study trains one model per P with a fixed number
of optimizer steps.
"""

import math

import numpy as np
import pytest

from physdiff import datasets
from physdiff.studies import _curie_weiss as C
from physdiff.studies import state_weights as sw
from physdiff.theory import curie_weiss as cw

BETA = 1.5


class StandIn:
    """A Curie-Weiss "model" with a training set of P exact configurations that samples either the
    exact law (``mode="exact"``) or its own training set (``mode="copy"``)."""

    def __init__(self, N, P, H, seed=0, mode="exact"):
        self.N, self.h, self.mode = N, H / N, mode
        self.train = datasets.curie_weiss(P, N, BETA, self.h, seed=seed)
        self.data = {"dataset": "curie-weiss", "N": N, "beta": BETA, "h": self.h, "n_train": P}

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
    models = [StandIn(N, 256, H, seed=2), StandIn(N, 32, H, seed=1, mode="copy"), StandIn(N, 64, H, seed=3)]
    train_sets = [models[0].train, models[1].train, None]  # the third: training set unknown
    ds, mem = C.state_weight_datasets(models, train_sets, n_generate=n, seed=0)
    np.testing.assert_array_equal(ds["P"], [32, 64, 256])  # sorted by P
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
    # the copier reproduces its training set's share and is fully memorised
    st = float(ds["share_plus_train"][0])
    t1 = models[1].train.sum(1)
    assert st == pytest.approx(float(np.mean(t1 > 0) + 0.5 * np.mean(t1 == 0)))
    assert abs(s - st) < 4 * math.sqrt(st * (1 - st) / n) + 1e-12
    assert float(mem["copy_share"][0]) == 1.0 and float(mem["overlap_max_mean"][0]) == pytest.approx(1.0)
    # exact samples copy training configurations as often as fresh exact samples, and as often as
    # they copy an independent exact set (4 sigma of the difference of two binomial shares)
    c, c0, cr = (float(mem[v][2]) for v in ("copy_share", "copy_share_baseline", "copy_share_reference"))
    for other in (c0, cr):
        q = (c + other) / 2
        assert abs(c - other) <= 4 * math.sqrt(2 * q * (1 - q) / n) + 1e-12
    assert c0 > 0.0  # at N = 16 the all-up/all-down configurations repeat: the baseline is not 0
    # copies of rare configurations (P q(a) < 0.01): an exact sampler makes fewer than 1 in 100
    assert float(mem["rare_copy_share"][2]) < 0.01 + 4 * math.sqrt(0.01 / n)
    assert float(mem["rare_copy_share_baseline"][2]) < 0.01 + 4 * math.sqrt(0.01 / n)
    # the copier copies every rare configuration it makes; its excess over the independent set is
    # what memorisation means
    assert float(mem["rare_copy_share"][0]) == pytest.approx(float(mem["rare_share"][0]))
    assert float(mem["rare_copy_share"][0]) > 0.1 and float(mem["rare_copy_share_reference"][0]) < 0.02
    assert float(mem["copy_share_reference"][0]) < 0.9
    assert float(mem["overlap_max_mean_reference"][0]) < float(mem["overlap_max_mean"][0])
    # unknown training set: memorisation not checked
    assert int(mem["memorization_checked"][1]) == 0 and np.isnan(float(mem["copy_share"][1]))
    assert np.all(np.diff(mem["collapse_time"].values) < 0)  # more data, earlier collapse
    for d in (ds, mem):
        for v in d.data_vars:
            assert d[v].attrs["units"] and d[v].attrs["long_name"], v


def test_study_trains_one_model_per_P_with_equal_optimizer_steps():
    p = sw.Params(N=8, P=(128, 8), steps=6, n_generate=200, T=25, hidden=16)
    out = sw.run(p)
    ds, mem = out["state_weights"], out["memorization"]
    np.testing.assert_array_equal(ds["P"], [8, 128])
    # 6 epochs of one minibatch of 8, 3 epochs of two minibatches of 64: the same optimizer steps
    np.testing.assert_array_equal(ds["epochs"], [6, 3])
    np.testing.assert_array_equal(ds["optimizer_steps"], [6, 6])
    assert ds.attrs["training"] == "fixed optimizer steps"
    assert np.all(mem["memorization_checked"].values == 1)
    assert np.all((ds["share_plus"] >= 0) & (ds["share_plus"] <= 1))
    assert set(sw.plot(out)) == {"state_weights"}
    with pytest.raises(ValueError, match="not both"):
        sw.Params(steps=5, epochs=5)
    with pytest.raises(ValueError, match="P"):
        sw.Params(P=())
