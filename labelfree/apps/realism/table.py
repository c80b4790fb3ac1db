"""Several realism runs side by side: one markdown table from their ``realism.json`` files.

:func:`main` is ``scripts/realism_table.py``::

    python scripts/realism_table.py ellipsoid=results/realism/liver_2mm_ellipsoid \\
        growth=results/realism/liver_2mm_growth --out results/realism/liver_2mm.md

Each column is one run of ``python -m tumor_synthesis.realism`` (name=folder); the first
column is the real lesions of the first run (the runs should share their real datalist).
Cells: synthetic median [10 %, 90 %] and the Wasserstein-1 distance divided by the real
10-90 % spread (W1n, smaller is closer); last rows: lesion counts and the machine Turing test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labelfree.io.atomic import write_text_atomic
from labelfree.io.output_dir import check_output_file
from labelfree.runtime.cli_errors import exits_on


def _num(x: float) -> str:
    return f"{x:.3g}"


def _cell(stats: dict) -> str:
    return f"{_num(stats['median'])} [{_num(stats['p10'])}, {_num(stats['p90'])}]"


def table(runs: dict[str, dict]) -> str:
    """The markdown table of the runs (``{column name: parsed realism.json}``), one column per run.

    Raises:
        ValueError: the runs measured different real lesions (not comparable).
    """
    names = list(runs)
    first = runs[names[0]]
    real_counts = {r["counts"]["real_lesions"] for r in runs.values()}
    if len(real_counts) != 1:
        raise ValueError(f"the runs measured different real lesions ({sorted(real_counts)}): not comparable")
    lines = ["| statistic | real | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for key, stat in first["statistics"].items():
        cells = [f"{_cell(r['statistics'][key]['synthetic'])} W1n {r['statistics'][key]['w1_norm']:.2f}"
                 for r in runs.values()]
        lines.append(f"| {key} ({stat['unit']}) | {_cell(stat['real'])} | " + " | ".join(cells) + " |")
    lines.append(f"| lesions | {first['counts']['real_lesions']} | "
                 + " | ".join(str(r["counts"]["synthetic_lesions"]) for r in runs.values()) + " |")
    aucs, frechets = [], []
    for r in runs.values():
        folds = ", ".join(f"{a:.2g}" for a in r["turing_test"].get("auc_folds") or [])
        ci = r["turing_test"].get("auc_ci95")
        interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and None not in ci else ""
        aucs.append("-" if r["auc"] is None else f"{r['auc']:.2f} +- {r['auc_std']:.2f}{interval} ({folds})")
        fd = r.get("frechet")
        frechets.append("-" if not fd or fd["frechet"] is None else
                        f"{_num(fd['frechet'])} [{_num(fd['ci95'][0])}, {_num(fd['ci95'][1])}]")
    lines.append("| machine Turing test AUC (mean +- SD over folds) [bootstrap 95 %] | - | " + " | ".join(aucs) + " |")
    if any(f != "-" for f in frechets):
        lines.append("| Fréchet distance of the lesion statistics [bootstrap 95 %] | 0 | "
                     + " | ".join(frechets) + " |")
    return "\n".join(lines) + "\n"


@exits_on(ValueError)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=FOLDER", help="a realism output folder and its column name")
    parser.add_argument("--out", default=None, help="write the table here too (markdown)")
    args = parser.parse_args(argv)
    if args.out:
        check_output_file(args.out, "--out")
    runs = {}
    for spec in args.runs:
        name, sep, folder = spec.partition("=")
        path = Path(folder) / "realism.json"
        if not sep or not path.is_file():
            raise ValueError(f"{spec}: expected NAME=FOLDER with FOLDER/realism.json")
        runs[name] = json.loads(path.read_text())
    text = table(runs)
    print(text, end="")
    if args.out:
        write_text_atomic(args.out, text)
    return 0

