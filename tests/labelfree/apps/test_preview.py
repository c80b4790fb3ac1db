"""Preview CLI: real NIfTI files in, PNG files out, clear errors."""

import numpy as np

from labelfree.apps import preview
from labelfree.io.atomic import save_nifti_atomic


def write_case(tmp_path, with_tumor=False):
    shape = (48, 44, 30)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    organ = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, (24, 22, 15), (19, 16, 11))) < 1
    image = np.where(organ, 60, -100) + np.random.default_rng(0).normal(0, 8, shape)
    label = organ.astype(np.uint8)
    if with_tumor:
        label[22:26, 20:24, 14:17] = 2
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    img_path, lab_path = tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz"
    save_nifti_atomic(image, affine, img_path, dtype=np.int16)
    save_nifti_atomic(label, affine, lab_path, dtype=np.uint8)
    return img_path, lab_path


def test_preview_and_montage_are_written(tmp_path, capsys):
    import matplotlib.image

    img_path, lab_path = write_case(tmp_path)
    out, montage = tmp_path / "p" / "preview.png", tmp_path / "montage.png"
    args = ["--image", str(img_path), "--label", str(lab_path), "--out", str(out), "--type", "large", "--seed", "3"]
    code = preview.main(args + ["--montage", str(montage)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "tumor components" in printed and str(out) in printed
    for path in (out, montage):
        pixels = matplotlib.image.imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 400
        assert pixels[..., :3].std() > 0.05  # an actual picture, not a blank canvas
    assert not list(tmp_path.rglob("*.tmp*"))  # atomic writes leave no temporary files


def test_largest_tumor_center_picks_the_biggest_component():
    label = np.zeros((20, 20, 20), dtype=np.uint8)
    label[1:3, 1:3, 1:3] = 2
    label[10:16, 8:12, 4:8] = 2
    # Centre of mass (12.5, 9.5, 5.5), rounded half to even.
    assert preview.largest_tumor_center(label, 2) == (12, 10, 6)
    assert preview.largest_tumor_center(np.zeros_like(label), 2) is None


def test_clear_errors(tmp_path, capsys):
    img_path, lab_path = write_case(tmp_path, with_tumor=True)
    out = tmp_path / "x.png"
    assert preview.main(["--image", str(tmp_path / "missing.nii.gz"), "--label", str(lab_path), "--out", str(out)]) == 2
    assert "image file not found" in capsys.readouterr().err
    assert preview.main(["--image", str(img_path), "--label", str(lab_path), "--out", str(out)]) == 2
    assert "already holds values above the organ label" in capsys.readouterr().err
    assert preview.main(["--image", str(img_path), "--label", str(lab_path), "--out", str(out), "--type", "huge"]) == 2
    assert "unknown tumor type" in capsys.readouterr().err
    assert not out.exists()


def test_preview_resamples_when_asked(tmp_path, capsys):
    img_path, lab_path = write_case(tmp_path)
    out = tmp_path / "resampled.png"
    args = ["--image", str(img_path), "--label", str(lab_path), "--out", str(out), "--type", "medium"]
    assert preview.main(args + ["--spacing", "3", "3", "3"]) == 0
    assert out.stat().st_size > 10_000
    assert "spacing" not in capsys.readouterr().err


def test_html_shows_the_healthy_case_beside_its_synthetic_tumors(tmp_path, capsys):
    import json

    import nibabel as nib
    from scipy import ndimage

    from labelfree.evaluation import html_report

    img_path, lab_path = write_case(tmp_path)
    folder = tmp_path / "html"
    args = ["--image", str(img_path), "--label", str(lab_path), "--out", str(tmp_path / "p.png"), "--type", "large",
            "--seed", "3", "--html", str(folder)]
    assert preview.main(args) == 0
    assert f"wrote {folder / 'index.html'}" in capsys.readouterr().out
    page = (folder / "index.html").read_text()
    assert "LF.caseLoaded" in page and "http://" not in page  # the viewer inlined, nothing fetched
    text = (folder / "cases" / "case_000.js").read_text()
    data = json.loads(text[text.index(",") + 1:text.rindex(")")])
    assert [p["title"] for p in data["panels"]] == ["healthy", "with synthetic tumors"]
    healthy = html_report.decode_volume(data["panels"][0]["data"], data["shape"])
    painted = html_report.decode_volume(data["panels"][1]["data"], data["shape"])
    labels = html_report.decode_volume(data["layers"][0]["data"], data["shape"])
    source = np.asarray(nib.load(img_path).dataobj)  # RAS already: the stored grid is the file's
    np.testing.assert_array_equal(healthy, html_report.hu_to_codes(source))
    assert (labels == 2).any() and (painted != healthy)[labels == 2].mean() > 0.5  # tumors painted where outlined
    assert (painted == healthy)[labels == 0].all()
    assert data["lesions"] and all(e["status"] == "synthetic" for e in data["lesions"])
    assert len(data["lesions"]) == ndimage.label(labels == 2, structure=np.ones((3, 3, 3)))[1]  # one per tumor
