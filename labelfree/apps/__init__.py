"""Tools built on the framework: offline datasets, nnU-Net integration, the realism tool, previews, the experiment."""
