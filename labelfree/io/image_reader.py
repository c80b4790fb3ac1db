"""The MONAI ``ImageReader`` of :mod:`labelfree.io.readers`: each path to the reader of its format.

Kept apart from :mod:`labelfree.io.readers` so that importing that module does not import
MONAI and torch (several seconds), which NIfTI-only tools never need.
"""

from __future__ import annotations

from dataclasses import dataclass

from monai.data import ImageReader, NibabelReader
from monai.utils import ensure_tuple

from labelfree.io.formats import ReaderError, checked_format, image_format


def _itk_reader():
    from monai.data import ITKReader

    # reverse_indexing (default): arrays come out in ITK's index order (i, j, k), not numpy's (k, j, i).
    return ITKReader(affine_lps_to_ras=True)


class FormatReader(ImageReader):
    """A MONAI ``ImageReader`` that hands each path to the reader of its format.

    ``LoadImage`` given a list of readers would try them one after another, catching every
    error (a NIfTI file would be read by ITK first); this reader decides from the name
    alone, so a format is always read by the same library, and an unsupported or missing
    path fails with its name. ``ITKReader`` is built on first use.
    """

    def __init__(self) -> None:
        super().__init__()
        self._readers = {"nifti": NibabelReader()}

    def reader_for(self, fmt: str):
        """The MONAI reader of a format (one of :data:`FORMATS`)."""
        if fmt not in self._readers:
            self._readers[fmt] = _itk_reader()
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


