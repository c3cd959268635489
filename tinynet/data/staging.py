"""A dataset archive kept on slow persistent storage, trained from the local disk.

On Colab (and on a preemptible VM with a bucket or network disk) the local disk is wiped with
the session and Google Drive is what survives; but reading Tiny ImageNet's 120,000 small JPEGs
through the Drive mount one file at a time takes far longer than the training's first epoch.
So the archive is fetched once into the kept folder (Drive), and every session copies that one
file to the local disk, where the registry's own ``prepare`` verifies its MD5 and extracts it
(``tinynet.data.tiny_imagenet.prepare``, ``tinynet.data.cifar.prepare``). A session that
already has the extracted folder (the notebook's cell run twice) copies nothing.

    from tinynet.data.staging import stage_dataset
    stage_dataset("tiny-imagenet", "/content/drive/MyDrive/tinynet/data", "/content/data")
    # then: --dataset tiny-imagenet --data-dir /content/data

Generated datasets (``synthetic-*``) have no archive: they are made where the run asks.
"""
import dataclasses
import hashlib
import os

from tinynet.data import archives, cifar, tiny_imagenet
from tinynet.errors import TinynetError


@dataclasses.dataclass(frozen=True)
class Archive:
    """One downloadable dataset: its archive's name, official URL and MD5, the function that
    finds it extracted in a folder (``find(data_dir)``: the root or None; a partial folder
    raises) and the one that verifies and extracts it (``prepare(data_dir, allow_download,
    url, md5)``)."""

    file: str
    url: str
    md5: str
    find: object
    prepare: object


def _cifar_archive(name):
    spec = cifar.get_spec(name)
    return Archive(spec.archive, spec.url, spec.md5,
                   lambda data_dir: cifar.find_root(data_dir, spec),
                   lambda data_dir, allow_download, url, md5: cifar.prepare(
                       data_dir, name, allow_download, url, md5))


ARCHIVES = {
    "tiny-imagenet": Archive(tiny_imagenet.ARCHIVE, tiny_imagenet.URL, tiny_imagenet.MD5,
                             tiny_imagenet.find_root, tiny_imagenet.prepare),
    "cifar10": _cifar_archive("cifar10"),
    "cifar100": _cifar_archive("cifar100"),
}


def _copy(source, dest):
    """Copies ``source`` to ``dest`` through a temporary name, so that a session lost during
    the copy leaves no file that looks like a whole archive; returns the MD5 of what it read
    (one pass over the file, which on Drive is the slow part)."""
    part = f"{dest}.{os.getpid()}.part"
    digest = hashlib.md5()
    try:
        with open(source, "rb") as src, open(part, "wb") as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        os.replace(part, dest)
    finally:
        if os.path.exists(part):
            os.remove(part)
    return digest.hexdigest()


def keep_archive(name, keep_dir, url=None, md5=None):
    """The path of dataset ``name``'s archive in ``keep_dir``, downloaded there (and its MD5
    checked) the first time. Raises ``TinynetError`` for an unknown dataset or a download that
    fails (saying where to put the file by hand)."""
    if name not in ARCHIVES:
        raise TinynetError(f"dataset {name!r} has no archive to keep (known: "
                           f"{', '.join(ARCHIVES)}; synthetic-* datasets are generated where "
                           f"the run asks)")
    entry = ARCHIVES[name]
    url, md5 = url or entry.url, md5 or entry.md5
    kept = os.path.join(os.path.abspath(os.path.expanduser(keep_dir)), entry.file)
    if os.path.isfile(kept):
        return kept
    archives.require_folder(os.path.dirname(kept), entry.file)
    os.makedirs(os.path.dirname(kept), exist_ok=True)
    print(f"downloading {url} to {kept} (once: later sessions copy it from there)", flush=True)
    archives.download(url, kept, f"put {entry.file} (from {url}, MD5 {md5}) in "
                                 f"{os.path.dirname(kept)} by hand, then re-run")
    got = archives.md5sum(kept)
    if got != md5:
        os.remove(kept)  # a download of ours, not a user's file
        raise TinynetError(f"the download of {url} has MD5 {got}, expected {md5}; re-run to "
                           f"download it again")
    return kept


def stage_dataset(name, keep_dir, local_dir, url=None, md5=None):
    """Dataset ``name`` extracted under ``local_dir``, from its archive kept in ``keep_dir``
    (downloaded there the first time): returns the extracted folder, for ``--data-dir
    local_dir``. ``url`` and ``md5`` replace the official ones (a mirror, or a test's archive).
    A ``local_dir`` that already holds the dataset is used as it is."""
    if name not in ARCHIVES:
        keep_archive(name, keep_dir)  # the one-line refusal
    entry = ARCHIVES[name]
    local_dir = os.path.abspath(os.path.expanduser(local_dir))
    archives.require_folder(local_dir, entry.file)
    local = os.path.join(local_dir, entry.file)
    # a folder holding part of the dataset raises INCOMPLETE here: never copied over
    if not (os.path.isdir(local_dir) and entry.find(local_dir)) and not os.path.isfile(local):
        kept = keep_archive(name, keep_dir, url, md5)
        os.makedirs(local_dir, exist_ok=True)
        print(f"copying {kept} to {local}", flush=True)
        got = _copy(kept, local)
        if got != (md5 or entry.md5):
            os.remove(local)  # our copy; the kept file is the user's to replace
            raise TinynetError(f"the kept archive {kept} has MD5 {got}, expected "
                               f"{md5 or entry.md5}: it is incomplete or not {name}; replace "
                               f"it, or move it away and re-run to download it again")
    return entry.prepare(local_dir, False, url or entry.url, md5 or entry.md5)
