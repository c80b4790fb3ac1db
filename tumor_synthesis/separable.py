"""Separable linear filters of a 3-D box as one matrix product per axis.

A Gaussian blur with scipy's kernel and borders (:func:`blur_matrix`) and a linear resize as
``torch.nn.functional.interpolate(mode="trilinear", align_corners=False)`` computes it
(:func:`resize_matrix`) both act on each axis of an (h, w, d) box independently: along one
axis they are an (n_out, n_in) matrix. :func:`apply_separable` multiplies a box by one such
matrix per axis; a resize followed by a blur is the product of their matrices, one pass.

On the short, many lines of tumor boxes this is several times faster than scipy's
line-by-line filters on one core, and the same code runs on a GPU. The products run in torch,
whose thread count the pipeline controls (one per DataLoader worker).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: scipy.ndimage's default Gaussian truncation, in sigmas: the blur's kernel (and the texture's
#: smoothing kernels) end there.
TRUNCATE = 4.0
#: Output rows of a long axis multiplied at a time, each block with the input rows its
#: matrix reaches only (a band, not the whole matrix).
BLOCK_ROWS = 32
#: Axes up to this many input voxels are multiplied by the whole matrix (a band would not pay
#: for its blocks).
DENSE_MAX = 64
#: Output columns of the last axis multiplied at a time (its lines are the rows of the
#: field, so its blocks are column blocks of the matrix's transpose).
BLOCK_COLUMNS = 64


def blur_matrix(n: int, sigma: float, mode: str = "reflect") -> np.ndarray:
    """(n, n) float64 matrix ``B`` with ``B @ line`` = scipy's ``gaussian_filter1d(line, sigma, mode=mode)``.

    The kernel is scipy's (``exp(-x**2 / (2 sigma**2))`` normalised, truncated at
    :data:`TRUNCATE` sigmas). Borders: "reflect" (``d c b a | a b c d | d c b a``, repeated
    for lines shorter than the kernel) or "nearest" (``a a a | a b c d | d d d``). Entries
    beyond the kernel's radius are exact zeros, so a product keeps scipy's support: a voxel is
    zero exactly where scipy's is.

    Args:
        n: line length (voxels).
        sigma: Gaussian sigma (voxels, > 0).
        mode: "reflect" or "nearest".
    """
    radius = int(TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * offsets.astype(np.float64) ** 2)
    weights /= weights.sum()
    rows = np.arange(n)[:, None]
    source = rows + offsets[None, :]
    if mode == "reflect":
        source = source % (2 * n)
        source = np.where(source < n, source, 2 * n - 1 - source)
    elif mode == "nearest":
        source = np.clip(source, 0, n - 1)
    else:
        raise ValueError(f"mode must be 'reflect' or 'nearest', got {mode!r}")
    flat = np.bincount((rows * n + source).ravel(), weights=np.broadcast_to(weights, source.shape).ravel(),
                       minlength=n * n)
    return flat.reshape(n, n)


@lru_cache(maxsize=256)
def resize_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) float64 matrix of torch's linear resize (``align_corners=False``), one axis.

    Output voxel ``i`` samples the input at ``(i + 0.5) * n_in / n_out - 0.5``, clamped at 0,
    linearly between its two neighbours (the last input voxel repeated past the end).
    """
    scale = n_in / n_out
    source = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    low = source.astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    frac = source - low
    matrix = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    matrix.setflags(write=False)
    return matrix


def apply_separable(field, matrices):
    """``field`` (h, w, d) torch tensor multiplied by one matrix per axis.

    Args:
        field: float32 (h, w, d) tensor (any device).
        matrices: three (n_out, n_in) numpy matrices, ``n_in`` the field's size along that
            axis, or None to leave an axis as it is.

    Returns:
        float32 (n_out0, n_out1, n_out2) tensor on the field's device.
    """
    for axis, matrix in enumerate(matrices):
        if matrix is None:
            continue
        h, w, d = field.shape
        if axis == 0:  # (h, w*d): the lines are the columns
            field = banded_matmul(matrix, field.reshape(h, w * d)).reshape(-1, w, d)
        elif axis == 1:  # a (w, d) matrix per slice of the first axis: batched
            field = banded_matmul(matrix, field)
        else:  # lines are the rows: field @ matrix.T, no transposed copy of the field
            field = _banded_right(field.reshape(h * w, d), matrix, field.device).reshape(h, w, -1)
    return field.contiguous()


def _banded_right(rows, matrix: np.ndarray, device):
    """``rows @ matrix.T`` (``rows``: (m, n_in)) for a banded (n_out, n_in) matrix.

    Blocks of :data:`BLOCK_COLUMNS` output columns take only the input columns they reach.
    """
    import torch  # here: the scorer imports the organ profiles, which reach this module, and stays free of torch

    weights = torch.from_numpy(np.ascontiguousarray(matrix.T, dtype=np.float32)).to(device)
    n_out, n_in = matrix.shape
    if n_in <= DENSE_MAX:
        return rows @ weights
    out = torch.empty((rows.shape[0], n_out), dtype=rows.dtype, device=device)
    for lo, hi, first, last in _band_blocks(matrix, BLOCK_COLUMNS):
        out[:, lo:hi] = rows[:, first:last] @ weights[first:last, lo:hi] if last > first else 0.0
    return out


def banded_matmul(matrix: np.ndarray, other):
    """``matrix @ other`` (``other``: (n_in, m) or (b, n_in, m) tensor) for a banded (n_out, n_in) matrix.

    Blocks of :data:`BLOCK_ROWS` output rows take only the input rows they reach (the matrix's
    exact zeros beyond its band). The band is found on the host, so a GPU product waits on
    nothing. Used for the blur and resize matrices here and for the texture's lattice bumps.
    """
    import torch  # as in _banded_right

    device = other.device
    weights = torch.from_numpy(matrix.astype(np.float32)).to(device)
    n_out, n_in = matrix.shape
    if n_in <= DENSE_MAX:
        return torch.matmul(weights, other)
    out = torch.empty((*other.shape[:-2], n_out, other.shape[-1]), dtype=other.dtype, device=device)
    for lo, hi, first, last in _band_blocks(matrix, BLOCK_ROWS):
        product = torch.matmul(weights[lo:hi, first:last], other[..., first:last, :]) if last > first else 0.0
        out[..., lo:hi, :] = product
    return out


def _band_blocks(matrix: np.ndarray, block: int):
    """``(lo, hi, first, last)`` per block of ``block`` rows ``[lo, hi)`` of a banded matrix.

    ``[first, last)``: the columns those rows reach (non-zero entries), empty (``first ==
    last``) when they reach none. Found on the host, so a GPU product waits on nothing.
    """
    reached = matrix != 0
    for lo in range(0, matrix.shape[0], block):
        hi = min(matrix.shape[0], lo + block)
        columns = np.flatnonzero(reached[lo:hi].any(axis=0))
        yield (lo, hi, 0, 0) if columns.size == 0 else (lo, hi, int(columns[0]), int(columns[-1]) + 1)
