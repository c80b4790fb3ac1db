"""The README's "TumorGenerated in your own MONAI pipeline" example runs as printed, on a phantom root."""

from __future__ import annotations

import pytest
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _example() -> str:
    text = (REPO / "README.md").read_text()
    marker = text.index("<!-- example: own-pipeline")
    return re.search(r"```python\n(.*?)```", text[marker:], re.S).group(1)


@pytest.mark.slow
def test_readme_pipeline_example_paints_synthetic_tumors(tmp_path, phantom_root):
    code = _example()
    assert 'root = Path("data/phantom")' in code
    script = tmp_path / "example.py"
    script.write_text(code.replace('root = Path("data/phantom")', f"root = Path({str(phantom_root)!r})"))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    labels = result.stdout.strip().splitlines()[-1]
    assert "torch.Size([2, 1, 64, 64, 64])" in labels
    assert re.search(r"tensor\(\[0\., 1\., 2\.\]", labels), labels  # synthetic tumors (label 2) were painted
