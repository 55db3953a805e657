"""The per-timestep autoencoder DDPM of [Thesis], in torch.

``T`` independent Linear-ReLU-Linear noise predictors, one per diffusion step, stored as stacked
tensors and trained many at a time with batched matmuls::

    from physdiff import ddpm
    config = ddpm.get_config("swiss-roll-2", "quick")
    model = ddpm.train(x0, config)           # x0: (n, d) float32
    x = model.sample(256, seed=0)            # (256, d) float32, via physdiff.reverse.reverse_chain
    model.save("run/")                       # model.safetensors + config.json, atomic
    model = ddpm.load("run/")

Rooms: :mod:`.model` (StackedAutoencoders), :mod:`.config` (TrainConfig), :mod:`.lstsq` (the
least-squares start), :mod:`.train` (PRESETS, get_config, initial_nets, train, train_snapshots,
StackedAdam), :mod:`.sample` (DDPM: eps, score, sample, reconstruct, inpaint; load),
:mod:`.checkpoint` (files verified by SHA-256; partial checkpoints of a running training). Imports run
one way: config, model <- lstsq, checkpoint <- sample <- train.

References
----------
[Thesis] Bustinduy de la Guerra (2024), Out-of-Equilibrium Machine Learning (UCM).
[Ho20] Ho, Jain, Abbeel (2020), Denoising Diffusion Probabilistic Models, arXiv:2006.11239.
"""

from .model import StackedAutoencoders
from .sample import DDPM, load
from .train import PRESETS, StackedAdam, TrainConfig, get_config, initial_nets, loss_weights, train, train_snapshots

__all__ = ["train", "train_snapshots", "TrainConfig", "PRESETS", "get_config", "DDPM", "load", "StackedAutoencoders",
           "StackedAdam", "loss_weights", "initial_nets"]
