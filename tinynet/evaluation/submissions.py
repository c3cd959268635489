"""The Tiny ImageNet challenge's test submission (CS231n): one line per test image,
``<file name> <predicted wnid>`` (``test_0.JPEG n01443537``), sorted by file name (plain string
order, as ``sort`` gives: test_0, test_1, test_10, ...), written atomically.

The test split is unlabelled; ``TrainData.unlabelled_test()`` decodes its images
(``test/images/test_<i>.JPEG``). CIFAR has no such split and no submission format: its test
split is labelled, so it is evaluated (``--split test``), not submitted.
"""
import numpy as np

from tinynet.errors import TinynetError


def check_submittable(data):
    """``TinynetError`` unless ``data`` (a ``TrainData``) has an unlabelled test split with
    class ids to submit; cheap (nothing is decoded)."""
    name = data.spec.get("name")
    if data.test_files is None:
        raise TinynetError(f"dataset {name!r} has no challenge submission format (only Tiny "
                           f"ImageNet's unlabelled test split is submitted); evaluate its "
                           f"labelled test split instead (--split test)")
    if not data.test_files:
        root = data.description.get("root", "the dataset folder")
        raise TinynetError(f"dataset {name!r} has no test images: {root}/test/images is missing "
                           f"or empty; extract the archive again")


def submission_lines(file_names, probabilities, class_ids):
    """``"<file> <wnid>"`` per image, the wnid of the most probable class, sorted by file."""
    probabilities = np.asarray(probabilities)
    if probabilities.shape != (len(file_names), len(class_ids)):
        raise TinynetError(f"{probabilities.shape} predictions for {len(file_names)} test images "
                           f"and {len(class_ids)} classes")
    predicted = probabilities.argmax(axis=1)
    return sorted(f"{f} {class_ids[c]}" for f, c in zip(file_names, predicted))


def write_submission(path, file_names, probabilities, class_ids):
    """Writes the submission file atomically; returns its number of lines."""
    from tinynet import io as tio

    lines = submission_lines(file_names, probabilities, class_ids)
    try:
        tio.write_text_atomic(path, "".join(line + "\n" for line in lines))
    except OSError as e:
        raise TinynetError(f"cannot write the submission {path}: {e.strerror or e}") from None
    return len(lines)


def make_submission(predictor, path, ten_crop=False, crop_size=None):
    """The test submission of ``predictor`` (a ``LoadedRun`` or an ``Ensemble``, whose
    ``predict_images`` gives probabilities) written to ``path``; returns its number of lines."""
    data = predictor.data
    check_submittable(data)
    file_names, image_set = data.unlabelled_test()
    probabilities = predictor.predict_images(image_set, ten_crop, crop_size)
    return write_submission(path, file_names, probabilities,
                            list(data.class_ids or data.class_names))
