"""End-to-end jobs behind the ``physdiff`` command and the ``studies/`` scripts.

The CLI holds no logic of its own and ``studies/`` is not part of the installed package, so the
pipelines (data -> model -> samples -> metrics -> Datasets -> figures) live here and both call them.
"""

from .train import sample_job, train_job

__all__ = ["train_job", "sample_job", "curie_weiss_study", "phase_transition_study"]


def __getattr__(name):
    # the studies import theory, spins and forward: load them only when asked for
    if name == "curie_weiss_study":
        from .curie_weiss import curie_weiss_study

        return curie_weiss_study
    if name == "phase_transition_study":
        from .phase_transition import phase_transition_study

        return phase_transition_study
    raise AttributeError(name)
