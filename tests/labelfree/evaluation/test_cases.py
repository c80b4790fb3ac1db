"""labelfree.evaluation.cases: the cases of an evaluation, from a datalist or a folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelfree.data.datalist import DatalistError
from labelfree.evaluation.cases import evaluation_cases

from tests.helpers.scoring_cases import RAS_AFFINE, save


def test_datalist_cases_are_named_and_unlabelled_ones_keep_no_label(tmp_path):
    image = save(tmp_path / "a" / "liver_1.nii.gz", np.zeros((4, 4, 4)), RAS_AFFINE)
    other = save(tmp_path / "b" / "liver_2.nii.gz", np.zeros((4, 4, 4)), RAS_AFFINE)
    datalist = tmp_path / "list.json"
    datalist.write_text(json.dumps({"validation": [{"image": "a/liver_1.nii.gz", "label": "b/liver_2.nii.gz"},
                                                   {"image": "b/liver_2.nii.gz", "label": None}]}))
    cases = evaluation_cases(datalist, tmp_path)
    assert [(c["name"], c["image"], c.get("label")) for c in cases] == [("liver_1", image, other),
                                                                        ("liver_2", other, None)]
    assert "label" not in cases[1]


def test_two_cases_of_one_name_and_a_missing_input_are_refused(tmp_path):
    save(tmp_path / "a" / "x.nii.gz", np.zeros((4, 4, 4)), RAS_AFFINE)
    save(tmp_path / "b" / "x.nii.gz", np.zeros((4, 4, 4)), RAS_AFFINE)
    datalist = tmp_path / "list.json"
    datalist.write_text(json.dumps({"validation": [{"image": "a/x.nii.gz"}, {"image": "b/x.nii.gz"}]}))
    with pytest.raises(DatalistError, match="two cases named x"):
        evaluation_cases(datalist, tmp_path)
    with pytest.raises(DatalistError, match="give --json_dir"):
        evaluation_cases()
    with pytest.raises(DatalistError, match="not both"):
        evaluation_cases(datalist, tmp_path, images=tmp_path)
