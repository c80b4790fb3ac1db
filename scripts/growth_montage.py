"""Montage of growth-model tumors (``TumorGenerated(synthesis="growth")``) per organ, PNG.

    python scripts/growth_montage.py --out results/growth_tumor_montage.png [--seed 0] [--grid_mm 2]

One row per organ (liver, pancreas, kidney) of a 1 mm phantom abdomen, one column per size
class (tiny to large), each an axial slice through the tumor with the tumor label outlined
in red and the necrotic core in yellow; for the large class the seed is chosen, among the
first few, so that a necrotic core grew, the slice goes through it, and a last column shows
it again without outlines (to judge edges, texture and the core). Panels are sized to the
tumor. Intensities in the organ's training window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from labelfree.evaluation.figures import shrink_png
from labelfree.io.atomic import atomic_path
from labelfree.phantom import generate_case
from tumor_synthesis import get_growth_rules, get_organ_profile, grow_tumors

ORGANS = ("liver", "pancreas", "kidney")
#: Smallest half width (mm) of a panel around the tumor; larger tumors get 1.6 radii.
HALF_WIDTH_MM = 20
#: Seeds tried for a large tumor with a necrotic core.
NECROSIS_TRIES = 12


def grow(image, label, organ, size, seed, grid_mm):
    rules = get_growth_rules(organ)
    img, lab = torch.from_numpy(image.astype(np.float32)), torch.from_numpy(label.copy())
    res = grow_tumors(img, lab, np.random.default_rng(seed), size, rules, spacing=(1.0, 1.0, 1.0),
                      texture=get_organ_profile(organ).texture, grid_mm=grid_mm)
    return res


def panel_centre(before: np.ndarray, after_img: np.ndarray, tumor: np.ndarray, necrosis: bool):
    """Voxel to centre the panel on: the darkest change (necrosis) or the largest tumor component's centre."""
    if necrosis:
        drop = np.where(tumor, before - after_img, 0.0)
        return np.unravel_index(int(np.argmax(ndimage.uniform_filter(drop, 5))), drop.shape)
    components, n = ndimage.label(tumor)
    sizes = ndimage.sum(tumor, components, range(1, n + 1))
    largest = components == 1 + int(np.argmax(sizes))
    return tuple(int(round(c)) for c in ndimage.center_of_mass(largest))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/growth_tumor_montage.png", help="PNG to write")
    parser.add_argument("--seed", type=int, default=0, help="phantom case seed and first sample seed")
    parser.add_argument("--grid_mm", type=float, default=2.0, help="growth simulation grid (mm)")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.set_num_threads(1)
    sizes = get_growth_rules("liver").size_names
    fig, axes = plt.subplots(len(ORGANS), len(sizes) + 1, figsize=(2.6 * (len(sizes) + 1), 2.8 * len(ORGANS)),
                             layout="constrained")
    for row, organ in enumerate(ORGANS):
        case = generate_case("abdomen", seed=args.seed, spacing=(1.0, 1.0, 1.0), organ=organ)
        image, label = case.image, case.label
        window = get_organ_profile(organ).window
        for col, size in enumerate(sizes):
            tries = NECROSIS_TRIES if size == "large" else 1
            for k in range(tries):
                res = grow(image, label, organ, size, args.seed + 100 * col + k, args.grid_mm)
                if res is None or res.plan.necrosis or k == tries - 1:
                    break
            after_img, after_lab = res.image.numpy(), res.label.numpy()
            tumor, core = after_lab == 2, res.necrosis_mask().numpy()
            x, y, z = panel_centre(image.astype(np.float32), after_img, tumor, res.plan.necrosis)
            r_eq = (3 * res.plan.tumor_voxels / (4 * np.pi) / max(1, len(res.plan.seeds))) ** (1 / 3)
            half = int(max(HALF_WIDTH_MM, 1.6 * r_eq))
            sl = (slice(max(0, x - half), x + half), slice(max(0, y - half), y + half), z)
            panels = [(col, True)] + ([(col + 1, False)] if size == "large" else [])
            for where, outline in panels:
                ax = axes[row, where]
                # Radiological view: patient's right on the left, anterior up.
                ax.imshow(after_img[sl].T[::-1], cmap="gray", vmin=window[0], vmax=window[1])
                if outline:
                    ax.contour(tumor[sl].T[::-1].astype(float), levels=[0.5], colors="red", linewidths=0.6)
                    if core[sl].any():
                        ax.contour(core[sl].T[::-1].astype(float), levels=[0.5], colors="yellow", linewidths=0.6)
                else:
                    ax.set_title("large, no outlines", fontsize=7, loc="left")
                ax.set_axis_off()
            p = res.plan
            n_comp = ndimage.label(tumor, structure=np.ones((3, 3, 3)))[1]
            axes[row, col].set_title(
                f"{organ} {size}: N={p.steps}, {len(p.seeds)} seeds, {n_comp} comp.\n"
                f"r_eq/seed {r_eq:.0f} mm" + (", necrotic core" if p.necrosis else ""), fontsize=7, loc="left")
            print(f"{organ:8s} {size:6s} N={p.steps:3d} seeds={len(p.seeds)} satellites={p.satellites} "
                  f"voxels={p.tumor_voxels} necrosis={p.necrosis} dead={p.dead_voxels} slice z={z}", flush=True)
    fig.suptitle(f"growth-model tumors (cellular automaton, grid {args.grid_mm:g} mm) on a 1 mm phantom, "
                 f"seed {args.seed}; red: tumor label, yellow: necrotic core", fontsize=9)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    print(f"wrote {out} ({shrink_png(out)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
