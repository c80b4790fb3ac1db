"""Size and build time of one case of the HTML report (``labelfree.evaluation.html_report``).

A phantom abdomen with liver tumors (``labelfree.phantom.generate_case``: its anatomy, HU and CT
noise) rendered on a 512 x 512 x 120 grid (0.664 x 0.664 x 2.5 mm, the size of a typical
portal-venous abdominal CT), written as NIfTI with its label and a prediction that misses the
smallest lesion and adds a false positive; then what ``validation.py`` does for the report: read
the three files, match the lesions, bring the volumes to RAS, block-average to the stored grid,
8-bit codes, zlib, base64. Prints the stored grid, the size of the case file (and of each volume in
it) and the median build time of ``--runs`` runs, against the time to read the three files alone
(the same-run baseline).

Usage::

    python benchmarks/bench_html_report.py                      # 512 x 512 x 120
    python benchmarks/bench_html_report.py --shape 256 256 60 --runs 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from labelfree.evaluation import html_report
from labelfree.io.readers import read_volume
from labelfree.masks import label_components
from labelfree.phantom.case import generate_case
from labelfree.runtime.timing import median_seconds

LIVER_PAIRS = (("liver", 1, "tumor", 2),)
LIVER_WINDOW = (-21.0, 189.0)


def write_case(folder: Path, shape, slice_mm: float) -> tuple[Path, Path, Path]:
    """Phantom CT, its label and a prediction (smallest lesion missed, one false positive) as NIfTI."""
    fov = (340.0, 340.0, shape[2] * slice_mm)
    spacing = (fov[0] / shape[0], fov[1] / shape[1], slice_mm)
    case = generate_case("abdomen", seed=3, lesions=True, spacing=spacing, fov_mm=fov)
    label = np.asarray(case.label, dtype=np.uint8)
    pred = label.copy()
    components, n = label_components(label == 2)
    if n:
        smallest = int(np.argmin(np.bincount(components.ravel())[1:])) + 1
        pred[components == smallest] = 1  # missed
    organ = np.argwhere(label == 1)
    centre = organ[len(organ) // 3]
    pred[tuple(slice(c - 3, c + 4) for c in centre)] = 2  # a false positive
    paths = []
    for name, array in (("image", np.asarray(case.image, dtype=np.int16)), ("label", label), ("pred", pred)):
        path = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(array, case.affine), str(path))
        paths.append(path)
    print(f"phantom {tuple(case.image.shape)} voxels at {tuple(round(s, 3) for s in case.spacing)} mm, "
          f"{n} lesion(s), noise {case.noise_std:.0f} HU")
    return tuple(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 120))
    parser.add_argument("--slice_mm", type=float, default=2.5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        image, label, pred = write_case(Path(tmp), args.shape, args.slice_mm)

        def build():
            case = html_report.evaluation_case("phantom", image, label, pred, LIVER_PAIRS, LIVER_WINDOW)
            return json.dumps(html_report.case_payload(case), separators=(",", ":"))

        payload = build()
        data = json.loads(payload)
        print(f"stored grid {tuple(data['shape'])} at {tuple(data['spacing'])} mm; case file "
              f"{len(payload) / 1e6:.2f} MB (CT {len(data['panels'][0]['data']) / 1e6:.2f} MB, "
              + ", ".join(f"{layer['name']} {len(layer['data']) / 1e3:.0f} kB" for layer in data["layers"])
              + "); lesions: " + ", ".join(f"{e['text']} {e['radius_mm']} mm {e['status']}" for e in data["lesions"]))
        seconds = median_seconds(build, args.runs)
        baseline = median_seconds(lambda: [read_volume(p) for p in (image, label, pred)], args.runs)
        print(f"build one case: median {seconds:.2f} s over {args.runs} run(s); reading the three files alone "
              f"{baseline:.2f} s (ratio {seconds / baseline:.1f})")


if __name__ == "__main__":
    main()
