"""Offline synthetic-tumor datasets (``labelfree-synthesize``): N painted copies of every healthy case, written once."""
