"""A generated dataset in exactly Tiny ImageNet's on-disk layout, for tests and CPU demos.

Every class has its own pair of colours and its own stripe orientation and frequency; each image
draws a random phase, a small shift of both colours, brightness and pixel noise. The stripes are
at most 3 cycles per image, so the class pattern survives nearest-neighbour downsampling to
16 px (the progressive protocol's smallest stage) and a small model learns it in a minute on a
CPU. A few training images are written as single-channel (grayscale) JPEGs, as in the real set.
The output is a deterministic function of the arguments (the seed included).
"""
import contextlib
import json
import os
import pickle
import shutil
import tarfile
import tempfile

import cv2
import numpy as np

from tinynet.data import archives as _archives
from tinynet.data import cifar as _cifar
from tinynet.data.archives import md5sum as _md5sum
from tinynet.errors import TinynetError

MARKER = _archives.SYNTHETIC_MARKER


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


def _read_marker(root):
    """The spec a generated dataset at ``root`` was made with, or None."""
    try:
        with open(os.path.join(root, MARKER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _built_in_place(root, spec):
    """Yields a temporary sibling folder of ``root`` to write a dataset into; when the block
    completes, adds the spec marker and renames the folder to ``root``, so an interrupted
    generation never leaves a half-written dataset that looks complete. When another process
    (a multi-worker cluster's other member) made the same dataset first, its copy is kept."""
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".synthetic-", dir=parent)
    try:
        yield tmp
        with open(os.path.join(tmp, MARKER), "w") as f:
            json.dump(spec, f, indent=2, sort_keys=True)
        try:
            os.rename(tmp, root)
        except OSError:
            if _read_marker(root) != json.loads(json.dumps(spec)):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # made meanwhile by another process
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
    with _built_in_place(root, spec) as tmp:
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
    return root


def ensure_synthetic_tiny_imagenet(root, **spec):
    """Returns ``root``, generating it first if absent; refuses a folder made with another spec."""
    marker = os.path.join(root, MARKER)
    if not os.path.exists(root):
        return write_synthetic_tiny_imagenet(root, **spec)
    _archives.require_folder(root, "a generated dataset (or nothing yet)")
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


# ---------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 in the real "python version" format (tinynet.data.cifar parses it).


# Files of the real archives that the parser ignores; written so that it is tested ignoring them.
_CIFAR_EXTRAS = {"cifar10": ("readme.html", "<html><body>synthetic CIFAR-10</body></html>\n"),
                 "cifar100": ("file.txt~", "")}


def _cifar_spec(name, num_classes, train_per_class, test_per_class, seed):
    """The marker's dict, with ``num_classes=None`` resolved to the real count (10 or 100)."""
    real = _cifar.get_spec(name)
    num_classes = real.num_classes if num_classes is None else num_classes
    spec = dict(name=name, num_classes=num_classes, train_per_class=train_per_class,
                test_per_class=test_per_class, seed=seed)
    if not 2 <= num_classes <= real.num_classes or train_per_class < 1 or test_per_class < 1:
        raise TinynetError(f"impossible synthetic {real.title} {spec}: need 2 to "
                           f"{real.num_classes} classes and >= 1 image per class and split")
    return spec


def render_synthetic_cifar(name="cifar10", num_classes=None, train_per_class=50,
                           test_per_class=10, seed=0):
    """The images and labels ``write_synthetic_cifar`` writes, as ``cifar.CifarArrays`` (NHWC):
    what ``cifar.load`` must read back. Classes are in random order, as in the real batches."""
    spec = _cifar_spec(name, num_classes, train_per_class, test_per_class, seed)
    n = spec["num_classes"]
    rng = np.random.default_rng(seed)
    patterns = _class_patterns(n, rng)

    def split(per_class):
        labels = rng.permutation(np.repeat(np.arange(n), per_class)).astype(np.int32)
        return np.stack([_render(c, patterns, _cifar.IMAGE_SIZE, rng) for c in labels]), labels

    train_images, train_labels = split(train_per_class)
    test_images, test_labels = split(test_per_class)
    return _cifar.CifarArrays(train_images, train_labels, test_images, test_labels,
                              class_names=[f"synthetic_{i}" for i in range(n)])


def _cifar_batch(name, images, labels, batch_label, first):
    """One batch dict as the real files hold it: bytes keys, channel-major uint8 rows, labels
    as lists of Python ints (CIFAR-100: fine and coarse), file names as bytes."""
    real = _cifar.get_spec(name)
    batch = {
        b"batch_label": batch_label.encode(),
        real.label_key: [int(c) for c in labels],
        # NHWC -> NCHW -> one row of 1024 red, 1024 green, 1024 blue values per image.
        b"data": np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1),
        b"filenames": [f"synthetic_{c}_s_{first + i:06d}.png".encode()
                       for i, c in enumerate(labels)],
    }
    if name == "cifar100":  # 5 fine classes per coarse class, as in the real set
        batch[b"coarse_labels"] = [int(c) // 5 for c in labels]
    return batch


def _cifar_meta(name, class_names, batch_size):
    if name == "cifar10":
        return {b"num_cases_per_batch": batch_size, b"num_vis": 3 * _cifar.IMAGE_SIZE ** 2,
                b"label_names": [c.encode() for c in class_names]}
    groups = (len(class_names) + 4) // 5
    return {b"fine_label_names": [c.encode() for c in class_names],
            b"coarse_label_names": [f"synthetic_group_{j}".encode() for j in range(groups)]}


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the real files are protocol 2 (Python 2's cPickle)


def _write_cifar_files(folder, name, arrays):
    real = _cifar.get_spec(name)
    chunks = np.array_split(np.arange(len(arrays.train_labels)), len(real.train_files))
    for i, (file, idx) in enumerate(zip(real.train_files, chunks), start=1):
        label = f"training batch {i} of {len(chunks)}"
        first = int(idx[0]) if len(idx) else 0
        _dump(os.path.join(folder, file), _cifar_batch(
            name, arrays.train_images[idx], arrays.train_labels[idx], label, first))
    _dump(os.path.join(folder, real.test_file), _cifar_batch(
        name, arrays.test_images, arrays.test_labels, "testing batch 1 of 1", 0))
    _dump(os.path.join(folder, real.meta_file),
          _cifar_meta(name, arrays.class_names, len(chunks[0])))
    extra, text = _CIFAR_EXTRAS[name]
    with open(os.path.join(folder, extra), "w") as f:
        f.write(text)


def write_synthetic_cifar(root, name="cifar10", num_classes=None, train_per_class=50,
                          test_per_class=10, seed=0):
    """Writes a generated CIFAR-10/100 folder at ``root`` (which must not exist) in exactly the
    real layout and pickle format, so tests exercise the real parser; returns ``root``.

    CIFAR-10's training images are spread over data_batch_1..5. The folder is built in a
    temporary sibling and renamed into place, so an interruption leaves nothing that looks
    complete. The output is a deterministic function of the arguments.
    """
    spec = _cifar_spec(name, num_classes, train_per_class, test_per_class, seed)
    if os.path.exists(root):
        raise TinynetError(f"{root} already exists; delete it or use ensure_synthetic_cifar")
    arrays = render_synthetic_cifar(**spec)
    with _built_in_place(root, spec) as tmp:
        _write_cifar_files(tmp, name, arrays)
    return root


def ensure_synthetic_cifar(root, name, **spec):
    """Returns ``root``, generating it first if absent; refuses a folder made with another spec."""
    if not os.path.exists(root):
        return write_synthetic_cifar(root, name, **spec)
    _archives.require_folder(root, "a generated dataset (or nothing yet)")
    marker = os.path.join(root, MARKER)
    if not os.path.isfile(marker):
        raise TinynetError(f"{root} exists but is not a generated dataset ({MARKER} missing); "
                           f"pass another --data-dir for synthetic data")
    with open(marker) as f:
        found = json.load(f)
    if spec.get("num_classes", 0) is None:  # None means the real count, as in the writer
        spec["num_classes"] = _cifar.get_spec(name).num_classes
    wanted = dict(found, name=name, **spec)
    if found != wanted:
        raise TinynetError(f"{root} holds a synthetic dataset made with {found}, not {wanted}; "
                           f"delete it or pass another --data-dir")
    return root


def write_synthetic_cifar_archive(data_dir, name="cifar10", **spec):
    """Packs a generated folder as the real archive ``data_dir/<archive name>`` (with the real
    folder name inside), for tests of ``cifar.prepare``; returns ``(archive_path, md5)``."""
    real = _cifar.get_spec(name)
    os.makedirs(data_dir, exist_ok=True)
    archive = os.path.join(data_dir, real.archive)
    tmp = tempfile.mkdtemp(prefix=".synthetic-archive-", dir=data_dir)
    try:
        folder = write_synthetic_cifar(os.path.join(tmp, real.folder), name, **spec)
        with tarfile.open(archive + ".part", "w:gz") as tar:
            tar.add(folder, arcname=real.folder)
        os.replace(archive + ".part", archive)  # never a half-written archive under the real name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return archive, _md5sum(archive)
