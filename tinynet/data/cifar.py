"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny
Images"), the datasets of the CIFAR ResNet reproductions (seeds 003 and 004): download,
verification, safe extraction and a parser of the "python version" batches.

Layout of the extracted archives::

    cifar-10-batches-py/    data_batch_1 .. data_batch_5 (10,000 images each), test_batch
                            (10,000), batches.meta (b"label_names"), readme.html
    cifar-100-python/       train (50,000), test (10,000), meta (b"fine_label_names",
                            b"coarse_label_names")

Every batch is a pickled dict with bytes keys: b"data" is uint8 [N, 3072], channel-major (the
1024 red values of an image row by row, then green, then blue), b"labels" (CIFAR-10) or
b"fine_labels" and b"coarse_labels" (CIFAR-100) are lists of ints, plus b"filenames" and
b"batch_label". Unpickling can run arbitrary code, so batches are read with an unpickler that
only builds numpy arrays (see ``_BatchUnpickler``).
"""
import dataclasses
import gzip
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib

import numpy as np

try:  # numpy 2 moved numpy.core to numpy._core (the old name is a deprecated alias)
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

from tinynet.data import archives
from tinynet.data.archives import md5sum, one_line as _one_line
from tinynet.errors import TinynetError

IMAGE_SIZE = 32
_PIXELS = 3 * IMAGE_SIZE * IMAGE_SIZE


@dataclasses.dataclass(frozen=True)
class CifarSpec:
    """Where one CIFAR variant comes from and what its extracted folder holds."""

    title: str  # for messages
    url: str
    md5: str
    archive: str
    folder: str  # the single top-level folder inside the archive
    train_files: tuple  # concatenated in this order
    test_file: str
    meta_file: str
    label_key: bytes  # the labels used for training (CIFAR-100: the 100 fine classes)
    names_key: bytes  # the class names of label_key, in the meta file
    num_classes: int
    size_mb: int  # archive size, for the download notice

    @property
    def files(self):
        return (*self.train_files, self.test_file, self.meta_file)


DATASETS = {
    "cifar10": CifarSpec(
        title="CIFAR-10", url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a", archive="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py", train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch", meta_file="batches.meta", label_key=b"labels",
        names_key=b"label_names", num_classes=10, size_mb=170),
    "cifar100": CifarSpec(
        title="CIFAR-100", url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85", archive="cifar-100-python.tar.gz",
        folder="cifar-100-python", train_files=("train",), test_file="test", meta_file="meta",
        label_key=b"fine_labels", names_key=b"fine_label_names", num_classes=100, size_mb=169),
}


@dataclasses.dataclass
class CifarArrays:
    """A whole CIFAR variant in memory (50,000 + 10,000 images of 3 KB: 180 MB)."""

    train_images: np.ndarray  # uint8 [N, 32, 32, 3], NHWC
    train_labels: np.ndarray  # int32 [N]
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list  # class_names[label]

    @property
    def num_classes(self):
        return len(self.class_names)


def get_spec(name):
    """The ``CifarSpec`` of ``name``; an unknown name is a user error, not a KeyError."""
    if name not in DATASETS:
        raise TinynetError(f"unknown CIFAR dataset {name!r}: use one of {', '.join(DATASETS)}")
    return DATASETS[name]


# ---------------------------------------------------------------------------------------------
# Download, verification, extraction


def _offline_message(spec, data_dir, url, md5):
    return (f"no {spec.title} in {data_dir}: put {spec.archive} (from {url}, MD5 {md5}) or its "
            f"extracted {spec.folder}/ folder there, then re-run")


def download(spec, dest, url, md5):
    """Downloads ``url`` to ``dest`` (through a ``.part`` file); a failure says where to put
    the archive by hand."""
    archives.download(url, dest, _offline_message(spec, os.path.dirname(dest), url, md5))


def verify_archive(spec, path, url, md5):
    got = md5sum(path)
    if got != md5:
        raise TinynetError(f"{path} has MD5 {got}, expected {md5}: the archive is incomplete or "
                           f"not {spec.title}; delete it and download it again from {url}")


def _check_member(archive, member, target_real):
    """Refuses a tar entry that could write outside ``target_real`` or create anything but a
    plain file or folder (links can point anywhere; devices and FIFOs have no place in a
    dataset)."""
    def refuse(why):
        raise TinynetError(f"refusing to extract {archive}: entry {member.name!r} {why}; the "
                           f"archive is not genuine, delete it and download it again")

    if os.path.isabs(member.name) or member.name.startswith(("/", "\\")):
        refuse("has an absolute path")
    dest = os.path.realpath(os.path.join(target_real, member.name))
    if dest != target_real and not dest.startswith(target_real + os.sep):
        refuse("would be written outside the target folder")
    if member.issym() or member.islnk():
        refuse(f"is a {'symbolic' if member.issym() else 'hard'} link")
    if not (member.isfile() or member.isdir()):
        refuse("is a device, FIFO or other special file")


def safe_extract(archive, target, url):
    """Extracts a .tar.gz into ``target`` after checking every entry (``_check_member``), so
    a refused archive writes nothing at all."""
    target_real = os.path.realpath(target)
    try:
        with tarfile.open(archive, "r:gz") as tar:  # both real archives are gzip
            members = tar.getmembers()
            for member in members:
                _check_member(archive, member, target_real)
            os.makedirs(target_real, exist_ok=True)
            # The "data" filter repeats these checks inside tarfile (defence in depth) and
            # drops permission bits such as setuid.
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(target_real, members=members, **extra)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise TinynetError(f"{archive} is not a valid .tar.gz archive ({_one_line(e)}); delete "
                           f"it and download it again from {url}") from None


def _missing_files(root, spec):
    return [f for f in spec.files if not os.path.isfile(os.path.join(root, f))]


def _refill(spec):
    return (f"restore the missing files, or move the folder aside and re-run to extract or "
            f"download {spec.archive} again")


def find_root(data_dir, spec):
    """The extracted folder in ``data_dir`` (``data_dir`` itself or ``data_dir/<folder>``), or
    None; a folder holding only some of the batch files is reported INCOMPLETE, never taken
    as absent (which would download and extract over it)."""
    archives.require_folder(data_dir, f"{spec.folder}/ or {spec.archive}")
    nested = os.path.join(data_dir, spec.folder)
    if os.path.lexists(nested) and not os.path.isdir(nested):
        raise TinynetError(f"{nested} is a file, not the extracted {spec.title} folder; delete "
                           f"or rename it and re-run")
    for root in (nested, data_dir):
        if not os.path.isdir(root) or not os.listdir(root):  # empty: nothing to lose
            continue
        missing = _missing_files(root, spec)
        is_dataset = root != data_dir or os.path.basename(root) == spec.folder \
            or len(missing) < len(spec.files)
        if is_dataset and not missing:
            return root
        if is_dataset:
            raise archives.incomplete(root, spec.title, missing, _refill(spec))
    return None


def prepare(data_dir, name, allow_download=True, url=None, md5=None):
    """Returns the extracted folder of ``name`` under ``data_dir``, extracting or downloading
    the archive if needed.

    Accepts ``data_dir`` being the extracted folder itself, containing it, or containing the
    archive. ``url`` and ``md5`` override the spec's (a mirror, or tests).
    """
    spec = get_spec(name)
    url, md5 = url or spec.url, md5 or spec.md5
    data_dir = os.path.abspath(os.path.expanduser(str(data_dir)))
    root = find_root(data_dir, spec)
    if root is not None:
        return root
    archive = os.path.join(data_dir, spec.archive)
    if not os.path.isfile(archive):
        if not allow_download:
            raise TinynetError(_offline_message(spec, data_dir, url, md5))
        os.makedirs(data_dir, exist_ok=True)
        print(f"downloading {url} to {archive} (about {spec.size_mb} MB)", flush=True)
        download(spec, archive, url, md5)
    verify_archive(spec, archive, url, md5)
    return _extract_into_place(spec, archive, data_dir, url)


def _extract_into_place(spec, archive, data_dir, url):
    # Extract beside the target and rename when complete: a kill mid-extraction must not
    # leave a folder that looks like the dataset but lacks batches. Each process extracts into
    # its own folder; if another finished first (a cluster's workers), its copy is kept.
    partial = tempfile.mkdtemp(prefix=f".{spec.folder}.partial-", dir=data_dir)
    try:
        safe_extract(archive, partial, url)
        extracted = os.path.join(partial, spec.folder)
        missing = _missing_files(extracted, spec)
        if missing:
            raise TinynetError(f"{archive} lacks {spec.folder}/{missing[0]}: it is not "
                               f"{spec.title}; delete it and download it again from {url}")
        root = os.path.join(data_dir, spec.folder)
        try:
            os.rename(extracted, root)
        except OSError:
            if find_root(data_dir, spec) != root:
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return root


# ---------------------------------------------------------------------------------------------
# Parsing


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as numpy arrays pickled by Python 3 at protocol 2 use it (their raw
    bytes travel as a latin-1 string); no other codec is needed, so none other is allowed."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


# What a pickled numpy array needs, and nothing else: the real batches were written by Python 2
# (numpy.core.*), the generated ones by Python 3 and numpy 2 (numpy._core.*, _codecs.encode).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch; any global other than ``_ALLOWED_GLOBALS`` (os.system, ...)
    is refused before it is imported, so a forged batch cannot run code."""

    def __init__(self, file, path):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[module, name]
        raise TinynetError(f"refusing to load {self.path}: it asks for {module}.{name}, which a "
                           f"CIFAR batch never contains; the file is not genuine, delete it and "
                           f"extract the archive again")


def _read_pickle(path):
    """The dict pickled in ``path``, read with ``_BatchUnpickler``."""
    try:
        with open(path, "rb") as f:
            obj = _BatchUnpickler(f, path).load()
    except TinynetError:
        raise
    except Exception as e:  # a truncated or garbled pickle fails in many ways
        raise TinynetError(f"could not read {path}: it is truncated or corrupt "
                           f"({type(e).__name__}: {_one_line(e)}); delete the folder and "
                           f"extract the archive again") from None
    if not isinstance(obj, dict):
        raise TinynetError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict; "
                           f"delete the folder and extract the archive again")
    return obj


def _require(path, batch, key):
    if key not in batch:
        raise TinynetError(f"{path} has no {key!r} entry (it has {sorted(batch)}): not a CIFAR "
                           f"batch of this variant; delete the folder and extract the archive "
                           f"again")
    return batch[key]


def _read_class_names(path, spec):
    names = _require(path, _read_pickle(path), spec.names_key)
    if not isinstance(names, list) or not all(isinstance(n, bytes) for n in names) \
            or not 2 <= len(names) <= spec.num_classes:
        raise TinynetError(f"{path}: {spec.names_key!r} is not a list of 2 to "
                           f"{spec.num_classes} byte strings; delete the folder and extract "
                           f"the archive again")
    return [n.decode("utf-8") for n in names]


def _read_batch(path, spec, num_classes):
    """Images (NHWC uint8) and labels (int32) of one batch file, checked."""
    batch = _read_pickle(path)
    data, labels = _require(path, batch, b"data"), _require(path, batch, spec.label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != _PIXELS:
        got = (f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise TinynetError(f"{path}: b'data' is {got}, expected uint8 [N, {_PIXELS}]; delete "
                           f"the folder and extract the archive again")
    labels = np.asarray(labels)
    if labels.shape != (len(data),) or (labels.size and labels.dtype.kind not in "iu"):
        raise TinynetError(f"{path}: {spec.label_key!r} is not {len(data)} integers, one per "
                           f"image; delete the folder and extract the archive again")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise TinynetError(f"{path}: labels range {labels.min()}..{labels.max()}, outside the "
                           f"{num_classes} classes of {spec.meta_file}; delete the folder and "
                           f"extract the archive again")
    # Channel-major rows -> [N, C, H, W] -> [N, H, W, C], the layout Keras expects.
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def load(root, name):
    """Reads the extracted folder ``root`` of ``name`` (see ``prepare``) into memory.

    The class names come from the meta file; a generated set may have fewer classes than the
    real one, and every label must name one of them.
    """
    spec = get_spec(name)
    archives.require_folder(root, f"the {spec.title} batch files")
    missing = _missing_files(root, spec)
    if missing:
        raise archives.incomplete(root, spec.title, missing, _refill(spec))
    class_names = _read_class_names(os.path.join(root, spec.meta_file), spec)
    train = [_read_batch(os.path.join(root, f), spec, len(class_names)) for f in spec.train_files]
    test_images, test_labels = _read_batch(os.path.join(root, spec.test_file), spec,
                                           len(class_names))
    return CifarArrays(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images, test_labels=test_labels, class_names=class_names)


def split_validation(num_train, val_split, seed):
    """Holds out ``val_split`` random training images for validation: returns sorted
    ``(train_idx, val_idx)``, a deterministic function of ``seed``.

    ``val_split == 0`` returns ``(arange(num_train), None)``: no held-out set, validate on the
    test set (what the CIFAR ResNet papers report). ``--val-split 5000 --split-seed 43``
    matches NYU's 45k/5k split in size and seed; the exact indices of torch's ``random_split``
    cannot be reproduced without torch's generator, so the images held out differ.
    """
    if isinstance(val_split, bool) or not isinstance(val_split, (int, np.integer)) \
            or not 0 <= val_split < num_train:
        raise TinynetError(f"validation split {val_split!r} is impossible with {num_train} "
                           f"training images: use an integer from 0 (validate on the test set) "
                           f"to {num_train - 1}")
    if val_split == 0:
        return np.arange(num_train), None
    perm = np.random.default_rng(seed).permutation(num_train)
    return np.sort(perm[val_split:]), np.sort(perm[:val_split])
