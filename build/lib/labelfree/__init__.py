"""Shared helpers: atomic file output, datalists, transform pipelines, distributed set-up."""
