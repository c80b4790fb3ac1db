"""The training framework of label-free tumor segmentation, in packages by concern.

Layers, lowest first (a module imports its own layer and the ones below, never above;
``tests/test_layout.py`` enforces it, and that there is no import cycle):

* :mod:`labelfree.io`, :mod:`labelfree.masks`, :mod:`labelfree.networks`, :mod:`labelfree.optimizers`:
  files (atomic output, readers, checkpoints), mask geometry, networks, schedules;
* :mod:`labelfree.config`, :mod:`labelfree.runtime`: the run's settings and flags; processes, devices,
  signals, the one CLI error path;
* :mod:`labelfree.data`, :mod:`labelfree.phantom`: datalists, labels, checks, the transform pipelines,
  loaders; the phantom CT generator;
* :mod:`labelfree.inference`: sliding window onto the input grid, ROI, post-processing;
* :mod:`labelfree.evaluation`: metrics, lesions, scoring, reports;
* :mod:`labelfree.training`: the run skeleton (``Workflow``), segmentation and generator training;
* :mod:`labelfree.apps`: offline datasets, nnU-Net, the realism tool, previews, the experiment;
* :mod:`labelfree.cli`: the programs (``main.py``, ``validation.py``, scoring, data checks, ``syn_train.py``).

The synthesis engine :mod:`tumor_synthesis` sits below all of them and imports nothing from here.
"""
