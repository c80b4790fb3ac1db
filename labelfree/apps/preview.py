"""Preview synthetic tumors on one healthy case, as PNG and, with ``--html``, in the report's slice browser.

    python -m tumor_synthesis.preview --image img.nii.gz --label liver.nii.gz \\
        --out preview.png --type mix --seed 0 [--spacing 1 1 1] [--montage montage.png] [--html preview_html]
    python -m tumor_synthesis.preview --organ lung --image chest.nii.gz --label lung.nii.gz \\
        --out nodules.png [--type few_small]

The case is loaded as in training (``LoadImaged``, ``EnsureChannelFirstd``,
``Orientationd("RAS")``, and ``Spacingd`` when ``--spacing`` is given), then
``TumorGenerated`` paints tumors of the chosen type with probability 1. The figure shows
axial and coronal slices through the largest synthetic tumor, before and after, with the
tumor outlined in red and the organ in green (radiological view: patient's right on the
left, anterior / superior up; intensities in the organ's training window), and a zoom
without outlines to judge edges and texture. ``--montage``
writes a second figure with one axial slice per tumor type, side by side. ``--html DIR``
writes ``DIR/index.html``: the slice browser of the evaluation report
(:mod:`labelfree.evaluation.html_report`) with the healthy scan beside the one with synthetic
tumors, same slice, wheel / arrow keys through the volume in three views, the synthetic tumors
listed by size (a click shows each one); it opens from disk, with no server.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from tumor_synthesis.organs import OrganProfile, available_organs, get_organ_profile
from tumor_synthesis.transform import TumorGenerated
from labelfree.io.atomic import atomic_path
from labelfree.io.output_dir import check_output_dir, check_output_file
from labelfree.runtime.cli_errors import exits_on


#: Half width (mm) of the zoomed view around the largest tumor.
ZOOM_HALF_WIDTH_MM = 45.0


class PreviewError(RuntimeError):
    """The case cannot be previewed (bad files, no organ, existing tumor)."""


def load_case(image_path: str, label_path: str, spacing=None) -> dict:
    """Load an image/label pair as training does, as channel-first MetaTensors."""
    from monai.transforms import Compose, EnsureChannelFirstd, Orientationd, Spacingd

    from labelfree.io.formats import path_exists

    from labelfree.io.image_reader import load_transform

    for what, path in (("image", image_path), ("label", label_path)):
        if not path_exists(path):
            raise PreviewError(f"{what} file not found: {path}")
    keys = ("image", "label")
    # Explicit RAS axis labels (MONAI's historical default) keep MONAI 1.6 from warning.
    ras_labels = (("L", "R"), ("P", "A"), ("I", "S"))
    steps = [
        load_transform(keys),
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS", labels=ras_labels),
    ]
    if spacing is not None:
        steps.append(Spacingd(keys=keys, pixdim=tuple(spacing), mode=("bilinear", "nearest")))
    try:
        data = Compose(steps)({"image": str(image_path), "label": str(label_path)})
    except Exception as exc:  # MONAI wraps reader errors; name the files in ours.
        raise PreviewError(f"cannot load {image_path} / {label_path}: {exc}") from exc
    if tuple(data["image"].shape) != tuple(data["label"].shape):
        raise PreviewError(
            f"{image_path} and {label_path} have different shapes: "
            f"{tuple(data['image'].shape)} vs {tuple(data['label'].shape)}"
        )
    return data


def paint(data: dict, tumor_type: str, seed: int, organ: str, rim_mm: float | None = None) -> dict:
    """Apply ``TumorGenerated`` with probability 1 and only ``tumor_type`` (``rim_mm``: its ``surface_rim_mm``)."""
    profile = get_organ_profile(organ)
    if tumor_type not in profile.tumor_types:
        raise PreviewError(f"unknown tumor type {tumor_type!r} for {organ}; choose one of {list(profile.tumor_types)}")
    max_label = float(np.max(_as_numpy(data["label"])))
    if max_label > profile.organ_label:
        raise PreviewError(
            f"the label already holds values above the organ label {profile.organ_label} (max {max_label:g}): "
            "tumors are only painted into healthy cases"
        )
    one_hot = [1.0 if t == tumor_type else 0.0 for t in profile.tumor_types]
    transform = TumorGenerated(prob=1.0, tumor_prob=one_hot, organ=organ, surface_rim_mm=rim_mm)
    transform.set_random_state(seed)
    return transform(dict(data))


def _as_numpy(x) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)[0]


def largest_tumor_center(label: np.ndarray, tumor_label: int) -> tuple[int, int, int] | None:
    """Voxel at the centre of mass of the largest connected tumor component."""
    components, n = ndimage.label(label == tumor_label)
    if n == 0:
        return None
    sizes = np.bincount(components.ravel())[1:]
    biggest = int(np.argmax(sizes)) + 1
    center = ndimage.center_of_mass(components == biggest)
    return tuple(int(round(c)) for c in center)


def _axial(volume: np.ndarray, z: int) -> np.ndarray:
    # (x, y) plane shown with y (anterior) up and x (right) to the viewer's left.
    return np.flip(volume[:, :, z].T, axis=1)


def _coronal(volume: np.ndarray, y: int) -> np.ndarray:
    # (x, z) plane shown with z (superior) up and x (right) to the viewer's left.
    return np.flip(volume[:, y, :].T, axis=1)


def _show(ax, image, organ, tumor, window, title, aspect):
    ax.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], origin="lower", aspect=aspect)
    if organ is not None and organ.any():
        ax.contour(organ.astype(float), levels=[0.5], colors="lime", linewidths=0.6, origin="lower")
    if tumor is not None and tumor.any():
        ax.contour(tumor.astype(float), levels=[0.5], colors="red", linewidths=0.8, origin="lower")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def _tumor_facts(before_img, after_img, after_lab, tumor_label) -> dict:
    """Components, voxels, mean HU change inside the tumors and the tumors' mean HU."""
    tumor = after_lab == tumor_label
    return {
        "tumors": int(ndimage.label(tumor)[1]),
        "voxels": int(tumor.sum()),
        "hu_change": float(np.mean(after_img[tumor].astype(np.float64) - before_img[tumor])) if tumor.any() else 0.0,
        "tumor_hu": float(np.mean(after_img[tumor])) if tumor.any() else float("nan"),
    }


def _summary(before_img, after_img, after_lab, tumor_label) -> str:
    facts = _tumor_facts(before_img, after_img, after_lab, tumor_label)
    return (f"{facts['tumors']} tumor components, {facts['voxels']} voxels, mean HU change {facts['hu_change']:+.1f} "
            f"(tumor mean {facts['tumor_hu']:.0f} HU)")


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def render_preview(before: dict, after: dict, out: Path, tumor_type: str, seed: int, organ: str) -> str:
    """Before/after axial and coronal slices through the largest tumor; returns a summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profile = get_organ_profile(organ)
    img0, lab0 = _as_numpy(before["image"]), _as_numpy(before["label"])
    img1, lab1 = _as_numpy(after["image"]), _as_numpy(after["label"])
    center = largest_tumor_center(lab1, profile.tumor_label)
    if center is None:
        raise PreviewError("no synthetic tumor was painted (is the organ labelled 1?)")
    spacing = _spacing(after["image"])
    organ0 = lab0 == profile.organ_label
    tumor1 = lab1 == profile.tumor_label
    organ1 = lab1 >= profile.organ_label
    x, y, z = center
    fig, axes = plt.subplots(2, 3, figsize=(13, 8), layout="constrained")
    views = (
        ("axial", f"z={z}", _axial, z, (x, y), (spacing[0], spacing[1])),
        ("coronal", f"y={y}", _coronal, y, (x, z), (spacing[0], spacing[2])),
    )
    window = profile.window
    for row, (name, where, cut, index, (u, v), (su, sv)) in zip(axes, views):
        aspect = sv / su
        before_title, after_title = f"before, {name} {where}", f"after ({tumor_type}), {name} {where}"
        _show(row[0], cut(img0, index), cut(organ0, index), None, window, before_title, aspect)
        _show(row[1], cut(img1, index), cut(organ1, index), cut(tumor1, index), window, after_title, aspect)
        # Zoom without outlines, so that the edge blur and the texture can be judged. The
        # displayed columns run against x (radiological view), the rows along the other axis.
        half_u, half_v = int(round(ZOOM_HALF_WIDTH_MM / su)), int(round(ZOOM_HALF_WIDTH_MM / sv))
        n_u = img1.shape[0]
        cols = slice(max(0, n_u - 1 - u - half_u), n_u - u + half_u)
        rows = slice(max(0, v - half_v), v + half_v + 1)
        zoom_title = f"after, {name} zoom ({2 * ZOOM_HALF_WIDTH_MM:g} mm)"
        _show(row[2], cut(img1, index)[rows, cols], None, None, window, zoom_title, aspect)
    summary = _summary(img0, img1, lab1, profile.tumor_label)
    fig.suptitle(
        f"{organ} synthetic tumors, type {tumor_type}, seed {seed}: {summary}\n"
        f"window {profile.window[0]:g}..{profile.window[1]:g} HU, spacing {tuple(round(s, 2) for s in spacing)} mm",
        fontsize=10,
    )
    _save(fig, out)
    plt.close(fig)
    return summary


def render_montage(before: dict, out: Path, seed: int, organ: str, rim_mm: float | None = None) -> None:
    """One axial slice through the largest tumor of each tumor type, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profile = get_organ_profile(organ)
    types = profile.tumor_types
    spacing = _spacing(before["image"])
    fig, axes = plt.subplots(1, len(types), figsize=(3.4 * len(types), 3.6), layout="constrained")
    for ax, tumor_type in zip(np.atleast_1d(axes), types):
        after = paint(before, tumor_type, seed, organ, rim_mm)
        img1, lab1 = _as_numpy(after["image"]), _as_numpy(after["label"])
        center = largest_tumor_center(lab1, profile.tumor_label)
        if center is None:
            ax.set_title(f"{tumor_type}: none painted", fontsize=9)
            ax.set_axis_off()
            continue
        z = center[2]
        tumor = lab1 == profile.tumor_label
        _show(
            ax, _axial(img1, z), _axial(lab1 >= profile.organ_label, z), _axial(tumor, z), profile.window,
            f"{tumor_type} (z={z}): {ndimage.label(tumor)[1]} tumors", spacing[1] / spacing[0],
        )
    fig.suptitle(f"{organ} synthetic tumor types, seed {seed}", fontsize=10)
    _save(fig, out)
    plt.close(fig)


def write_html(before: dict, after: dict, folder: Path, tumor_type: str, seed: int, organ: str, source: str) -> Path:
    """The slice browser of the healthy case beside its synthetic tumors: ``folder/index.html``."""
    from labelfree.evaluation import html_report

    profile = get_organ_profile(organ)
    img0, img1, lab1 = _as_numpy(before["image"]), _as_numpy(after["image"]), _as_numpy(after["label"])
    name = f"{Path(source).name.split('.')[0]}: {tumor_type}, seed {seed}"
    case = html_report.synthesis_case(name, img0, img1, np.rint(lab1), _spacing(after["image"]), profile.organ_label,
                                      profile.tumor_label, profile.window)
    facts = _tumor_facts(img0, img1, lab1, profile.tumor_label)
    row = {"case": name, "tumor type": tumor_type, "seed": seed, "tumors": facts["tumors"],
           "tumor voxels": facts["voxels"], "mean HU change": f"{facts['hu_change']:+.1f}",
           "tumor mean HU": f"{facts['tumor_hu']:.0f}"}
    subtitle = (f"{source}; {organ} profile, window {profile.window[0]:g} to {profile.window[1]:g} HU; outlines: organ "
                f"{html_report.SYNTHESIS_COLOURS['organ']}, synthetic tumors {html_report.SYNTHESIS_COLOURS['tumor']}")
    return html_report.write_report(folder, f"Synthetic {organ} tumors", subtitle, "",
                                    html_report.cases_table_html(list(row), [row]), [case])


def _spacing(image) -> tuple[float, float, float]:
    from monai.data.utils import affine_to_spacing

    affine = getattr(image, "affine", None)
    if affine is None:
        return (1.0, 1.0, 1.0)
    return tuple(float(s) for s in np.asarray(affine_to_spacing(affine, r=3)))


def single_organ_names() -> list[str]:
    """Organ profiles of the single-organ label convention (0 background, 1 organ)."""
    return [name for name in available_organs() if isinstance(get_organ_profile(name), OrganProfile)]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Preview synthetic tumors on a healthy CT as PNG.")
    parser.add_argument("--image", required=True, help="healthy CT in HU: NIfTI, NRRD, MetaImage (.mhd/.mha) or a DICOM folder")
    parser.add_argument("--label", required=True, help="organ label (organ = 1), any of the image formats, on the image's voxel grid")
    parser.add_argument("--out", required=True, help="output PNG: before/after axial + coronal")
    parser.add_argument(
        "--type", default=None, dest="tumor_type",
        help="tumor type of the organ's profile; liver: tiny, small, medium, large or mix (default mix); "
             "lung: few_tiny or few_small; pancreas, kidney: few_tiny, few_small, one_medium or one_large "
             "(default: the profile's last type)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the transform")
    parser.add_argument("--organ", default="liver", type=str.lower, choices=single_organ_names(),
                        help="organ profile (the label holds that organ as 1)")
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        default=None,
        metavar=("SX", "SY", "SZ"),
        help="resample to this voxel size (mm) first, as Spacingd does in training",
    )
    parser.add_argument("--montage", default=None, help="also write a PNG with one slice per tumor type")
    parser.add_argument("--html", default=None, metavar="DIR",
                        help="also write DIR/index.html: the healthy scan beside the one with synthetic tumors in a "
                             "slice browser (three views, window presets, tumors listed by size); opens from disk")
    parser.add_argument("--syn_rim_mm", type=float, default=None,
                        help="organ tissue (mm) kept between a tumor and the organ surface, as main.py's "
                             "--syn_rim_mm (default: the profile's, 0 as the original)")
    return parser


@exits_on(PreviewError, ValueError)
def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.tumor_type is None:
        types = get_organ_profile(args.organ).tumor_types
        args.tumor_type = "mix" if "mix" in types else types[-1]
    check_output_file(args.out, "--out")  # writable: told before the scan is read
    if args.montage:
        check_output_file(args.montage, "--montage")
    if args.html:
        check_output_dir(args.html, "--html")
    before = load_case(args.image, args.label, args.spacing)
    after = paint(before, args.tumor_type, args.seed, args.organ, args.syn_rim_mm)
    summary = render_preview(before, after, Path(args.out), args.tumor_type, args.seed, args.organ)
    print(f"wrote {args.out}: {summary}")
    if args.montage:
        render_montage(before, Path(args.montage), args.seed, args.organ, args.syn_rim_mm)
        print(f"wrote {args.montage}")
    if args.html:
        print(f"wrote {write_html(before, after, Path(args.html), args.tumor_type, args.seed, args.organ, args.image)} "
              "(open in a browser)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
