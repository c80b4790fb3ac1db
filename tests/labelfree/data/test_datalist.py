"""Tests of labelfree.data.datalist: reading a datalist file, one line naming it for every problem."""

from __future__ import annotations

import json

import pytest

from labelfree.cli import check_data
from labelfree.data.datalist import DatalistError, load_datalist, read_datalist_json


def test_a_datalist_that_is_not_utf8_is_refused_naming_the_file_and_the_byte(tmp_path):
    path = tmp_path / "datalist.json"
    text = json.dumps({"training": [{"image": "img/Ärzte_1.nii.gz"}]}, ensure_ascii=False)
    path.write_bytes(text.encode("latin-1"))  # as an editor set to Windows-1252 saves it
    offset = text.encode("latin-1").index(b"\xc4")
    with pytest.raises(DatalistError) as error:
        read_datalist_json(path)
    assert str(error.value) == (f"datalist {path} is not UTF-8 text (byte 0xc4 at offset {offset}); "
                                "save it as UTF-8 JSON")


def test_a_utf8_datalist_reads_whatever_the_locale(tmp_path, monkeypatch):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [{"image": "img/Ärzte_1.nii.gz"}]}, ensure_ascii=False),
                    encoding="utf-8")
    monkeypatch.setenv("LC_ALL", "C")  # open() without an encoding would follow the locale
    assert load_datalist(path, "training", tmp_path)[0]["image"] == str(tmp_path / "img" / "Ärzte_1.nii.gz")


@pytest.mark.parametrize("content, problem", [
    (b'{"training": [', "is not valid JSON"),
    (b'["a.nii.gz"]', "must hold a JSON object"),
])
def test_other_bad_datalists_name_the_file(tmp_path, content, problem):
    path = tmp_path / "datalist.json"
    path.write_bytes(content)
    with pytest.raises(DatalistError, match=rf"datalist {path}.*{problem}"):
        read_datalist_json(path)


def test_a_folder_given_as_the_datalist_is_refused(tmp_path):
    with pytest.raises(DatalistError, match=rf"datalist not found: {tmp_path}"):
        read_datalist_json(tmp_path)


def test_check_data_prints_one_line_for_a_datalist_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "datalist.json"
    content = '{"training": [{"image": "Ä.nii.gz"}], "validation": []}'.encode("latin-1")
    path.write_bytes(content)
    assert check_data.main(["--json_dir", str(path)]) == 1
    err = capsys.readouterr().err
    offset = content.index(b"\xc4")
    assert err.splitlines() == [f"error: datalist {path} is not UTF-8 text (byte 0xc4 at offset {offset}); "
                                "save it as UTF-8 JSON"]
