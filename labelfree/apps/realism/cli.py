"""Realism, measured: synthetic tumors against real ones, lesion by lesion, and a machine Turing test.

Example (phantom root; any root of the original layout works the same way)::

    python -m tumor_synthesis.realism --real_json data/realism_phantom/datafolds/lits.json \\
        --healthy_json data/realism_phantom/datafolds/healthy.json --data_dir data/realism_phantom \\
        --organ liver --out results/realism/liver_default

Both datalists are read whole (every entry of ``training`` and ``validation``; paths relative
to ``--data_dir``, each case once). Every case goes through the training pipeline's cached
prefix (load, channel first, RAS, resample to ``--space`` mm: exactly what ``TumorGenerated``
sees in training). Cases of the real list that hold tumor voxels give the *real* lesions; cases
of the healthy list without tumor get ``--draws`` synthetic samples each from the project's
``TumorGenerated`` (``prob`` 1, the given type mix, rim, label edge and synthesis model), which
give the *synthetic* lesions. A case of the real list without tumor and a case of the healthy
list with tumor are skipped and counted (so a datalist whose ``validation`` list holds the
tumor cases, like the original's ``healthy.json``, can be passed as it is).

Writes to ``--out``: ``realism.json`` (settings, counts, per-statistic summaries and distances,
the Fréchet distance of the lesions' feature vectors with its bootstrap interval under ``"frechet"``,
the machine Turing test with the key ``"auc"`` and its bootstrap interval, every lesion's record,
runtimes),
``realism.md`` (the tables) and ``realism.png`` (size-matched real and synthetic crops side by
side, and the histograms of the statistics). See :mod:`labelfree.apps.realism.stats` for the
statistics and :mod:`labelfree.apps.realism.classifier` for the test.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from labelfree.data.datalist import DatalistError
from labelfree.io.output_dir import check_output_dir
from labelfree.runtime.cli_errors import exits_on

#: The synthesis model ``TumorGenerated`` uses when given none (passed on only when another is asked for).
DEFAULT_SYNTHESIS = "ellipsoid"


def get_args_parser() -> argparse.ArgumentParser:
    from labelfree.config.flags import add_syn_preset_argument

    parser = argparse.ArgumentParser(
        prog="python -m tumor_synthesis.realism", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--real_json", required=True, help="datalist of real tumor cases (organ + tumor labels)")
    data.add_argument("--healthy_json", required=True, help="datalist of healthy cases (organ labels)")
    data.add_argument("--data_dir", required=True, help="root that both datalists' relative paths are relative to")
    data.add_argument("--organ", default="liver",
                      help="organ profile (liver, pancreas, kidney, lung): labels, window, tumor laws")
    data.add_argument("--out", required=True, help="output folder (realism.json, realism.md, realism.png)")
    data.add_argument("--space", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("SX", "SY", "SZ"),
                      help="voxel size (mm) both kinds are resampled to (the training pipeline's --space_x/y/z)")
    syn = parser.add_argument_group("synthesis (what TumorGenerated paints)")
    syn.add_argument("--type_mix", type=float, nargs="+", default=None, metavar="P",
                     help="probability of each tumor type of the organ profile, in the profile's order (liver: tiny "
                          "small medium large mix); default the profile's")
    syn.add_argument("--syn_rim_mm", type=float, default=None,
                     help="organ tissue (mm) kept between a synthetic tumor and the organ surface; default the "
                          "profile's (0, the original)")
    syn.add_argument("--syn_label_edge", type=float, default=None, metavar="FRACTION",
                     help="label the synthetic tumor out to where its blurred mask falls to this fraction "
                          "(TumorGenerated's label_visible_edge); default off: the original's unblurred label")
    syn.add_argument("--synthesis", default=DEFAULT_SYNTHESIS,
                     help="synthesis model of TumorGenerated (passed on only when not the default); gan / diffusion: "
                          "the ellipsoids repainted by --syn_generator, as main.py --synthesis gan / diffusion does")
    syn.add_argument("--syn_generator", default=None, metavar="PATH",
                     help="with --synthesis gan or diffusion: the generator.pt / diffusion.pt of syn_train.py (its "
                          "organ, window and spacing must be this run's: give --space as it was trained)")
    syn.add_argument("--syn_steps", type=int, default=None,
                     help="with --synthesis diffusion: sampling steps (default: the model file's)")
    add_syn_preset_argument(syn)
    syn.add_argument("--draws", type=int, default=2, help="synthetic samples per healthy case")
    measure = parser.add_argument_group("measurement")
    measure.add_argument("--min_lesion_voxels", type=int, default=8,
                         help="smaller tumor components are fragments, not lesions")
    measure.add_argument("--crop", type=int, default=24, help="crop edge (voxels at --space) of the Turing test")
    measure.add_argument("--folds", type=int, default=5, help="folds by case of the Turing test (fewer if fewer cases)")
    measure.add_argument("--epochs", type=int, default=15, help="training passes of the Turing-test CNN per fold")
    measure.add_argument("--device", default="auto", help="device of the Turing-test CNN: auto, cpu, cuda, cuda:N")
    measure.add_argument("--threads", type=int, default=1,
                         help="torch CPU threads (resampling, CNN); the CNN is small enough that one thread is "
                              "fastest on a shared machine (measured: 17x faster than two on a loaded 2-core box)")
    measure.add_argument("--seed", type=int, default=0, help="seeds the synthesis, the size matching and the CNN")
    return parser


@dataclass
class Population:
    """Lesions of one kind: their records, crops (``(N, S, S, S)`` windowed to [0, 1]) and cases."""

    records: list = field(default_factory=list)
    crops: list = field(default_factory=list)
    label_slices: list = field(default_factory=list)

    def add(self, records, crops, label_slices):
        self.records += records
        self.crops += crops
        self.label_slices += label_slices


def read_cases(json_path: str, data_dir: str) -> list[dict]:
    """Every entry of the datalist's ``training`` and ``validation`` lists (each case once), paths absolute.

    Raises:
        labelfree.data.datalist.DatalistError: the file is missing or malformed, holds neither list,
            an entry has no label, or files are missing (all listed in one message).
    """
    from labelfree.data.datalist import DatalistError, check_datalist_files, load_datalist, read_datalist_json

    content = read_datalist_json(json_path)
    splits = [s for s in ("training", "validation") if s in content]
    if not splits:
        raise DatalistError(f"datalist {json_path} has neither a 'training' nor a 'validation' list")
    cases, seen = [], set()
    for split in splits:
        for entry in load_datalist(json_path, split, data_dir):
            if not entry.get("label"):
                raise DatalistError(f"datalist {json_path}: entry {entry['image']} of '{split}' has no 'label'")
            key = (entry["image"], entry["label"])
            if key not in seen:
                seen.add(key)
                cases.append({"image": entry["image"], "label": entry["label"]})
    check_datalist_files(cases, f"datalist {json_path}")
    return cases


def make_synthesizer(args, profile):
    """The project's ``TumorGenerated`` with the run's settings, seeded with ``args.seed``."""
    from tumor_synthesis import TumorGenerated

    from labelfree.config.synthesis import LEARNED_SYNTHESIS, check_learned_flags

    check_learned_flags(args.synthesis, getattr(args, "syn_generator", None), getattr(args, "syn_steps", None))
    if args.synthesis in LEARNED_SYNTHESIS:
        return LearnedSynthesizer.create(args, profile)
    extra = {} if args.synthesis == DEFAULT_SYNTHESIS else {"synthesis": args.synthesis}
    if getattr(args, "syn_preset", "original") != "original":  # passed on only when asked for
        extra["preset"] = args.syn_preset
    try:
        transform = TumorGenerated(keys=("image", "label"), prob=1.0, tumor_prob=args.type_mix, organ=profile.name,
                                   surface_rim_mm=args.syn_rim_mm, label_visible_edge=args.syn_label_edge, **extra)
    except TypeError as e:
        raise ValueError(f"--synthesis {args.synthesis!r}: this TumorGenerated has no synthesis option ({e})") from e
    return transform.set_random_state(args.seed)


class LearnedSynthesizer:
    """The ellipsoid ``TumorGenerated``, then the trained generator repaints its tumors (in HU).

    The same painting as ``main.py --synthesis gan`` / ``diffusion``: window to [0, 1], the generator
    in sliding windows of its training crop (the diffusion model: windows of its training crop
    around the tumors, seeded by ``--seed`` and the draw), back to HU; only organ voxels change
    (:func:`tumor_synthesis.repaint.repaint_case`, which ``labelfree-synthesize`` paints with too).
    """

    def __init__(self, engine, generator, profile, steps=None, seed=0) -> None:
        self.engine, self.generator, self.profile = engine, generator, profile
        self.steps, self.seed, self.draws = steps, int(seed), 0

    @classmethod
    def create(cls, args, profile) -> "LearnedSynthesizer":
        import torch

        from labelfree.training.generator import crop_mismatches, read_generator
        from tumor_synthesis import TumorGenerated

        from labelfree.io.checkpoint import CheckpointError

        try:
            state = read_generator(args.syn_generator, synthesis=args.synthesis)
        except CheckpointError as e:  # missing, corrupt or unsafe (a pickle naming code): bad input, one line
            # A RuntimeError, which main's error path does not take: importing the type there would import
            # torch at the start of every run, --help included.
            raise ValueError(str(e)) from None
        problems = crop_mismatches(state.config, profile.name, profile.window, args.space)
        if problems:
            raise ValueError(f"--syn_generator {args.syn_generator} was trained for other crops: " + "; ".join(problems))
        from tumor_synthesis.organs import preset_of

        preset = getattr(args, "syn_preset", "original")
        engine = TumorGenerated(keys=("image", "label"), prob=1.0, tumor_prob=args.type_mix, organ=profile.name,
                                surface_rim_mm=args.syn_rim_mm, label_visible_edge=args.syn_label_edge, preset=preset)
        engine.set_random_state(args.seed)
        model = state.build(torch.device("cpu")).eval()
        if preset != "original" and hasattr(model, "paint_options"):  # the gan's painting; diffusion has none
            model.paint_options(preset_of(profile, preset).learned)
        return cls(engine, model, profile, getattr(args, "syn_steps", None), args.seed)

    def __call__(self, data: dict) -> dict:
        import torch

        from tumor_synthesis.diffusion import TumorDiffusion
        from tumor_synthesis.repaint import repaint_case

        healthy_image, healthy_label = data["image"], data["label"]
        out = self.engine({"image": healthy_image.clone(), "label": healthy_label.clone()})
        noise = None
        if isinstance(self.generator, TumorDiffusion):
            self.draws += 1
            noise = torch.Generator().manual_seed(self.seed * 1_000_003 + self.draws)
        image, label = repaint_case(self.generator, healthy_image, healthy_label, out["image"], out["label"],
                                    self.profile.window, [self.profile.tumor_label], self.steps, noise)
        return {"image": image, "label": label}


#: Tissue (mm) kept around the labelled foreground when a case is cropped before resampling.
CROP_MARGIN_MM = 30.0


class CropToLabel:
    """Crop image and label to the label's foreground plus ``CROP_MARGIN_MM`` (at the case's own spacing).

    Resampling only this box instead of the whole scan makes loading several times faster;
    every statistic reaches at most 10 mm beyond a lesion, and ``TumorGenerated`` paints
    inside the organ's box (exophytic kidney tumors may reach farther and are then cut at
    the box's face).
    """

    def __call__(self, data: dict) -> dict:
        from monai.data.utils import affine_to_spacing
        from monai.transforms import CropForegroundd

        spacing = np.asarray(affine_to_spacing(data["label"].affine, r=3), dtype=float)
        margin = [int(math.ceil(CROP_MARGIN_MM / s)) for s in spacing]
        return CropForegroundd(keys=("image", "label"), source_key="label", margin=margin, allow_smaller=True)(data)


def case_loader(profile, space):
    """The training pipeline's cached prefix (what ``TumorGenerated`` is given in training), cropped to the label.

    Load, channel first, RAS, :class:`CropToLabel`, resample to ``space`` mm, label as uint8.
    """
    from monai.transforms import Compose, Spacingd

    from labelfree.data.transforms import get_train_stages

    steps = list(get_train_stages(a_min=profile.window[0], a_max=profile.window[1], space=space, syn=True,
                                  organ=profile.name).cached.transforms)
    at = next(i for i, t in enumerate(steps) if isinstance(t, Spacingd))
    return Compose(steps[:at] + [CropToLabel()] + steps[at:])


def crop_lesion(image: np.ndarray, center, size: int, window) -> np.ndarray:
    """``size``^3 crop of ``image`` centred on voxel ``center``, window mapped to [0, 1] (float32; outside: 0)."""
    lo = np.round(np.asarray(center)).astype(int) - size // 2
    out = np.zeros((size,) * 3, dtype=np.float32)
    src_lo, src_hi = np.maximum(lo, 0), np.minimum(lo + size, image.shape)
    if np.any(src_hi <= src_lo):
        return out
    a_min, a_max = window
    region = image[tuple(slice(int(a), int(b)) for a, b in zip(src_lo, src_hi))]
    out[tuple(slice(int(a), int(b)) for a, b in zip(src_lo - lo, src_hi - lo))] = np.clip(
        (region.astype(np.float32) - a_min) / (a_max - a_min), 0.0, 1.0)
    return out


def measure_case(image, label, profile, spacing, config, crop: int, case: str, kind: str, depth=None):
    """Lesion records (tagged with case and kind), crops and the central axial label slice of each crop.

    ``depth``: the organ's depth map (:func:`realism_stats.organ_depth_map`) when known.
    """
    from labelfree.apps.realism.stats import lesion_statistics

    records, components = lesion_statistics(image, label, profile.organ_label, profile.tumor_label, spacing, config,
                                            depth=depth)
    crops, label_slices = [], []
    for rec in records:
        rec["case"], rec["kind"] = case, kind
        crops.append(crop_lesion(image, rec["centroid_vox"], crop, profile.window))
        own = (components == rec["component"]).astype(np.float32)
        label_slices.append(crop_lesion(own, rec["centroid_vox"], crop, (0.0, 1.0))[:, :, crop // 2] > 0.5)
    return records, crops, label_slices


def _case_name(path: str, root: str) -> str:
    try:
        return str(Path(path).relative_to(Path(root).absolute()))
    except ValueError:
        return str(path)


def run(args: argparse.Namespace) -> dict:
    """Measure, compare, test; write the outputs and return the content of ``realism.json``."""
    from labelfree.apps.realism.stats import StatsConfig, compare_populations, frechet_distance
    from tumor_synthesis.organs import get_organ_profile

    t_start = time.perf_counter()
    profile = get_organ_profile(args.organ)
    device = _checked_settings(args, profile)
    check_output_dir(args.out, "--out")  # writable: told before any scan is read
    import torch

    torch.set_num_threads(args.threads)
    config = StatsConfig(min_voxels=args.min_lesion_voxels)
    synthesizer = make_synthesizer(args, profile)
    space = tuple(float(s) for s in args.space)
    load = case_loader(profile, space)
    real_cases = read_cases(args.real_json, args.data_dir)
    healthy_cases = read_cases(args.healthy_json, args.data_dir)

    skipped = {"real_without_tumor": [], "healthy_with_tumor": [], "healthy_without_organ": [],
               "draws_without_tumor": 0}
    timing = {}
    t0 = time.perf_counter()
    real = measure_real_cases(real_cases, load, profile, space, config, args, skipped)
    timing["real_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    synthetic = measure_synthetic_cases(healthy_cases, load, synthesizer, profile, space, config, args, skipped)
    timing["synthetic_s"] = time.perf_counter() - t0
    if not real.records:
        raise ValueError(f"no real lesion (tumor label {profile.tumor_label}, at least {config.min_voxels} voxels) in "
                         f"the cases of {args.real_json}")
    if not synthetic.records:
        raise ValueError(f"no synthetic lesion: no case of {args.healthy_json} had an organ (label "
                         f"{profile.organ_label}) without tumor that TumorGenerated could paint")

    statistics = compare_populations(real.records, synthetic.records)
    frechet = frechet_distance(real.records, synthetic.records, seed=args.seed)
    t0 = time.perf_counter()
    keep_real, keep_syn, turing = size_matched_turing_test(real, synthetic, args, device)
    timing["classifier_s"] = time.perf_counter() - t0

    settings = {k: v for k, v in vars(args).items()}
    settings["device"] = str(device)
    result = {
        "organ": profile.name,
        "settings": settings,
        "counts": {"real_cases": len(real_cases), "healthy_cases": len(healthy_cases),
                   "painted_cases": len(healthy_cases) - sum(len(skipped[k]) for k in ("healthy_with_tumor",
                                                                                         "healthy_without_organ")),
                   "real_lesions": len(real.records), "synthetic_lesions": len(synthetic.records),
                   "size_matched_pairs": int(len(keep_real))},
        "skipped": skipped,
        "statistics": statistics,
        "frechet": frechet,
        "auc": turing["auc"],
        "auc_std": turing["auc_std"],
        "turing_test": turing,
        "lesions": {"real": real.records, "synthetic": synthetic.records},
    }
    write_outputs(Path(args.out), result, real, synthetic, keep_real, keep_syn, timing, t_start)
    return result


def _checked_settings(args: argparse.Namespace, profile):
    """Refuse settings the measurement cannot use (one clear message each); returns the CNN's device."""
    from tumor_synthesis.organs import MultiOrganProfile

    if isinstance(profile, MultiOrganProfile):
        raise ValueError(f"--organ {args.organ}: measure one organ at a time, with its single-organ labels "
                         "(liver, pancreas, kidney, lung)")
    if args.draws < 1 or args.crop < 8 or args.folds < 2 or args.epochs < 1:
        raise ValueError("--draws and --epochs must be >= 1, --crop >= 8 and --folds >= 2")
    from labelfree.runtime.distributed import resolve_device

    device = resolve_device(args.device)
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    return device


def measure_real_cases(cases, load, profile, space, config, args, skipped) -> Population:
    """The lesions of the real cases; a case without tumor is recorded in ``skipped["real_without_tumor"]``."""
    real = Population()
    for entry in cases:
        data = load(dict(entry))
        image, label = data["image"][0].numpy(), data["label"][0].numpy()
        name = _case_name(entry["image"], args.data_dir)
        found = measure_case(image, label, profile, space, config, args.crop, name, "real")
        print(f"real {name}: {len(found[0])} lesions", flush=True)
        if not found[0]:
            skipped["real_without_tumor"].append(name)
        real.add(*found)
    return real


def measure_synthetic_cases(cases, load, synthesizer, profile, space, config, args, skipped) -> Population:
    """The lesions ``synthesizer`` paints into each healthy case, ``args.draws`` times per case.

    Cases with a tumor or without the organ are recorded in ``skipped`` and left out, as are
    draws that painted nothing (counted in ``skipped["draws_without_tumor"]``).
    """
    synthetic = Population()
    for entry in cases:
        data = load(dict(entry))
        name = _case_name(entry["image"], args.data_dir)
        label = data["label"][0].numpy()
        if (label == profile.tumor_label).any():
            skipped["healthy_with_tumor"].append(name)
            continue
        if not (label == profile.organ_label).any():
            skipped["healthy_without_organ"].append(name)
            continue
        _paint_and_measure(data, name, synthesizer, profile, space, config, args, skipped, synthetic)
        print(f"healthy {name}: {args.draws} draws, {len(synthetic.records)} synthetic lesions so far", flush=True)
    return synthetic


def _paint_and_measure(data, name, synthesizer, profile, space, config, args, skipped, synthetic: Population) -> None:
    """``args.draws`` synthetic samples of one healthy case, their lesions added to ``synthetic``."""
    from labelfree.apps.realism.stats import organ_depth_map

    organ = data["label"][0].numpy() == profile.organ_label
    # Painting keeps the organ's outline (tumor voxels replace organ voxels), so its depth
    # map is computed once per case; an exophytic tumor changes it and gets its own.
    depth = organ_depth_map(organ, space)
    for _ in range(args.draws):
        out = synthesizer({"image": data["image"], "label": data["label"]})
        image, label = out["image"][0].numpy(), out["label"][0].numpy()
        if not (label == profile.tumor_label).any():
            skipped["draws_without_tumor"] += 1
            continue
        same_outline = np.array_equal(organ, (label == profile.organ_label) | (label == profile.tumor_label))
        synthetic.add(*measure_case(image, label, profile, space, config, args.crop, name, "synthetic",
                                    depth if same_outline else None))


def size_matched_turing_test(real: Population, synthetic: Population, args, device):
    """Size-match the lesions, then the machine Turing test on their crops.

    Returns:
        ``(kept real indices, kept synthetic indices, test result)``; without size-matched
        pairs the result holds NaN AUCs and the reason under ``"error"``.
    """
    from labelfree.apps.realism.classifier import RADIUS_BIN_EDGES_MM, machine_turing_test, match_size_bins

    rng = np.random.default_rng(args.seed)
    keep_real, keep_syn = match_size_bins([r["radius_mm"] for r in real.records],
                                          [r["radius_mm"] for r in synthetic.records], rng)
    try:
        if len(keep_real) == 0:  # e.g. only large synthetic tumors against small real ones
            raise ValueError("no real and synthetic lesions of the same size (radius bins "
                             f"{list(RADIUS_BIN_EDGES_MM)} mm): no size-matched pairs to classify")
        crops = np.stack([real.crops[i] for i in keep_real] + [synthetic.crops[i] for i in keep_syn])
        labels = np.r_[np.zeros(len(keep_real), dtype=int), np.ones(len(keep_syn), dtype=int)]
        groups = [f"real:{real.records[i]['case']}" for i in keep_real] + \
                 [f"synthetic:{synthetic.records[i]['case']}" for i in keep_syn]
        turing = machine_turing_test(crops, labels, groups, n_folds=args.folds, epochs=args.epochs, seed=args.seed,
                                     device=device)
    except ValueError as e:
        turing = {"auc": math.nan, "auc_std": math.nan, "error": str(e)}
    return keep_real, keep_syn, turing


def write_outputs(out: Path, result: dict, real, synthetic, keep_real, keep_syn, timing: dict, t_start: float) -> None:
    """``realism.png``, then ``realism.md`` and ``realism.json`` with the runtimes (seconds) added to ``result``."""
    from labelfree.apps.realism.report import markdown_report, save_figure
    from labelfree.io.atomic import write_json_atomic, write_text_atomic

    save_figure(out / "realism.png", result, real, synthetic, keep_real, keep_syn)
    timing["total_s"] = time.perf_counter() - t_start
    result["runtime_s"] = {k: round(v, 1) for k, v in timing.items()}
    write_text_atomic(out / "realism.md", markdown_report(result))
    write_json_atomic(out / "realism.json", _finite_or_none(result))


def _finite_or_none(obj):
    """NaN and infinities become null, so that realism.json is standard JSON."""
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


@exits_on(DatalistError, ValueError)
def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    result = run(args)
    print(markdown_summary_line(result))
    print(f"wrote {Path(args.out) / 'realism.json'}, realism.md, realism.png")
    return 0


def markdown_summary_line(result: dict) -> str:
    c = result["counts"]
    ci = result["turing_test"].get("auc_ci95", [math.nan, math.nan])
    fd = result["frechet"]
    return (f"{result['organ']}: {c['real_lesions']} real and {c['synthetic_lesions']} synthetic lesions, "
            f"{c['size_matched_pairs']} size-matched pairs; machine Turing test AUC {result['auc']:.3f} "
            f"+- {result['auc_std']:.3f} [95 % {ci[0]:.3f}, {ci[1]:.3f}]; Frechet distance {fd['frechet']:.3f} "
            f"[95 % {fd['ci95'][0]:.3f}, {fd['ci95'][1]:.3f}]; {result['runtime_s']['total_s']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
