"""Tests of the reconstruction study (physdiff.studies.reconstruction) and of what it uses.

The step mapping keeps alpha_bar (identity on the reference schedule itself, nearest in physical
time otherwise); the same-digit distance is the mean pairwise distance within a class; the study
reconstructs the original exactly from step 0, loses more of it from later steps, and its diffused
images have the closed-form norm sqrt((1 - ab) / ab) |eps|.
"""

import math

import numpy as np
import pytest
import torch

from physdiff import ddpm, metrics, studies
from physdiff.schedules import make_schedule, map_steps


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_thesis_steps_map_to_the_same_physical_time():
    quick = ddpm.get_config("mnist", "quick", T=50).make_schedule()  # betas rescaled by 20
    m = map_steps(quick, range(100, 1000, 100))
    np.testing.assert_array_equal(m["step"], np.arange(100, 1000, 100))
    pt = quick.physical_time
    for tau, k in zip(m["time"], m["model_step"]):  # nearest in physical time: no other step is nearer
        assert abs(pt[k] - tau) == pytest.approx(np.abs(pt - tau).min())
    np.testing.assert_allclose(m["model_time"], m["time"], atol=0.11)
    np.testing.assert_allclose(m["model_alpha_bar"], quick.alpha_bar[m["model_step"]])
    assert np.all(np.diff(m["model_step"]) > 0)
    # counting steps would be wrong: betas up to 0.4 make log(1 - beta) < -beta, so the rescaled
    # chain runs ahead of "thesis step = 20 x model step" late in the chain
    assert m["model_step"][-1] < 45
    ref = make_schedule("linear", 1000)  # on the reference itself the map is the identity
    same = map_steps(ref, [0, 1, 400, 1000])
    np.testing.assert_array_equal(same["model_step"], [0, 1, 400, 1000])
    np.testing.assert_array_equal(same["model_alpha_bar"], same["alpha_bar"])
    for bad in ([1001], [-1], [0.5], []):
        with pytest.raises(ValueError, match="steps"):
            map_steps(quick, bad)


def test_same_digit_distance_and_nearest_index():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0], [10.0, 1.0]])
    out = metrics.same_digit_distance(x, np.array([0, 0, 1, 1]))
    assert out["by_class"] == {0: 5.0, 1: 1.0} and out["mean"] == pytest.approx(3.0)
    idx, d = metrics.nearest_index(x + [0.0, 0.6], x)
    np.testing.assert_array_equal(idx, [0, 1, 3, 3])
    np.testing.assert_allclose(d, [0.6, 0.6, 0.4, 0.6])


def test_study_on_tiny_params(mnist_dir):
    st = studies.get("reconstruction")
    p = st.Params(**{**st.TINY, "data_dir": str(mnist_dir), "seed": 1})
    ds = st.run(p)["reconstruction"]
    assert {k: ds.sizes[k] for k in ("step", "image", "recon", "shown", "example", "digit")} == \
        {"step": 3, "image": 6, "recon": 3, "shown": 2, "example": 2, "digit": 2}
    assert ds["predicted"].dims == ("step", "image", "recon")
    assert sorted(set(ds["label"].values.tolist())) == [0, 1]  # both digits
    r0 = ds.sel(step=0)  # from step 0 the reconstruction is the original
    assert float(r0["l2_mean"]) == 0.0 and bool(r0["nearest_is_original"].all())
    assert float(r0["share_original"]) == float(ds["share_original_of_originals"])
    # |x_t / sqrt(ab) - x0| = sqrt((1 - ab) / ab) |eps|, |eps| ~ sqrt(784) (sd 0.71: 5 % over 6 images)
    ab = float(ds["model_alpha_bar"].sel(step=900))
    assert float(ds["l2_diffused"].sel(step=900).mean()) == pytest.approx(math.sqrt((1 - ab) / ab * 784), rel=0.05)
    assert float(ds["l2_mean"].sel(step=100)) < float(ds["l2_mean"].sel(step=900))
    assert np.all((ds["share_original"] >= 0) & (ds["share_original"] <= 1))
    for v in ds.data_vars.values():
        assert "units" in v.attrs and "long_name" in v.attrs, v.name
    again = st.run(st.Params(**{**st.TINY, "data_dir": str(mnist_dir), "seed": 1, "t_start": (100, 900)}))
    np.testing.assert_array_equal(again["reconstruction"]["l2"].values, ds["l2"].sel(step=[100, 900]).values)
    assert set(st.plot({"reconstruction": ds})) == {"reconstruction", "reconstruction_scores"}
    with pytest.raises(ValueError, match="t_start"):
        st.Params(t_start=(1001,))


def test_study_from_a_checkpoint_rebuilds_its_training_set(mnist_dir, tmp_path):
    from physdiff import datasets

    x, meta = datasets.load_training_data("mnist", digits=(0, 1), data_dir=mnist_dir)
    cfg = ddpm.get_config("mnist", "quick", T=25, hidden=8, epochs=1, init="random", device="cpu", batch=512)
    ddpm.train(x, cfg, progress=False, log=None, metadata=meta).save(tmp_path / "ck")
    st = studies.get("reconstruction")
    small = dict(data_dir=str(mnist_dir), classifier_images=2000, classifier_epochs=1, t_start=(0, 100), n_images=2,
                 n_recon=1, n_show=1, n_examples=1)
    ds = st.run(st.Params(checkpoint=str(tmp_path / "ck"), **small))["reconstruction"]
    assert ds.attrs["n_heldout"] == 2115 and float(ds["l2_mean"].sel(step=0)) == 0.0
    # a model whose recorded fingerprint is not that of the rebuilt images is refused
    bad = ddpm.load(tmp_path / "ck")
    ddpm.DDPM(bad.model, bad.schedule, bad.config, data=dict(bad.data, sha256="0" * 64)).save(tmp_path / "bad")
    with pytest.raises(ValueError, match="fingerprint"):
        st.run(st.Params(checkpoint=str(tmp_path / "bad"), **small))
