"""Inference: sliding-window prediction mapped back onto the input's voxel grid, the body/organ ROI, post-processing."""
