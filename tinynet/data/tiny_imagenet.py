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
import json
import os
import shutil
import tempfile
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


# What a folder must hold at its top to be Tiny ImageNet; checked before any image is listed.
_TOP_LEVEL = ("wnids.txt", "train/", "val/val_annotations.txt", "val/images/", "test/images/")
_REFILL = (f"restore the missing files, or move the folder aside and re-run to extract or "
           f"download {ARCHIVE} again")


def _present(root, entry):
    path = os.path.join(root, entry)
    return os.path.isdir(path) if entry.endswith("/") else os.path.isfile(path)


def _looks_like_dataset(folder):
    """Whether ``folder`` is (part of) an extracted Tiny ImageNet rather than a folder that
    merely holds one: then it is used or reported, never downloaded into."""
    return (os.path.basename(folder) == FOLDER or _present(folder, "wnids.txt")
            or _present(folder, "words.txt") or _present(folder, "val/val_annotations.txt")
            or (_present(folder, "train/") and _present(folder, "val/")))


def find_root(data_dir):
    """The extracted dataset in ``data_dir`` (``data_dir/tiny-imagenet-200`` or ``data_dir``
    itself), or None when there is none at all; a folder holding only part of it raises the
    INCOMPLETE error instead of counting as absent, so that it is never downloaded over."""
    archives.require_folder(data_dir, f"{FOLDER}/ or {ARCHIVE}")
    nested = os.path.join(data_dir, FOLDER)
    if os.path.lexists(nested) and not os.path.isdir(nested):
        raise TinynetError(f"{nested} is a file, not the extracted dataset folder; delete or "
                           f"rename it and re-run")
    for root in (nested, data_dir):
        # An empty folder holds nothing to lose: the archive is extracted as if it were absent.
        if os.path.isdir(root) and os.listdir(root) and _looks_like_dataset(root):
            missing = [e for e in _TOP_LEVEL if not _present(root, e)]
            if missing:
                raise archives.incomplete(root, "Tiny ImageNet", missing, _REFILL)
            return root
    return None


def prepare(data_dir, allow_download=True, url=URL, md5=MD5):
    """Returns the dataset root under ``data_dir``, extracting or downloading it if needed.

    Accepts ``data_dir`` being the dataset root itself, containing ``tiny-imagenet-200/``, or
    containing the archive ``tiny-imagenet-200.zip``. A partial folder is reported INCOMPLETE
    (``find_root``): only a ``data_dir`` without any trace of the dataset gets the archive.
    """
    data_dir = os.path.abspath(os.path.expanduser(str(data_dir)))
    root = find_root(data_dir)
    if root is not None:
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
    # leave a folder that looks like the dataset but lacks images. Each process extracts into
    # its own folder; if another finished first (a cluster's workers), its copy is kept.
    partial = tempfile.mkdtemp(prefix=f".{FOLDER}.partial-", dir=data_dir)
    try:
        safe_extract(archive, partial)
        extracted = os.path.join(partial, FOLDER)
        if not os.path.isfile(os.path.join(extracted, "wnids.txt")):
            raise TinynetError(f"{archive} did not contain {FOLDER}/wnids.txt; it is not "
                               f"Tiny ImageNet: delete it and download it again from {url}")
        root = os.path.join(data_dir, FOLDER)
        try:
            os.rename(extracted, root)
        except OSError:
            if find_root(data_dir) != root:
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return root


def _read_lines(path, what, errors="strict"):
    """The non-blank lines of a text index file, each stripped of surrounding white space.
    CRLF line ends (universal newlines), a UTF-8 byte-order mark (``utf-8-sig``) and trailing
    blank lines, all common after an edit on Windows, are accepted; an empty file is not."""
    if not os.path.isfile(path):
        raise TinynetError(f"{path} is missing: it should hold {what}; extract it again "
                           f"from {ARCHIVE}")
    try:
        with open(path, encoding="utf-8-sig", errors=errors) as f:
            lines = [(n, line.strip()) for n, line in enumerate(f, start=1) if line.strip()]
    except UnicodeDecodeError as e:
        raise TinynetError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): it "
                           f"should hold {what}; extract it again from {ARCHIVE}") from None
    if not lines:
        root = os.path.dirname(path)
        root = os.path.dirname(root) if os.path.basename(root) == "val" else root
        fix = ("delete the generated folder and re-run to make it again"
               if archives.is_generated(root) else f"extract it again from {ARCHIVE}")
        raise TinynetError(f"{path} is empty: it should hold {what}; {fix}")
    return lines


def _list_images(folder):
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith((".jpeg", ".jpg", ".png")))


def _read_wnids(root):
    path = os.path.join(root, "wnids.txt")
    first_line = {}
    for n, wnid in _read_lines(path, "the class list, one WordNet id a line"):
        if wnid in first_line:
            raise TinynetError(f"{path} lists class {wnid} twice (lines {first_line[wnid]} and "
                               f"{n}); delete the second line or extract the file again")
        first_line[wnid] = n
    return sorted(first_line)


def _expected_train_images(root, wnid):
    """The image names ``train/<wnid>/<wnid>_boxes.txt`` lists (every training image of the
    class has a box), or None where the file is missing."""
    path = os.path.join(root, "train", wnid, f"{wnid}_boxes.txt")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return [line.split("\t")[0].strip() for line in f if line.strip()]


def load_index(root):
    """Indexes the on-disk layout (see module docstring) without decoding any image.

    Every file the layout names and tinynet reads is checked first: the top-level files, the
    training images each class's ``<wnid>_boxes.txt`` lists (where it is there: it is read only
    for this check, and a class without it needs one image), the validation images
    ``val_annotations.txt`` lists, and a non-empty ``test/images``. ``words.txt`` (class
    names) and the boxes files are optional, so that a subset made by hand loads. Whatever is missing is
    reported in one INCOMPLETE error (the first few names and the count), so that a partial
    copy is never trained on, nor mistaken for an absent dataset.
    """
    archives.require_folder(root, f"{FOLDER}/")
    missing = [e for e in _TOP_LEVEL if not _present(root, e)]
    # The class list and the validation labels are read even when other files are missing,
    # so that the report covers the images as well.
    wnids = _read_wnids(root) if "wnids.txt" not in missing else []
    class_of = {w: i for i, w in enumerate(wnids)}

    words = {}  # (optional: class names label reports; a subset may leave it out)
    if os.path.isfile(os.path.join(root, "words.txt")):
        for _, line in _read_lines(os.path.join(root, "words.txt"), "wnid<TAB>class names",
                                   errors="replace"):  # names only label reports
            wnid, _, names = line.partition("\t")
            words[wnid.strip()] = names.strip()
    class_names = [words.get(w, w) for w in wnids]

    train_paths, train_labels = [], []
    for w in wnids:
        images = _list_images(os.path.join(root, "train", w, "images"))
        expected = _expected_train_images(root, w)
        if expected is None:  # (optional: a subset may leave it out; then what is there counts)
            if not images:
                missing.append(f"train/{w}/images/*.JPEG")
        else:
            have = {os.path.basename(p) for p in images}
            missing += [f"train/{w}/images/{name}" for name in expected if name not in have]
            if not expected and not images:
                missing.append(f"train/{w}/images/*.JPEG")
        train_paths += images
        train_labels += [class_of[w]] * len(images)

    val_paths, val_labels = [], []
    ann = os.path.join(root, "val", "val_annotations.txt")
    if "val/val_annotations.txt" not in missing:
        folder = os.path.join(root, "val", "images")
        listed = os.path.isdir(folder)  # else val/images/ is reported once, not per file
        have = set(os.listdir(folder)) if listed else set()
        for n, line in _read_lines(ann, "file<TAB>wnid<TAB>box lines"):
            fields = [f.strip() for f in line.split("\t")]
            if len(fields) < 2 or fields[1] not in class_of:
                if not wnids:  # wnids.txt is missing: reported below, not every line
                    continue
                raise TinynetError(f"{ann} line {n} is not 'file<TAB>wnid<TAB>box' with a "
                                   f"wnid from wnids.txt: {line!r}; extract it again from "
                                   f"{ARCHIVE}")
            if listed and fields[0] not in have:
                missing.append(f"val/images/{fields[0]}")
            val_paths.append(os.path.join(folder, fields[0]))
            val_labels.append(class_of[fields[1]])

    test_paths = _list_images(os.path.join(root, "test", "images"))
    if not test_paths and "test/images/" not in missing and not _no_test_images_wanted(root):
        missing.append("test/images/*.JPEG")
    if missing:
        raise archives.incomplete(root, "Tiny ImageNet", missing, _REFILL)
    return TinyImageNetIndex(
        root=root, wnids=wnids, class_names=class_names,
        train=Split(train_paths, np.asarray(train_labels, np.int32)),
        val=Split(val_paths, np.asarray(val_labels, np.int32)),
        test=Split(test_paths, None),
    )


def _no_test_images_wanted(root):
    """A generated dataset made with ``test_images=0`` has an empty test/images by design."""
    try:
        with open(os.path.join(root, archives.SYNTHETIC_MARKER)) as f:
            return json.load(f).get("test_images") == 0
    except (OSError, ValueError, AttributeError):
        return False
