"""A trained tumor generator in ``main.py``: load it (checked), and paint in the training step.

``main.py --syn --synthesis gan --syn_generator G`` keeps the engine's ellipsoid shapes (the
loader paints them and carries the healthy crop beside them, as for ``--syn_qc``); the frozen
generator then repaints the tumor voxels on the training device, batched, under no-grad,
before quality control and the segmentation step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from labelfree.config.settings import RunSettings
from labelfree.io.checkpoint import (USES, CheckpointError, check_fit, check_weights_match, extract_state_dict,
                                     flag_differences, load_checkpoint)
from labelfree.networks.freeze import frozen
from tumor_synthesis.learned import GeneratorConfig, GeneratorState, TumorGenerator, synthetic_tumor_mask

#: File name of the generator checkpoint in a ``syn_train.py`` logdir.
GENERATOR_FILE = "generator.pt"
#: ``checkpoint["kind"]`` of a generator checkpoint.
GENERATOR_KIND = "labelfree-tumor-generator"


def read_generator(path: str | Path, settings: RunSettings | None = None) -> GeneratorState:
    """The generator of a ``syn_train.py`` checkpoint, checked against this run's preprocessing.

    Raises:
        CheckpointError: missing or unreadable file, not a generator checkpoint (e.g. a
            segmentation model), weights that do not fit its recorded network, or an organ,
            window or spacing other than this run's.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--syn_generator file not found: {path}")
    checkpoint = load_checkpoint(path)
    if checkpoint.get("kind") != GENERATOR_KIND or "generator_config" not in checkpoint:
        raise CheckpointError(f"--syn_generator {path} is not a tumor generator checkpoint (it has no generator "
                              f"configuration; a segmentation model goes to --syn_qc): train one with syn_train.py")
    try:
        config = GeneratorConfig.from_dict(checkpoint["generator_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"--syn_generator {path}: unreadable generator configuration ({e})") from None
    if settings is not None:
        check_fit(generator_crop(config.organ, config.window, config.spacing), path, USES["generator"],
                  generator_crop(settings.organ, settings.window, settings.spacing))
        if any(r % config.divisor for r in settings.roi):
            raise CheckpointError(f"--syn_generator {path}: the patch size {settings.roi} must be a multiple of "
                                  f"{config.divisor} (the generator's downsampling)")
    weights = extract_state_dict(checkpoint, path)
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


def load_learned_synthesis(path: str, settings: RunSettings, device: torch.device, amp: bool) -> LearnedSynthesis:
    generator = read_generator(path, settings).build(device)
    return LearnedSynthesis(generator, [t for _, _, _, t in settings.label_pairs], amp=amp)
