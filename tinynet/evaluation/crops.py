"""10-crop testing (He et al. 2016, after Krizhevsky et al. 2012): the four corner crops and the
centre crop of each image, each also flipped horizontally, and the model's softmax averaged over
the ten views.

Views, in this fixed order (``VIEWS``): top-left, top-right, bottom-left, bottom-right, centre,
then the same five flipped left-right. Corner crops touch the image's edges; the centre crop
starts at ``((H - crop) // 2, (W - crop) // 2)``. The default crop is 7/8 of the image side,
rounded (``default_crop_size``): 56 px of Tiny ImageNet's 64, 28 px of CIFAR's 32.

Crops are cut from the images as the dataset stores them (64 px for Tiny ImageNet), then each
crop is resized back to the run's validation resolution with the run's interpolation and
normalised with the run's statistics, exactly as ``tinynet.data.pipeline.eval_dataset`` prepares
a whole image. Resizing back (rather than feeding the smaller crop) is a choice: it lets models
with a fixed input size (keras.applications backbones at 224 px, Model 2 at 64 px) take the
views, and a fully convolutional model sees objects at the scale it validated at.
"""
import numpy as np

from tinynet.errors import TinynetError

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right", "centre")
VIEWS = CORNERS + tuple(f"{c} flipped" for c in CORNERS)


def default_crop_size(image_size):
    """7/8 of the image side, rounded: 56 for 64 px images, 28 for 32 px."""
    return max(1, int(round(image_size * 7 / 8)))


def crop_offsets(height, width, crop_size):
    """``(y, x)`` of the five crops' top-left pixels, in ``CORNERS`` order."""
    if not isinstance(crop_size, (int, np.integer)) or not 1 <= crop_size <= min(height, width):
        raise TinynetError(f"crop size must be an integer from 1 to {min(height, width)} (the "
                           f"image side), got {crop_size!r}")
    bottom, right = height - crop_size, width - crop_size
    return [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]


def ten_crop_views(images, crop_size=None):
    """The ten views of a batch ``[N, H, W, C]`` (numpy array or tensor) as ``[10, N, crop,
    crop, C]`` of the same kind and dtype, view ``v`` being ``VIEWS[v]``."""
    height, width = int(images.shape[1]), int(images.shape[2])
    crop_size = default_crop_size(min(height, width)) if crop_size is None else crop_size
    crops = [images[:, y:y + crop_size, x:x + crop_size, :]
             for y, x in crop_offsets(height, width, crop_size)]
    views = crops + [c[:, :, ::-1, :] for c in crops]
    if isinstance(images, np.ndarray):
        return np.stack(views)
    import tensorflow as tf

    return tf.stack(views)


def ten_crop_dataset(image_set, batch_size, resolution=None, interpolation="nearest", mean=None,
                     std=None, crop_size=None):
    """The split in order, once, as ``(x, labels)`` batches of ``b <= batch_size`` images whose
    ``x`` holds their ``10 * b`` views view-major (row ``v * b + i``: view ``v`` of image
    ``i``), each resized to ``resolution`` and normalised as ``eval_dataset`` does."""
    import tensorflow as tf

    from tinynet.data.pipeline import eval_dataset

    crop_size = default_crop_size(image_set.image_size) if crop_size is None else crop_size
    crop_offsets(image_set.image_size, image_set.image_size, crop_size)  # checks the size

    def views(images):
        stacked = ten_crop_views(images, crop_size)
        return tf.reshape(stacked, [-1, crop_size, crop_size, stacked.shape[-1]])

    return eval_dataset(image_set, batch_size, resolution, interpolation, mean, std,
                        views=views)


def average_views(view_probabilities, num_images, batch_size):
    """Undoes ``ten_crop_dataset``'s layout: ``[10 * N, K]`` predictions (batch after batch)
    -> ``[N, K]``, the mean over each image's ten views."""
    out, start = [], 0
    for first in range(0, num_images, batch_size):
        b = min(batch_size, num_images - first)
        chunk = np.asarray(view_probabilities[start:start + 10 * b], np.float64)
        out.append(chunk.reshape(10, b, -1).mean(axis=0))
        start += 10 * b
    if start != len(view_probabilities):
        raise ValueError(f"expected {start} view predictions, got {len(view_probabilities)}")
    if not out:
        return np.zeros((0, view_probabilities.shape[-1]), np.float32)
    return np.concatenate(out).astype(np.float32)


def predict_ten_crop(model, image_set, batch_size, resolution=None, interpolation="nearest",
                     mean=None, std=None, crop_size=None):
    """``[N, classes]``: the model's softmax averaged over each image's ten views.
    ``batch_size`` is the number of views per forward pass (rounded down to whole images),
    so 10-crop needs no more memory than plain evaluation at the same batch size."""
    images_per_batch = max(1, batch_size // 10)
    ds = ten_crop_dataset(image_set, images_per_batch, resolution, interpolation, mean, std,
                          crop_size)
    return average_views(model.predict(ds, verbose=0), len(image_set), images_per_batch)
