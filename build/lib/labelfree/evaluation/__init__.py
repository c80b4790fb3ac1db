"""Evaluation of segmentations: inference on the input grid, metrics, post-processing, reports.

* :mod:`evaluation.metrics`: Dice and NSD (pure functions; empty-mask convention);
* :mod:`evaluation.lesions`: lesion detection and radius bins (pure functions);
* :mod:`evaluation.scoring`: all numbers of one case (one row of ``metrics.csv``);
* :mod:`evaluation.postprocess`: largest organ component, tumor margin;
* :mod:`evaluation.inference`: sliding window + inversion onto the input's voxel grid,
  checkpoint loading with flag-level mismatch messages;
* :mod:`evaluation.report`: every file the evaluation writes, and the printed table.
"""
