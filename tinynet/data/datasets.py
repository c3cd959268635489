"""The dataset registry: ``get_dataset(name, **kw) -> TrainData``, used by the experiment
scripts, the tools and the tests alike.

    tiny-imagenet             CS231n's 200 classes, 64 px (tinynet.data.tiny_imagenet)
    cifar10, cifar100         Krizhevsky's python pickles, 32 px (tinynet.data.cifar)
    synthetic-tiny-imagenet   generated, in Tiny ImageNet's on-disk layout (alias: synthetic)
    synthetic-cifar10/100     generated, in the CIFAR pickle format and layout

A ``TrainData`` holds decoded uint8 train / val (/ labelled test) ``ImageSet``s, the class
names, the paths of an unlabelled test split where the dataset has one (Tiny ImageNet's
``test/images``, decoded on demand by ``unlabelled_test()``), and the dataset's normalisation:
the per-channel ``mean``/``std`` its papers used (``normalization("mean_std")``) or the
training set's own mean (``normalization("mean")``).
The name and the arguments are recorded in a run's config.json (``spec``), so that
``get_dataset(**spec)`` rebuilds the same data from a run directory.
"""
import dataclasses
import hashlib
import inspect
import json
import os

import numpy as np

from tinynet.errors import TinynetError

# The normalisation statistics the CIFAR papers used, in the [0, 1] scale. CIFAR-10: the NYU
# code of seed 004 (transforms.Normalize). CIFAR-100: Multi-ResNet's (fb.resnet.torch, 0-255
# scale in the original, divided by 255 here).
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((129.3 / 255, 124.1 / 255, 112.4 / 255), (68.2 / 255, 65.4 / 255, 70.4 / 255)),
}
SYNTHETIC_TINY = dict(num_classes=20, train_per_class=100, val_per_class=20, test_images=20)
SYNTHETIC_CIFAR = dict(train_per_class=100, test_per_class=20)


@dataclasses.dataclass
class TrainData:
    """Decoded training, validation (and labelled test) sets plus what a report needs."""

    train: object  # tinynet.data.pipeline.ImageSet
    val: object
    class_names: list
    description: dict  # dataset kind, root, sizes: recorded in config.json
    test: object | None = None
    mean: tuple | None = None  # the dataset's published per-channel statistics, [0, 1] scale
    std: tuple | None = None
    spec: dict = dataclasses.field(default_factory=dict)  # {"name": ..., "args": {...}}
    class_ids: list | None = None  # short ids (Tiny ImageNet's wnids); default the names
    # the unlabelled test images (Tiny ImageNet's test/images/test_<i>.JPEG), sorted paths, not
    # decoded; None: the dataset has no unlabelled test split (CIFAR's test split is labelled)
    test_files: list | None = None
    _unlabelled_test: tuple | None = dataclasses.field(default=None, repr=False, compare=False)
    _fingerprint: dict | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def num_classes(self):
        return len(self.class_names)

    def unlabelled_test(self):
        """``(file names, ImageSet)`` of the unlabelled test split, decoded on the first call
        (every file must decode: a challenge submission covers every test image). The set's
        labels are -1 (unknown). ``TinynetError`` where the dataset has no such split."""
        if self._unlabelled_test is None:
            name = self.spec.get("name")
            if self.test_files is None:
                raise TinynetError(f"dataset {name!r} has no unlabelled test split (only Tiny "
                                   f"ImageNet's test/images is one)")
            if not self.test_files:
                root = self.description.get("root", "the dataset folder")
                raise TinynetError(f"dataset {name!r} has no test images: {root}/test/images "
                                   f"is missing or empty; extract the archive again")
            from tinynet.data.images import decode_images
            from tinynet.data.pipeline import ImageSet

            size = self.val.image_size
            images, kept = decode_images(self.test_files, size, skip_corrupt=True)
            if len(kept) != len(self.test_files):
                bad = sorted(set(self.test_files) - {self.test_files[i] for i in kept})
                raise TinynetError(f"corrupt or unreadable test image {bad[0]}: a submission "
                                   f"needs every test image; replace it from the archive")
            names = [os.path.basename(p) for p in self.test_files]
            self._unlabelled_test = (names, ImageSet(labels=np.full(len(names), -1, np.int32),
                                                     image_size=size, images=images))
        return self._unlabelled_test

    def fingerprint(self):
        """A small JSON-able summary of the loaded data, to tell whether a run resumes on the
        data it started with (see ``fingerprint_of``); computed once, then cached."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint_of(self)
        return self._fingerprint

    def normalization(self, kind):
        """``(mean, std)`` arrays for ``Protocol.normalize``: None, "mean", "mean_std" (the
        dataset's published statistics) or ``{"mean": [...], "std": [...]}`` (a protocol's
        own, on the [0, 1] scale)."""
        if kind is None:
            return None, None
        if isinstance(kind, dict):
            return np.asarray(kind["mean"], np.float32), np.asarray(kind["std"], np.float32)
        if kind == "mean":
            return self.train.channel_mean(), None
        if kind == "mean_std":
            if self.mean is None or self.std is None:
                raise TinynetError(f"dataset {self.spec.get('name')!r} has no published mean/std;"
                                   f" use the training set's mean (normalize='mean') instead")
            return np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        raise TinynetError(f"unknown normalisation {kind!r}; use None, 'mean' or 'mean_std'")


# ---------------------------------------------------------------------------------------------
# Fingerprints: which data a run trained on

FINGERPRINT_VERSION = 1
FINGERPRINT_SAMPLES = 64  # images hashed per split, at a fixed stride through it
_MAX_LISTED_CLASSES = 1000  # longer class lists are recorded by their hash alone
_SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}


def _sha(data):
    return hashlib.sha256(data).hexdigest()[:16]


def sample_positions(n, count=FINGERPRINT_SAMPLES):
    """``count`` positions spread evenly over ``range(n)`` (all of them when ``n <= count``):
    the same for every process and independent of how the images are stored."""
    count = min(count, n)
    return (np.arange(count, dtype=np.int64) * n) // max(count, 1)


def _split_fingerprint(image_set):
    """Count, labels hash and sampled-pixels hash of one ``ImageSet``. The pixels are the
    decoded ones in both storage modes (in-memory arrays, or files decoded per epoch, where
    only the sampled files are decoded here), so ``--cache`` does not change the result."""
    idx = sample_positions(len(image_set))
    if image_set.in_memory:
        sample = np.asarray(image_set.images[idx])
    else:
        from tinynet.data.images import decode_images

        sample, _ = decode_images([image_set.paths[i] for i in idx], image_set.image_size)
    pixels = hashlib.sha256(repr(sample.shape).encode())
    pixels.update(np.ascontiguousarray(sample, np.uint8).tobytes())
    labels = np.ascontiguousarray(image_set.labels, "<i4").tobytes()
    return {"count": int(len(image_set)), "labels": _sha(labels),
            "images": pixels.hexdigest()[:16], "sampled": int(len(idx))}


def fingerprint_of(data):
    """The fingerprint of a ``TrainData``: a small JSON-able dict of

    * ``classes``: the class ids (Tiny ImageNet's wnids, else the class names) in class-index
      order, kept so that a difference can be named; ``classes_sha256`` their hash;
    * ``train``, ``val`` (and ``test`` where a labelled test set differs from ``val``):
      ``count``, ``labels`` (hash of all labels), ``images`` (hash of the decoded pixels of
      ``sampled`` images at a fixed stride) and ``sampled``;
    * ``image_size`` and ``version``.

    Only hashlib digests of bytes, never Python's ``hash()``: the same data gives the same
    fingerprint in every process and for either ``--cache`` mode, whereas another dataset,
    another seed of a generated one, or another validation split gives another. A few
    milliseconds for in-memory data of any size; for data read from files, 64 files per split
    are decoded.
    """
    ids = [str(c) for c in (data.class_ids or data.class_names)]
    out = {"version": FINGERPRINT_VERSION, "num_classes": len(ids),
           "classes_sha256": _sha(json.dumps(ids).encode()),
           "image_size": int(data.train.image_size)}
    if len(ids) <= _MAX_LISTED_CLASSES:
        out["classes"] = ids
    out["train"] = _split_fingerprint(data.train)
    out["val"] = _split_fingerprint(data.val)
    if data.test is not None and data.test is not data.val:
        out["test"] = _split_fingerprint(data.test)
    return out


def _class_difference(stored, current):
    a, b = stored.get("classes"), current.get("classes")
    n, m = stored.get("num_classes"), current.get("num_classes")
    counts = f"{n} classes both" if n == m else f"{n} classes recorded, {m} now"
    if isinstance(a, list) and isinstance(b, list):
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
        if first is not None:
            return (f"the class list differs ({counts}; first difference: {a[first]} "
                    f"recorded vs {b[first]} now, class {first})")
    return f"the class list differs ({counts})"


def describe_fingerprint_difference(stored, current):
    """A short phrase saying how the data fingerprint ``stored`` (from a run's config.json)
    differs from ``current`` (``TrainData.fingerprint()``), e.g. "the class list differs (200
    classes both; first difference: n01443537 recorded vs n01629819 now, class 3)" or "the
    training labels differ; the sampled validation images differ". None when they match, and
    when nothing was recorded (``stored`` None: a run directory that holds no fingerprint).
    """
    if stored is None:
        return None
    if not isinstance(stored, dict) or not isinstance(current, dict):
        return "the recorded data fingerprint is unreadable (not a JSON object)"
    if stored.get("version") != current.get("version"):
        return (f"the data fingerprint was recorded by another tinynet version (format "
                f"{stored.get('version')!r}, now {current.get('version')!r}), so the data "
                f"cannot be compared")
    parts = []
    if stored.get("classes_sha256") != current.get("classes_sha256"):
        parts.append(_class_difference(stored, current))
    if stored.get("image_size") != current.get("image_size"):
        parts.append(f"the image size differs ({stored.get('image_size')} px recorded, "
                     f"{current.get('image_size')} px now)")
    for key, word in _SPLIT_WORDS.items():
        a, b = stored.get(key), current.get(key)
        if a == b:
            continue
        if not isinstance(a, dict) or not isinstance(b, dict):
            had, has = ("a", "none") if isinstance(a, dict) else ("no", "one")
            parts.append(f"the recorded data had {had} separate {word} set, this data has {has}")
        elif a.get("count") != b.get("count"):
            parts.append(f"the {word} set has {b.get('count')} images, "
                         f"{a.get('count')} recorded")
        else:
            if a.get("labels") != b.get("labels"):
                parts.append(f"the {word} labels differ")
            if a.get("images") != b.get("images") or a.get("sampled") != b.get("sampled"):
                parts.append(f"the sampled {word} images differ")
    if not parts and stored != current:
        parts.append("the data fingerprints differ")
    return "; ".join(parts) or None


def _abs(path):
    return os.path.abspath(os.path.expanduser(str(path)))


def _tiny_imagenet_data(root, cache, skip_corrupt, kind):
    from tinynet.data import tiny_imagenet
    from tinynet.data.pipeline import load_split

    index = tiny_imagenet.load_index(root)
    train = load_split(index.train, tiny_imagenet.IMAGE_SIZE, cache, skip_corrupt)
    val = load_split(index.val, tiny_imagenet.IMAGE_SIZE, cache, skip_corrupt)
    description = {"dataset": kind, "root": root, "num_train": len(train), "num_val": len(val),
                   "num_classes": index.num_classes, "in_memory": train.in_memory}
    return TrainData(train=train, val=val, class_names=index.class_names,
                     description=description, class_ids=list(index.wnids),
                     test_files=list(index.test.paths))


def tiny_imagenet(data_dir="data", cache="auto", skip_corrupt=False, download=True):
    """Tiny ImageNet from ``data_dir`` (the folder, its parent, or the zip's folder),
    downloaded there if absent and ``download``."""
    from tinynet.data import tiny_imagenet as ti

    root = ti.prepare(data_dir, allow_download=download)
    return _tiny_imagenet_data(root, cache, skip_corrupt, "tiny-imagenet")


def synthetic_tiny_imagenet(data_dir="data/synthetic", cache="auto", skip_corrupt=False,
                            num_classes=None, train_per_class=None, val_per_class=None,
                            test_images=None, seed=None):
    """A generated dataset in Tiny ImageNet's layout (``tinynet.data.synthetic``), made in
    ``data_dir`` on first use. Sizes and seed left None are those of the dataset already in
    ``data_dir`` (whoever made it: a ``--quick`` run, a tool), else ``SYNTHETIC_TINY``'s and
    seed 0; one given and different from the folder's is refused."""
    from tinynet.data.synthetic import ensure_synthetic_tiny_imagenet

    root = _abs(data_dir)
    asked = {k: v for k, v in dict(num_classes=num_classes, train_per_class=train_per_class,
                                   val_per_class=val_per_class, test_images=test_images,
                                   seed=seed).items() if v is not None}
    if not os.path.exists(root):
        asked = {**SYNTHETIC_TINY, "seed": 0, **asked}
    root = ensure_synthetic_tiny_imagenet(root, **asked)
    return _tiny_imagenet_data(root, cache, skip_corrupt, "synthetic")


def _cifar_data(root, name, kind, val_split, split_seed):
    from tinynet.data import cifar
    from tinynet.data.pipeline import ImageSet

    arrays = cifar.load(root, name)
    train_idx, val_idx = cifar.split_validation(len(arrays.train_labels), val_split, split_seed)
    test = ImageSet(labels=arrays.test_labels, image_size=32, images=arrays.test_images)
    train = ImageSet(labels=arrays.train_labels[train_idx], image_size=32,
                     images=arrays.train_images[train_idx])
    if val_idx is None:  # validate on the test set, as Multi-ResNet did
        val = test
    else:
        val = ImageSet(labels=arrays.train_labels[val_idx], image_size=32,
                       images=arrays.train_images[val_idx])
    description = {"dataset": kind, "root": root, "num_train": len(train), "num_val": len(val),
                   "num_test": len(test), "num_classes": len(arrays.class_names),
                   "val_split": val_split, "split_seed": split_seed,
                   "validation": "test set" if val_idx is None else "held out of train",
                   "in_memory": True}
    mean, std = CIFAR_STATS[name]
    return TrainData(train=train, val=val, test=test, class_names=arrays.class_names,
                     description=description, mean=mean, std=std)


def _cifar_entry(name):
    def load(data_dir="data", val_split=0, split_seed=43, download=True):
        from tinynet.data import cifar

        root = cifar.prepare(data_dir, name, allow_download=download)
        return _cifar_data(root, name, name, val_split, split_seed)

    load.__name__ = name
    load.__doc__ = (f"{name.upper()} from ``data_dir`` (its python archive or extracted folder, "
                    f"downloaded if absent and ``download``); ``val_split`` training images "
                    f"held out for validation by a permutation seeded with ``split_seed`` "
                    f"(0: validate on the test set).")
    return load


def _synthetic_cifar_entry(name):
    def load(data_dir=f"data/synthetic-{name}", val_split=0, split_seed=43, num_classes=None,
             train_per_class=None, test_per_class=None, seed=None):
        from tinynet.data.synthetic import ensure_synthetic_cifar

        root = _abs(data_dir)
        asked = {k: v for k, v in dict(train_per_class=train_per_class,
                                       test_per_class=test_per_class, seed=seed).items()
                 if v is not None}
        if not os.path.exists(root):
            asked = {**SYNTHETIC_CIFAR, "seed": 0, **asked}
        root = ensure_synthetic_cifar(root, name, num_classes=num_classes, **asked)
        return _cifar_data(root, name, f"synthetic-{name}", val_split, split_seed)

    load.__name__ = f"synthetic_{name}"
    load.__doc__ = (f"A generated {name} in the real pickle format and layout "
                    f"(``tinynet.data.synthetic``), made in ``data_dir`` on first use; sizes "
                    f"and seed left None are the folder's, else SYNTHETIC_CIFAR's and seed 0.")
    return load


_REGISTRY = {
    "tiny-imagenet": tiny_imagenet,
    "synthetic-tiny-imagenet": synthetic_tiny_imagenet,
    "cifar10": _cifar_entry("cifar10"),
    "cifar100": _cifar_entry("cifar100"),
    "synthetic-cifar10": _synthetic_cifar_entry("cifar10"),
    "synthetic-cifar100": _synthetic_cifar_entry("cifar100"),
}
ALIASES = {"synthetic": "synthetic-tiny-imagenet"}
SYNTHETIC_OF = {"tiny-imagenet": "synthetic-tiny-imagenet", "cifar10": "synthetic-cifar10",
                "cifar100": "synthetic-cifar100"}
def list_datasets():
    return sorted(_REGISTRY)


def default_data_dir(name):
    """Where the command line looks for (or generates) dataset ``name``."""
    key = ALIASES.get(name, name)
    if key == "synthetic-tiny-imagenet":
        return os.path.join("data", "synthetic")
    return os.path.join("data", key) if key.startswith("synthetic") else "data"


def dataset_arguments(name):
    """The keyword arguments dataset ``name`` accepts."""
    return list(inspect.signature(_REGISTRY[ALIASES.get(name, name)]).parameters)


# Arguments that say where and how to read the data, not which data it is (not part of a
# run's identity).
LOCATION_ARGS = ("data_dir", "download", "cache")


def get_dataset(name, **kwargs):
    """Loads registered dataset ``name``; unknown names and arguments are errors."""
    key = ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise TinynetError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    accepted = dataset_arguments(key)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TinynetError(f"dataset {key!r} takes no argument(s) {', '.join(unknown)}; "
                           f"it accepts: {', '.join(accepted)}")
    if "data_dir" in kwargs:
        kwargs["data_dir"] = _abs(kwargs["data_dir"])
    data = _REGISTRY[key](**kwargs)
    data.spec = {"name": key, "args": kwargs}
    return data
