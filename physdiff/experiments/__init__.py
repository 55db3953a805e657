"""End-to-end jobs behind the ``physdiff`` command and the ``studies/`` scripts.

The CLI holds no logic of its own and ``studies/`` is not part of the installed package, so the
pipelines (data -> model -> samples -> metrics -> Datasets -> figures) live here and both call them.
"""

# the train and sample jobs moved to physdiff.jobs
__all__: list[str] = []
