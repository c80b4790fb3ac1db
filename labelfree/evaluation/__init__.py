"""Evaluation of segmentations: metrics, lesion detection, scoring, reports and figures.

* :mod:`labelfree.evaluation.metrics`: Dice and NSD (pure functions; empty-mask convention);
* :mod:`labelfree.evaluation.lesions`: lesion detection and radius bins (pure functions);
* :mod:`labelfree.evaluation.scoring`: all numbers of one case (one row of ``metrics.csv``);
* :mod:`labelfree.evaluation.report`: every file the evaluation writes, and the printed table;
* :mod:`labelfree.evaluation.figures`, :mod:`labelfree.evaluation.comparison`: overlays and per-arm comparisons;
* :mod:`labelfree.evaluation.outputs`: the output folder of ``validation.py``.

Prediction itself (sliding window, post-processing) is :mod:`labelfree.inference`.
"""
