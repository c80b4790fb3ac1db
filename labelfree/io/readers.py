"""THE place that decides how a CT or label file is read: NIfTI, NRRD, MetaImage, DICOM series.

Every reader of the project goes through here: the transform pipelines
(:func:`labelfree.io.image_reader.load_transform`, used by ``labelfree.data.transforms`` and the
synthesis preview, reads with the functions of this module), the
header pass of the datalist checks (:func:`read_header`, through
``labelfree.data.case_geometry``), the data checks, ``transfer_label.py``, ``make_datafolds.py``,
offline generation, scoring, ``validation.py`` (geometry of the predictions), the report and
benchmark scripts and ``scripts/fetch_sample_ct.py``. Writing NIfTI is
:mod:`labelfree.io.atomic`'s job.

Three rules hold for every path that reads a file, so they live here once:

* :func:`grid_shape`: a trailing 4th axis of length 1 (a one-channel or one-time-point NIfTI,
  as some converters write) is dropped; the volume is 3D.
* :func:`compare_grids` / :func:`same_grid`: two files share one voxel grid when their shapes
  are equal and their affines differ by at most :data:`GRID_TOLERANCE_MM`.
* :func:`impossible_geometry`: a header whose voxel size is 0, negative, NaN or infinite, or
  whose affine is singular, describes no real scan and is refused.

Formats and readers (chosen by :class:`labelfree.io.image_reader.FormatReader`, a MONAI
``ImageReader``, in the pipelines; by :func:`read_volume` / :func:`read_header` elsewhere):

=============  ============================================  ======================================
format         what a datalist names                         reader
=============  ============================================  ======================================
``nifti``      ``x.nii``, ``x.nii.gz``                       nibabel (``monai.data.NibabelReader``)
``nrrd``       ``x.nrrd``, ``x.seg.nrrd`` (3D label map)     SimpleITK (``ImageFileReader``)
``metaimage``  ``x.mhd`` (+ ``x.raw`` / ``x.zraw``), ``x.mha``  SimpleITK (``ImageFileReader``)
``dicom``      a folder of the slices of one series          SimpleITK (``ImageSeriesReader``, GDCM)
=============  ============================================  ======================================

SimpleITK is a required dependency (one wheel of about 53 MB; nnU-Net's ``SimpleITKIO`` and
TorchIO read with it). Its reading lives here, free of MONAI and torch, so that the scorer and
the checkers read every format without importing them; the pipelines' MONAI reader
(:class:`labelfree.io.image_reader.SimpleITKReader`) calls :func:`read_sitk_image` and
:func:`sitk_array_and_affine`, so both see the same arrays and affines.

Geometry: every affine this module hands out maps a voxel index ``(i, j, k)`` of the array
as read (``(H, W, D)``, the file's own index order: NIfTI's ``i, j, k``; ITK's index
``i, j, k`` of NRRD, MetaImage and DICOM) to **RAS+ world millimetres**, the NIfTI
convention. NRRD, MetaImage and DICOM store LPS+ coordinates; :func:`sitk_array_and_affine`
negates the first two world axes (as MONAI's ``ITKReader(affine_lps_to_ras=True)`` does). A
prediction written as NIfTI with this affine therefore places every voxel at the same world
point as the input's voxel.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from labelfree.io.formats import DICOM, ReaderError, checked_format, image_format

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


class ImpossibleGeometryError(ReaderError):
    """A header whose voxel grid no scan can have (see :func:`impossible_geometry`).

    Attributes:
        path: the file.
        reason: what is wrong, one phrase (:func:`impossible_geometry`).
    """

    def __init__(self, path, reason: str):
        self.path, self.reason = os.fspath(path), reason
        super().__init__(f"{path}: impossible voxel grid ({reason})")


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
        declared_spacing: the voxel size (mm) as the file states it, before any library
            repairs it (NIfTI ``pixdim[1:4]``, which nibabel sets to 1 where it is 0; the
            ITK spacing of the header, whose sign ITK drops; a DICOM series' PixelSpacing and
            smallest distance between two slices); ``None``: none but the affine's. See
            :func:`impossible_geometry`.
    """

    array: np.ndarray | None
    affine: np.ndarray
    format: str
    header: object = None
    grid_shape: tuple[int, ...] | None = None
    declared_spacing: tuple[float, ...] | None = None

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
        ImpossibleGeometryError: a voxel grid no scan can have (:func:`impossible_geometry`).
    """
    fmt = checked_format(path)
    if fmt == "nifti":
        img = _load_nifti(path)
        try:
            proxy = img.dataobj
            data = np.asanyarray(proxy if scaled or not hasattr(proxy, "get_unscaled") else proxy.get_unscaled())
        except Exception as e:  # nibabel, gzip and zlib raise many types for damaged data
            raise UnreadableError(path, f"{type(e).__name__}: {e}") from e
        return _possible(Volume(_as_3d(data, path), np.asarray(img.affine, dtype=np.float64), fmt, img.header,
                                declared_spacing=_nifti_declared_spacing(path, img)), path)
    image, declared = read_sitk_image(path)
    data, affine = sitk_array_and_affine(image)
    return _possible(Volume(_as_3d(data, path), affine, fmt, declared_spacing=declared), path)


def read_header(path: str | os.PathLike) -> Volume | None:
    """Shape and affine of a file from its header alone (no voxel data read); ``None`` for a DICOM series.

    NIfTI through nibabel; NRRD and MetaImage through SimpleITK's ``ReadImageInformation``
    (the ``.raw`` / ``.zraw`` of an ``.mhd`` is not opened). A DICOM series has no single
    header: its geometry comes with its data (:func:`read_geometry`, :func:`read_volume`).
    The shape is :func:`grid_shape` of the stored one (a pixel of several components adds
    a last axis) and is **not** checked to be 3D, so that a check can say what it is;
    :func:`read_geometry` refuses it.

    Returns:
        A :class:`Volume` with ``array`` ``None``, ``grid_shape``, ``affine`` (voxel -> RAS+
        mm), ``declared_spacing`` and, for NIfTI, the nibabel ``header``; ``None`` for a
        DICOM series.

    Raises:
        ReaderError: unsupported format or missing file.
        UnreadableError: the header cannot be read.
        ImpossibleGeometryError: a voxel grid no scan can have (:func:`impossible_geometry`).
    """
    fmt = checked_format(path)
    if fmt == "nifti":
        img = _load_nifti(path)
        return _possible(Volume(None, np.asarray(img.affine, dtype=np.float64), fmt, img.header,
                                grid_shape(img.shape), _nifti_declared_spacing(path, img)), path)
    if fmt == DICOM:
        return None
    reader = _sitk().ImageFileReader()
    reader.SetFileName(os.fspath(path))
    try:
        reader.ReadImageInformation()
    except Exception as e:  # ITK raises RuntimeError with pages of context for a damaged header
        raise UnreadableError(path, _first_line(e), _seg_nrrd_hint(path)) from e
    return _sitk_header(reader, fmt, path)


def _sitk_header(reader, fmt: str, path) -> Volume:
    """The :func:`read_header` volume of a ``SimpleITK.ImageFileReader`` whose header was read."""
    shape = tuple(int(n) for n in reader.GetSize())
    if reader.GetNumberOfComponents() > 1:
        shape += (int(reader.GetNumberOfComponents()),)
    affine = _lps_affine_to_ras(reader.GetDirection(), reader.GetSpacing(), reader.GetOrigin())
    return _possible(Volume(None, affine, fmt, None, shape, tuple(float(v) for v in reader.GetSpacing())), path)


def read_geometry(path: str | os.PathLike) -> Volume:
    """Shape (H, W, D) and affine of a 3D scan (``array`` is ``None``).

    NIfTI, NRRD and MetaImage read the header only (:func:`read_header`, the same libraries
    as the pipelines' reader); a DICOM series is read whole through the same reader as the
    pipelines, so the geometry cannot differ from what training and inference see.

    Raises:
        ReaderError: unsupported, missing, unreadable, not 3D, or a voxel grid no scan can
            have (naming the file).
    """
    header = read_header(path)
    if header is None:
        volume = read_volume(path)
        return Volume(None, volume.affine, volume.format, None, volume.shape)
    if len(header.shape) != 3:
        raise ReaderError(f"{path}: expected a 3D volume, got shape {header.shape}{_seg_nrrd_hint(path)}")
    return header


def _load_nifti(path):
    """``nibabel.load``: the one place a NIfTI file is opened (data stay on disk until asked for)."""
    import nibabel as nib

    _silence_superseded_nibabel_repairs()
    try:
        return nib.load(os.fspath(path))
    except Exception as e:  # nibabel raises many types for a damaged header
        raise UnreadableError(path, f"{type(e).__name__}: {e}") from e


class _PixdimRepairs(logging.Filter):
    """Drops nibabel's "pixdim[1,2,3] should be non-zero; setting 0 dims to 1" (and "... positive").

    Such a file is refused, with its name, by :func:`impossible_geometry` (which reads the
    header as stored); nibabel's line, printed first, would say the opposite: that it was
    repaired. Every other line of nibabel's stays.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("pixdim[1,2,3]")


def _silence_superseded_nibabel_repairs() -> None:
    logger = logging.getLogger("nibabel.global")
    if not any(isinstance(f, _PixdimRepairs) for f in logger.filters):
        logger.addFilter(_PixdimRepairs())


def _nifti_declared_spacing(path, img) -> tuple[float, ...]:
    """``pixdim[1:4]`` as stored in the file.

    nibabel repairs the header it loads (a pixdim of 0 becomes 1, a negative one positive)
    and says so only in its log; the stored header is read again, unrepaired, so that a
    scan whose slice spacing is 0 is refused rather than silently given 1 mm.
    """
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(os.fspath(path)) as f:
            raw = type(img.header).from_fileobj(f, check=False)
    except Exception as e:  # the header parsed a moment ago: only a file changed in between
        raise UnreadableError(path, f"{type(e).__name__}: {e}") from e
    n = min(3, int(raw["dim"][0]))
    return tuple(float(v) for v in raw["pixdim"][1:1 + n])


# ------------------------------------------------------------------ SimpleITK: NRRD, MetaImage, DICOM
def _sitk():
    """The SimpleITK module (imported on first use: NIfTI-only processes never load it)."""
    import SimpleITK

    return SimpleITK


def _first_line(e: Exception) -> str:
    """``"<type>: <reason>"`` of an ITK error.

    ITK's messages start with the source file and line of the throw, then ``ITK ERROR:
    <class>(<address>): <reason>``, then sometimes pages of context: the reason alone is kept.
    """
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    reason = next((line for line in lines if "ERROR:" in line), lines[0] if lines else "")
    reason = re.sub(r"^.*?ERROR:\s*(\w+\(0x[0-9a-fA-F]+\):\s*)?", "", reason)
    return f"{type(e).__name__}: {reason}"


def read_sitk_image(path: str | os.PathLike):
    """A NRRD, MetaImage or DICOM-series file as a ``SimpleITK.Image``, with its declared spacing.

    A folder is read as a DICOM series through GDCM: the slices are ordered by their
    position along the slice normal (not by file name) and RescaleSlope / RescaleIntercept
    are applied (values in HU). A folder holding several series: the first one, with a
    warning naming the folder.

    Returns:
        (image, the spacing (mm) the header states before ITK repairs it; for a DICOM series
        PixelSpacing and the smallest distance between two slices' positions).

    Raises:
        ReaderError: no DICOM series in the folder.
        UnreadableError: SimpleITK cannot read it (the message names the file and ITK's reason).
        ImpossibleGeometryError: an NRRD / MetaImage header whose voxel grid no scan can have.
            (A DICOM series is checked by :func:`read_volume`, once its slices are read.)
    """
    sitk = _sitk()
    name = os.fspath(path)
    try:
        if checked_format(name) == DICOM:
            series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(name)
            if not series:
                raise ReaderError(f"{name}: no DICOM series in this folder")
            if len(series) > 1:
                warnings.warn(f"{name} holds {len(series)} DICOM series; reading the first ({series[0]})",
                              stacklevel=2)
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(name, series[0]))
            reader.MetaDataDictionaryArrayUpdateOn()  # each slice's tags, for its position
            image = reader.Execute()
            return image, _dicom_declared_spacing(reader, image)
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        reader.ReadImageInformation()
        # Refused here, from the header as written: ITK would say "Zero-valued spacing is not
        # supported" for a 0 and silently drop the sign of a negative spacing.
        header = _sitk_header(reader, image_format(name), path)
        return reader.Execute(), header.declared_spacing
    except ReaderError:
        raise
    except Exception as e:  # ITK raises RuntimeError for damaged, truncated or mislabelled files
        raise UnreadableError(path, _first_line(e), _seg_nrrd_hint(path)) from e


def _dicom_declared_spacing(reader, image) -> tuple[float, float, float]:
    """(column, row, slice) spacing in mm of a DICOM series, the slice one from the slice positions.

    ITK takes the slice spacing from the first two slices and, where they share a position
    (a series exported twice into one folder), silently uses 1 mm; the smallest distance
    between consecutive ImagePositionPatient along the slice normal shows it as 0.
    """
    spacing = image.GetSpacing()
    normal = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)[:, 2]
    positions = [np.array(reader.GetMetaData(i, "0020|0032").split("\\"), dtype=np.float64)
                 for i in range(len(reader.GetFileNames())) if reader.HasMetaDataKey(i, "0020|0032")]
    if len(positions) < 2 or len(positions) != len(reader.GetFileNames()):
        return tuple(float(v) for v in spacing)
    step = float(np.min(np.abs(np.diff(np.asarray(positions) @ normal))))
    return float(spacing[0]), float(spacing[1]), step


def sitk_array_and_affine(image) -> tuple[np.ndarray, np.ndarray]:
    """The voxels of a ``SimpleITK.Image`` in ITK index order and its voxel -> RAS+ mm affine.

    Returns:
        (array (H, W, D) = ITK's (i, j, k), the transpose of SimpleITK's (k, j, i) numpy view;
        a pixel of several components adds a last axis; 4x4 affine, LPS turned to RAS).
    """
    data = _sitk().GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        data = np.moveaxis(data.T, 0, -1)
    else:
        data = data.T
    return data, _lps_affine_to_ras(image.GetDirection(), image.GetSpacing(), image.GetOrigin())


def _lps_affine_to_ras(direction: Sequence[float], spacing: Sequence[float], origin: Sequence[float]) -> np.ndarray:
    """4x4 voxel -> RAS+ mm affine from ITK's LPS+ direction cosines (row-major), spacing and origin.

    A 2D image gets a 4x4 affine too (its third axis 1 mm, along z), so that checks can
    compare it and say that it is not 3D.
    """
    n = len(spacing)
    m = min(n, 3)
    direction = np.asarray(direction, dtype=np.float64).reshape(n, n)[:m, :m]
    affine = np.eye(4)
    affine[:m, :m] = direction @ np.diag(np.asarray(spacing, dtype=np.float64)[:m])
    affine[:m, 3] = np.asarray(origin, dtype=np.float64)[:m]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


# ------------------------------------------------------------------ geometry a scan cannot have
def _possible(volume: Volume, path) -> Volume:
    """``volume``, or :class:`ImpossibleGeometryError` naming ``path``."""
    reason = impossible_geometry(volume)
    if reason:
        raise ImpossibleGeometryError(path, reason)
    return volume


def impossible_geometry(volume: Volume) -> str | None:
    """Why a volume's voxel grid cannot be a real scan, or ``None`` when it can.

    Refused: a declared voxel size that is 0, negative, NaN or infinite (NIfTI ``pixdim``,
    the ITK spacing of an NRRD / MetaImage header, two DICOM slices at one position), and
    an affine that holds NaN or infinity or is singular (its 3x3 part does not span space:
    a NIfTI sform whose columns are collinear, an NRRD space direction of 0). Such a grid gives a
    resampling to ``--space_*`` mm of infinite size or NaN, or a distance of 0 mm between
    slices. Checked only on a 3D grid (a file that is not 3D is refused for that first).

    Returns:
        One phrase, e.g. ``"voxel spacing (0.8, 0.8, 0) mm as the file states it: 0 along axis 2"``.
    """
    if len(volume.shape) != 3:
        return None
    declared = volume.declared_spacing
    if declared is not None:
        values = np.asarray(declared[:3], dtype=np.float64)
        words = "(" + ", ".join(f"{v:g}" for v in values) + ") mm as the file states it"
        for axis, v in enumerate(values):
            if not np.isfinite(v):
                return f"voxel spacing {words}: {'NaN' if np.isnan(v) else 'infinite'} along axis {axis}"
            if v <= 0:
                return f"voxel spacing {words}: {'0' if v == 0 else 'negative'} along axis {axis}"
    affine = np.asarray(volume.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        return "affine holds NaN or infinite values"
    sizes = voxel_spacing(affine)
    if min(sizes) <= 0 or abs(np.linalg.det(affine[:3, :3])) <= 1e-6 * float(np.prod(sizes)):
        return "singular affine (its voxel axes do not span 3D space: " + \
            ", ".join(f"{v:g}" for v in sizes) + " mm)"
    return None


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
