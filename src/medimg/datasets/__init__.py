"""Data-set specific code: discovery of the real layouts, label tables, patient-level
splits, caches and ``tf.data`` pipelines for RSNA Pneumonia (:mod:`.rsna`), BraTS 2020
(:mod:`.brats`) and VerSe (:mod:`.verse`). Import the submodule you need:
``from medimg.datasets import rsna``."""
