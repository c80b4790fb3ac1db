"""NIfTI files with explicit header codes and a synthetic chest, for the label-conversion tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

# An LPS-like oblique-free affine with anisotropic spacing and an offset: a conversion that
# drops the affine (or swaps axes) changes it.
AFFINE = np.array([[-0.8, 0, 0, 90.0], [0, -0.8, 0, 110.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])


def save(path: Path, data: np.ndarray, affine=AFFINE, dtype=None, descrip: bytes = b"") -> Path:
    """``data`` as NIfTI (qform code 1, sform code 2, mm units, ``descrip``); folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(data)
    if dtype is not None:
        data = data.astype(dtype)
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=2)  # "aligned": a writer that resets codes to 1 is caught
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = descrip
    nib.save(img, str(path))
    return path


def chest_phantom(shape=(48, 40, 16)):
    """Synthetic chest: air, an elliptic body at 40 HU, two lungs at -850 HU with vessels,
    a small gas pocket (bowel) and a table below the body. Returns (image HU, true lungs)."""
    x, y, _ = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    cx, cy = shape[0] / 2, shape[1] / 2
    image = np.full(shape, -1000, np.int16)
    body = ((x - cx) / 21) ** 2 + ((y - cy) / 16) ** 2 <= 1
    image[body] = 40
    lungs = np.zeros(shape, bool)
    for side in (-1, 1):
        lung = ((x - (cx + side * 9)) / 7) ** 2 + ((y - cy) / 10) ** 2 <= 1
        lungs |= lung
    image[lungs] = -850
    image[(x - (cx - 9)) ** 2 + (y - cy) ** 2 <= 2] = 60  # vessel: a hole the mask must fill
    gas = ((x - cx) ** 2 + (y - (cy + 11)) ** 2 <= 2) & (np.arange(shape[2]) < 4)[None, None, :]
    image[gas] = -900
    image[:, 1:3, :] = 200  # table, apart from the body
    return image, lungs
