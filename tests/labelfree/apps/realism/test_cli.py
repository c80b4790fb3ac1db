"""python -m tumor_synthesis.realism end to end, on a tiny data root of the original layout written here.

Real cases (04_LiTS/img/liver_N.nii.gz, 04_LiTS/label/liver_N.nii.gz) hold sharp balls of known
size and contrast; healthy cases (01_Multi-Atlas_Labeling/img/imgNNNN.nii.gz with
label/multi-atlas-labelNNNN.nii.gz) get synthetic tumors from TumorGenerated.
"""

import json

import numpy as np
import pytest
from PIL import Image

from labelfree.io.atomic import save_nifti_atomic, write_json_atomic
from labelfree.apps.realism.cli import main

SPACING = 2.0
SHAPE = (40, 40, 32)
AFFINE = np.diag([SPACING, SPACING, SPACING, 1.0])
#: (centre voxel, radius voxels, contrast HU) of each real case's lesions.
REAL_LESIONS = [[((14, 20, 16), 3, -60), ((26, 22, 12), 4, -50)], [((24, 18, 14), 4, -45), ((12, 24, 18), 2, -70)],
                [((20, 24, 12), 3, -55), ((14, 14, 20), 4, -65)]]


def organ_case(seed):
    rng = np.random.default_rng(seed)
    grids = np.ogrid[tuple(slice(0, n) for n in SHAPE)]
    organ = sum(((g - n / 2) / (0.42 * n)) ** 2 for g, n in zip(grids, SHAPE)) < 1
    image = np.where(organ, 100.0, -80.0) + rng.normal(0.0, 8.0, SHAPE)
    return image, organ.astype(np.uint8)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("realism_root")
    real, healthy = [], []
    grid = np.indices(SHAPE)
    for i, lesions in enumerate(REAL_LESIONS):
        image, label = organ_case(i)
        for centre, radius, contrast in lesions:
            ball = (((grid - np.array(centre)[:, None, None, None]) ** 2).sum(axis=0) <= radius ** 2) & (label == 1)
            image[ball] += contrast
            label[ball] = 2
        entry = {"image": f"04_LiTS/img/liver_{i}.nii.gz", "label": f"04_LiTS/label/liver_{i}.nii.gz"}
        save_nifti_atomic(image, AFFINE, root / entry["image"], dtype=np.int16)
        save_nifti_atomic(label, AFFINE, root / entry["label"], dtype=np.uint8)
        real.append(entry)
    for i in range(3):
        image, label = organ_case(100 + i)
        entry = {"image": f"01_Multi-Atlas_Labeling/img/img{i + 1:04d}.nii.gz",
                 "label": f"label/multi-atlas-label{i + 1:04d}.nii.gz"}
        save_nifti_atomic(image, AFFINE, root / entry["image"], dtype=np.int16)
        save_nifti_atomic(label, AFFINE, root / entry["label"], dtype=np.uint8)
        healthy.append(entry)
    # As the original's healthy.json: healthy training cases, tumor cases for validation.
    write_json_atomic(root / "datafolds/healthy.json", {"training": healthy, "validation": real})
    write_json_atomic(root / "datafolds/lits.json", {"training": real, "validation": real[:1]})
    return root


def run(root, out, *extra):
    return main(["--real_json", str(root / "datafolds/lits.json"), "--healthy_json",
                 str(root / "datafolds/healthy.json"), "--data_dir", str(root), "--organ", "liver", "--out", str(out),
                 "--space", str(SPACING), str(SPACING), str(SPACING), "--type_mix", "0", "1", "0", "0", "0",
                 "--draws", "2", "--crop", "8", "--epochs", "1", "--folds", "2", *extra])


@pytest.mark.slow
def test_tool_on_a_real_layout_root(root, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(root, out) == 0
    result = json.loads((out / "realism.json").read_text())
    assert "auc" in result and (result["auc"] is None or 0.0 <= result["auc"] <= 1.0)
    # Each case counted once although lits.json lists liver_0 twice; tumor cases of healthy.json skipped.
    assert result["counts"]["real_cases"] == 3 and result["counts"]["healthy_cases"] == 6
    assert len(result["skipped"]["healthy_with_tumor"]) == 3
    volumes = sorted(r["volume_ml"] for r in result["lesions"]["real"])
    expected = sorted(
        int((((np.indices(SHAPE) - np.array(c)[:, None, None, None]) ** 2).sum(axis=0) <= r ** 2).sum()) * SPACING ** 3
        / 1000.0 for case in REAL_LESIONS for c, r, _ in case)
    np.testing.assert_allclose(volumes, expected)
    differences = sorted(r["difference_hu"] for r in result["lesions"]["real"])
    np.testing.assert_allclose(differences, sorted(c for case in REAL_LESIONS for _, _, c in case), atol=6.0)
    assert result["lesions"]["synthetic"] and all(r["difference_hu"] < 0 for r in result["lesions"]["synthetic"])
    assert set(result["statistics"]) >= {"volume_ml", "halo", "boundary_gradient_hu_mm"}
    md = (out / "realism.md").read_text()
    assert "| halo |" in md and "AUC" in md
    assert Image.open(out / "realism.png").size[0] > 500
    assert "machine Turing test AUC" in capsys.readouterr().out


@pytest.mark.slow
def test_no_size_matched_pairs_reports_the_statistics_and_says_why_there_is_no_auc(root, tmp_path, monkeypatch,
                                                                                    capsys):
    import labelfree.apps.realism.classifier as classifier

    monkeypatch.setattr(classifier, "match_size_bins", lambda *a, **k: (np.zeros(0, int), np.zeros(0, int)))
    out = tmp_path / "out"
    assert run(root, out) == 0
    result = json.loads((out / "realism.json").read_text())
    assert result["auc"] is None and "no size-matched pairs" in result["turing_test"]["error"]
    assert result["counts"]["size_matched_pairs"] == 0 and result["statistics"]["volume_ml"]["real"]["n"] > 0
    assert "no size-matched pairs" in (out / "realism.md").read_text()
    assert (out / "realism.png").is_file()


def test_clear_errors(root, tmp_path, capsys):
    assert run(root, tmp_path / "a", "--synthesis", "no_such_model") == 2
    assert "no_such_model" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"training": [{"image": "nowhere/img.nii.gz", "label": "nowhere/label.nii.gz"}]}))
    assert main(["--real_json", str(bad), "--healthy_json", str(bad), "--data_dir", str(root), "--out",
                 str(tmp_path / "b")]) == 2
    assert "nowhere/img.nii.gz" in capsys.readouterr().err


@pytest.fixture(scope="module")
def one_real_case_root(tmp_path_factory):
    """One real case holding 24 small balls (radius 2 voxels, -40 to -63 HU), two healthy cases."""
    root = tmp_path_factory.mktemp("one_real_case")
    image, label = organ_case(7)
    grid = np.indices(SHAPE)
    centres = [(x, y, z) for x in (11, 17, 23, 29) for y in (11, 17, 23, 29) for z in (10, 16, 22)
               if label[x, y, z] == 1][:24]
    assert len(centres) == 24
    for k, centre in enumerate(centres):
        ball = ((grid - np.array(centre)[:, None, None, None]) ** 2).sum(axis=0) <= 4
        image[ball] -= 40 + k
        label[ball] = 2
    real = [{"image": "04_LiTS/img/liver_0.nii.gz", "label": "04_LiTS/label/liver_0.nii.gz"}]
    save_nifti_atomic(image, AFFINE, root / real[0]["image"], dtype=np.int16)
    save_nifti_atomic(label, AFFINE, root / real[0]["label"], dtype=np.uint8)
    healthy = []
    for i in range(2):
        image, label = organ_case(200 + i)
        entry = {"image": f"01_Multi-Atlas_Labeling/img/img{i + 1:04d}.nii.gz",
                 "label": f"label/multi-atlas-label{i + 1:04d}.nii.gz"}
        save_nifti_atomic(image, AFFINE, root / entry["image"], dtype=np.int16)
        save_nifti_atomic(label, AFFINE, root / entry["label"], dtype=np.uint8)
        healthy.append(entry)
    write_json_atomic(root / "datafolds/healthy.json", {"training": healthy})
    write_json_atomic(root / "datafolds/lits.json", {"training": real})
    return root


@pytest.mark.slow
def test_one_real_case_with_many_lesions_gets_an_auc_with_its_interval_and_a_frechet_distance(one_real_case_root,
                                                                                              tmp_path, capsys):
    out = tmp_path / "out"
    root = one_real_case_root
    assert main(["--real_json", str(root / "datafolds/lits.json"), "--healthy_json",
                 str(root / "datafolds/healthy.json"), "--data_dir", str(root), "--organ", "liver", "--out", str(out),
                 "--space", str(SPACING), str(SPACING), str(SPACING), "--type_mix", "1", "0", "0", "0", "0",
                 "--draws", "2", "--crop", "8", "--epochs", "1", "--folds", "3"]) == 0
    result = json.loads((out / "realism.json").read_text())
    assert result["counts"]["real_cases"] == 1 and result["counts"]["real_lesions"] == 24
    turing = result["turing_test"]
    assert "error" not in turing and 0.0 <= result["auc"] <= 1.0
    low, high = turing["auc_ci95"]
    assert 0.0 <= low <= high <= 1.0
    # The real lesions come from one case: folded by lesion; the synthetic ones (two cases) by case.
    assert turing["fold_unit"] == {"real": "lesion", "synthetic": "case"} and turing["n_folds"] == 2
    fd = result["frechet"]
    assert fd["n_real"] == 24 and fd["frechet"] >= 0.0 and fd["ci95"][0] <= fd["ci95"][1]
    md = (out / "realism.md").read_text()
    assert "folded by lesion" in md and "Fréchet distance" in md and "bootstrap 95 %" in md
    assert "Frechet distance" in capsys.readouterr().out
