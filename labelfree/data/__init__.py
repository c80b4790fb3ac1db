"""Data: datalists and folds, label conventions and conversion, data checks and pre-flight, the transform pipelines, loaders."""
