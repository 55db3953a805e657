"""Tests of the inpainting study (physdiff.studies.inpainting): the patch mask is the square it
says; every fill keeps the known pixels exactly and its stored RMSE is that of the patch."""

import numpy as np
import pytest
import torch

from physdiff import studies
from physdiff.studies.inpainting import patch_mask


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_patch_mask():
    k14 = patch_mask(14).reshape(28, 28)
    assert (~k14).sum() == 196 and not k14[7:21, 7:21].any() and k14[:7].all() and k14[21:].all()
    k18 = patch_mask(18).reshape(28, 28)
    assert (~k18).sum() == 324 and not k18[5:23, 5:23].any()
    corner = patch_mask(14, position=(0, 14)).reshape(28, 28)
    assert not corner[:14, 14:].any() and corner[14:].all() and corner[:, :14].all()
    for bad in (dict(patch=28), dict(patch=0), dict(patch=14, position=(15, 0)), dict(patch=14, position=(-1, 3))):
        with pytest.raises(ValueError, match="patch|position"):
            patch_mask(**bad)


@pytest.mark.parametrize("patch", [14, 18])
def test_study_on_tiny_params(mnist_dir, patch):
    st = studies.get("inpainting")
    ds = st.run(st.Params(**{**st.TINY, "data_dir": str(mnist_dir), "patch": patch}))["inpainting"]
    assert list(ds["fill"].values) == ["marginal", "clamp", "train_mean", "nearest_train"]
    assert ds["rmse"].dims == ("fill", "image", "sample") and ds.sizes["sample"] == 2 and ds.sizes["image"] == 4
    known = ds["known"].values.reshape(-1)
    assert (~known).sum() == patch * patch
    orig = ds["example_original"].values.reshape(ds.sizes["example"], -1)
    for f in ds["fill"].values:  # every fill keeps the known pixels exactly; the stored RMSE is the patch's
        fill = ds["example_fill"].sel(fill=f).values.reshape(ds.sizes["example"], -1)
        np.testing.assert_array_equal(fill[:, known], orig[:, known])
        rm = np.sqrt(np.mean((fill[:, ~known] - orig[:, ~known]) ** 2, axis=1))
        stored = ds["rmse"].sel(fill=f).values[ds["example_image"].values, 0]
        np.testing.assert_allclose(rm, stored, rtol=1e-5)
    assert np.all(ds["rmse_patch"].values > 0) and np.all(ds["share_original"].values <= 1)
    assert float(ds["patch_diversity"].sel(fill="train_mean")) == 0.0
    for v in ds.data_vars.values():
        assert "units" in v.attrs and "long_name" in v.attrs, v.name
    assert set(st.plot({"inpainting": ds})) == {"inpainting"}
    with pytest.raises(ValueError, match="methods"):
        st.Params(methods="repaint")
