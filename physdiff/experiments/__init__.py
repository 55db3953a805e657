"""End-to-end jobs behind the ``physdiff`` command and the ``studies/`` scripts.

The CLI holds no logic of its own and ``studies/`` is not part of the installed package, so the
pipelines (data -> model -> samples -> metrics -> Datasets -> figures) live here and both call them.
"""

from .train import sample_job, train_job

__all__ = ["train_job", "sample_job", "reconstruction_study", "inpainting_study", "linear_baseline_study"]
__all__ += ["mnist_cloning_study"]


def __getattr__(name):
    # the studies import theory, spins and forward: load them only when asked for
    if name == "mnist_cloning_study":
        from .mnist_cloning import mnist_cloning_study

        return mnist_cloning_study
    if name in ("reconstruction_study", "inpainting_study", "linear_baseline_study"):
        from . import mnist_studies

        return getattr(mnist_studies, name)
    raise AttributeError(name)
