"""``dataset.json`` of an nnU-Net v2 raw dataset (``DatasetNNN_Name/imagesTr``, ``labelsTr``).

nnU-Net v2's conventions: one CT channel named ``"CT"`` (that name selects its CT
normalisation: clip to the foreground's 0.5-99.5 percentiles, then z-score with the
foreground's mean and std), labels as ``{name: value}`` with background 0 and consecutive
values (single organ: background 0, organ 1, tumor 2; multi-organ: 0..6), ``numTraining``
and ``file_ending``. The extra ``labelfree_synthesis`` entry (nnU-Net ignores keys it does
not know, and copies dataset.json into the preprocessed folder) tells the on-the-fly trainer
which organ profile and synthesis model to paint with.
"""

from __future__ import annotations

SYNTHESIS_KEY = "labelfree_synthesis"
FILE_ENDING = ".nii.gz"


def nnunet_labels(profile) -> dict[str, int]:
    """``{name: value}`` of the profile's label convention, as nnU-Net's dataset.json wants them."""
    return {name: value for value, name in enumerate(profile.class_names)}


def nnunet_dataset_json(profile, num_training: int, name: str, description: str = "",
                        synthesis: dict | None = None) -> dict:
    """The dataset.json content of an nnU-Net v2 raw dataset of ``profile``'s label convention.

    Args:
        profile: organ profile (``tumor_synthesis.organs``): its class names are the labels.
        num_training: number of cases in ``imagesTr`` / ``labelsTr``.
        name: dataset name (``DatasetNNN_Name``).
        description: free text.
        synthesis: settings of the on-the-fly trainer (``{"organ": ..., "synthesis": ...}``),
            stored under :data:`SYNTHESIS_KEY`; None leaves it out.
    """
    content = {
        "name": name,
        "description": description,
        "channel_names": {"0": "CT"},
        "labels": nnunet_labels(profile),
        "numTraining": int(num_training),
        "file_ending": FILE_ENDING,
    }
    if synthesis is not None:
        content[SYNTHESIS_KEY] = dict(synthesis)
    return content
