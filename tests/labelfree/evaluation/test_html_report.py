"""labelfree.evaluation.html_report: the data the report's viewer reads (no browser; see test_html_report_browser)."""

from __future__ import annotations

import base64
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from labelfree.evaluation import html_report
from labelfree.evaluation.lesions import equivalent_sphere_radius_mm
from tests.helpers.report_cases import FALSE_POSITIVE, FOUND, MISSED, SHAPE, ras_range, write_tiny_evaluation

LIVER_PAIRS = (("liver", 1, "tumor", 2),)


def test_hu_codes_follow_the_table_and_invert_within_half_a_step():
    assert html_report.hu_to_codes(np.array([-3000, -950, -250, 50, 350, 1500, 4000])).tolist() == [
        0, 0, 64, 144, 224, 255, 255]
    hu = np.linspace(-250, 350, 1001)
    assert np.abs(html_report.codes_to_hu(html_report.hu_to_codes(hu)) - hu).max() <= 600 / 160 / 2 + 1e-3


@pytest.mark.parametrize("shape, spacing, factors", [
    ((40, 36, 24), (1.0, 1.0, 2.0), (1, 1, 1)),
    ((512, 512, 120), (0.7, 0.7, 2.5), (2, 2, 1)),
    ((340, 260, 72), (1.0, 1.0, 2.5), (2, 2, 1)),
])
def test_display_factors(shape, spacing, factors):
    assert html_report.display_factors(shape, spacing) == factors


def test_display_factors_keep_a_long_scan_under_the_voxel_budget():
    shape, spacing = (512, 512, 900), (0.7, 0.7, 0.7)
    factors = html_report.display_factors(shape, spacing)
    stored = [math.ceil(n / f) for n, f in zip(shape, factors)]
    assert max(stored) <= html_report.MAX_EDGE_VOXELS and np.prod(stored) <= html_report.MAX_VOXELS


def test_downsampling_averages_the_ct_and_keeps_a_one_voxel_tumor():
    ct = np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
    mean = html_report.downsample_mean(ct, (2, 2, 1))
    assert mean.shape == (2, 2, 3)
    assert mean[1, 0, 2] == pytest.approx(ct[2:4, 0:2, 2].mean())
    labels = np.zeros((5, 4, 3), np.uint8)  # 5: a partial last block
    labels[:4] = 1
    labels[3, 1, 1] = 2
    small = html_report.downsample_labels(labels, (2, 2, 1), [2])
    assert small.shape == (3, 2, 3)
    assert small[1, 0, 1] == 2 and small[1, 0, 0] == 1 and small[2, 0, 0] == 0
    assert (small == 2).sum() == 1


def test_volumes_are_stored_x_fastest_and_decode_exactly():
    volume = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    raw = zlib.decompress(base64.b64decode(html_report.encode_volume(volume)))
    x, y, z = 3, 2, 1
    assert raw[x + 5 * (y + 4 * z)] == volume[x, y, z]
    np.testing.assert_array_equal(html_report.decode_volume(html_report.encode_volume(volume), volume.shape), volume)


def test_evaluation_case_lists_lesions_and_stores_ras(tmp_path):
    datalist, pred_dir = write_tiny_evaluation(tmp_path)
    data = tmp_path / "data"
    case = html_report.evaluation_case("liver_a", data / "img" / "liver_a.nii.gz", data / "label" / "liver_a.nii.gz",
                                       pred_dir / "liver_a.nii.gz", LIVER_PAIRS, (-21.0, 189.0))
    payload = json.loads(json.dumps(html_report.case_payload(case)))
    assert payload["shape"] == list(SHAPE) and payload["spacing"] == [1.0, 1.0, 2.0]
    by_status = {lesion["status"]: lesion for lesion in payload["lesions"]}
    assert sorted(by_status) == ["false positive", "found", "missed"]
    box_voxels = lambda box: int(np.prod([s.stop - s.start for s in box]))  # noqa: E731
    for status, box in (("missed", MISSED), ("found", FOUND), ("false positive", FALSE_POSITIVE)):
        lesion = by_status[status]
        assert lesion["radius_mm"] == pytest.approx(float(equivalent_sphere_radius_mm(box_voxels(box), (1, 1, 2))),
                                                    abs=0.01)
        assert lesion["volume_ml"] == pytest.approx(box_voxels(box) * 2 / 1000)
        for axis in range(3):  # the scan is LPS: x and y flipped into RAS
            assert lesion["slices"][axis] in ras_range("liver_a", box, axis)
            span = ras_range("liver_a", box, axis)
            assert lesion["centre"][axis] == pytest.approx((span.start + span.stop - 1) / 2)
    assert payload["start"] == payload["lesions"][0]["slices"]  # the largest reference lesion first

    import nibabel as nib

    image = np.asarray(nib.load(data / "img" / "liver_a.nii.gz").dataobj)
    ct = html_report.decode_volume(payload["panels"][0]["data"], SHAPE)
    np.testing.assert_array_equal(ct, html_report.hu_to_codes(image[::-1, ::-1, :]))
    reference = html_report.decode_volume(payload["layers"][0]["data"], SHAPE)
    label = np.asarray(nib.load(data / "label" / "liver_a.nii.gz").dataobj)
    np.testing.assert_array_equal(reference, label[::-1, ::-1, :])
    assert [layer["name"] for layer in payload["layers"]] == ["reference", "prediction"]
    assert payload["layers"][1]["colours"] == {"1": "deepskyblue", "2": "red"}


def test_a_prediction_saved_in_another_orientation_is_drawn_where_it_lies(tmp_path):
    # liver_a is LPS; the same prediction saved in RAS (flipped array, flipped affine) covers the same
    # voxels in space, so the viewer must store the very same prediction layer and lesions.
    import nibabel as nib

    datalist, pred_dir = write_tiny_evaluation(tmp_path)
    data = tmp_path / "data"
    lps = nib.load(pred_dir / "liver_a.nii.gz")
    ras = nib.as_closest_canonical(lps)
    assert not np.allclose(ras.affine, lps.affine)
    nib.save(ras, tmp_path / "pred_ras.nii.gz")

    def payload(pred_path):
        case = html_report.evaluation_case("liver_a", data / "img" / "liver_a.nii.gz",
                                           data / "label" / "liver_a.nii.gz", pred_path, LIVER_PAIRS, (-21.0, 189.0))
        return json.loads(json.dumps(html_report.case_payload(case)))

    as_saved, reoriented = payload(pred_dir / "liver_a.nii.gz"), payload(tmp_path / "pred_ras.nii.gz")
    assert reoriented["layers"] == as_saved["layers"]
    assert reoriented["lesions"] == as_saved["lesions"]


def test_only_the_largest_false_positives_are_listed(tmp_path, monkeypatch):
    monkeypatch.setattr(html_report, "MAX_LISTED_FALSE_POSITIVES", 2)
    pred = np.zeros((30, 10, 10), bool)
    for i, size in enumerate((1, 3, 2, 1)):  # four false positives, 1..3 voxels wide
        pred[7 * i:7 * i + size, 2:2 + size, 2:2 + size] = True
    ref = np.zeros_like(pred)
    entries, unlisted = html_report.evaluation_lesions(pred, ref, (1.0, 1.0, 1.0), (1, 1, 1))
    assert unlisted == 2
    assert [round(e.volume_ml * 1000) for e in entries] == [27, 8]


def test_report_folder_is_replaced_whole(tmp_path):
    case = html_report.ViewerCase("c", (1.0, 1.0, 1.0), [("CT", np.zeros((4, 3, 2), np.uint8))], [])
    html_report.write_report(tmp_path / "report", "t", "s", "", "", [case, case])
    assert sorted(p.name for p in (tmp_path / "report" / "cases").iterdir()) == ["case_000.js", "case_001.js"]
    page = html_report.write_report(tmp_path / "report", "t", "s", "", "", [case])
    assert sorted(p.name for p in (tmp_path / "report" / "cases").iterdir()) == ["case_000.js"]
    assert page == tmp_path / "report" / "index.html" and "LF.caseLoaded" in page.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary folder left


def test_a_failed_write_keeps_the_earlier_report_and_leaves_nothing_behind(tmp_path, monkeypatch):
    import errno

    from labelfree.io.atomic import OutputWriteError

    case = html_report.ViewerCase("c", (1.0, 1.0, 1.0), [("CT", np.zeros((4, 3, 2), np.uint8))], [])
    html_report.write_report(tmp_path / "report", "first", "s", "", "", [case])
    earlier = (tmp_path / "report" / "index.html").read_text()
    real_write_text = Path.write_text

    def disk_full_on_index(self, *args, **kwargs):
        if self.name == "index.html":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full_on_index)
    with pytest.raises(OutputWriteError, match="No space left on device; the earlier file is kept unchanged"):
        html_report.write_report(tmp_path / "report", "second", "s", "", "", [case])
    monkeypatch.undo()
    assert (tmp_path / "report" / "index.html").read_text() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_cases_table_holds_the_csv_text_of_every_cell():
    rows = [{"name": "a<b", "liver_dice": 0.123456789, "tumor_dice": math.nan, "lesions": 2}]
    table = html_report.cases_table_html(["name", "liver_dice", "tumor_dice", "lesions"], rows)
    assert 'data-value="a&lt;b">a&lt;b<' in table
    assert f'data-value="{0.123456789!r}">0.1235<' in table
    assert 'data-value="nan">-<' in table and 'data-value="2">2<' in table


def test_the_scoring_cli_writes_the_report_unless_told_not_to(tmp_path, capsys):
    import csv

    from labelfree.cli import score

    datalist, pred_dir = write_tiny_evaluation(tmp_path)
    argv = ["--pred_dir", str(pred_dir), "--json_dir", str(datalist), "--val_dir", str(tmp_path / "data")]
    assert score.main(argv + ["--out", str(tmp_path / "quiet"), "--no_report"]) == 0
    assert (tmp_path / "quiet" / "metrics.csv").is_file() and not (tmp_path / "quiet" / "report").exists()
    assert score.main(argv + ["--out", str(tmp_path / "loud")]) == 0
    page = tmp_path / "loud" / "report" / "index.html"
    assert f"report (open in a browser): {page}" in capsys.readouterr().out
    with open(tmp_path / "loud" / "metrics.csv", newline="") as f:
        names = [row["name"] for row in csv.DictReader(f)]
    for index, name in enumerate(names):  # row i of the table opens case file i, the same case
        text = (page.parent / "cases" / f"case_{index:03d}.js").read_text()
        assert json.loads(text[text.index(",") + 1:text.rindex(")")])["name"] == name
        assert f'<tr data-case="{index}" tabindex="0"><td data-value="{name}">' in page.read_text()


def test_summary_shows_means_detection_by_size_and_false_positives():
    from labelfree.evaluation.report import summarize

    rows = [{"name": "a", "tumor_dice": 0.5, "lesions": 2, "detected": 1, "false_positives": 3, "predicted_lesions": 4,
             "lesions_r0_5": 2, "detected_r0_5": 1},
            {"name": "b", "tumor_dice": math.nan, "lesions": 0, "detected": 0, "false_positives": 0,
             "predicted_lesions": 0}]
    page = html_report.evaluation_summary_html(summarize(rows, ["tumor_dice"]), ["tumor_dice"])
    assert "<td>tumor_dice</td><td>0.5000</td><td>0.5000</td><td>0.0000</td><td>1</td><td>1</td>" in page
    assert "<td>0 to 5</td><td>2</td><td>1</td><td>0.500</td>" in page and "<td>20 to &infin;</td><td>0</td>" in page
    assert "false-positive lesions: 3 in 2 case(s), 1.50 per case" in page
