"""THE place that decides how a CT or label file is read: NIfTI, NRRD, MetaImage, DICOM series.

Every reader of the project goes through here: the transform pipelines
(:func:`load_transform`, used by ``labelfree.data.transforms`` and the synthesis preview), the
header pass of the datalist checks (:func:`read_header`, through
``labelfree.data.case_geometry``), the data checks, ``transfer_label.py``, ``make_datafolds.py``,
offline generation, scoring, ``validation.py`` (geometry of the predictions), the report and
benchmark scripts and ``scripts/fetch_sample_ct.py``. Writing NIfTI is
:mod:`labelfree.io.atomic`'s job.

Two rules hold for every path that reads a file, so they live here once:

* :func:`grid_shape`: a trailing 4th axis of length 1 (a one-channel or one-time-point NIfTI,
  as some converters write) is dropped; the volume is 3D.
* :func:`compare_grids` / :func:`same_grid`: two files share one voxel grid when their shapes
  are equal and their affines differ by at most :data:`GRID_TOLERANCE_MM`.

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
from typing import Sequence

import numpy as np

from labelfree.io.formats import ReaderError, checked_format

#: Largest difference (mm) between two affines that still counts as the same voxel grid: the
#: one tolerance of every image/label comparison (data checks, pre-flight, transfer_label).
GRID_TOLERANCE_MM = 1e-3


class UnreadableError(ReaderError):
    """A file of a supported format that its library cannot read (damaged, truncated, mislabelled).

    Attributes:
        path: the file.
        cause: the library's error in one line, ``"<type>: <message>"``.
    """

    def __init__(self, path, cause: str, hint: str = ""):
        self.path, self.cause = os.fspath(path), cause
        super().__init__(f"{path}: unreadable ({cause}){hint}")


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
        grid_shape: the shape when ``array`` is ``None``: (H, W, D) from :func:`read_geometry`;
            from :func:`read_header`, whatever the header holds (not checked to be 3D).
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
        return voxel_spacing(self.affine)


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along the three array axes of a 4x4 voxel -> world affine.

    Column norms of the affine's 3x3 part, so an oblique or permuted grid gets the size of
    each of its own axes (not the diagonal).
    """
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0))


def grid_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """The voxel-grid shape of a stored array shape: a trailing 4th axis of length 1 is dropped.

    ``(H, W, D, 1)`` (a one-channel or one-time-point NIfTI) -> ``(H, W, D)``; every other shape
    is returned unchanged, so the caller can say that it is not 3D.
    """
    shape = tuple(int(s) for s in shape)
    return shape[:3] if len(shape) == 4 and shape[3] == 1 else shape


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
        img = _load_nifti(path)
        try:
            proxy = img.dataobj
            data = np.asanyarray(proxy if scaled or not hasattr(proxy, "get_unscaled") else proxy.get_unscaled())
        except Exception as e:  # nibabel, gzip and zlib raise many types for damaged data
            raise UnreadableError(path, f"{type(e).__name__}: {e}") from e
        return Volume(_as_3d(data, path), np.asarray(img.affine, dtype=np.float64), fmt, img.header)
    from labelfree.io.image_reader import FormatReader

    reader = FormatReader()
    try:
        data, meta = reader.get_data(reader.read(os.fspath(path)))
    except ReaderError:
        raise
    except Exception as e:  # ITK raises RuntimeError and others for damaged files
        first_line = (str(e).strip().splitlines() or [""])[0]  # ITK appends pages of wrapped types
        raise UnreadableError(path, f"{type(e).__name__}: {first_line}", _seg_nrrd_hint(path)) from e
    return Volume(_as_3d(np.asarray(data), path), np.asarray(meta["affine"], dtype=np.float64), fmt)


def read_header(path: str | os.PathLike) -> Volume | None:
    """Shape and affine of a NIfTI file from its header alone (no voxel data read); ``None`` otherwise.

    The other formats have no header read through the pipelines' reader: their geometry
    comes with their data (:func:`read_geometry`, :func:`read_volume`). The shape is
    :func:`grid_shape` of the stored one and is **not** checked to be 3D, so that a check can
    say what it is; :func:`read_geometry` refuses it.

    Returns:
        A :class:`Volume` with ``array`` ``None``, ``grid_shape`` and ``affine`` (voxel ->
        RAS+ mm) and the nibabel ``header``; ``None`` for a file of another format.

    Raises:
        ReaderError: unsupported format or missing file.
        UnreadableError: nibabel cannot read the header.
    """
    fmt = checked_format(path)
    if fmt != "nifti":
        return None
    img = _load_nifti(path)
    return Volume(None, np.asarray(img.affine, dtype=np.float64), fmt, img.header, grid_shape(img.shape))


def read_geometry(path: str | os.PathLike) -> Volume:
    """Shape (H, W, D) and affine of a 3D scan (``array`` is ``None``).

    NIfTI reads the header only (:func:`read_header`); the other formats are read whole
    through the same reader as the pipelines, so the geometry cannot differ from what
    training and inference see.

    Raises:
        ReaderError: unsupported, missing, unreadable, or not 3D (naming the file).
    """
    header = read_header(path)
    if header is None:
        volume = read_volume(path)
        return Volume(None, volume.affine, volume.format, None, volume.shape)
    if len(header.shape) != 3:
        raise ReaderError(f"{path}: expected a 3D volume, got shape {header.shape}")
    return header


def _load_nifti(path):
    """``nibabel.load``: the one place a NIfTI file is opened (data stay on disk until asked for)."""
    import nibabel as nib

    try:
        return nib.load(os.fspath(path))
    except Exception as e:  # nibabel raises many types for a damaged header
        raise UnreadableError(path, f"{type(e).__name__}: {e}") from e


def _as_3d(data: np.ndarray, path) -> np.ndarray:
    shape = grid_shape(data.shape)
    if len(shape) != 3:
        raise ReaderError(f"{path}: expected a 3D volume, got shape {shape}{_seg_nrrd_hint(path)}")
    return data.reshape(shape)


def _seg_nrrd_hint(path) -> str:
    if not str(path).lower().endswith(".seg.nrrd"):
        return ""
    return (" (a .seg.nrrd with overlapping segments stores one layer per segment, a 4D array: "
            "export a label map from 3D Slicer)")


@dataclass(frozen=True)
class GridComparison:
    """How two voxel grids differ (see :func:`compare_grids`).

    Attributes:
        shape_a, shape_b: (H, W, D) of each grid.
        affine_difference_mm: largest absolute difference between the two 4x4 affines (mm).
    """

    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    affine_difference_mm: float

    @property
    def same_shape(self) -> bool:
        return self.shape_a == self.shape_b

    @property
    def same_affine(self) -> bool:
        return self.affine_difference_mm <= GRID_TOLERANCE_MM

    @property
    def same(self) -> bool:
        return self.same_shape and self.same_affine


def compare_grids(a: Volume, b: Volume) -> GridComparison:
    """Compare the voxel grids of two volumes (either read whole or by :func:`read_header`).

    Both affines are RAS+ whatever the formats, so an ``.nrrd`` label of a DICOM image
    compares like two NIfTI files.
    """
    difference = float(np.max(np.abs(np.asarray(a.affine, dtype=np.float64) - np.asarray(b.affine, dtype=np.float64))))
    return GridComparison(tuple(a.shape), tuple(b.shape), difference)


def same_grid(a: Volume, b: Volume) -> bool:
    """Whether two volumes lie on one voxel grid: equal shapes, affines within :data:`GRID_TOLERANCE_MM`."""
    return compare_grids(a, b).same


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
