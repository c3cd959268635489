"""Tiny ImageNet (CS231n): download, verification, safe extraction and an index of the real layout.

Layout of ``tiny-imagenet-200/`` (200 classes, 64x64 JPEGs, some grayscale)::

    wnids.txt                                   200 WordNet ids
    words.txt                                   wnid <TAB> comma-separated names (82k ids)
    train/<wnid>/images/<wnid>_<i>.JPEG         500 per class (+ <wnid>_boxes.txt)
    val/images/val_<i>.JPEG                     10,000
    val/val_annotations.txt                     file <TAB> wnid <TAB> x0 y0 x1 y1
    test/images/test_<i>.JPEG                   10,000, unlabeled

Class index = position in the *sorted* wnids, as Keras ``flow_from_directory`` (used by the
original DenseNet code) numbers the sorted train sub-folders.
"""
import dataclasses
import os
import shutil
import zipfile

import numpy as np

from tinynet.data import archives
from tinynet.data.archives import md5sum  # noqa: F401  (part of this module's interface)
from tinynet.errors import TinynetError

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
ARCHIVE = "tiny-imagenet-200.zip"
FOLDER = "tiny-imagenet-200"
IMAGE_SIZE = 64


@dataclasses.dataclass
class Split:
    """Image paths of one split and their class indices (``None`` for the unlabeled test split)."""

    paths: list
    labels: np.ndarray | None

    def __len__(self):
        return len(self.paths)


@dataclasses.dataclass
class TinyImageNetIndex:
    root: str
    wnids: list  # sorted; class index i is wnids[i]
    class_names: list  # words.txt names of each class, in class-index order
    train: Split
    val: Split
    test: Split

    @property
    def num_classes(self):
        return len(self.wnids)


def verify_archive(path, md5=MD5):
    got = md5sum(path)
    if got != md5:
        raise TinynetError(
            f"{path} has MD5 {got}, expected {md5}: the archive is incomplete or not Tiny "
            f"ImageNet; delete it and download it again from {URL}"
        )


def safe_extract(archive, target):
    """Extracts a zip archive, refusing any entry that would land outside ``target``."""
    target_real = os.path.realpath(target)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                dest = os.path.realpath(os.path.join(target_real, member.filename))
                if dest != target_real and not dest.startswith(target_real + os.sep):
                    raise TinynetError(
                        f"refusing to extract {archive}: entry {member.filename!r} would be "
                        f"written outside {target}; the archive is not a genuine dataset"
                    )
            zf.extractall(target_real)
    except zipfile.BadZipFile as e:
        raise TinynetError(f"{archive} is not a valid zip archive ({e}); delete it and "
                           f"download it again from {URL}") from None


def download(dest, url=URL):
    """Downloads ``url`` to ``dest`` (through a ``.part`` file)."""
    archives.download(url, dest, f"download it elsewhere and put {os.path.basename(dest)} "
                                 f"(MD5 {MD5}) in {os.path.dirname(dest) or '.'}, then re-run")


def prepare(data_dir, allow_download=True, url=URL, md5=MD5):
    """Returns the dataset root under ``data_dir``, extracting or downloading it if needed.

    Accepts ``data_dir`` being the dataset root itself, containing ``tiny-imagenet-200/``, or
    containing the archive ``tiny-imagenet-200.zip``.
    """
    data_dir = os.path.abspath(os.path.expanduser(data_dir))
    for root in (data_dir, os.path.join(data_dir, FOLDER)):
        if os.path.isfile(os.path.join(root, "wnids.txt")):
            return root
    archive = os.path.join(data_dir, ARCHIVE)
    if not os.path.exists(archive):
        if not allow_download:
            raise TinynetError(
                f"no Tiny ImageNet in {data_dir}: put {ARCHIVE} (from {url}) or the extracted "
                f"{FOLDER}/ folder there"
            )
        os.makedirs(data_dir, exist_ok=True)
        print(f"downloading {url} to {archive} (about 240 MB)", flush=True)
        download(archive, url)
    verify_archive(archive, md5)
    # Extract beside the target and rename when complete: a kill mid-extraction must not
    # leave a folder that looks like the dataset but lacks images.
    partial = os.path.join(data_dir, f".{FOLDER}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        safe_extract(archive, partial)
        extracted = os.path.join(partial, FOLDER)
        if not os.path.isfile(os.path.join(extracted, "wnids.txt")):
            raise TinynetError(f"{archive} did not contain {FOLDER}/wnids.txt; it is not "
                               f"Tiny ImageNet")
        root = os.path.join(data_dir, FOLDER)
        shutil.rmtree(root, ignore_errors=True)  # an incomplete folder without wnids.txt
        os.rename(extracted, root)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return root


def _read_lines(path, what):
    if not os.path.isfile(path):
        raise TinynetError(f"{path} is missing: {what}; is this a Tiny ImageNet folder?")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def _list_images(folder):
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith((".jpeg", ".jpg", ".png")))


def load_index(root):
    """Indexes the on-disk layout (see module docstring) without reading any image."""
    wnids = sorted(w.strip() for w in _read_lines(os.path.join(root, "wnids.txt"), "the class list"))
    if len(set(wnids)) != len(wnids):
        raise TinynetError(f"{root}/wnids.txt lists a class twice")
    class_of = {w: i for i, w in enumerate(wnids)}

    words = {}
    words_path = os.path.join(root, "words.txt")
    if os.path.isfile(words_path):
        for line in _read_lines(words_path, "class names"):
            wnid, _, names = line.partition("\t")
            words[wnid.strip()] = names.strip()
    class_names = [words.get(w, w) for w in wnids]

    train_paths, train_labels = [], []
    for w in wnids:
        images = _list_images(os.path.join(root, "train", w, "images"))
        if not images:
            raise TinynetError(f"no training images in {root}/train/{w}/images: the dataset is "
                               f"incomplete; extract the archive again")
        train_paths += images
        train_labels += [class_of[w]] * len(images)

    val_paths, val_labels = [], []
    ann = os.path.join(root, "val", "val_annotations.txt")
    for n, line in enumerate(_read_lines(ann, "validation labels"), start=1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in class_of:
            raise TinynetError(f"{ann} line {n} is not 'file<TAB>wnid<TAB>box' with a wnid "
                               f"from wnids.txt: {line!r}")
        val_paths.append(os.path.join(root, "val", "images", fields[0]))
        val_labels.append(class_of[fields[1]])

    test_paths = _list_images(os.path.join(root, "test", "images"))
    return TinyImageNetIndex(
        root=root, wnids=wnids, class_names=class_names,
        train=Split(train_paths, np.asarray(train_labels, np.int32)),
        val=Split(val_paths, np.asarray(val_labels, np.int32)),
        test=Split(test_paths, None),
    )
