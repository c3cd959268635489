"""Decoding image files into one uint8 array, with corrupt files named by their path.

Decoding runs once per run (not per epoch) in a parallel tf.data map. TensorFlow's decode error
does not say which file failed, so only when the fast path fails are the files checked one by
one, to name the culprit (default) or to drop every corrupt file and count them.
"""
import numpy as np
import tensorflow as tf

from tinynet.errors import TinynetError


def decode_file(path, image_size):
    """One image file -> uint8 ``[size, size, 3]``: grayscale is expanded to 3 channels, other
    sizes are resized with nearest neighbour (Tiny ImageNet is 64x64 throughout)."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(image, [image_size, image_size], method="nearest")
    image.set_shape([image_size, image_size, 3])
    return image


# TensorFlow's CPU kernels require their buffers aligned to Eigen's widest vector (64 bytes with
# AVX-512); NumPy aligns large arrays to 16 only
TENSOR_ALIGNMENT = 64


def aligned_empty(shape, dtype=np.uint8):
    """An uninitialised C-contiguous array whose data start on a ``TENSOR_ALIGNMENT`` boundary,
    so that ``host_tensor`` can hand it to TensorFlow without a copy."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + TENSOR_ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % TENSOR_ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def host_tensor(array):
    """``array`` as a TensorFlow tensor in host memory. A C-contiguous array aligned for
    TensorFlow (``aligned_empty``) is shared through DLPack, without a copy: Tiny ImageNet's
    decoded training set is 1.2 GB, and ``tf.constant`` holds a second copy of it (and a third
    while it converts), which took the host's peak memory from 2.1 to 4.7 GB before the model
    existed (tools/scale_rehearsal.py). Any other array is copied, as ``tf.constant`` does.
    The array must not be written afterwards."""
    with tf.device("/cpu:0"):
        if (array.flags.c_contiguous and array.ctypes.data % TENSOR_ALIGNMENT == 0
                and array.size > 0):
            return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        return tf.constant(array)


def _decode_all(paths, image_size, keep=True, batch=1024):
    out = aligned_empty((len(paths), image_size, image_size, 3)) if keep else None
    ds = (tf.data.Dataset.from_tensor_slices(np.asarray(paths, dtype=object).astype(str))
          .map(lambda p: decode_file(p, image_size), num_parallel_calls=tf.data.AUTOTUNE)
          .batch(batch).prefetch(2))
    pos = 0
    for chunk in ds.as_numpy_iterator():
        if keep:
            out[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    return out


def find_corrupt(paths, image_size):
    """Paths that fail to decode, checked one at a time (slow; only after a failure)."""
    bad = []
    for p in paths:
        try:
            decode_file(tf.constant(p), image_size)
        except (tf.errors.OpError, ValueError):
            bad.append(p)
    return bad


def decode_images(paths, image_size=64, skip_corrupt=False, keep=True):
    """Decodes ``paths`` into ``uint8 [N, size, size, 3]`` (``None`` with ``keep=False``, which
    only checks that every file decodes, for data streamed from files each epoch).

    Returns ``(images, kept)`` where ``kept`` are the indices of ``paths`` that were decoded:
    all of them, unless ``skip_corrupt`` dropped some. A missing or corrupt file raises
    ``TinynetError`` naming it unless ``skip_corrupt``.
    """
    if len(paths) == 0:
        return np.empty((0, image_size, image_size, 3), np.uint8), np.arange(0)
    try:
        return _decode_all(paths, image_size, keep), np.arange(len(paths))
    except tf.errors.OpError:
        bad = find_corrupt(paths, image_size)
        if not bad:
            raise
    if not skip_corrupt:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise TinynetError(f"corrupt or unreadable image {bad[0]}{more}: replace it from the "
                           f"original archive, or pass --skip-corrupt to train without it")
    bad_set = set(bad)
    kept = np.asarray([i for i, p in enumerate(paths) if p not in bad_set], dtype=np.int64)
    print(f"skipped {len(bad)} corrupt image(s), e.g. {bad[0]}", flush=True)
    return _decode_all([paths[i] for i in kept], image_size, keep), kept
