"""PNG previews of a case: axial, coronal and sagittal slices with the label outlined.

Slices are shown in radiological convention whatever the file orientation: the arrays are
first brought to RAS voxel order, then axial views have anterior at the top and the
patient's right on the viewer's left, coronal views superior at the top and the patient's
right on the left, sagittal views superior at the top and anterior on the left.
"""

from __future__ import annotations

import os

import numpy as np

from labelfree.io.atomic import atomic_path

#: (level, width) CT display windows in HU.
WINDOWS = {"abdomen": (40.0, 400.0), "chest": (-600.0, 1500.0)}
#: Outline colour of each label value.
LABEL_COLOURS = {1: "lime", 2: "red"}


def to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder an (H, W, D) array to RAS voxel order; returns the array and its voxel sizes (mm)."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    data = nib.orientations.apply_orientation(array, ornt)
    zooms_in = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    zooms = np.empty(3)
    zooms[ornt[:, 0].astype(int)] = zooms_in  # input axis a becomes output axis ornt[a, 0]
    return data, zooms


def save_preview(
    image: np.ndarray,
    label: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    window: tuple[float, float] = WINDOWS["abdomen"],
    centre_label: int | None = None,
    title: str | None = None,
) -> None:
    """Write a three-view PNG of ``image`` with the outlines of ``label`` (atomically).

    Args:
        image: (H, W, D) HU image in the voxel order of ``affine``.
        label: (H, W, D) integer label of the same geometry.
        affine: voxel-to-world (RAS+ mm) affine of both arrays.
        path: destination ``.png``.
        window: (level, width) display window in HU.
        centre_label: slices pass through the centre of this label value (the highest
            present label by default: the lesion if any, else the organ).
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img, zooms = to_ras(np.asarray(image), affine)
    lab, _ = to_ras(np.asarray(label), affine)
    present = [v for v in np.unique(lab) if v > 0]
    if centre_label is None:
        centre_label = int(max(present)) if present else None
    if centre_label is not None and np.any(lab == centre_label):
        idx = np.argwhere(lab == centre_label)
        centre = np.round(idx.mean(axis=0)).astype(int)
        # The centroid of a non-convex region may fall outside it; use its nearest voxel.
        centre = idx[np.argmin(((idx - centre) ** 2).sum(axis=1))]
    else:
        centre = np.array(img.shape) // 2
    i, j, k = (int(v) for v in centre)
    level, width = window
    vmin, vmax = level - width / 2.0, level + width / 2.0
    sx, sy, sz = (float(z) for z in zooms)

    # Each view: (2D array with rows top->bottom and columns left->right, pixel aspect h/w).
    views = [
        ("axial", img[:, :, k].T[::-1, ::-1], lab[:, :, k].T[::-1, ::-1], sy / sx),
        ("coronal", img[:, j, :].T[::-1, ::-1], lab[:, j, :].T[::-1, ::-1], sz / sx),
        ("sagittal", img[i, :, :].T[::-1, ::-1], lab[i, :, :].T[::-1, ::-1], sz / sy),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4))
    for ax, (name, im2d, lab2d, aspect) in zip(axes, views):
        ax.imshow(im2d, cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")
        for value, colour in LABEL_COLOURS.items():
            if np.any(lab2d == value):
                ax.contour((lab2d == value).astype(np.float32), levels=[0.5], colors=colour, linewidths=0.8)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_xlabel("R <-> L (radiological)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
