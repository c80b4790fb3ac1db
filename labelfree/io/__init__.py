"""Files: atomic output, scan formats and the one image reader, checkpoints."""
