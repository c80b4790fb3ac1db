"""Training: the run skeleton (``Workflow``) shared by segmentation and generator training, step timing and checks, quality control."""
