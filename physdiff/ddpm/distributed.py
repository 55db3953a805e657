"""Training sharded over timesteps: one torch.distributed process (torchrun rank) per shard.

The ``T`` nets of a per-timestep DDPM are independent, and every random number a net sees depends
only on ``(seed, t)`` (its initial weights) and ``(seed, t, epoch)`` (its minibatches and noise),
never on which process trains it or with which other nets. So ranks can train disjoint sets of
timesteps with no gradient communication at all, and the shards merged afterwards are the model
that one process would have trained, bit for bit, as long as the nets are grouped into the same
chunks (the chunk size is part of the configuration, or derived from the same device type).

``torchrun --nproc-per-node K -m physdiff train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`current_shard` reads them. Each rank trains the chunks of
:func:`shard_chunks` and checkpoints its own directory; rank 0 merges the shards with
:func:`merge_shards` once every rank has finished (a ``barrier`` of the process group: gloo for
CPU ranks, NCCL for GPU ranks, one GPU per rank).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .._util import PhysdiffError

#: How long a rank that has finished its shard waits for the others (torch.distributed's timeout).
BARRIER_TIMEOUT = datetime.timedelta(days=7)

__all__ = ["Shard", "current_shard", "shard_chunks", "merge_shards", "init_process_group", "barrier",
           "rank_device"]


@dataclass(frozen=True)
class Shard:
    """One rank's place among ``size`` ranks (``local_rank`` is its index on its node)."""

    rank: int
    size: int
    local_rank: int = 0

    def __post_init__(self):
        if not (isinstance(self.size, int) and self.size >= 1):
            raise ValueError(f"shard size (WORLD_SIZE) must be an integer >= 1, got {self.size!r}")
        if not (isinstance(self.rank, int) and 0 <= self.rank < self.size):
            raise ValueError(f"shard rank must be in 0..{self.size - 1}, got {self.rank!r}")

    @property
    def label(self) -> str:
        """``"rank-<r>-of-<size>"``, the name of the rank's checkpoint directory."""
        return f"rank-{self.rank}-of-{self.size}"


def current_shard(environ: dict | None = None) -> Shard | None:
    """The shard of this process from torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; None when
    not launched by torchrun (or ``WORLD_SIZE`` is 1).

    Raises
    ------
    ValueError
        The variables are set but not integers, or inconsistent.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    try:
        size, rank = int(env["WORLD_SIZE"]), int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers, got {env.get('RANK')!r}/"
                         f"{env.get('WORLD_SIZE')!r}/{env.get('LOCAL_RANK')!r}") from None
    return None if size == 1 else Shard(rank, size, local)


def shard_chunks(bounds: Sequence[tuple[int, int]], shard: Shard | None) -> list[tuple[int, int]]:
    """The chunks ``[(a, b), ...]`` (nets ``a..b-1``) that ``shard`` trains: a contiguous block of
    ``bounds`` of near-equal length (all of them when ``shard`` is None)."""
    bounds = list(bounds)
    if shard is None:
        return bounds
    blocks = np.array_split(np.arange(len(bounds)), shard.size)
    return [bounds[i] for i in blocks[shard.rank]]


def rank_device(device, shard: Shard | None):
    """The torch device of this rank: ``cuda:<LOCAL_RANK>`` for a CUDA run (one GPU per rank),
    else ``device`` itself."""
    from .._util import resolve_device

    dev = resolve_device(device)
    if shard is not None and dev.type == "cuda" and dev.index is None:
        import torch

        return torch.device("cuda", shard.local_rank)
    return dev


def init_process_group(shard: Shard | None, device) -> None:
    """Join torchrun's process group (gloo for CPU ranks, NCCL for CUDA ranks); no-op without a
    shard or when already initialised."""
    if shard is None:
        return
    import torch.distributed as dist

    if not dist.is_available():
        raise PhysdiffError("this torch build has no torch.distributed; run without torchrun")
    if dist.is_initialized():
        return
    cuda = getattr(device, "type", str(device)) == "cuda"
    if cuda:
        import torch

        torch.cuda.set_device(device)  # one GPU per rank, before NCCL binds to one
    # ranks wait for each other only at the end of training, which can be hours apart
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=BARRIER_TIMEOUT)


def barrier(shard: Shard | None) -> None:
    """Wait for every rank (no-op without a shard)."""
    if shard is None:
        return
    import torch.distributed as dist

    dist.barrier()


def merge_shards(models: Sequence) -> "DDPM":  # noqa: F821
    """One model from the shards of a sharded training run (each trained some nets fully).

    Net ``t`` is taken from the one shard that finished it (``epochs_done[t] == config.epochs``);
    its loss history comes along. The training time is the longest shard's.

    Raises
    ------
    PhysdiffError
        The shards differ in configuration, schedule or training data, a net is finished in no shard
        or in two, or a shard is missing.
    """
    import torch

    models = list(models)
    if not models:
        raise PhysdiffError("no shards to merge")
    first = models[0]
    for m in models[1:]:
        if m.config.to_dict() != first.config.to_dict() or m.data.get("sha256") != first.data.get("sha256"):
            raise PhysdiffError("the shards were trained with different configurations or data; they "
                                "cannot be merged (start the sharded run again with the same arguments)")
    E = first.config.epochs
    finished = np.stack([m.epochs_done >= E for m in models])  # (shards, T)
    owners = finished.sum(axis=0)
    if np.any(owners == 0):
        missing = np.flatnonzero(owners == 0) + 1
        raise PhysdiffError(f"nets t={missing[:10].tolist()}{'...' if missing.size > 10 else ''} were finished "
                            "by no shard; resume the sharded run to finish them")
    if np.any(owners > 1):
        raise PhysdiffError("some nets were trained by two shards; the shard checkpoints do not belong together")
    owner = finished.argmax(axis=0)
    merged = first
    with torch.no_grad():
        for k, m in enumerate(models[1:], start=1):
            mine = torch.from_numpy(owner == k)
            for name in ("W1", "b1", "W2", "b2"):
                dst = getattr(merged.model, name)
                dst[mine.to(dst.device)] = getattr(m.model, name).to(dst.device)[mine.to(dst.device)]
            merged.loss_history[:, owner == k] = m.loss_history[:, owner == k]
    merged.epochs_done = np.full(first.T, E, dtype=np.int64)
    merged.train_seconds = max(m.train_seconds for m in models)
    merged._train_state = None
    return merged
