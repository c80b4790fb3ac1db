"""Benchmark of the tumor synthesis engine, and calibration of its texture model.

Timing (default)::

    python benchmarks/bench_synthesis.py [--samples 20] [--seed 0]

On one core (threads pinned to 1), on a phantom abdomen at 1 mm (liver of about 1.4 L;
a smooth 1.4 L blob when the phantom package is missing), it prints:

* import and construction time and memory of ``TumorGenerated`` (the original spends
  80 s and 3 GiB building its texture bank);
* per tumor type, the median time per sample of ``TumorGenerated`` on MetaTensors as they
  come out of ``Spacingd`` (copying image and label, the default), of the engine working
  in place (``inplace=True``, what the original does), and of a re-implementation of the
  original's per-sample algorithm on the same data (whole-crop blur in float64, tumor boxes
  of four radii per side deformed with elasticdeform, texture cut from a pre-built bank);
* the same in place with the case's facts computed once (``TumorCaseDatad``, as the
  training pipeline caches them: :mod:`tumor_synthesis.case_data`), so a draw pays only for
  its tumors;
* each time divided by a baseline measured in the same run (one float32
  ``scipy.ndimage.gaussian_filter``, sigma 2, over the liver bounding box), so figures
  compare across machines; the speed-up over the original-style re-implementation timed in
  the same run (the load-independent figure) and over the original's published per-sample
  times (``ORIGINAL_SECONDS``, measured by the project on this machine type, one core);
* peak memory;
* the field of view: the same liver embedded in a 256 x 256 and a 512 x 512 axial field of
  view (air around it), mix samples in place with and without the cached case facts: the
  cost of a draw must follow its tumors, not the scan;
* the growth model against the ellipsoid model, default mixes, in place with cached case
  facts, same run (``--growth-samples``; 0 skips it).

The machine's load average is printed with the figures (``os.getloadavg``): on a shared
machine read the same-run ratios.

Growth model::

    python benchmarks/bench_synthesis.py --synthesis growth [--samples 20] [--device cpu|cuda]
        [--growth-grid-mm 2] [--organ liver]

times ``TumorGenerated(synthesis="growth")`` per size class (tiny, small, medium, large)
and on the default size mix, and, in the same run on the same phantom, the ellipsoid
model on its default type mix, both in place as the training pipeline runs them (the
sample is restored between draws, untimed); it prints the ratio of the medians, the
equivalent radius per seed (mm) of each growth size class and how often a necrotic core
grew. ``--device cuda`` runs the growth model on CUDA tensors (the ellipsoid model paints
a host copy there, so it is timed on the CPU only).

Texture calibration::

    python benchmarks/bench_synthesis.py --calibrate-texture [--realizations 20]

measures the mean standardized extremes of ``G_a * U`` over the original's 420x300x320
texture volume (``tumor_synthesis.texture.EXTREMES_Z``) and compares the statistics of
the texture drawn per box with the original algorithm's, in the interior of its volume.
"""

from __future__ import annotations

import os

# One core, whatever the machine: set before numpy / scipy / torch load their thread pools.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import math
import random
import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from labelfree.runtime.timing import measured_checkout, median_seconds

#: Median seconds per sample of the original code, measured by the project on this machine
#: type (1.5 L phantom liver, one core).
ORIGINAL_SECONDS = {"tiny": 0.166, "small": 0.151, "medium": 0.199, "large": 0.322, "mix": 0.459}
TYPES = ("tiny", "small", "medium", "large", "mix")


def rss_mb() -> float:
    """Current resident set size in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_case(seed: int):
    """A healthy abdomen at 1 mm: (image int16 HU, label uint8 0/1, affine, source)."""
    try:
        from labelfree.phantom import generate_case
    except ImportError:
        generate_case = None
    if generate_case is not None:
        case = generate_case("abdomen", seed=seed, spacing=(1.0, 1.0, 1.0))
        return case.image, case.label, case.affine, "phantom abdomen"
    shape = (340, 260, 180)
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    liver = ((x - 150) / 85.0) ** 2 + ((y - 130) / 70.0) ** 2 + ((z - 90) / 56.0) ** 2 < 1
    rng = np.random.default_rng(seed)
    image = np.where(liver, 60, -80) + rng.normal(0, 20, shape)
    return image.astype(np.int16), liver.astype(np.uint8), np.eye(4), "smooth blob (no phantom package)"


# --- the original's per-sample algorithm, re-implemented for a same-run comparison -------------


def _original_ellipsoid(radii):
    from tumor_synthesis.shape import ellipsoid

    mask, origin, full = ellipsoid(radii, (1.0, 1.0, 1.0))
    box = np.zeros(full, dtype=np.int64)
    box[tuple(slice(o, o + n) for o, n in zip(origin, mask.shape))] = mask
    return box


def original_style_sample(image, label, texture_bank, tumor_type, rs: np.random.RandomState, pyrand: random.Random):
    """One sample of the original algorithm at 1 mm, in place, with its costs.

    Whole boxes of four radii per side deformed by elasticdeform, pasted into the crop
    enlarged by 160 voxels, a float64 blur over the whole crop, and crop-wide arithmetic.
    """
    import elasticdeform

    from tumor_synthesis.placement import erode_plane
    from tumor_synthesis.sizes import SIZE_CLASSES, TUMOR_TYPES

    xs = np.flatnonzero(np.any(label, axis=(1, 2)))
    ys = np.flatnonzero(np.any(label, axis=(0, 2)))
    zs = np.flatnonzero(np.any(label, axis=(0, 1)))
    lo = [xs[0] + 1, ys[0] + 1, zs[0] + 1]
    hi = [xs[-1] - 1, ys[-1] - 1, zs[-1] - 1]
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    vol, mask = image[crop].astype(np.float64), label[crop].astype(np.float64)
    starts = [pyrand.randint(0, t - c - 1) for t, c in zip(texture_bank.shape, vol.shape)]
    texture = texture_bank[tuple(slice(s, s + c) for s, c in zip(starts, vol.shape))]

    enlarged = np.zeros(tuple(n + 160 for n in mask.shape), dtype=np.int8)
    for size_name, n_lo, n_hi in TUMOR_TYPES[tumor_type]:
        size = SIZE_CLASSES[size_name]
        r_lo, r_hi = size.radius_range_mm
        for _ in range(pyrand.randint(n_lo, n_hi)):
            radii = [pyrand.randint(r_lo, r_hi) for _ in range(3)]
            s_lo, s_hi = size.sigma_range_mm
            sigma = pyrand.uniform(s_lo, s_hi) if size.sigma_kind == "uniform" else pyrand.randint(int(s_lo), int(s_hi))
            geo = _original_ellipsoid(radii)
            for axes in ((0, 1), (1, 2), (0, 2)):
                geo = elasticdeform.deform_grid(geo, rs.randn(2, 3, 3) * sigma, order=0, axis=axes)
            z_first, z_last = np.flatnonzero(np.any(mask, axis=(0, 1)))[[0, -1]]
            z = round(pyrand.uniform(0.3, 0.7) * (z_last - z_first)) + z_first
            plane = erode_plane(mask[:, :, z] > 0, (2, 2))  # as fast as the original's cv2.erode
            candidates = np.argwhere(plane)
            x, y = candidates[rs.randint(0, len(candidates))]
            centre = (x + 80, y + 80, z + 80)
            enlarged[tuple(slice(c - n // 2, c + n // 2) for c, n in zip(centre, geo.shape))] += geo.astype(np.int8)
    geo_mask = (enlarged[80:-80, 80:-80, 80:-80] * mask) >= 1
    blurred = ndimage.gaussian_filter(geo_mask * 1.0, rs.uniform(1, 2))
    difference = rs.uniform(65, 145)
    tumored = (vol - texture * blurred * difference) * mask
    image[crop] = (vol * (1 - mask) + tumored).astype(image.dtype)
    label[crop] = (mask + geo_mask).astype(label.dtype)


# --- timing -------------------------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_since_reset_mb() -> float:
    """Peak resident set size (MB) since :func:`reset_peak_rss`."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


@dataclass
class Measurement:
    """Per-sample figures of one method on one tumor type."""

    seconds: list = field(default_factory=list)
    tumor_voxels: list = field(default_factory=list)
    hu_drop: list = field(default_factory=list)
    extra_peak_mb: float = float("nan")

    @property
    def median(self) -> float:
        return float(np.median(self.seconds))


def measure(run, reset, samples: int, image: np.ndarray) -> Measurement:
    """Time ``run()`` (which returns the painted image and label) after each ``reset()``.

    Also records the painted tumor size and its mean HU drop, and the peak memory above
    the resident size before the loop.
    """
    out = Measurement()
    base = rss_mb()
    tracked = reset_peak_rss()
    for _ in range(samples):
        reset()
        t0 = time.perf_counter()
        painted_image, painted_label = run()
        out.seconds.append(time.perf_counter() - t0)
        tumor = np.asarray(painted_label) == 2
        out.tumor_voxels.append(int(tumor.sum()))
        if tumor.any():
            out.hu_drop.append(float(np.mean(image[tumor] - np.asarray(painted_image)[tumor])))
        del painted_image, painted_label, tumor  # one sample's output alive at a time
    if tracked:
        out.extra_peak_mb = peak_since_reset_mb() - base
    return out


def run_timing(args) -> None:
    torch.set_num_threads(1)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, torch {torch.__version__}, one thread; "
          f"code from {measured_checkout()}")
    import monai  # noqa: F401  (imported first: its cost is not ours)
    from monai.data import MetaTensor

    rss0 = rss_mb()
    t0 = time.perf_counter()
    import tumor_synthesis

    t_import = time.perf_counter() - t0
    rss1 = rss_mb()
    t0 = time.perf_counter()
    transform = tumor_synthesis.TumorGenerated(keys=("image", "label"), prob=0.9)
    t_construct = time.perf_counter() - t0
    rss2 = rss_mb()
    print(
        f"import tumor_synthesis (after MONAI): {t_import:.2f} s, +{rss1 - rss0:.1f} MB RSS; "
        f"TumorGenerated(): {1e3 * t_construct:.2f} ms, +{rss2 - rss1:.1f} MB RSS "
        f"(the original: about 80 s and 3 GiB)"
    )
    del transform

    image, label, affine, source = make_case(args.seed)
    liver = label == 1
    print(
        f"case: {source}, volume {image.shape} at 1 mm, liver {liver.sum() / 1e6:.2f} L, "
        f"liver HU mean {image[liver].mean():.0f}"
    )
    bbox = []
    for k in range(3):
        nz = np.flatnonzero(liver.any(axis=tuple(a for a in range(3) if a != k)))
        bbox.append(slice(int(nz[0]), int(nz[-1]) + 1))
    liver_box = image[tuple(bbox)].astype(np.float32)
    baseline = median_seconds(lambda: ndimage.gaussian_filter(liver_box, 2.0), 7, warmup=0)
    print(f"baseline: gaussian_filter(sigma 2) over the liver box {liver_box.shape} float32: {1e3 * baseline:.1f} ms")

    image_f, label_f = image.astype(np.float32), label.astype(np.float32)
    meta_image = MetaTensor(torch.from_numpy(image_f)[None], affine=torch.as_tensor(affine))
    meta_label = MetaTensor(torch.from_numpy(label_f)[None], affine=torch.as_tensor(affine))
    profile = tumor_synthesis.with_surface_rim(tumor_synthesis.get_organ_profile("liver"), args.syn_rim_mm)
    print(f"our tumors keep {args.syn_rim_mm:g} mm of liver under the surface (the original-style code: 0)")
    from tumor_synthesis.texture import TextureParams, reference_texture

    # The original cuts each sample's texture from a pre-built bank: built here, untimed.
    bank_shape = tuple(n + 8 for n in liver_box.shape)
    bank_params = TextureParams(9.0, 4.0, 0.2, 0.05, 0.525)
    bank = reference_texture(bank_shape, bank_params, np.random.default_rng(args.seed)).texture.astype(np.float64)
    work_image, work_label = image_f.copy(), label_f.copy()
    case = case_data_of(work_image, work_label, profile)

    def reset():
        np.copyto(work_image, image_f)
        np.copyto(work_label, label_f)

    results = {}
    for k, tumor_type in enumerate(TYPES):
        one_hot = [1.0 if t == tumor_type else 0.0 for t in TYPES]
        transform = tumor_synthesis.TumorGenerated(prob=1.0, tumor_prob=one_hot, surface_rim_mm=args.syn_rim_mm)
        transform.set_random_state(args.seed + k)
        data = {"image": meta_image, "label": meta_label}

        def run_copy():
            out = transform(data)
            return out["image"][0].numpy(), out["label"][0].numpy()

        engine_rng = np.random.default_rng(args.seed + k)

        def run_inplace():
            tumor_synthesis.synthesize_tumors(work_image, work_label, engine_rng, tumor_type, profile, inplace=True)
            return work_image, work_label

        cached_rng = np.random.default_rng(args.seed + k)

        def run_cached():
            tumor_synthesis.synthesize_tumors(work_image, work_label, cached_rng, tumor_type, profile, inplace=True,
                                              case=case)
            return work_image, work_label

        rs, pyrand = np.random.RandomState(args.seed + k), random.Random(args.seed + k)

        def run_original():
            original_style_sample(work_image, work_label, bank, tumor_type, rs, pyrand)
            return work_image, work_label

        results[tumor_type] = (
            measure(run_copy, lambda: None, args.samples, image_f),
            measure(run_inplace, reset, args.samples, image_f),
            measure(run_original, reset, args.original_samples, image_f),
            measure(run_cached, reset, args.samples, image_f),
        )
    print_tables(results, baseline, args)
    print(f"load average after the type tables: {load_average()}")
    field_of_view(image_f, label_f, profile, args)
    if args.growth_samples > 0:
        growth_against_ellipsoids(image_f, label_f, affine, args)
    print(f"\npeak RSS of the whole process: {peak_rss_mb():.0f} MB (phantom generation included)")


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def case_data_of(image: np.ndarray, label: np.ndarray, profile):
    """The liver's per-case facts (:mod:`tumor_synthesis.case_data`) of (H, W, D) arrays at 1 mm."""
    from tumor_synthesis.case_data import case_key, compute_case_data

    return compute_case_data(label, case_key(label, (1.0, 1.0, 1.0), profile), image).organ("liver")


def embed(image: np.ndarray, label: np.ndarray, size: int, margin: int = 10):
    """The organ's in-plane box (plus ``margin`` voxels) pasted into the centre of a ``size`` x ``size`` field of air."""
    organ = np.argwhere(label == 1)
    lo = np.maximum(organ.min(axis=0)[:2] - margin, 0)
    hi = np.minimum(organ.max(axis=0)[:2] + 1 + margin, image.shape[:2])
    if np.any(hi - lo > size):
        raise ValueError(f"the organ's box {tuple(hi - lo)} does not fit a {size}^2 field of view")
    out_image = np.full((size, size, image.shape[2]), -1000, dtype=image.dtype)
    out_label = np.zeros((size, size, image.shape[2]), dtype=label.dtype)
    at = tuple(slice((size - n) // 2, (size - n) // 2 + n) for n in hi - lo)
    out_image[at] = image[lo[0]:hi[0], lo[1]:hi[1]]
    out_label[at] = label[lo[0]:hi[0], lo[1]:hi[1]]
    return out_image, out_label


def field_of_view(image_f: np.ndarray, label_f: np.ndarray, profile, args) -> None:
    """Median mix sample in place, the same liver in a 256^2 and a 512^2 field of view."""
    import tumor_synthesis

    print(f"\nfield of view: the same liver in 256^2 and 512^2 axial fields of view, mix in place, "
          f"{args.samples} samples per cell (median ms; load {load_average()})")
    rows = {}
    for size in (256, 512):
        image, label = embed(image_f, label_f, size)
        work_image, work_label = image.copy(), label.copy()
        case = case_data_of(work_image, work_label, profile)

        def reset():
            np.copyto(work_image, image)
            np.copyto(work_label, label)

        for cached in (False, True):
            rng = np.random.default_rng(args.seed)

            def run():
                tumor_synthesis.synthesize_tumors(work_image, work_label, rng, "mix", profile, inplace=True,
                                                  case=case if cached else None)
                return work_image, work_label

            rows[size, cached] = measure(run, reset, args.samples, image).median
        print(f"{size}^2 ({image.shape}, {image.size / 1e6:.0f} M voxels): per draw {1e3 * rows[size, False]:.1f} ms, "
              f"case facts cached {1e3 * rows[size, True]:.1f} ms")
    for cached in (False, True):
        print(f"512^2 / 256^2, {'case facts cached' if cached else 'per draw'}: "
              f"{rows[512, cached] / rows[256, cached]:.3f}")


def growth_against_ellipsoids(image_f: np.ndarray, label_f: np.ndarray, affine, args) -> None:
    """Default mixes of the growth and the ellipsoid model, in place with cached case facts, same run."""
    import tumor_synthesis
    from monai.data import MetaTensor

    from tumor_synthesis.case_data import CASE_DATA_KEY
    from tumor_synthesis.case_transform import TumorCaseDatad

    meta_image = MetaTensor(torch.from_numpy(image_f.copy())[None], affine=torch.as_tensor(affine))
    meta_label = MetaTensor(torch.from_numpy(label_f.copy())[None], affine=torch.as_tensor(affine))
    cpu = torch.device("cpu")
    times = {}
    for synthesis in ("growth", "ellipsoid"):
        options = {"synthesis": synthesis, "growth_grid_mm": args.growth_grid_mm}
        case = TumorCaseDatad(keys=("image", "label"), **options)({"image": meta_image, "label": meta_label})
        transform = tumor_synthesis.TumorGenerated(prob=1.0, inplace=True, **options).set_random_state(args.seed)
        draw = _timed_sampler(transform, meta_image, meta_label, image_f, label_f, cpu, case[CASE_DATA_KEY])
        draw()  # first-call costs (and the case's lazily kept facts) are not a sample's
        times[synthesis] = [draw()[0] for _ in range(args.growth_samples)]
    g, e = float(np.median(times["growth"])), float(np.median(times["ellipsoid"]))
    print(f"\ngrowth vs ellipsoids, default mixes, {args.growth_samples} samples each, in place, case facts cached "
          f"(load {load_average()}): growth {1e3 * g:.1f} ms, ellipsoids {1e3 * e:.1f} ms, ratio {g / e:.2f}")


def print_tables(results, baseline: float, args) -> None:
    print(
        f"\nmedian time per sample, one core; ours: {args.samples} samples, original-style: "
        f"{args.original_samples}; x base = time / baseline"
    )
    print(f"load average: {load_average()}; 'cached' = in place with the case facts cached (the training "
          "pipeline); speed-ups of 'cached'")
    header = (
        f"{'type':7s} | {'copy (default)':>18s} | {'in place':>16s} | {'cached':>16s} | {'original-style':>18s} | "
        f"{'vs orig.-style':>14s} | {'vs published':>12s}"
    )
    print(header)
    print("-" * len(header))
    for tumor_type, (copy, inplace, orig, cached) in results.items():
        figure = ORIGINAL_SECONDS[tumor_type]
        print(
            f"{tumor_type:7s} | {1e3 * copy.median:7.1f} ms {copy.median / baseline:4.2f}x | "
            f"{1e3 * inplace.median:6.1f} ms {inplace.median / baseline:4.2f}x | "
            f"{1e3 * cached.median:6.1f} ms {cached.median / baseline:4.2f}x | "
            f"{1e3 * orig.median:7.1f} ms {orig.median / baseline:4.2f}x | "
            f"{orig.median / cached.median:13.1f}x | {figure / cached.median:11.1f}x"
        )
    print("\nextra peak memory per sample loop (MB above the RSS before it) and what was painted (mean +- s.e.)")
    header = (
        f"{'type':7s} | {'mem copy':>8s} {'inpl':>6s} {'orig':>6s} | {'tumor voxels ours':>19s} "
        f"{'orig-style':>17s} | {'HU drop ours':>13s} {'orig-style':>12s}"
    )
    print(header)
    print("-" * len(header))

    def mean_se(values):
        values = np.asarray(values, dtype=np.float64)
        return f"{values.mean():7.0f}+-{values.std() / math.sqrt(max(1, values.size)):<6.0f}"

    def mean_se1(values):
        values = np.asarray(values, dtype=np.float64)
        return f"{values.mean():5.1f}+-{values.std() / math.sqrt(max(1, values.size)):<4.1f}"

    for tumor_type, (copy, inplace, orig, _) in results.items():
        ours_voxels = copy.tumor_voxels + inplace.tumor_voxels
        ours_drop = copy.hu_drop + inplace.hu_drop
        print(
            f"{tumor_type:7s} | {copy.extra_peak_mb:8.0f} {inplace.extra_peak_mb:6.0f} {orig.extra_peak_mb:6.0f} | "
            f"{mean_se(ours_voxels):>19s} {mean_se(orig.tumor_voxels):>17s} | "
            f"{mean_se1(ours_drop):>13s} {mean_se1(orig.hu_drop):>12s}"
        )


# --- texture calibration --------------------------------------------------------------------------


def run_calibration(args) -> None:
    shape = (420, 300, 320)
    rng = np.random.default_rng(args.seed)
    if args.realizations > 0:
        _calibrate_extremes(shape, args.realizations, rng)
    _compare_textures(shape, rng)


def _calibrate_extremes(shape, realizations: int, rng: np.random.Generator) -> None:
    from tumor_synthesis.texture import EXTREMES_Z, standardized_std

    print(f"standardized extremes of G_a * U over {shape} ({realizations} realizations, both tails pooled)")
    print(f"{'sigma_a':>7s} {'mean |z|':>9s} {'sd':>6s} {'s.e.':>6s} {'table':>6s}")
    for sigma_a in sorted(EXTREMES_Z):
        std = standardized_std(sigma_a)
        tails = []
        for _ in range(realizations):
            g = ndimage.gaussian_filter(rng.random(shape, dtype=np.float32), sigma_a)
            tails += [(0.5 - float(g.min())) / std, (float(g.max()) - 0.5) / std]
        print(
            f"{sigma_a:7.1f} {np.mean(tails):9.3f} {np.std(tails):6.3f} "
            f"{np.std(tails) / math.sqrt(len(tails)):6.3f} {EXTREMES_Z[sigma_a][1]:6.2f}",
            flush=True,
        )


def _compare_textures(shape, rng: np.random.Generator) -> None:
    from tumor_synthesis.texture import TextureParams, reference_texture, texture_field, texture_law

    print("\ntexture statistics: original algorithm (one volume, its interior) vs drawn per box (24 boxes of 96^3)")
    print(
        f"{'sa,sb':>7s} {'source':>9s} {'beta':>6s} {'mean':>6s} {'std':>6s} {'p1':>6s} {'p50':>6s} {'p99':>6s} "
        f"{'r(2mm)':>7s} {'r(8mm)':>7s}"
    )
    for sigma_a, sigma_b in ((3.0, 4.0), (9.0, 7.0), (15.0, 4.0)):
        params = TextureParams(sigma_a, sigma_b, 0.2, 0.05, 0.525)
        ref = reference_texture(shape, params, rng)
        m = int(4 * (sigma_a + sigma_b)) + 1
        inner = ref.texture[m:-m, m:-m, m:-m]
        ours = np.stack([texture_field((96, 96, 96), (1.0, 1.0, 1.0), params, rng) for _ in range(24)])
        for name, t, beta in (("original", inner, ref.beta), ("per box", ours, texture_law(params).beta)):
            flat = t.reshape(-1)
            lag = [_lag_correlation(t, d) for d in (2, 8)]
            q = np.percentile(flat[:: max(1, flat.size // 2_000_000)], [1, 50, 99])
            print(
                f"{sigma_a:3.0f},{sigma_b:<3.0f} {name:>9s} {beta:6.3f} {flat.mean():6.3f} {flat.std():6.4f} "
                f"{q[0]:6.3f} {q[1]:6.3f} {q[2]:6.3f} {lag[0]:7.3f} {lag[1]:7.3f}",
                flush=True,
            )


def _lag_correlation(t: np.ndarray, lag: int) -> float:
    """Correlation of values ``lag`` voxels apart along the last spatial axis."""
    a, b = t[..., :-lag].reshape(-1), t[..., lag:].reshape(-1)
    step = max(1, a.size // 2_000_000)
    return float(np.corrcoef(a[::step], b[::step])[0, 1])


# --- the growth model -----------------------------------------------------------------------------


def _timed_sampler(transform, meta_image, meta_label, image_f, label_f, device, case_data=None):
    """A function that restores the sample (untimed), paints it in place and returns (seconds, label).

    ``case_data``: the case's facts (:mod:`tumor_synthesis.case_data`) handed over with every draw.
    """
    from tumor_synthesis.case_data import CASE_DATA_KEY

    work_image, work_label = meta_image.clone().to(device), meta_label.clone().to(device)
    source_image, source_label = torch.from_numpy(image_f)[None].to(device), torch.from_numpy(label_f)[None].to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def draw():
        work_image.as_tensor().copy_(source_image)
        work_label.as_tensor().copy_(source_label)
        sync()
        t0 = time.perf_counter()
        data = {"image": work_image, "label": work_label}
        if case_data is not None:
            data[CASE_DATA_KEY] = case_data
        transform(data)
        sync()
        return time.perf_counter() - t0, work_label[0].cpu().numpy()

    return draw


def run_growth_timing(args) -> None:
    torch.set_num_threads(1)
    import tumor_synthesis.models.growth
    from monai.data import MetaTensor

    from labelfree.runtime.distributed import resolve_device

    device = resolve_device(args.device)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, torch {torch.__version__}, one thread, "
          f"growth model on {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f"; code from {measured_checkout()}")
    image, label, affine, source = make_case(args.seed)
    if args.organ != "liver":
        from labelfree.phantom import generate_case

        case = generate_case("abdomen", seed=args.seed, spacing=(1.0, 1.0, 1.0), organ=args.organ)
        image, label, affine, source = case.image, case.label, case.affine, f"phantom abdomen ({args.organ})"
    organ = label == 1
    print(f"case: {source}, volume {image.shape} at 1 mm, {args.organ} {organ.sum() / 1e6:.3f} L; "
          f"growth grid {args.growth_grid_mm:g} mm")
    image_f, label_f = image.astype(np.float32), label.astype(np.float32)
    meta_image = MetaTensor(torch.from_numpy(image_f.copy())[None], affine=torch.as_tensor(affine))
    meta_label = MetaTensor(torch.from_numpy(label_f.copy())[None], affine=torch.as_tensor(affine))
    rules = tumor_synthesis.get_growth_rules(args.organ)
    cpu = torch.device("cpu")

    def growth(tumor_prob, seed):
        t = tumor_synthesis.TumorGenerated(prob=1.0, organ=args.organ, synthesis="growth", inplace=True,
                                           tumor_prob=tumor_prob, growth_grid_mm=args.growth_grid_mm)
        return t.set_random_state(seed)

    def ellipsoid(seed):
        t = tumor_synthesis.TumorGenerated(prob=1.0, organ=args.organ, inplace=True)
        return t.set_random_state(seed)

    warm = _timed_sampler(growth(None, 999), meta_image, meta_label, image_f, label_f, device)
    warm()  # first-call costs (kernels, allocator) are not a sample's
    print(f"\ngrowth model per size class, {args.samples} samples each (median ms; equivalent radius per seed, "
          "mm, mean; tumor voxels, mean; share with a necrotic core)")
    print(f"{'size':7s} | {'N range':>9s} | {'median':>9s} | {'r_eq/seed':>9s} | {'voxels':>8s} | necrosis")
    voxel_ml = float(np.prod(np.abs(np.diag(np.asarray(affine))[:3]))) / 1000.0
    for k, size in enumerate(rules.size_names):
        one_hot = [1.0 if n == size else 0.0 for n in rules.size_names]
        transform = growth(one_hot, args.seed + k)
        plans = []
        original = tumor_synthesis.growth_engine.grow_tumors

        def spy(*a, **kw):
            result = original(*a, **kw)
            if result is not None:
                plans.append(result.plan)
            return result

        tumor_synthesis.models.growth.grow_tumors = spy
        try:
            draw = _timed_sampler(transform, meta_image, meta_label, image_f, label_f, device)
            seconds = [draw()[0] for _ in range(args.samples)]
        finally:
            tumor_synthesis.models.growth.grow_tumors = original
        radii = [(3 * p.tumor_voxels * voxel_ml * 1000 / (4 * math.pi) / max(1, len(p.seeds))) ** (1 / 3)
                 for p in plans]
        lo, hi = rules.size(size).steps
        print(f"{size:7s} | {lo:4d}-{hi:<4d} | {1e3 * np.median(seconds):6.1f} ms | {np.mean(radii):9.1f} | "
              f"{np.mean([p.tumor_voxels for p in plans]):8.0f} | {np.mean([p.necrosis for p in plans]):.2f}",
              flush=True)

    print(f"\ndefault mix, {args.mix_samples} samples per model, same run, in place (median ms per sample)")
    growth_draw = _timed_sampler(growth(None, args.seed), meta_image, meta_label, image_f, label_f, device)
    growth_times = [growth_draw()[0] for _ in range(args.mix_samples)]
    ellipsoid_draw = _timed_sampler(ellipsoid(args.seed), meta_image, meta_label, image_f, label_f, cpu)
    ellipsoid_times = [ellipsoid_draw()[0] for _ in range(args.mix_samples)]
    g, e = float(np.median(growth_times)), float(np.median(ellipsoid_times))
    print(f"growth ({device}): {1e3 * g:.1f} ms (p90 {1e3 * np.percentile(growth_times, 90):.0f} ms); "
          f"ellipsoid (cpu): {1e3 * e:.1f} ms (p90 {1e3 * np.percentile(ellipsoid_times, 90):.0f} ms); "
          f"ratio growth / ellipsoid {g / e:.2f}")
    print(f"\npeak RSS of the whole process: {peak_rss_mb():.0f} MB (phantom generation included)")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20, help="samples per tumor type for our timings")
    parser.add_argument(
        "--original-samples",
        type=int,
        default=10,
        help="samples per tumor type of the original-style re-implementation",
    )
    parser.add_argument("--seed", type=int, default=0, help="phantom case seed and base of the sample seeds")
    parser.add_argument("--syn-rim-mm", type=float, default=0.0,
                        help="our tumors keep this much liver under the surface (main.py --syn_rim_mm; "
                             "0: the original)")
    parser.add_argument("--synthesis", choices=("ellipsoid", "growth"), default="ellipsoid",
                        help="growth: time the growth model per size class and against the ellipsoid model")
    parser.add_argument("--device", default="cpu", help="growth model: device of the input tensors (cpu, cuda)")
    parser.add_argument("--growth-grid-mm", type=float, default=2.0,
                        help="growth model: simulation grid spacing in mm (TumorGenerated's default 2; published 1)")
    parser.add_argument("--organ", default="liver", choices=("liver", "pancreas", "kidney"),
                        help="growth model: organ of the phantom case")
    parser.add_argument("--growth-samples", type=int, default=20,
                        help="default run: samples of each model's default mix for growth vs ellipsoids (0: skip)")
    parser.add_argument("--mix-samples", type=int, default=40,
                        help="growth model: samples of the default mix per model")
    parser.add_argument(
        "--calibrate-texture", action="store_true", help="calibrate and check the texture model instead of timing"
    )
    parser.add_argument(
        "--realizations", type=int, default=20, help="texture volumes per sigma_a for the extremes (0: skip them)"
    )
    return parser


def main(args) -> None:
    if args.calibrate_texture:
        run_calibration(args)
    elif args.synthesis == "growth":
        run_growth_timing(args)
    else:
        run_timing(args)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
