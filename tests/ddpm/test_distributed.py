"""Training sharded over timesteps: the shards' merge is the single-process model, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physdiff import PhysdiffError, ddpm
from physdiff.ddpm.distributed import Shard, current_shard, merge_shards, shard_chunks

NAMES = ("W1", "b1", "W2", "b2")


@pytest.fixture(scope="module")
def setup():
    x = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    cfg = ddpm.get_config("swiss-roll-2", "quick", T=30, hidden=8, epochs=2, batch=50, chunk=4)
    return x, cfg, ddpm.train(x, cfg, progress=False, log=None)


def _same(a, b) -> bool:
    return all(torch.equal(getattr(a.model, n), getattr(b.model, n)) for n in NAMES)


def test_shard_chunks_partition_the_chunks():
    bounds = [(a, min(a + 4, 30)) for a in range(0, 30, 4)]  # 8 chunks
    for size in (1, 2, 3, 8, 11):
        got = [shard_chunks(bounds, Shard(r, size)) for r in range(size)]
        assert [c for g in got for c in g] == bounds  # contiguous, disjoint, complete, in order
        assert max(map(len, got)) - min(map(len, got)) <= 1  # balanced
    assert shard_chunks(bounds, None) == bounds


@pytest.mark.parametrize("size", [2, 3])
def test_merged_shards_equal_the_single_process_model(setup, size):
    x, cfg, full = setup
    parts = [ddpm.train(x, cfg, progress=False, log=None, shard=Shard(r, size)) for r in range(size)]
    for p in parts:
        assert not p.trained  # each shard alone is partial
    merged = merge_shards(parts)
    assert merged.trained and _same(merged, full)
    np.testing.assert_array_equal(merged.loss_history, full.loss_history)


def test_merge_refuses_incomplete_or_foreign_shards(setup):
    x, cfg, _ = setup
    a = ddpm.train(x, cfg, progress=False, log=None, shard=Shard(0, 2))
    with pytest.raises(PhysdiffError, match="finished by no shard"):
        merge_shards([a])
    other = ddpm.train(x, cfg.replace(seed=1), progress=False, log=None, shard=Shard(1, 2))
    with pytest.raises(PhysdiffError, match="different configurations"):
        merge_shards([a, other])
    with pytest.raises(PhysdiffError, match="two shards"):
        merge_shards([a, ddpm.train(x, cfg, progress=False, log=None)])


def test_current_shard_reads_torchrun_variables():
    assert current_shard({}) is None
    assert current_shard({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert current_shard({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"}) == Shard(2, 4, 0)
    with pytest.raises(ValueError, match="integers"):
        current_shard({"WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="rank must be in 0..3"):
        current_shard({"WORLD_SIZE": "4", "RANK": "4"})
