"""Tests of labelfree.io.readers: every format's geometry against an independent computation.

Scans are written by hand (``format_writers``: NRRD and MetaImage text headers + raw bytes,
DICOM slices through pydicom) with oblique, asymmetric directions, then read by the
project's reader (SimpleITK for the non-NIfTI formats). The expected world position
of each voxel comes from the header fields the test wrote, parsed back from the file:
never from SimpleITK or ITK. Predictions written by ``validation.py`` must put each voxel at the same
world point, and labels in one format must score against images in another.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation


from tests.format_writers import (  # noqa: E402
    LPS_TO_RAS,
    dicom_world_ras,
    metaimage_world_ras,
    nrrd_world_ras,
    world_of,
    write_dicom_series,
    write_metaimage,
    write_nrrd,
)
from labelfree.io import formats, readers  # noqa: E402
from labelfree.cli import validate as validation  # noqa: E402
from labelfree.data.checks import check_case  # noqa: E402
from labelfree.inference.predictor import Predictor  # noqa: E402
from labelfree.evaluation.metrics import dice  # noqa: E402
from labelfree.config.settings import RunSettings
from labelfree.data.transforms import get_transforms  # noqa: E402

SHAPE = (30, 26, 14)
BLOCK = (slice(4, 15), slice(3, 11), slice(2, 7))  # off-centre on every axis: a flip would show
SPACING = (1.1, 0.9, 2.5)
ROTATION = Rotation.from_euler("xyz", [12, -8, 27], degrees=True).as_matrix()  # not symmetric: a transpose shows
ORIGIN_LPS = np.array([-40.0, 25.0, -310.0])
WINDOW = (-21.0, 189.0)
LIVER_PAIRS = RunSettings.create("liver").label_pairs
REPO = Path(__file__).resolve().parents[3]


def block_volumes():
    rng = np.random.default_rng(0)
    image = rng.integers(-120, -80, SHAPE).astype(np.int16)
    image[BLOCK] = 300
    label = np.zeros(SHAPE, np.uint8)
    label[BLOCK] = 1
    return image, label


def write_scan(tmp_path, fmt: str, array: np.ndarray, name: str = "case"):
    """Write ``array`` in ``fmt`` with the oblique test geometry; return (path, world function)."""
    directions = ROTATION.T  # rows: unit LPS direction of each voxel axis
    steps = directions * np.array(SPACING)[:, None]
    if fmt == "nrrd":
        path = write_nrrd(tmp_path / f"{name}.nrrd", array, steps, ORIGIN_LPS, gzip=True)
        return path, lambda ijk: nrrd_world_ras(path, ijk)
    if fmt == "nrrd_ras":  # the same world grid stated in RAS coordinates
        path = write_nrrd(tmp_path / f"{name}.nrrd", array, steps @ LPS_TO_RAS, ORIGIN_LPS @ LPS_TO_RAS,
                          space="right-anterior-superior")
        return path, lambda ijk: nrrd_world_ras(path, ijk)
    if fmt == "seg.nrrd":
        path = write_nrrd(tmp_path / f"{name}.seg.nrrd", array, steps, ORIGIN_LPS, gzip=True)
        return path, lambda ijk: nrrd_world_ras(path, ijk)
    if fmt in ("mhd", "mhd_zraw", "mha"):
        suffix = "mha" if fmt == "mha" else "mhd"
        data_file = None if fmt == "mha" else f"{name}.{'zraw' if fmt == 'mhd_zraw' else 'raw'}"
        path = write_metaimage(tmp_path / f"{name}.{suffix}", array, directions, ORIGIN_LPS, SPACING, data_file,
                               compress=fmt == "mhd_zraw")
        return path, lambda ijk: metaimage_world_ras(path, ijk)
    if fmt == "dicom":
        hu = array.astype(np.float64)
        # DICOM: voxel axis 0 runs along a row (columns), axis 1 along a column (rows).
        path = write_dicom_series(tmp_path / name, hu, directions[0], directions[1], (SPACING[1], SPACING[0]),
                                  SPACING[2], ORIGIN_LPS, slope=1.0, intercept=-1024.0)
        return path, lambda ijk: dicom_world_ras(path, ijk)
    if fmt == "nifti":
        affine = np.eye(4)
        affine[:3, :3] = LPS_TO_RAS @ (steps.T)
        affine[:3, 3] = LPS_TO_RAS @ ORIGIN_LPS
        path = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(array, affine), str(path))
        return path, lambda ijk: world_of(nib.load(path).affine, ijk)
    raise ValueError(fmt)


CORNERS = np.array([[0, 0, 0], [SHAPE[0] - 1, 0, 0], [0, SHAPE[1] - 1, 0], [0, 0, SHAPE[2] - 1],
                    [SHAPE[0] - 1, SHAPE[1] - 1, SHAPE[2] - 1], [7, 3, 11]])
FORMATS = ["nrrd", "nrrd_ras", "seg.nrrd", "mhd", "mhd_zraw", "mha", "dicom", "nifti"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_volume_matches_the_header_geometry_and_voxel_order(tmp_path, fmt):
    image, _ = block_volumes()
    path, world = write_scan(tmp_path, fmt, image)
    volume = readers.read_volume(path)
    assert volume.shape == SHAPE
    np.testing.assert_array_equal(volume.array, image)  # HU after DICOM rescale, file index order
    np.testing.assert_allclose(world_of(volume.affine, CORNERS), world(CORNERS), atol=1e-3)
    np.testing.assert_allclose(volume.spacing, SPACING, atol=1e-4)
    geometry = readers.read_geometry(path)
    assert geometry.shape == SHAPE and geometry.array is None
    np.testing.assert_allclose(geometry.affine, volume.affine)


class ThresholdNet(torch.nn.Module):
    """Stand-in network: organ (class 1) where the windowed image exceeds 0.5."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), (x - 0.5) * 40, torch.full_like(x, -100.0)], dim=1)


@pytest.mark.parametrize("fmt", ["nrrd", "mhd", "mha", "dicom"])
def test_prediction_lands_on_the_world_points_of_the_input_voxels(tmp_path, fmt):
    image, label = block_volumes()
    image_path, world = write_scan(tmp_path, fmt, image)
    label_path, _ = write_scan(tmp_path, "nifti", label, name="label")  # a label from another format
    case = {"name": "case", "image": str(image_path), "label": str(label_path)}
    transforms = get_transforms("infer", a_min=WINDOW[0], a_max=WINDOW[1], space=(1.5, 1.5, 1.5))
    predictor = Predictor(ThresholdNet(), transforms, roi_size=(32, 32, 32), overlap=0.25)
    rows = validation.evaluate(predictor, transforms, [case], LIVER_PAIRS, tmp_path / "out", postprocess=False)

    written = nib.load(tmp_path / "out" / "pred" / "case.nii.gz")
    assert written.shape == SHAPE and written.get_data_dtype() == np.uint8
    every_voxel = np.argwhere(np.ones(SHAPE, bool))[::37]
    np.testing.assert_allclose(world_of(written.affine, every_voxel), world(every_voxel), atol=1e-3)
    pred = np.asarray(written.dataobj)
    block = label.astype(bool)
    assert dice(pred == 1, block) > 0.85
    for axis in range(3):  # voxel order is the file's, not flipped along any axis
        assert dice(pred == 1, np.flip(block, axis)) < 0.5
    assert rows[0]["liver_dice"] == pytest.approx(dice(pred == 1, block))


def test_labels_in_another_format_pass_the_data_check_and_train_aligned(tmp_path):
    image, label = block_volumes()
    image_path, _ = write_scan(tmp_path, "dicom", image)
    label_path, _ = write_scan(tmp_path, "mhd", label, name="label")
    result = check_case(str(image_path), str(label_path), (0, 1, 2), (1,))
    assert result.ok, result.problems
    assert result.shape == SHAPE and result.organ_voxels == int(label.sum())
    assert result.organ_ml == pytest.approx(label.sum() * np.prod(SPACING) / 1000, rel=1e-4)
    # Training's pipeline resamples both onto one RAS grid: the label still covers the bright block.
    data = get_transforms("val", a_min=WINDOW[0], a_max=WINDOW[1], space=(2.0, 2.0, 2.0))(
        {"image": str(image_path), "label": str(label_path)})
    assert data["image"].shape == data["label"].shape
    np.testing.assert_allclose(data["image"].affine, data["label"].affine, atol=1e-4)
    bright = np.asarray(data["image"][0]) > 0.5
    assert dice(bright, np.asarray(data["label"][0]) == 1) > 0.85


def test_a_label_on_another_grid_is_flagged_and_can_be_put_on_the_image_grid(tmp_path):
    image, label = block_volumes()
    image_path, _ = write_scan(tmp_path, "nrrd", image)
    # The same label stored with the first axis flipped (as some DICOM converters do).
    image_affine = readers.read_geometry(image_path).affine
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, SHAPE[0] - 1
    flipped_path = tmp_path / "flipped.nii.gz"
    nib.save(nib.Nifti1Image(np.flip(label, 0).copy(), image_affine @ flip), str(flipped_path))
    result = check_case(str(image_path), str(flipped_path), (0, 1, 2), (1,))
    assert any("affine mismatch" in p for p in result.problems)
    flipped = readers.read_volume(flipped_path)
    aligned = readers.label_on_grid(flipped.array, flipped.affine, SHAPE, image_affine)
    np.testing.assert_array_equal(aligned, label)


def test_unsupported_missing_and_empty_inputs_name_the_file(tmp_path):
    (tmp_path / "scan.png").write_bytes(b"x")
    with pytest.raises(readers.ReaderError, match=r"scan\.png: not a supported scan"):
        readers.read_volume(tmp_path / "scan.png")
    with pytest.raises(readers.ReaderError, match=r"nope\.mhd: file not found"):
        readers.read_volume(tmp_path / "nope.mhd")
    (tmp_path / "series").mkdir()
    with pytest.raises(readers.ReaderError, match=r"series: empty DICOM folder"):
        readers.read_volume(tmp_path / "series")
    broken = tmp_path / "broken.mhd"
    broken.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_SHORT\n"
                      "ElementDataFile = missing.raw\n")
    with pytest.raises(readers.ReaderError, match=r"broken\.mhd: unreadable"):
        readers.read_volume(broken)
    four_d = np.zeros((2, 4, 4, 4), np.uint8)  # a .seg.nrrd with one layer per (overlapping) segment
    header = ("NRRD0004\ntype: unsigned char\ndimension: 4\nspace: left-posterior-superior\nsizes: 2 4 4 4\n"
              "space directions: none (1,0,0) (0,1,0) (0,0,1)\nkinds: list domain domain domain\n"
              "endian: little\nencoding: raw\nspace origin: (0,0,0)\n\n")
    (tmp_path / "layers.seg.nrrd").write_bytes(header.encode() + four_d.tobytes(order="F"))
    with pytest.raises(readers.ReaderError,
                       match=r"layers\.seg\.nrrd: expected a 3D volume, got shape \(4, 4, 4, 2\).*export a label map"):
        readers.read_volume(tmp_path / "layers.seg.nrrd")


def test_image_listing_and_case_names(tmp_path):
    image, _ = block_volumes()
    write_scan(tmp_path, "mhd", image, name="LNDb-0002")
    write_scan(tmp_path, "nrrd", image, name="chest_10")
    write_scan(tmp_path, "dicom", image, name="series_1")
    write_scan(tmp_path, "nifti", image, name="liver_2")
    (tmp_path / "._liver_2.nii.gz").write_bytes(b"resource fork")
    (tmp_path / "notes.txt").write_text("x")
    names = [formats.case_name(p) for p in formats.list_image_files(tmp_path)]
    assert names == ["LNDb-0002", "chest_10", "liver_2", "series_1"]  # no .raw, hidden or text file
    assert formats.case_name("a/CTChest4.seg.nrrd") == "CTChest4"


def test_validation_images_folder_accepts_every_format(tmp_path):
    image, _ = block_volumes()
    folder = tmp_path / "scans"
    folder.mkdir()
    for fmt, name in (("mha", "a"), ("dicom", "b"), ("nrrd", "c")):
        write_scan(folder, fmt, image, name=name)
    args = validation.get_args_parser().parse_args(["--images", str(folder), "--checkpoint", "x.pt"])
    cases = validation.collect_cases(args)
    assert [c["name"] for c in cases] == ["a", "b", "c"]
    json.dumps(cases)  # plain strings: a DataLoader worker can take them


def write_nifti_header(path, pixdim=(1.1, 0.9, 2.5), sform=None) -> str:
    """A NIfTI whose stored header holds ``pixdim[1:4]`` and ``sform`` as given (nibabel repairs them on load)."""
    image = nib.Nifti1Image(np.zeros(SHAPE, np.int16), None)
    image.header["pixdim"][1:4] = pixdim  # after the constructor, which repairs the header it is given
    if sform is not None:
        image.header.set_sform(sform, code=2)
    nib.save(image, str(path))
    return str(path)


COLLINEAR = np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]])  # third voxel axis: no direction


@pytest.mark.parametrize("pixdim, sform, reason", [
    ((1.1, 0.9, 0.0), None, r"voxel spacing \(1\.1, 0\.9, 0\) mm as the file states it: 0 along axis 2"),
    ((1.1, -0.9, 2.5), None, r"negative along axis 1"),
    ((1.1, np.nan, 2.5), None, r"NaN along axis 1"),
    ((np.inf, 0.9, 2.5), None, r"infinite along axis 0"),
    ((1.0, 1.0, 1.0), COLLINEAR, r"singular affine"),
])
def test_a_nifti_header_no_scan_can_have_is_refused_naming_the_file(tmp_path, pixdim, sform, reason):
    path = write_nifti_header(tmp_path / "bad.nii.gz", pixdim, sform)
    for read in (readers.read_header, readers.read_volume, readers.read_geometry):
        with pytest.raises(readers.ImpossibleGeometryError, match=rf"bad\.nii\.gz: impossible voxel grid \(.*{reason}"):
            read(path)


def test_the_stored_pixdim_is_checked_not_nibabels_repaired_one(tmp_path):
    path = write_nifti_header(tmp_path / "flat.nii.gz", (1.1, 0.9, 0.0))
    assert nib.load(path).header.get_zooms() == pytest.approx((1.1, 0.9, 1.0))  # nibabel: 0 -> 1, a log line
    with pytest.raises(readers.ImpossibleGeometryError, match="0 along axis 2"):
        readers.read_header(path)


def test_itk_headers_no_scan_can_have_are_refused_naming_the_file(tmp_path):
    image, _ = block_volumes()
    cases = {
        "zero.mhd": lambda p: write_metaimage(p, image, np.eye(3), ORIGIN_LPS, (1.0, 1.0, 0.0), "zero.raw"),
        # ITK itself would read a negative spacing as its absolute value, without a word.
        "negative.mha": lambda p: write_metaimage(p, image, np.eye(3), ORIGIN_LPS, (1.0, -1.0, 2.0)),
        "flat.nrrd": lambda p: write_nrrd(p, image, np.diag([1.0, 1.0, 0.0]), ORIGIN_LPS),
    }
    for name, write in cases.items():
        write(tmp_path / name)
        for read in (readers.read_header, readers.read_volume):
            with pytest.raises(readers.ImpossibleGeometryError, match=rf"{re.escape(name)}: impossible voxel grid"):
                read(tmp_path / name)


def test_a_dicom_series_with_two_slices_at_one_position_is_refused(tmp_path):
    image, _ = block_volumes()
    # Every slice at one position: ITK alone reads it with a slice spacing of 1 mm.
    path = write_dicom_series(tmp_path / "stacked", image.astype(float), (1, 0, 0), (0, 1, 0), (0.9, 1.1), 0.0,
                              ORIGIN_LPS)
    with pytest.raises(readers.ImpossibleGeometryError, match=r"stacked: impossible voxel grid .*0 along axis 2"):
        readers.read_volume(path)


def test_reading_any_format_imports_neither_torch_nor_monai(tmp_path):
    image, _ = block_volumes()
    paths = [str(write_scan(tmp_path, fmt, image, name=fmt)[0]) for fmt in ("nrrd", "mhd", "dicom", "nifti")]
    code = ("import sys; from labelfree.io import readers\n"
            f"for p in {paths!r}: readers.read_volume(p); readers.read_geometry(p)\n"
            "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
