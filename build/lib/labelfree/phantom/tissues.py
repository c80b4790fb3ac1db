"""Tissue classes of the phantom and the numbering of its organ maps.

Every voxel of a phantom belongs to exactly one tissue class (the ``tissue`` map of a
:class:`phantom.PhantomCase`), which fixes its nominal HU value before partial-volume blur
and noise. Tests use the tissue map to check HU statistics per tissue; the organ maps use
the label numbering of public data sets so downstream code can be tested on them.
"""

from __future__ import annotations

from enum import IntEnum


class Tissue(IntEnum):
    """Tissue class codes of the ``tissue`` map (uint8)."""

    AIR = 0  # outside the body
    SKIN = 1
    SUBCUTANEOUS_FAT = 2
    MUSCLE = 3
    VISCERAL_FAT = 4
    CORTICAL_BONE = 5
    CANCELLOUS_BONE = 6
    LIVER = 7  # liver parenchyma
    LIVER_VESSEL = 8  # contrast-enhanced portal / hepatic veins inside the liver
    SPLEEN = 9
    KIDNEY_CORTEX = 10
    KIDNEY_MEDULLA = 11
    RENAL_SINUS_FAT = 12
    PANCREAS = 13
    GUT_WALL = 14  # stomach and bowel wall
    GUT_FLUID = 15
    GAS = 16  # stomach and bowel gas
    ARTERY = 17  # aorta
    VEIN = 18  # inferior vena cava
    GALLBLADDER = 19
    CSF = 20  # spinal canal
    DISC = 21  # intervertebral disc
    LUNG = 22
    AIRWAY_LUMEN = 23
    AIRWAY_WALL = 24
    LUNG_VESSEL = 25
    HEART = 26
    LESION = 27  # tumours (abdomen) and nodules (chest)


#: Tissues counted as bone in statistics (cortex and marrow).
BONE_TISSUES = (Tissue.CORTICAL_BONE, Tissue.CANCELLOUS_BONE)

#: BTCV (Multi-Atlas Labeling Beyond the Cranial Vault) organ numbering used by the raw
#: multi-organ labels of the phantom's abdomen cases (``01_Multi-Atlas_Labeling/label``).
BTCV_LABELS = {
    "spleen": 1,
    "right_kidney": 2,
    "left_kidney": 3,
    "gallbladder": 4,
    "liver": 6,
    "stomach": 7,
    "aorta": 8,
    "ivc": 9,
    "portal_splenic_vein": 10,
    "pancreas": 11,
}

#: Organ numbering of the chest phantom's organ map (no public standard fits; the task
#: label only distinguishes lung and lesion).
CHEST_LABELS = {
    "right_lung": 1,
    "left_lung": 2,
    "airway": 3,  # trachea and main bronchi
    "heart": 4,
    "aorta": 5,
}
