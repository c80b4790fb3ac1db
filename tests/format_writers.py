"""Writers and header parsers for NRRD, MetaImage and DICOM series, independent of (Simple)ITK.

The tests write scans in these formats by hand (NRRD and MetaImage: text header + raw
bytes, as their specifications describe; DICOM: pydicom datasets with the geometry tags),
and compute where each voxel lies in the world from the header fields alone, so the
project's readers (SimpleITK) are checked against an independent computation.

World coordinates are returned in RAS+ mm (the NIfTI convention): the formats' LPS+
coordinates with the first two axes negated.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
_NRRD_TYPES = {np.dtype(np.int16): "short", np.dtype(np.uint8): "unsigned char", np.dtype(np.int32): "int"}
_MET_TYPES = {np.dtype(np.int16): "MET_SHORT", np.dtype(np.uint8): "MET_UCHAR"}


# ------------------------------------------------------------------------------------ NRRD
def write_nrrd(path, array, directions, origin, space="left-posterior-superior", gzip=False) -> Path:
    """A NRRD0004 file; ``directions[a]`` is the world step (mm) of voxel axis ``a`` in ``space``."""
    array = np.asarray(array)
    vec = lambda v: "(" + ",".join(repr(float(x)) for x in v) + ")"  # noqa: E731
    header = [
        "NRRD0004",
        f"type: {_NRRD_TYPES[array.dtype]}",
        "dimension: 3",
        f"space: {space}",
        "sizes: " + " ".join(str(s) for s in array.shape),
        "space directions: " + " ".join(vec(d) for d in directions),
        "kinds: domain domain domain",
        "endian: little",
        f"encoding: {'gzip' if gzip else 'raw'}",
        f"space origin: {vec(origin)}",
    ]
    data = array.astype(array.dtype.newbyteorder("<")).tobytes(order="F")  # first axis fastest
    if gzip:
        compressor = zlib.compressobj(wbits=31)  # gzip container
        data = compressor.compress(data) + compressor.flush()
    path = Path(path)
    path.write_bytes(("\n".join(header) + "\n\n").encode() + data)
    return path


def nrrd_header(path) -> dict:
    """The ``key: value`` fields of a NRRD header (read up to the blank line)."""
    fields = {}
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("latin-1").rstrip("\n")
            if not line:
                break
            if ":" in line and not line.startswith("#") and ":=" not in line:
                key, value = line.split(":", 1)
                fields[key.strip()] = value.strip()
    return fields


def nrrd_world_ras(path, ijk) -> np.ndarray:
    """RAS mm of voxel indices ``ijk`` (N, 3) from the header's space, space directions and origin."""
    fields = nrrd_header(path)
    directions = np.array([[float(x) for x in v.split(",")] for v in re.findall(r"\(([^)]*)\)", fields["space directions"])])
    origin = np.array([float(x) for x in re.findall(r"\(([^)]*)\)", fields["space origin"])[0].split(",")])
    world = origin + np.asarray(ijk, dtype=float) @ directions
    space = fields["space"].lower()
    if space in ("left-posterior-superior", "lps"):
        return world @ LPS_TO_RAS
    if space in ("right-anterior-superior", "ras"):
        return world
    raise ValueError(f"space {space} not handled by the test")


# ------------------------------------------------------------------------------- MetaImage
def write_metaimage(path, array, directions, origin, spacing, data_file: str | None = None, compress=False) -> Path:
    """A MetaImage header ``.mhd`` (data in ``data_file``) or a single ``.mha`` (``data_file=None``).

    ``directions[a]`` is the unit LPS direction of voxel axis ``a``; written as
    ``TransformMatrix`` axis after axis. ``Offset`` is the LPS position of voxel (0, 0, 0).
    """
    array = np.asarray(array)
    data = array.astype(array.dtype.newbyteorder("<")).tobytes(order="F")
    if compress:
        data = zlib.compress(data)
    path = Path(path)
    lines = [
        "ObjectType = Image",
        "NDims = 3",
        "BinaryData = True",
        "BinaryDataByteOrderMSB = False",
        f"CompressedData = {'True' if compress else 'False'}",
    ]
    if compress:
        lines.append(f"CompressedDataSize = {len(data)}")
    lines += [
        "TransformMatrix = " + " ".join(repr(float(x)) for d in directions for x in d),
        "Offset = " + " ".join(repr(float(x)) for x in origin),
        "CenterOfRotation = 0 0 0",
        "ElementSpacing = " + " ".join(repr(float(x)) for x in spacing),
        "DimSize = " + " ".join(str(s) for s in array.shape),
        f"ElementType = {_MET_TYPES[array.dtype]}",
        f"ElementDataFile = {data_file or 'LOCAL'}",
    ]
    header = ("\n".join(lines) + "\n").encode()
    if data_file is None:
        path.write_bytes(header + data)
    else:
        path.write_bytes(header)
        (path.parent / data_file).write_bytes(data)
    return path


def metaimage_world_ras(path, ijk) -> np.ndarray:
    """RAS mm of voxel indices ``ijk`` (N, 3) from TransformMatrix, Offset and ElementSpacing (LPS)."""
    fields = {}
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("latin-1").strip()
            key, _, value = line.partition("=")
            fields[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile":
                break
    matrix = np.array([float(x) for x in fields["TransformMatrix"].split()]).reshape(3, 3)
    origin = np.array([float(x) for x in fields["Offset"].split()])
    spacing = np.array([float(x) for x in fields["ElementSpacing"].split()])
    world = origin + (np.asarray(ijk, dtype=float) * spacing) @ matrix
    return world @ LPS_TO_RAS


# ----------------------------------------------------------------------------------- DICOM
def write_dicom_series(folder, hu, row_dir, col_dir, pixel_spacing, slice_spacing, origin,
                       slope=1.0, intercept=-1024.0, reverse_names=True) -> Path:
    """One CT series, a file per slice, as pydicom datasets.

    Args:
        hu: (columns, rows, slices) values in HU; voxel (c, r, k) sits at
            ``IPP_k + c * pixel_spacing[1] * row_dir + r * pixel_spacing[0] * col_dir``.
        row_dir, col_dir: ImageOrientationPatient (LPS unit vectors along a row / a column).
        pixel_spacing: DICOM PixelSpacing ``(between rows, between columns)`` in mm.
        slice_spacing: mm between slices along ``row_dir x col_dir``.
        origin: ImagePositionPatient of the first slice (LPS mm).
        slope, intercept: RescaleSlope / RescaleIntercept; stored values = (hu - intercept) / slope.
        reverse_names: name the files so that their alphabetical order is the reverse of
            the slice order (a reader must sort by position, not by name).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    row_dir, col_dir = np.asarray(row_dir, float), np.asarray(col_dir, float)
    normal = np.cross(row_dir, col_dir)
    stored = np.round((np.asarray(hu, dtype=np.float64) - intercept) / slope)
    if stored.min() < 0 or stored.max() > 65535:
        raise ValueError("HU values do not fit uint16 with this slope/intercept")
    stored = stored.astype(np.uint16)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    n = stored.shape[2]
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID = "Test^Phantom", "test"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImageOrientationPatient = [float(x) for x in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [float(x) for x in np.asarray(origin, float) + k * slice_spacing * normal]
        ds.PixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
        ds.SliceThickness = float(slice_spacing)
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = float(slope), float(intercept)
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # rows x columns
        name = f"slice_{(n - 1 - k) if reverse_names else k:03d}.dcm"
        ds.save_as(folder / name, enforce_file_format=True)
    return folder


def dicom_world_ras(folder, ijk) -> np.ndarray:
    """RAS mm of voxel indices (column, row, slice) (N, 3) from every slice's IPP/IOP/PixelSpacing.

    Slices are ordered by their position along the normal of the image plane (as a DICOM
    reader must), whatever the file names.
    """
    import pydicom

    slices = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(Path(folder).iterdir()) if p.is_file()]
    iop = np.array(slices[0].ImageOrientationPatient, dtype=float)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    slices.sort(key=lambda ds: float(np.dot(np.array(ds.ImagePositionPatient, dtype=float), normal)))
    ijk = np.asarray(ijk)
    world = []
    for c, r, k in ijk:
        ds = slices[int(k)]
        ipp = np.array(ds.ImagePositionPatient, dtype=float)
        row_spacing, col_spacing = (float(s) for s in ds.PixelSpacing)
        world.append(ipp + c * col_spacing * row_dir + r * row_spacing * col_dir)
    return np.array(world) @ LPS_TO_RAS


def world_of(affine, ijk) -> np.ndarray:
    """RAS mm of voxel indices through a 4x4 affine."""
    ijk = np.asarray(ijk, dtype=float)
    return ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
