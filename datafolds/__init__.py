"""Datalists: the JSON files of this folder and the code that builds them.

``folds.py`` holds pure functions (cases in, decathlon dicts out); ``make_datafolds.py`` is
the command line (``python -m datafolds.make_datafolds --data_root DIR``). The JSON files
next to them are the datalists of the built-in phantom root ``data/phantom``.
"""
