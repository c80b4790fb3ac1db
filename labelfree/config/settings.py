"""The run's settings, resolved once from the flags: organ, window, classes, spacing, patch size, network.

``main.py`` builds a :class:`RunSettings` from its flags (:meth:`RunSettings.from_train_args`),
passes it down (pipelines, network, TensorBoard tags) and stores it in every checkpoint
(``checkpoint["settings"]``). ``validation.py`` rebuilds it from the checkpoint
(:meth:`RunSettings.for_evaluation`): a flag given on its command line overrides the
checkpoint's value where that is meaningful (window, spacing, patch size: a note says so)
and is refused where it contradicts the trained network (architecture, class count, organ).
Nobody looks an organ string up again: the profile, its label pairs and class names come
from here.

:data:`DEFAULTS` holds the one default of each setting for every entry point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from tumor_synthesis.organs import OrganProfile, get_organ_profile

#: The default of each setting, shared by main.py, validation.py and the checkpoint reader.
DEFAULTS: dict[str, Any] = {
    "organ": "liver",
    "model": "unet",
    "swin_type": "tiny",
    "space": 1.0,
    "roi": 96,
}



class SettingsError(ValueError):
    """A flag contradicts the checkpoint, or a setting is invalid."""


@dataclass(frozen=True)
class ModelSpec:
    """The network: ``name`` (``unet`` / ``swin_unetrv2``), Swin size, explicit feature size or ``None``."""

    name: str = DEFAULTS["model"]
    swin_type: str = DEFAULTS["swin_type"]
    feature_size: int | None = None


@dataclass(frozen=True)
class RunSettings:
    """Everything that must agree between training, in-training validation and evaluation.

    Attributes:
        organ: organ profile name (``tumor_synthesis.organs``).
        window: ``(a_min, a_max)`` HU mapped to [0, 1].
        num_classes: classes including background (= network output channels).
        class_names: name of each label value ``0 .. num_classes - 1``.
        spacing: resampled voxel size in mm along x, y, z.
        roi: patch / sliding-window size in voxels along x, y, z.
        model: the network.
    """

    organ: str
    window: tuple[float, float]
    num_classes: int
    class_names: tuple[str, ...]
    spacing: tuple[float, float, float]
    roi: tuple[int, int, int]
    model: ModelSpec

    # ------------------------------------------------------------------ derived
    @property
    def profile(self) -> OrganProfile:
        return get_organ_profile(self.organ)

    @property
    def label_pairs(self) -> tuple[tuple[str, int, str, int], ...]:
        """``(organ name, organ label, tumor name, tumor label)`` of each organ of the label convention."""
        profile = self.profile
        pairs = getattr(profile, "label_pairs", None)
        if pairs is not None:
            return tuple(pairs)
        names = profile.class_names
        return ((names[profile.organ_label], profile.organ_label, names[profile.tumor_label], profile.tumor_label),)

    @property
    def class_tags(self) -> list[str]:
        """TensorBoard tag of each foreground class's Dice (``val_liver_dice``, ``val_tumor_dice``, ...)."""
        return [f"val_{str(n).strip().replace(' ', '_')}_dice" for n in self.class_names[1:]]

    def preprocessing(self) -> dict[str, Any]:
        """Keyword arguments of ``labelfree.data.transforms.get_transforms`` for the shared prefix."""
        return {"a_min": self.window[0], "a_max": self.window[1], "space": self.spacing}

    def build_model(self):
        """The network this run trains or evaluates (fresh weights)."""
        from labelfree.networks import build_model

        return build_model(self.model.name, in_channels=1, out_channels=self.num_classes, roi_size=self.roi,
                           swin_type=self.model.swin_type, feature_size=self.model.feature_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, no tuples of tuples) that ``torch.load(weights_only=True)`` reads back."""
        d = asdict(self)
        for key in ("window", "class_names", "spacing", "roi"):
            d[key] = list(d[key])
        return d

    def flat(self) -> dict[str, Any]:
        """The settings under the names of their flags (``organ, a_min, a_max, num_classes, model,
        swin_type, feature_size, space_x.., roi_x..``), as a checkpoint's fit is checked
        (``labelfree.io.checkpoint.check_fit``); ``feature_size`` is ``None`` when it follows
        the Swin size."""
        flat = {
            "organ": self.organ, "a_min": self.window[0], "a_max": self.window[1], "num_classes": self.num_classes,
            "model": self.model.name, "swin_type": self.model.swin_type, "feature_size": self.model.feature_size,
        }
        flat.update({f"space_{a}": s for a, s in zip("xyz", self.spacing)})
        flat.update({f"roi_{a}": r for a, r in zip("xyz", self.roi)})
        return flat

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSettings":
        model = d.get("model") or {}
        return cls.create(
            organ=d["organ"], a_min=d["window"][0], a_max=d["window"][1], num_classes=d["num_classes"],
            spacing=d["spacing"], roi=d["roi"], model=model.get("name", DEFAULTS["model"]),
            swin_type=model.get("swin_type", DEFAULTS["swin_type"]), feature_size=model.get("feature_size"),
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        organ: str = DEFAULTS["organ"],
        a_min: float | None = None,
        a_max: float | None = None,
        num_classes: int | None = None,
        spacing: Sequence[float] = (DEFAULTS["space"],) * 3,
        roi: Sequence[int] = (DEFAULTS["roi"],) * 3,
        model: str = DEFAULTS["model"],
        swin_type: str = DEFAULTS["swin_type"],
        feature_size: int | None = None,
    ) -> "RunSettings":
        """Settings with the organ's window and class count where not given.

        Raises:
            SettingsError: unknown organ, an empty window, a non-positive spacing or patch size.
        """
        try:
            profile = get_organ_profile(organ)
        except ValueError as e:
            raise SettingsError(f"--organ {organ}: {e}") from None
        a_min = float(profile.window[0] if a_min is None else a_min)
        a_max = float(profile.window[1] if a_max is None else a_max)
        if not a_min < a_max:
            raise SettingsError(f"the intensity window needs --a_min < --a_max, got {a_min:g} .. {a_max:g} HU")
        num_classes = int(profile.num_classes if num_classes is None else num_classes)
        names = tuple(profile.class_names)
        if len(names) != num_classes:  # a convention of the user's own: generic names
            names = ("background",) + tuple(f"class{i}" for i in range(1, num_classes))
        spacing = tuple(float(s) for s in spacing)
        roi = tuple(int(r) for r in roi)
        if len(spacing) != 3 or min(spacing) <= 0:
            raise SettingsError(f"--space_x/y/z must be 3 positive spacings in mm, got {spacing}")
        if len(roi) != 3 or min(roi) < 1:
            raise SettingsError(f"--roi_x/y/z must be 3 positive sizes in voxels, got {roi}")
        return cls(organ=profile.name, window=(a_min, a_max), num_classes=num_classes, class_names=names,
                   spacing=spacing, roi=roi, model=ModelSpec(model, swin_type, feature_size))

    @classmethod
    def from_train_args(cls, args: Any) -> "RunSettings":
        """From ``main.py``'s parsed flags (a Namespace, or the ``args`` dict of an older checkpoint)."""
        get = args.get if isinstance(args, Mapping) else lambda k, default=None: getattr(args, k, default)
        num_classes = get("num_classes")
        if num_classes is None or _is_convention_default(num_classes):
            num_classes = get("out_channels")
        if num_classes is None or _is_convention_default(num_classes):
            num_classes = None
        return cls.create(
            organ=get("organ") or DEFAULTS["organ"],
            a_min=get("a_min"), a_max=get("a_max"), num_classes=num_classes,
            spacing=tuple(get(f"space_{a}") or DEFAULTS["space"] for a in "xyz"),
            roi=tuple(get(f"roi_{a}") or DEFAULTS["roi"] for a in "xyz"),
            model=get("model_name") or get("model") or DEFAULTS["model"],
            swin_type=get("swin_type") or DEFAULTS["swin_type"],
            feature_size=get("feature_size"),
        )

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any]) -> "RunSettings | None":
        """The settings a checkpoint was trained with: its ``settings``, else rebuilt from its ``args``."""
        if isinstance(checkpoint.get("settings"), Mapping):
            return cls.from_dict(checkpoint["settings"])
        if isinstance(checkpoint.get("args"), Mapping):
            return cls.from_train_args(checkpoint["args"])
        return None

    @classmethod
    def for_evaluation(
        cls, flags: Mapping[str, Any], checkpoint: Mapping[str, Any] | None, path: Any = None
    ) -> tuple["RunSettings", dict[str, str], list[str]]:
        """Settings of an evaluation: the checkpoint's, with the flags that were given on top.

        What a flag may override and what it must not contradict is the ``"evaluation"`` use
        of ``labelfree.io.checkpoint.USES``.

        Args:
            flags: ``validation.py``'s setting flags (``model, swin_type, feature_size,
                num_classes, organ, a_min, a_max, space_x.., roi_x..``), ``None`` where not given.
            checkpoint: the loaded checkpoint (or ``None``).
            path: its file, named in messages.

        Returns:
            ``(settings, sources, notes)``: where each value came from (``flag`` /
            ``checkpoint`` / ``default``) and one note line naming the flags that override
            the checkpoint (or none).

        Raises:
            SettingsError: a flag contradicts the trained network or its label convention.
        """
        # Imported here: the checkpoint module needs torch, which the settings of a scorer
        # (labelfree-score: organ and label pairs only) must not import.
        from labelfree.io.checkpoint import USES, check_fit

        use = USES["evaluation"]
        saved = cls.from_checkpoint(checkpoint or {})
        stored = {k: v for k, v in saved.flat().items() if v is not None} if saved is not None else {}
        if saved is not None and saved.model.feature_size is None and flags.get("feature_size") is not None:
            from labelfree.networks import SWIN_FEATURE_SIZES

            if saved.model.swin_type in SWIN_FEATURE_SIZES:
                stored["feature_size"] = SWIN_FEATURE_SIZES[saved.model.swin_type]
        given = {k: v for k, v in flags.items() if v is not None}
        notes = check_fit(stored if saved is not None else None, path, use, given, error=SettingsError)
        if (given.get("model") or stored.get("model") or DEFAULTS["model"]) == "unet":
            # A UNet has no Swin size: neither the flag nor the checkpoint's value means anything.
            stored.pop("swin_type", None)
            stored.pop("feature_size", None)
        sources, values = {}, {}
        for name in use.refused + use.noted:
            if name in given:
                sources[name], values[name] = "flag", given[name]
            elif name in stored:
                sources[name], values[name] = "checkpoint", stored[name]
            else:
                sources[name] = "default"
        if saved is None or (values.get("organ") != saved.organ):
            # No stored window for this organ: the organ's own window unless given.
            for name in ("a_min", "a_max"):
                if sources[name] == "checkpoint":
                    values.pop(name)
                    sources[name] = "default"
        settings = cls.create(
            organ=values.get("organ", DEFAULTS["organ"]),
            a_min=values.get("a_min"), a_max=values.get("a_max"), num_classes=values.get("num_classes"),
            spacing=tuple(values.get(f"space_{a}", DEFAULTS["space"]) for a in "xyz"),
            roi=tuple(values.get(f"roi_{a}", DEFAULTS["roi"]) for a in "xyz"),
            model=values.get("model", DEFAULTS["model"]),
            swin_type=values.get("swin_type", DEFAULTS["swin_type"]),
            feature_size=values.get("feature_size"),
        )
        return settings, sources, notes


def _is_convention_default(value: Any) -> bool:
    # labelfree.config.flags.ConventionDefault marks "not given: the organ's class count".
    return type(value).__name__ == "ConventionDefault"
