"""The decoded dataset is handed to TensorFlow without a copy (tinynet.data.images.host_tensor):
at Tiny ImageNet's size a copy is 1.2 GB of host memory (tools/scale_rehearsal.py)."""
import numpy as np
import pytest
import tensorflow as tf

from tinynet.data.images import TENSOR_ALIGNMENT, aligned_empty, decode_images, host_tensor
from tinynet.data.pipeline import _batch_source, load_split
from tinynet.data.synthetic import write_synthetic_tiny_imagenet
from tinynet.data.tiny_imagenet import load_index


def resident_bytes():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))


@pytest.mark.parametrize("shape", [(7, 64, 64, 3), (1,), (3, 5)])
def test_aligned_arrays_start_on_tensorflows_boundary(shape):
    a = aligned_empty(shape)
    assert a.shape == shape and a.dtype == np.uint8 and a.flags.c_contiguous
    assert a.ctypes.data % TENSOR_ALIGNMENT == 0


def test_an_aligned_array_is_shared_not_copied():
    a = aligned_empty((200, 1024, 1024))  # 200 MB
    a[...] = 7
    before = resident_bytes()
    t = host_tensor(a)
    assert resident_bytes() - before < 20 * 2 ** 20
    a[3, 5, 9] = 99  # the same memory
    assert int(tf.gather(t, [3])[0, 5, 9]) == 99 and t.device.endswith("CPU:0")


def test_an_unaligned_or_strided_array_is_copied_with_its_values():
    base = np.arange(1000, dtype=np.uint8)
    for a in (base[1:], base[::3]):
        np.testing.assert_array_equal(host_tensor(a).numpy(), a)


def test_decoded_images_are_aligned_and_batches_equal_the_array(tmp_path):
    root = write_synthetic_tiny_imagenet(str(tmp_path / "tiny"), num_classes=3,
                                         train_per_class=4, val_per_class=2, test_images=2)
    split = load_split(load_index(root).train, cache="memory")
    assert split.images.ctypes.data % TENSOR_ALIGNMENT == 0
    images, labels = _batch_source(split)(tf.constant([0, 11, 5]))
    np.testing.assert_array_equal(images.numpy(), split.images[[0, 11, 5]])
    np.testing.assert_array_equal(labels.numpy(), split.labels[[0, 11, 5]])
