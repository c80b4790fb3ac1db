"""A trained tumor painter in ``main.py``: load it (checked), and paint in the training step.

``main.py --syn --synthesis gan|diffusion --syn_generator G`` keeps the engine's ellipsoid shapes
(the loader paints them and carries the healthy crop beside them, as for ``--syn_qc``); the
frozen model then repaints the tumor voxels on the training device, batched, under no-grad,
before quality control and the segmentation step. Two kinds of model file, each saying its
kind: the adversarial generator (``generator.pt``, ``tumor_synthesis.learned``) and the
diffusion model (``diffusion.pt``, ``tumor_synthesis.diffusion``), both written by ``syn_train.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from labelfree.config.settings import RunSettings
from labelfree.io.checkpoint import (USES, CheckpointError, check_fit, check_weights_match, extract_state_dict,
                                     flag_differences, load_checkpoint)
from labelfree.networks.freeze import frozen
from tumor_synthesis.diffusion import DiffusionConfig, DiffusionState, TumorDiffusion, build_unet, paint_windows
from tumor_synthesis.learned import GeneratorConfig, GeneratorState, TumorGenerator, synthetic_tumor_mask

#: File name of the generator checkpoint in a ``syn_train.py`` logdir (``--model gan``).
GENERATOR_FILE = "generator.pt"
#: File name of the diffusion model in a ``syn_train.py`` logdir (``--model diffusion``).
DIFFUSION_FILE = "diffusion.pt"
#: ``checkpoint["kind"]`` of a generator checkpoint.
GENERATOR_KIND = "labelfree-tumor-generator"
#: ``checkpoint["kind"]`` of a diffusion model file.
DIFFUSION_KIND = "labelfree-tumor-diffusion"
#: Per ``--synthesis`` / ``syn_train.py --model`` name: the file's kind, its config entry and class, its file name.
LEARNED_MODELS = {
    "gan": (GENERATOR_KIND, "generator_config", GeneratorConfig, GENERATOR_FILE),
    "diffusion": (DIFFUSION_KIND, "diffusion_config", DiffusionConfig, DIFFUSION_FILE),
}


def read_generator(path: str | Path, settings: RunSettings | None = None,
                   synthesis: str = "gan") -> GeneratorState | DiffusionState:
    """The model of a ``syn_train.py`` file, of the kind ``--synthesis`` asks for, checked against this run.

    Raises:
        CheckpointError: missing, unreadable or unsafe file (a pickle naming code), not a model
            file of ``syn_train.py`` (e.g. a segmentation model), one of the other kind (a gan
            generator for ``--synthesis diffusion`` or back), weights that do not fit its
            recorded network, or an organ, window or spacing other than this run's.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--syn_generator file not found: {path}")
    checkpoint = load_checkpoint(path)
    _, config_key, config_class, _ = LEARNED_MODELS[synthesis]
    found = next((name for name, (k, key, _, _) in LEARNED_MODELS.items()
                  if checkpoint.get("kind") == k and key in checkpoint), None)
    if found is None:
        raise CheckpointError(f"--syn_generator {path} is not a tumor generator checkpoint (it has no generator "
                              f"configuration; a segmentation model goes to --syn_qc): train one with syn_train.py")
    if found != synthesis:
        raise CheckpointError(f"--syn_generator {path} is a {found} model (syn_train.py --model {found}); "
                              f"--synthesis {synthesis} needs one of syn_train.py --model {synthesis}, "
                              f"or use it with --synthesis {found}")
    try:
        config = config_class.from_dict(checkpoint[config_key])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"--syn_generator {path}: unreadable {synthesis} configuration ({e})") from None
    if settings is not None:
        check_fit(generator_crop(config.organ, config.window, config.spacing), path, USES["generator"],
                  generator_crop(settings.organ, settings.window, settings.spacing))
        # The generator paints whole crops; the diffusion model windows of its own size around the tumors.
        if synthesis == "gan" and any(r % config.divisor for r in settings.roi):
            raise CheckpointError(f"--syn_generator {path}: the patch size {settings.roi} must be a multiple of "
                                  f"{config.divisor} (the generator's downsampling)")
    weights = extract_state_dict(checkpoint, path)
    if synthesis == "diffusion":
        check_weights_match(build_unet(config).state_dict(), weights, path)
        return DiffusionState(config, weights)
    check_weights_match(TumorGenerator(config).state_dict(), weights, path)
    return GeneratorState(config, weights)


def generator_crop(organ: str, window: Sequence[float], spacing: Sequence[float]) -> dict:
    """The crops a generator paints, under the names of their flags (organ, a_min/a_max in HU, space_x/y/z in mm)."""
    return {"organ": organ, "a_min": float(window[0]), "a_max": float(window[1]),
            **{f"space_{a}": float(s) for a, s in zip("xyz", spacing)}}


def crop_mismatches(config: GeneratorConfig, organ: str, window, spacing) -> list[str]:
    """How the crops a generator was trained on differ from these (the ``"generator"`` use of the one
    rule, ``labelfree.io.checkpoint.USES``); empty: they fit."""
    return flag_differences(generator_crop(config.organ, config.window, config.spacing),
                            generator_crop(organ, window, spacing), USES["generator"].refused)


class LearnedSynthesis:
    """Repaints the engine's synthetic tumors of a batch with a frozen generator.

    Crops without synthetic voxels pass unchanged; in the others only synthetic tumor voxels
    (and their blurred rim) inside the organ change. Tumor voxels the engine put outside the
    organ (exophytic kidney tumors) return to their healthy label, as the generator paints
    inside the organ only.
    """

    def __init__(self, generator: TumorGenerator, tumor_labels: Sequence[int], amp: bool = False) -> None:
        self.generator = frozen(generator)
        self.tumor_labels = tuple(int(t) for t in tumor_labels)
        self.amp = bool(amp)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, label: torch.Tensor, healthy_image: torch.Tensor,
                 healthy_label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = synthetic_tumor_mask(label, healthy_label, self.tumor_labels)
        rows = mask.flatten(1).any(dim=1)
        if not bool(rows.any()):
            return image, label
        organ = healthy_label > 0
        with torch.autocast(image.device.type, enabled=self.amp):
            painted = self.generator(healthy_image[rows].float(), image[rows].float(), mask[rows], organ[rows])
        image = image.clone()
        image[rows] = painted.to(image.dtype)
        outside = (label != healthy_label) & ~organ
        if bool(outside.any()):
            label = torch.where(outside, healthy_label.to(label.dtype), label)
        return image, label


class DiffusionSynthesis:
    """Repaints the engine's synthetic tumors of a batch with a frozen diffusion model.

    The same contract as :class:`LearnedSynthesis`: only synthetic tumor voxels inside the
    organ change; engine tumor voxels outside the organ return to their healthy label. The
    noise of a batch is seeded by ``seed`` and the batch's synthetic voxels (their count and
    positions), so a resumed run paints a redrawn crop exactly as the uninterrupted run did.
    """

    def __init__(self, model: TumorDiffusion, tumor_labels: Sequence[int], steps: int | None = None,
                 seed: int = 0, amp: bool = False) -> None:
        self.model = frozen(model)
        self.tumor_labels = tuple(int(t) for t in tumor_labels)
        self.steps = steps
        self.seed = int(seed)
        self.amp = bool(amp)

    def batch_seed(self, mask: torch.Tensor) -> int:
        """A seed from ``seed`` and the synthetic voxels of the batch (integers: the same on every device)."""
        flat = mask.flatten().nonzero().flatten()
        return (self.seed * 1_000_003 + int(flat.numel()) * 7919 + int(flat.sum())) % (2 ** 62)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, label: torch.Tensor, healthy_image: torch.Tensor,
                 healthy_label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = synthetic_tumor_mask(label, healthy_label, self.tumor_labels)
        if not bool(mask.any()):
            return image, label
        organ = healthy_label > 0
        generator = torch.Generator().manual_seed(self.batch_seed(mask))
        painted = paint_windows(self.model, healthy_image, mask, organ, self.steps, generator, amp=self.amp)
        rows = mask.flatten(1).any(dim=1)
        image = image.clone()
        image[rows] = painted[rows].to(image.dtype)
        outside = (label != healthy_label) & ~organ
        if bool(outside.any()):
            label = torch.where(outside, healthy_label.to(label.dtype), label)
        return image, label


def load_learned_synthesis(path: str, settings: RunSettings, device: torch.device, amp: bool,
                           synthesis: str = "gan", steps: int | None = None,
                           seed: int = 0, preset: str = "original") -> LearnedSynthesis | DiffusionSynthesis:
    """The training step's painter of ``--synthesis`` (gan or diffusion) from its checked model file.

    ``preset``: the synthesis preset; the gan takes its painting options (``Preset.learned``).
    """
    tumor_labels = [t for _, _, _, t in settings.label_pairs]
    model = read_generator(path, settings, synthesis).build(device)
    if synthesis == "diffusion":
        return DiffusionSynthesis(model, tumor_labels, steps=steps, seed=seed, amp=amp)
    if preset != "original":
        from tumor_synthesis.organs import get_organ_profile, preset_of

        model.paint_options(preset_of(get_organ_profile(settings.organ), preset).learned)
    return LearnedSynthesis(model, tumor_labels, amp=amp)
