"""The realism tool's markdown table and figure (``realism.md``, ``realism.png``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from labelfree.apps.realism.stats import STAT_NAMES, STAT_UNITS

#: Size-matched crop pairs shown in the figure.
FIGURE_PAIRS = 8


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:.0f}"


def markdown_report(result: dict) -> str:
    """The statistics table, the Turing test and the settings of one run, as markdown."""
    s = result["settings"]
    c = result["counts"]
    lines = [
        f"# Realism: {result['organ']}",
        "",
        f"Real: `{s['real_json']}` ({c['real_cases']} cases, {c['real_lesions']} lesions). Synthetic: "
        f"`{s['healthy_json']}` ({_painted(result)} of its {c['healthy_cases']} cases "
        f"painted, {s['draws']} draws each, {c['synthetic_lesions']} lesions). Type mix {s['type_mix'] or 'profile default'}, rim {s['syn_rim_mm'] if s['syn_rim_mm'] is not None else 'profile default'} mm, "
        f"label edge {s['syn_label_edge'] if s['syn_label_edge'] is not None else 'profile default'}, synthesis "
        f"`{s['synthesis']}`, preset `{s.get('syn_preset', 'original')}`; resampled to {' x '.join(f'{v:g}' for v in s['space'])} mm.",
        "",
        "| statistic | unit | real median [p10, p90] | synthetic median [p10, p90] | W1 / real spread | KS |",
        "|---|---|---|---|---|---|",
    ]
    for name in STAT_NAMES:
        st = result["statistics"][name]
        r, y = st["real"], st["synthetic"]
        lines.append(
            f"| {name} | {STAT_UNITS[name]} | {_fmt(r['median'])} [{_fmt(r['p10'])}, {_fmt(r['p90'])}] | "
            f"{_fmt(y['median'])} [{_fmt(y['p10'])}, {_fmt(y['p90'])}] | {_fmt(st['w1_norm'], 2)} | {_fmt(st['ks'], 2)} |"
        )
    fd = result.get("frechet")
    if fd is not None:
        lines += ["", f"Fréchet distance of the lesions' feature vectors ({', '.join(fd['features']) or '-'}; "
                  "standardised on the real lesions and clipped to +- 10 SD, volume as log10): "
                  f"**{_fmt(fd['frechet'])}** [95 % "
                  f"{_fmt(fd['ci95'][0])}, {_fmt(fd['ci95'][1])}] ({fd['n_real']} real, {fd['n_synthetic']} synthetic "
                  f"lesions, {fd['n_boot']} bootstrap draws). 0: the same means and covariance."]
    t = result["turing_test"]
    unit = t.get("fold_unit", {})
    by_lesion = [k for k, v in unit.items() if v == "lesion"]
    folding = ("folds by case" if not by_lesion else
               f"folds by case, except the {' and '.join(by_lesion)} lesions: they come from a single case, so they "
               "are folded by lesion and lesions of that case lie in both train and test folds")
    lines += ["", "Machine Turing test (3D CNN, real vs synthetic crops of "
              f"{s['crop']}^3 voxels, size-matched, {folding}): "]
    if "error" in t:
        lines.append(f"not run: {t['error']}")
    else:
        folds = ", ".join(_fmt(a, 2) for a in t["auc_folds"])
        ci = t.get("auc_ci95", [math.nan, math.nan])
        pooled = t.get("auc_pooled_ci95", [math.nan, math.nan])
        lines.append(f"**AUC {_fmt(t['auc'])} +- {_fmt(t['auc_std'], 2)}** [bootstrap 95 % {_fmt(ci[0], 2)}, "
                     f"{_fmt(ci[1], 2)}] (SD over {t['n_folds']} folds: {folds}; pooled held-out AUC "
                     f"{_fmt(t['auc_pooled'])} [{_fmt(pooled[0], 2)}, {_fmt(pooled[1], 2)}]; "
                     f"{t['n_real']} real and {t['n_synthetic']} synthetic crops, {t['epochs']} epochs). "
                     "0.5: indistinguishable.")
    skipped = result["skipped"]
    notes = [f"{len(v)} {k.replace('_', ' ')}" for k, v in skipped.items() if isinstance(v, list) and v]
    if skipped.get("draws_without_tumor"):
        notes.append(f"{skipped['draws_without_tumor']} draws without tumor")
    if notes:
        lines += ["", "Skipped: " + ", ".join(notes) + "."]
    if "runtime_s" in result:
        rt = result["runtime_s"]
        lines += ["", "Runtime: " + ", ".join(f"{k[:-2]} {v:g} s" for k, v in rt.items()) + "."]
    return "\n".join(lines) + "\n"


def _painted(result: dict) -> int:
    """Cases of the healthy list that were painted (neither holding tumor nor lacking the organ)."""
    skipped = result["skipped"]
    return result["counts"]["healthy_cases"] - len(skipped["healthy_with_tumor"]) - len(skipped["healthy_without_organ"])


def _pairs(real, synthetic, keep_real, keep_syn, n: int) -> list[tuple[int, int]]:
    """Up to ``n`` (real, synthetic) index pairs of similar radius, spread over the size range."""
    if len(keep_real) == 0:
        return []
    r_sorted = sorted(keep_real, key=lambda i: real.records[i]["radius_mm"])
    s_sorted = sorted(keep_syn, key=lambda i: synthetic.records[i]["radius_mm"])
    picks = np.unique(np.linspace(0, len(r_sorted) - 1, min(n, len(r_sorted))).round().astype(int))
    return [(r_sorted[k], s_sorted[k]) for k in picks]


def save_figure(path: Path, result: dict, real, synthetic, keep_real, keep_syn) -> Path:
    """Size-matched real / synthetic crop pairs (central axial slice, label contour) and the statistics' histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labelfree.io.atomic import atomic_path

    pairs = _pairs(real, synthetic, keep_real, keep_syn, FIGURE_PAIRS)
    n_cols = max(len(pairs), 1)
    n_hist_cols = 3
    n_hist_rows = math.ceil(len(STAT_NAMES) / n_hist_cols)
    fig = plt.figure(figsize=(max(1.6 * n_cols, 9.0), 3.6 + 2.6 * n_hist_rows))
    grid = fig.add_gridspec(2, 1, height_ratios=[3.2, 2.6 * n_hist_rows], hspace=0.25)
    top = grid[0].subgridspec(2, n_cols, wspace=0.05, hspace=0.25)
    for col, (ir, js) in enumerate(pairs):
        for row, (pop, idx, kind) in enumerate(((real, ir, "real"), (synthetic, js, "synthetic"))):
            ax = fig.add_subplot(top[row, col])
            crop = pop.crops[idx]
            ax.imshow(np.rot90(crop[:, :, crop.shape[2] // 2]), cmap="gray", vmin=0, vmax=1)
            ax.contour(np.rot90(pop.label_slices[idx].astype(float)), levels=[0.5], colors="tab:red", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{kind}\nr {pop.records[idx]['radius_mm']:.1f} mm", fontsize=7)
    bottom = grid[1].subgridspec(n_hist_rows, n_hist_cols, wspace=0.3, hspace=0.6)
    for k, name in enumerate(STAT_NAMES):
        ax = fig.add_subplot(bottom[k // n_hist_cols, k % n_hist_cols])
        r = np.array([x[name] for x in real.records], dtype=float)
        s = np.array([x[name] for x in synthetic.records], dtype=float)
        r, s = r[np.isfinite(r)], s[np.isfinite(s)]
        both = np.concatenate([r, s])
        if both.size:
            lo, hi = np.percentile(both, [1, 99])
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 25)
            if name == "volume_ml" and lo > 0:  # volumes span decades
                bins = np.geomspace(lo, hi if hi > lo else lo * 2, 25)
                ax.set_xscale("log")
            ax.hist(np.clip(s, lo, hi), bins=bins, density=True, alpha=0.5, color="tab:orange", label="synthetic")
            ax.hist(np.clip(r, lo, hi), bins=bins, density=True, alpha=0.5, color="tab:blue", label="real")
        st = result["statistics"][name]
        ax.set_title(f"{name} ({STAT_UNITS[name]})\nW1/spread {_fmt(st['w1_norm'], 2)}", fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7)
    auc = result["turing_test"].get("auc", math.nan)
    fig.suptitle(f"Realism, {result['organ']}: {len(real.records)} real vs {len(synthetic.records)} synthetic "
                 f"lesions; machine Turing test AUC {_fmt(auc)} +- {_fmt(result['turing_test'].get('auc_std'), 2)}",
                 fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
