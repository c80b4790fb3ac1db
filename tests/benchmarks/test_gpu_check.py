"""The GPU check script's CPU dry run: every part runs to completion and its figures are written.

The torchrun part is skipped here: ``tests/labelfree/cli/test_train.py`` already runs main.py under
torchrun on CPU, and a second interpreter start would double this test's time.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_dry_run_runs_every_part_and_writes_json_and_markdown(tmp_path):
    gpu_check = _gpu_check()
    threads = torch.get_num_threads()
    try:
        gpu_check.main(["--device", "cpu", "--out", str(tmp_path), "--skip", "torchrun"])
    finally:
        torch.set_num_threads(threads)
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = results["parts"]
    assert results["dry_run"] is True
    assert set(parts) == {"train_unet", "train_swin_unetrv2", "inference_none", "inference_body", "inference_organ",
                          "synthesis_growth", "synthesis_generator", "synthesis_diffusion",
                          "synthesis_quality_control"}
    for name in ("train_unet", "train_swin_unetrv2"):
        part = parts[name]
        assert part["status"] == "ok", part
        assert part["timed_steps"] == 1 and part["syn"] is True and part["batch_size"] == 1
        assert 0.0 <= part["data_wait_fraction"] <= 1.0 and part["step_s_median"] >= part["compute_s_median"] > 0
        assert part["peak_memory_mib"] > 0
    assert parts["train_swin_unetrv2"]["roi"] == [64, 64, 64] and parts["train_unet"]["roi"] == [32, 32, 32]
    windows = {mode: parts[f"inference_{mode}"] for mode in ("none", "body", "organ")}
    for mode, part in windows.items():
        assert part["status"] == "ok", part
        assert part["overlap"] == 0.75 and part["roi_mode"] == mode
        assert part["windows_run"] >= 1 and part["windows_full"] == windows["none"]["windows_run"]
    assert windows["body"]["windows_run"] <= windows["none"]["windows_run"]
    assert parts["synthesis_growth"]["status"] == "ok" and parts["synthesis_growth"]["tumor_voxels"] > 0
    assert parts["synthesis_quality_control"]["status"] == "ok"
    assert parts["synthesis_quality_control"]["crops_checked"] == 2
    diffusion = parts["synthesis_diffusion"]
    assert diffusion["status"] == "ok", diffusion
    assert diffusion["diffusion_step_s_median"] > 0 and diffusion["amp"] is False
    assert diffusion["batch_s_median_4_steps"] > 0 and diffusion["batch_s_median_10_steps"] > 0
    generator = parts["synthesis_generator"]
    assert generator["status"] == "ok", generator
    assert generator["generator_step_s_median"] > 0 and generator["batch_s_median"] > 0 and generator["amp"] is False
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "Dry run on CPU" in markdown
    for name in parts:
        assert f"| {name} |" in markdown


def test_asking_for_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the error path cannot be reached")
    with pytest.raises(SystemExit, match="no CUDA GPU is visible"):
        _gpu_check().main(["--device", "cuda", "--out", str(tmp_path)])
