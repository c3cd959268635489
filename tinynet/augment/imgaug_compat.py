"""Imports imgaug 0.4.0 under NumPy 2 without pinning NumPy below 2.

imgaug 0.4.0 (its last release) reads ``np.sctypes`` at import time, which NumPy 2.0 removed,
and a few rarely used code paths name the removed alias ``np.complex``. TensorFlow 2.21,
pandas 3 and OpenCV 5 need NumPy 2, so instead of pinning NumPy we restore those two names
exactly as NumPy 1.x defined them before the first import of imgaug. Nothing else in NumPy is
touched; on NumPy 1.x this is a no-op.
"""
import numpy as np

_SCTYPES = {
    "int": [np.int8, np.int16, np.int32, np.int64],
    "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
    "float": [np.float16, np.float32, np.float64, np.longdouble],
    "complex": [np.complex64, np.complex128, np.clongdouble],
    "others": [bool, object, bytes, str, np.void],
}


def import_imgaug():
    """Returns the ``imgaug`` module, importing it NumPy-2-safely the first time."""
    if "sctypes" not in np.__dict__ and not hasattr(np, "sctypes"):
        np.sctypes = _SCTYPES
    if "complex" not in np.__dict__:
        np.complex = complex
    import imgaug

    return imgaug
