"""THE place that decides how a CT or label file is read: NIfTI, NRRD, MetaImage, DICOM series.

Every reader of the project goes through here: the transform pipelines
(:func:`load_transform`, used by ``labelfree.data.transforms`` and the synthesis preview), the
datalist and data checks, ``transfer_label.py``, ``validation.py`` (geometry of the
predictions) and ``scripts/fetch_sample_ct.py``.

Formats and readers (MONAI's own reader classes, chosen by :class:`labelfree.io.image_reader.FormatReader`):

=============  ============================================  =============================
format         what a datalist names                         reader
=============  ============================================  =============================
``nifti``      ``x.nii``, ``x.nii.gz``                       ``monai.data.NibabelReader``
``nrrd``       ``x.nrrd``, ``x.seg.nrrd`` (3D label map)     ``monai.data.ITKReader``
``metaimage``  ``x.mhd`` (+ ``x.raw`` / ``x.zraw``), ``x.mha``  ``monai.data.ITKReader``
``dicom``      a folder of the slices of one series          ``monai.data.ITKReader`` (GDCM)
=============  ============================================  =============================

Geometry: every affine this module hands out maps a voxel index ``(i, j, k)`` of the array
as read (``(H, W, D)``, the file's own index order: NIfTI's ``i, j, k``; ITK's index
``i, j, k`` of NRRD, MetaImage and DICOM) to **RAS+ world millimetres**, the NIfTI
convention. NRRD, MetaImage and DICOM store LPS+ coordinates; ``ITKReader`` with
``affine_lps_to_ras=True`` flips the first two world axes. A prediction written as NIfTI
with this affine therefore places every voxel at the same world point as the input's voxel.

ITK is imported only when a non-NIfTI file is read (its first import takes several
seconds); NIfTI data keep the nibabel path they always had. MONAI (and torch) are imported
only by the reader class (``labelfree.io.image_reader``), so the checkers that read NIfTI
through this module start fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from labelfree.io.formats import (
    ReaderError,
    checked_format,
    image_format,
    path_exists,
    supported_text,
)

#: Largest difference (mm) between two affines that still counts as the same voxel grid.
GRID_TOLERANCE_MM = 1e-3


def load_transform(keys: Sequence[str], **kwargs):
    """``monai.transforms.LoadImaged`` reading ``keys`` with :class:`labelfree.io.image_reader.FormatReader`."""
    from monai.transforms import LoadImaged

    from labelfree.io.image_reader import FormatReader

    return LoadImaged(keys=keys, reader=FormatReader(), **kwargs)


@dataclass(frozen=True)
class Volume:
    """A scan or label as read, on its own voxel grid.

    Attributes:
        array: (H, W, D) voxel values in the file's index order (HU for CT: NIfTI scaling
            and DICOM rescale slope/intercept applied unless read with ``scaled=False``).
        affine: 4x4 voxel index -> RAS+ world mm.
        format: one of :data:`FORMATS`.
        header: the nibabel header of a NIfTI file (kept for predictions), else ``None``.
        grid_shape: (H, W, D) when ``array`` is ``None`` (:func:`read_geometry`).
    """

    array: np.ndarray | None
    affine: np.ndarray
    format: str
    header: object = None
    grid_shape: tuple[int, ...] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape) if self.array is not None else tuple(self.grid_shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the array axes (column norms of the affine; oblique-safe)."""
        return tuple(float(s) for s in np.linalg.norm(np.asarray(self.affine)[:3, :3], axis=0))


def read_volume(path: str | os.PathLike, scaled: bool = True) -> Volume:
    """Read a whole 3D scan or label (see :class:`Volume`).

    Args:
        path: a file of a supported format or a DICOM folder.
        scaled: NIfTI only: apply ``scl_slope``/``scl_inter`` (False keeps an int16 CT int16).

    Raises:
        ReaderError: unsupported format, missing file, not 3D, or unreadable (the message
            names the file and the library's error).
    """
    fmt = checked_format(path)
    if fmt == "nifti":
        import nibabel as nib

        try:
            img = nib.load(os.fspath(path))
            proxy = img.dataobj
            data = np.asanyarray(proxy if scaled or not hasattr(proxy, "get_unscaled") else proxy.get_unscaled())
        except Exception as e:  # nibabel, gzip and zlib raise many types for damaged files
            raise ReaderError(f"{path}: unreadable ({type(e).__name__}: {e})") from e
        return Volume(_as_3d(data, path), np.asarray(img.affine, dtype=np.float64), fmt, img.header)
    from labelfree.io.image_reader import FormatReader

    reader = FormatReader()
    try:
        data, meta = reader.get_data(reader.read(os.fspath(path)))
    except ReaderError:
        raise
    except Exception as e:  # ITK raises RuntimeError and others for damaged files
        first_line = (str(e).strip().splitlines() or [""])[0]  # ITK appends pages of wrapped types
        raise ReaderError(f"{path}: unreadable ({type(e).__name__}: {first_line}){_seg_nrrd_hint(path)}") from e
    return Volume(_as_3d(np.asarray(data), path), np.asarray(meta["affine"], dtype=np.float64), fmt)


def read_geometry(path: str | os.PathLike) -> Volume:
    """Shape and affine of a scan (``array`` is ``None``).

    NIfTI reads the header only; the other formats are read whole through the same reader
    as the pipelines, so the geometry cannot differ from what training and inference see.
    """
    fmt = checked_format(path)
    if fmt == "nifti":
        import nibabel as nib

        try:
            img = nib.load(os.fspath(path))
        except Exception as e:
            raise ReaderError(f"{path}: unreadable ({type(e).__name__}: {e})") from e
        shape = tuple(int(s) for s in img.shape)
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise ReaderError(f"{path}: expected a 3D volume, got shape {shape}")
        return Volume(None, np.asarray(img.affine, dtype=np.float64), fmt, img.header, shape)
    volume = read_volume(path)
    return Volume(None, volume.affine, fmt, None, volume.shape)


def check_readable(path: str | os.PathLike) -> str | None:
    """A one-line problem with ``path`` (missing, unsupported, NIfTI header unreadable), or ``None``.

    Cheap: NIfTI headers are read; the other formats only checked to exist (their readers
    report damaged data, naming the file, when the data are loaded).
    """
    if not path_exists(path):
        return f"missing: {path}" if not Path(path).is_dir() else f"empty DICOM folder: {path}"
    fmt = image_format(path)
    if fmt is None:
        return f"unsupported format: {path} (supported: {supported_text()})"
    if fmt == "nifti":
        import nibabel as nib

        try:
            nib.load(os.fspath(path))
        except Exception as e:  # nibabel raises several types for corrupt files
            return f"unreadable: {path} ({type(e).__name__}: {e})"
    return None


def _as_3d(data: np.ndarray, path) -> np.ndarray:
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ReaderError(f"{path}: expected a 3D volume, got shape {tuple(data.shape)}{_seg_nrrd_hint(path)}")
    return data


def _seg_nrrd_hint(path) -> str:
    if not str(path).lower().endswith(".seg.nrrd"):
        return ""
    return (" (a .seg.nrrd with overlapping segments stores one layer per segment, a 4D array: "
            "export a label map from 3D Slicer)")


def same_grid(a: np.ndarray, b: np.ndarray, shape_a, shape_b, tolerance_mm: float = GRID_TOLERANCE_MM) -> bool:
    """Whether two (shape, affine) pairs describe the same voxel grid."""
    return tuple(shape_a) == tuple(shape_b) and float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) <= tolerance_mm


def label_on_grid(label: np.ndarray, label_affine: np.ndarray, shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """Map a label map onto another voxel grid through world coordinates (nearest neighbour).

    Labels shipped on another grid than their image (a DICOM series converted by a tool that
    flipped an axis, a Slicer segmentation cropped to its extent) are put onto the image's
    grid once, before training. When the two grids share voxel centres (axis flips and
    permutations, a crop) this is an exact re-indexing; voxels outside the label's grid
    become 0.

    Args:
        label: (H', W', D') integer labels on the grid of ``label_affine``.
        label_affine: its voxel -> RAS mm affine.
        shape: (H, W, D) of the target grid.
        affine: voxel -> RAS mm affine of the target grid.

    Returns:
        (H, W, D) labels of ``label``'s dtype.
    """
    from scipy import ndimage

    # target voxel -> world -> label voxel
    to_label = np.linalg.inv(np.asarray(label_affine, dtype=np.float64)) @ np.asarray(affine, dtype=np.float64)
    out = ndimage.affine_transform(
        np.asarray(label), to_label[:3, :3], offset=to_label[:3, 3], output_shape=tuple(int(s) for s in shape),
        order=0, mode="constant", cval=0,
    )
    return out.astype(label.dtype, copy=False)
