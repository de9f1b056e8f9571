"""Reader for the IDX file format used by MNIST and its relatives.

The parser lives in the runtime package because both the device (``predict`` on an
IDX file) and the training pipeline need it, and only numpy is required.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from edge_runtime.errors import DataError
from edge_runtime.files import read_user_file

# IDX type codes -> big-endian numpy dtypes, as defined by the format.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx_bytes(path: str | os.PathLike[str]) -> bytes:
    """Return the decompressed bytes of an IDX file, gzip-compressed or not.

    Compression is detected from the content, not the name, so a renamed file
    still loads.

    Raises
    ------
    DataError
        The file is missing, unreadable, or a corrupt/truncated gzip stream.
    """
    p = Path(path)
    raw = read_user_file(p, DataError, "an IDX file")
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{p}: corrupt or truncated gzip data ({exc})") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX content into an array of its declared shape and dtype.

    Parameters
    ----------
    data : bytes
        Uncompressed IDX content.
    name : str
        Used in error messages only.

    Returns
    -------
    numpy.ndarray
        Native-endian array with the shape stored in the header.

    Raises
    ------
    DataError
        Wrong magic number, unknown type code, truncated or oversized payload.

    Examples
    --------
    >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])).tolist()
    [7, 9]
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{name}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    dtype = _IDX_DTYPES.get(data[2])
    if dtype is None:
        raise DataError(f"{name}: not an IDX file (unknown type code 0x{data[2]:02x})")
    ndim = data[3]
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares zero dimensions")
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise DataError(f"{name}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_end
    if actual < expected:
        raise DataError(f"{name}: truncated IDX data ({actual} of {expected} bytes present)")
    if actual > expected:
        raise DataError(f"{name}: {actual - expected} unexpected bytes after the IDX data")
    array = np.frombuffer(data, dtype=dtype, offset=header_end).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array.

    Examples
    --------
    >>> images = read_idx("train/mnist/t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.shape  # doctest: +SKIP
    (10000, 28, 28)
    """
    return parse_idx(read_idx_bytes(path), name=str(path))
