"""Small synthetic cases and input kinds shared by the transform tests."""

import numpy as np
import torch
from monai.data import MetaTensor

ALL_TYPES = ("tiny", "small", "medium", "large", "mix")
AFFINE_2MM = np.diag([2.0, 2.0, 2.0, 1.0])


def make_case(shape=(48, 44, 36), center=None, radii=(18, 15, 13), seed=0):
    """(image int16 HU, label uint8): an ellipsoid organ of ~60 HU in -100 HU background."""
    center = center if center is not None else tuple(n / 2 for n in shape)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    organ = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii)) < 1
    rng = np.random.default_rng(seed)
    image = np.where(organ, 60, -100) + rng.normal(0, 8, shape)
    return image.astype(np.int16), organ.astype(np.uint8)


def only(tumor_type):
    """``tumor_prob`` drawing only ``tumor_type`` of the liver's five types."""
    return [1.0 if t == tumor_type else 0.0 for t in ALL_TYPES]


def as_numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def meta_tensor(array, name, affine=AFFINE_2MM):
    return MetaTensor(torch.from_numpy(array), affine=torch.tensor(affine), meta={"filename_or_obj": name})


#: Channel-first inputs as MONAI pipelines hand them over, like MONAI's own transform tests.
INPUTS = {
    "numpy-int16": lambda img, lab: (img[None], lab[None]),
    "numpy-float32": lambda img, lab: (img[None].astype(np.float32), lab[None].astype(np.float32)),
    "torch-float32": lambda img, lab: (torch.from_numpy(img[None].astype(np.float32)), torch.from_numpy(lab[None])),
    "metatensor": lambda img, lab: (
        meta_tensor(img[None].astype(np.float32), "img.nii.gz"),
        meta_tensor(lab[None].astype(np.float32), "lab.nii.gz"),
    ),
}


def torch_dtype(x) -> torch.dtype:
    """The torch dtype of a numpy array or tensor (what the transforms return it as)."""
    return x.dtype if isinstance(x, torch.Tensor) else torch.from_numpy(np.empty(0, dtype=x.dtype)).dtype


def output_type(x) -> type:
    """The type the transforms return for input ``x``: MetaTensor stays, everything else a plain tensor."""
    return MetaTensor if isinstance(x, MetaTensor) else torch.Tensor


def check_painted(img_in, lab_in, img_out, lab_out) -> np.ndarray:
    """The liver invariants of a painted sample; returns its tumor mask, which must not be empty."""
    img_in, lab_in, img_out, lab_out = (as_numpy(a)[0] for a in (img_in, lab_in, img_out, lab_out))
    organ = lab_in == 1
    assert set(np.unique(lab_out)) <= {0, 1, 2}
    assert np.array_equal(lab_out == 0, lab_in == 0)  # background stays background
    assert np.all(organ[lab_out == 2])  # tumor only inside the organ
    assert np.array_equal(img_out[~organ], img_in[~organ])  # bit-identical outside the organ
    assert np.all(img_out[organ] <= img_in[organ])  # liver tumors only darken
    tumor = lab_out == 2
    assert tumor.any(), "no tumor was painted"
    assert (img_out[tumor] < img_in[tumor]).any()  # and the image shows it
    return tumor
