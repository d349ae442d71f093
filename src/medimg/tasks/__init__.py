"""Pipelines as steps a notebook calls one cell at a time, and a ``run(cfg)`` the command
line calls: the generic tasks (:mod:`.classification`, segmentation) and thin chapter
adapters (:mod:`.pneumonia` for RSNA). Import the submodule you need:
``from medimg.tasks import classification``."""
