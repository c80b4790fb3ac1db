"""The MONAI ``ImageReader`` of :mod:`labelfree.io.readers`: each path to the reader of its format.

Kept apart from :mod:`labelfree.io.readers` so that importing that module does not import
MONAI and torch (several seconds), which the scorer and the data checkers never need. The
pipelines load with :func:`load_transform`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from monai.data import ImageReader, NibabelReader
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from labelfree.io.formats import DICOM, ReaderError, checked_format, image_format
from labelfree.io.readers import read_sitk_image, sitk_array_and_affine


def load_transform(keys: Sequence[str], **kwargs):
    """``monai.transforms.LoadImaged`` reading ``keys`` with :class:`FormatReader`."""
    from monai.transforms import LoadImaged

    return LoadImaged(keys=keys, reader=FormatReader(), **kwargs)


class SimpleITKReader(ImageReader):
    """A MONAI ``ImageReader`` for NRRD, MetaImage and DICOM series, through SimpleITK.

    The reading itself is :func:`labelfree.io.readers.read_sitk_image` and
    :func:`labelfree.io.readers.sitk_array_and_affine` (shared with ``read_volume``, so the
    pipelines and the checkers see one array and one affine). Its output is that of MONAI's
    ``ITKReader(affine_lps_to_ras=True)`` with the default ``reverse_indexing=False``: the
    array in ITK's index order (i, j, k), ``affine`` / ``original_affine`` voxel -> RAS+ mm,
    ``space`` RAS, ``spatial_shape`` and ``spacing``. Several files are stacked as channels
    (first axis) when their grids agree.
    """

    def verify_suffix(self, filename) -> bool:
        return all(image_format(f) in ("nrrd", "metaimage", DICOM) for f in ensure_tuple(filename))

    def read(self, data, **kwargs):
        images = [read_sitk_image(name)[0] for name in ensure_tuple(data)]
        return images if len(images) > 1 else images[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        arrays, meta = [], {}
        # A SimpleITK image is iterable (its pixels): not ``ensure_tuple``, which would iterate it.
        for image in img if isinstance(img, list) else [img]:
            array, affine = sitk_array_and_affine(image)
            spatial = np.asarray(image.GetSize()[:3])
            if meta and (not np.allclose(meta[MetaKeys.AFFINE], affine) or not np.array_equal(
                    meta[MetaKeys.SPATIAL_SHAPE], spatial)):
                raise ReaderError("files stacked as channels must share one voxel grid")
            if not meta:
                meta = {
                    "spacing": np.asarray(image.GetSpacing()),
                    MetaKeys.ORIGINAL_AFFINE: affine,
                    MetaKeys.AFFINE: affine.copy(),
                    MetaKeys.SPACE: SpaceKeys.RAS,
                    MetaKeys.SPATIAL_SHAPE: spatial,
                    # no channel axis ("no_channel"), or the last one for a pixel of several components
                    MetaKeys.ORIGINAL_CHANNEL_DIM: math.nan if image.GetNumberOfComponentsPerPixel() == 1 else -1,
                }
            arrays.append(array)
        if len(arrays) == 1:
            return arrays[0], meta
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays, axis=0), meta


class FormatReader(ImageReader):
    """A MONAI ``ImageReader`` that hands each path to the reader of its format.

    ``LoadImage`` given a list of readers would try them one after another, catching every
    error (a NIfTI file would be read by SimpleITK first); this reader decides from the name
    alone, so a format is always read by the same library (NIfTI: nibabel; NRRD, MetaImage,
    DICOM: SimpleITK), and an unsupported or missing path fails with its name.
    """

    def __init__(self) -> None:
        super().__init__()
        self._readers = {"nifti": NibabelReader()}

    def reader_for(self, fmt: str):
        """The MONAI reader of a format (one of :data:`labelfree.io.formats.FORMATS`)."""
        if fmt not in self._readers:
            self._readers[fmt] = SimpleITKReader()
        return self._readers[fmt]

    def verify_suffix(self, filename) -> bool:
        return all(image_format(f) is not None for f in ensure_tuple(filename))

    def read(self, data, **kwargs):
        names = ensure_tuple(data)
        for n in names:
            checked_format(n)
        formats = {image_format(n) for n in names}
        if len(formats) != 1:
            raise ReaderError(f"{list(names)}: files of different formats cannot be stacked as channels")
        reader = self.reader_for(formats.pop())
        return _Read(reader, reader.read(data, **kwargs))

    def get_data(self, img):
        return img.reader.get_data(img.obj)


@dataclass
class _Read:
    """What :meth:`FormatReader.read` returns: the format's reader and its image object."""

    reader: object
    obj: object
