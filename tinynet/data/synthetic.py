"""A generated dataset in exactly Tiny ImageNet's on-disk layout, for tests and CPU demos.

Every class has its own pair of colours and its own stripe orientation and frequency; each image
draws a random phase, a small shift of both colours, brightness and pixel noise. The stripes are
at most 3 cycles per image, so the class pattern survives nearest-neighbour downsampling to
16 px (the progressive protocol's smallest stage) and a small model learns it in a minute on a
CPU. A few training images are written as single-channel (grayscale) JPEGs, as in the real set.
The output is a deterministic function of the arguments (the seed included).
"""
import json
import os
import shutil
import tempfile

import cv2
import numpy as np

from tinynet.errors import TinynetError

MARKER = "synthetic.json"


def _class_patterns(num_classes, rng):
    colours = rng.uniform(20, 235, size=(num_classes, 2, 3))
    angles = rng.uniform(0, np.pi, size=num_classes)
    freqs = rng.choice([1.0, 1.5, 2.0, 3.0], size=num_classes)
    return colours, angles, freqs


def _render(cls, patterns, size, rng):
    colours, angles, freqs = patterns
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = xx * np.cos(angles[cls]) + yy * np.sin(angles[cls])
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (freqs[cls] * t + rng.uniform()))
    c0, c1 = colours[cls] + rng.normal(0, 12, size=(2, 3))
    image = c0 + (c1 - c0) * wave[..., None]
    image = image * rng.uniform(0.85, 1.15) + rng.normal(0, 10, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _write_jpeg(path, rgb, grayscale=False):
    if grayscale:
        ok, buf = cv2.imencode(".JPEG", cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
                               [cv2.IMWRITE_JPEG_QUALITY, 90])
    else:
        ok, buf = cv2.imencode(".JPEG", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    buf.tofile(path)


def write_synthetic_tiny_imagenet(root, num_classes=10, train_per_class=50, val_per_class=10,
                                  test_images=20, image_size=64, grayscale_every=25, seed=0):
    """Writes the dataset under ``root`` (which must not exist) and returns ``root``.

    The tree is built in a temporary sibling folder and renamed into place, so an interrupted
    generation never leaves a half-written dataset that looks complete.
    """
    spec = dict(num_classes=num_classes, train_per_class=train_per_class,
                val_per_class=val_per_class, test_images=test_images, image_size=image_size,
                grayscale_every=grayscale_every, seed=seed)
    if num_classes < 2 or train_per_class < 1 or val_per_class < 1 or image_size < 8:
        raise TinynetError(f"impossible synthetic dataset {spec}: need >= 2 classes, >= 1 image "
                           f"per class and split, images of >= 8 px")
    rng = np.random.default_rng(seed)
    patterns = _class_patterns(num_classes, rng)
    wnids = [f"n{90000000 + 7919 * i:08d}" for i in range(num_classes)]
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".synthetic-", dir=parent)
    try:
        with open(os.path.join(tmp, "wnids.txt"), "w") as f:
            # wnids.txt is not sorted in the real set either; class index = sorted order.
            f.writelines(w + "\n" for w in reversed(wnids))
        with open(os.path.join(tmp, "words.txt"), "w") as f:
            for i, w in enumerate(wnids):
                f.write(f"{w}\tsynthetic class {i}, stripes {i}\n")
            for j in range(3):  # words.txt covers more ids than the dataset uses
                f.write(f"n{80000000 + j:08d}\tunused synset {j}\n")
        for c, w in enumerate(wnids):
            folder = os.path.join(tmp, "train", w, "images")
            os.makedirs(folder)
            boxes = []
            for i in range(train_per_class):
                name = f"{w}_{i}.JPEG"
                gray = grayscale_every and (c * train_per_class + i) % grayscale_every == 0
                _write_jpeg(os.path.join(folder, name), _render(c, patterns, image_size, rng), gray)
                boxes.append(f"{name}\t0\t0\t{image_size - 1}\t{image_size - 1}\n")
            with open(os.path.join(tmp, "train", w, f"{w}_boxes.txt"), "w") as f:
                f.writelines(boxes)
        os.makedirs(os.path.join(tmp, "val", "images"))
        val_classes = rng.permutation(np.repeat(np.arange(num_classes), val_per_class))
        with open(os.path.join(tmp, "val", "val_annotations.txt"), "w") as f:
            for i, c in enumerate(val_classes):
                name = f"val_{i}.JPEG"
                _write_jpeg(os.path.join(tmp, "val", "images", name),
                            _render(c, patterns, image_size, rng))
                f.write(f"{name}\t{wnids[c]}\t0\t0\t{image_size - 1}\t{image_size - 1}\n")
        os.makedirs(os.path.join(tmp, "test", "images"))
        for i in range(test_images):
            _write_jpeg(os.path.join(tmp, "test", "images", f"test_{i}.JPEG"),
                        _render(int(rng.integers(num_classes)), patterns, image_size, rng))
        with open(os.path.join(tmp, MARKER), "w") as f:
            json.dump(spec, f, indent=2, sort_keys=True)
        os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def ensure_synthetic_tiny_imagenet(root, **spec):
    """Returns ``root``, generating it first if absent; refuses a folder made with another spec."""
    marker = os.path.join(root, MARKER)
    if not os.path.exists(root):
        return write_synthetic_tiny_imagenet(root, **spec)
    if not os.path.isfile(marker):
        raise TinynetError(f"{root} exists but is not a generated dataset ({MARKER} missing); "
                           f"pass another --data-dir for synthetic data")
    with open(marker) as f:
        found = json.load(f)
    wanted = dict(found, **spec)
    if found != wanted:
        raise TinynetError(f"{root} holds a synthetic dataset made with {found}, not {wanted}; "
                           f"delete it or pass another --data-dir")
    return root
