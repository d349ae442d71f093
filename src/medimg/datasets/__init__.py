"""Data layer: layouts on disk, label tables, splits and caches, nothing above that.

- :mod:`.msd`: any segmentation data set in the nnU-Net v2 raw or Medical
  Segmentation Decathlon layout (``find_cases``, ``describe``, ``load_case``);
- :mod:`.brats`, :mod:`.verse`, :mod:`.rsna`: the chapters' data sets (discovery of
  the real layouts, loading with checks, label tables, the BraTS HDF5 and RSNA caches);
- :mod:`.splits`: the one split helper (train / validation / test by patient or
  subject);
- :mod:`.cache`: the one cache rule (keyed on settings and sources, atomic, locked,
  resumable, a manifest per item).

Models, metrics, training and the pipelines live above, in :mod:`medimg.tasks`; this
package never imports them (``tests/test_layering.py`` checks). Import the submodule
you need: ``from medimg.datasets import msd``.
"""
