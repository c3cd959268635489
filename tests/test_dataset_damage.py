"""Damaged dataset folders (issue 12): a partial copy is reported INCOMPLETE by name and never
downloaded or extracted over; broken index files are named; a data folder that is a file says
so; Windows line ends keep working. And the data fingerprint a run records, so that a resume
on other data is refused."""
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from tinynet.data import archives, cifar, tiny_imagenet
from tinynet.data.datasets import (TrainData, describe_fingerprint_difference, fingerprint_of,
                                   get_dataset)
from tinynet.data.pipeline import ImageSet
from tinynet.data.synthetic import write_synthetic_cifar

from conftest import one_line_error

CIFAR_SMALL = dict(train_per_class=3, test_per_class=2, seed=5)




@pytest.fixture
def no_download(monkeypatch):
    """Fails the test if anything is downloaded."""
    def refuse(url, *args, **kwargs):
        raise AssertionError(f"a download of {url} was attempted")
    monkeypatch.setattr(archives, "download", refuse)


def _tree(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


@pytest.fixture
def tiny_copy(small_root, tmp_path):
    """``tmp_path/tiny-imagenet-200``: a copy of the 5-class tree without the generated marker,
    so that it reads as an extracted real dataset."""
    root = str(tmp_path / tiny_imagenet.FOLDER)
    shutil.copytree(small_root, root)
    os.remove(os.path.join(root, archives.SYNTHETIC_MARKER))
    return root


def _wnids(root):
    return tiny_imagenet.load_index(root).wnids


# -- Tiny ImageNet: partial folders -------------------------------------------------------------
def _remove(root, *relative):
    for rel in relative:
        path = os.path.join(root, rel)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


@pytest.mark.parametrize("damage,named", [
    (lambda r, w: _remove(r, "wnids.txt"), "wnids.txt"),
    (lambda r, w: _remove(r, f"train/{w}/images/{w}_5.JPEG"), "train/{w}/images/{w}_5.JPEG"),
    (lambda r, w: _remove(r, "val/val_annotations.txt"), "val/val_annotations.txt"),
    (lambda r, w: _remove(r, "val/images/val_3.JPEG"), "val/images/val_3.JPEG"),
    (lambda r, w: _remove(r, "test/images"), "test/images/"),
    (lambda r, w: [_remove(r, f"test/images/{f}") for f in os.listdir(f"{r}/test/images")],
     "test/images/*.JPEG"),
])
def test_a_partial_tiny_imagenet_is_named_and_never_downloaded_over(tiny_copy, tmp_path, damage,
                                                                    named, no_download):
    w = _wnids(tiny_copy)[1]
    damage(tiny_copy, w)
    before = _tree(tmp_path)
    message = one_line_error(get_dataset, "tiny-imagenet", data_dir=tmp_path, download=True)
    named = named.format(w=w)
    assert f"the Tiny ImageNet folder {tiny_copy} is INCOMPLETE: {named} is missing (1 missing " \
           f"in all); restore the missing files, or move the folder aside and re-run to extract " \
           f"or download tiny-imagenet-200.zip again" == message
    # The folder itself as --data-dir: the same report, not a download into it.
    assert one_line_error(get_dataset, "tiny-imagenet", data_dir=tiny_copy) == message
    assert _tree(tmp_path) == before


def test_a_subset_without_the_files_tinynet_does_not_need_loads(tiny_copy):
    """words.txt (class names) and the boxes files (bounding boxes, read only to check that the
    images they list are there) may be left out of a subset a user made."""
    before = tiny_imagenet.load_index(tiny_copy)
    wnids = _wnids(tiny_copy)
    _remove(tiny_copy, "words.txt", *[f"train/{w}/{w}_boxes.txt" for w in wnids])
    after = tiny_imagenet.load_index(tiny_copy)
    assert after.class_names == after.wnids == before.wnids
    assert after.train.paths == before.train.paths
    _remove(tiny_copy, f"train/{wnids[0]}/images")  # a class with no images is still missing
    assert f"train/{wnids[0]}/images/*.JPEG is missing" in one_line_error(
        tiny_imagenet.load_index, tiny_copy)


def test_many_missing_files_are_counted_and_the_first_few_named(tiny_copy, no_download):
    w = _wnids(tiny_copy)[0]
    _remove(tiny_copy, f"train/{w}/images", "val/images/val_0.JPEG")
    message = one_line_error(get_dataset, "tiny-imagenet", data_dir=os.path.dirname(tiny_copy))
    assert f"INCOMPLETE: train/{w}/images/{w}_0.JPEG, train/{w}/images/{w}_1.JPEG, " \
           f"train/{w}/images/{w}_2.JPEG and 6 more are missing (9 missing in all)" in message


def test_an_archive_beside_a_partial_folder_is_not_extracted_over_it(tiny_copy, tmp_path):
    archive = tmp_path / tiny_imagenet.ARCHIVE
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"{tiny_imagenet.FOLDER}/wnids.txt", "n1\n")
    _remove(tiny_copy, "wnids.txt")
    before = _tree(tmp_path)
    message = one_line_error(tiny_imagenet.prepare, str(tmp_path), allow_download=False,
                     md5=tiny_imagenet.md5sum(str(archive)))
    assert "INCOMPLETE: wnids.txt is missing" in message and _tree(tmp_path) == before


def test_a_dataset_folder_under_another_name_is_recognised_when_partial(tiny_copy, tmp_path,
                                                                        no_download):
    other = str(tmp_path / "my-tiny")
    os.rename(tiny_copy, other)
    _remove(other, "wnids.txt")
    assert "INCOMPLETE: wnids.txt is missing" in one_line_error(tiny_imagenet.prepare, other)
    assert not os.path.exists(os.path.join(other, tiny_imagenet.FOLDER))


def test_an_empty_dataset_folder_counts_as_absent(tmp_path):
    os.mkdir(tmp_path / tiny_imagenet.FOLDER)
    assert "no Tiny ImageNet in" in one_line_error(tiny_imagenet.prepare, str(tmp_path),
                                           allow_download=False)


def test_a_partial_generated_twin_is_made_again_not_patched(small_root, tmp_path):
    root = str(tmp_path / "synthetic")
    spec = dict(num_classes=3, train_per_class=2, val_per_class=1, test_images=1, seed=1)
    get_dataset("synthetic-tiny-imagenet", data_dir=root, **spec)
    _remove(root, "val/images/val_1.JPEG")
    message = one_line_error(get_dataset, "synthetic-tiny-imagenet", data_dir=root, **spec)
    assert "val/images/val_1.JPEG is missing" in message
    assert message.endswith("delete it and re-run to generate it again")


# -- Tiny ImageNet: broken index files ----------------------------------------------------------
@pytest.mark.parametrize("name,text", [("wnids.txt", ""), ("wnids.txt", "\n  \r\n"),
                                       ("val/val_annotations.txt", "\n")])
def test_an_empty_index_file_is_named(tiny_copy, name, text):
    with open(os.path.join(tiny_copy, name), "w") as f:
        f.write(text)
    message = one_line_error(tiny_imagenet.load_index, tiny_copy)
    assert message.startswith(f"{os.path.join(tiny_copy, name)} is empty: it should hold")
    assert "extract it again from tiny-imagenet-200.zip" in message


def test_a_class_listed_twice_is_named(tiny_copy):
    path = os.path.join(tiny_copy, "wnids.txt")
    lines = open(path).read().split()
    with open(path, "w") as f:
        f.write("\n".join(lines + [lines[1]]) + "\n")
    message = one_line_error(tiny_imagenet.load_index, tiny_copy)
    assert f"{path} lists class {lines[1]} twice (lines 2 and {len(lines) + 1})" in message


def test_a_wnids_file_that_is_not_text_is_named(tiny_copy):
    path = os.path.join(tiny_copy, "wnids.txt")
    with open(path, "wb") as f:
        f.write(b"\xff\xfe\x00n\x00")
    assert f"{path} is not UTF-8 text" in one_line_error(tiny_imagenet.load_index, tiny_copy)


def test_windows_line_ends_a_byte_order_mark_and_trailing_blank_lines_are_read(tiny_copy):
    before = tiny_imagenet.load_index(tiny_copy)
    for name in ("wnids.txt", "words.txt", "val/val_annotations.txt"):
        path = os.path.join(tiny_copy, name)
        lines = open(path).read().splitlines()
        with open(path, "wb") as f:
            f.write(b"\xef\xbb\xbf" + "\r\n".join(lines + ["", "", ""]).encode())
    after = tiny_imagenet.load_index(tiny_copy)
    assert after.wnids == before.wnids and after.class_names == before.class_names
    assert all(not n.startswith("\ufeff") for n in after.class_names + after.wnids)
    for split in ("train", "val"):
        assert getattr(after, split).paths == getattr(before, split).paths
        np.testing.assert_array_equal(getattr(after, split).labels, getattr(before, split).labels)


# -- CIFAR: partial folders ---------------------------------------------------------------------
@pytest.mark.parametrize("name,removed", [
    ("cifar10", ["data_batch_3", "batches.meta"]),
    ("cifar10", ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "test_batch"]),
    ("cifar100", ["meta"]),
])
def test_a_partial_cifar_folder_is_named_and_never_downloaded_over(tmp_path, name, removed,
                                                                   no_download):
    spec = cifar.DATASETS[name]
    root = write_synthetic_cifar(str(tmp_path / spec.folder), name, **CIFAR_SMALL)
    os.remove(os.path.join(root, archives.SYNTHETIC_MARKER))  # as extracted from the archive
    _remove(root, *removed)
    with open(tmp_path / spec.archive, "wb") as f:  # an archive beside it is not used either
        f.write(b"not extracted")
    before = _tree(tmp_path)
    message = one_line_error(get_dataset, name, data_dir=tmp_path, download=True)
    shown = ", ".join(removed[:3]) + (f" and {len(removed) - 3} more" if len(removed) > 3 else "")
    verb = "is" if len(removed) == 1 else "are"
    assert (f"the {spec.title} folder {root} is INCOMPLETE: {shown} {verb} missing "
            f"({len(removed)} missing in all); restore the missing files, or move the folder "
            f"aside and re-run to extract or download {spec.archive} again") == message
    assert one_line_error(cifar.prepare, root, name) == message
    assert _tree(tmp_path) == before


def test_a_partial_generated_cifar_twin_is_made_again(tmp_path):
    root = str(tmp_path / "syn")
    get_dataset("synthetic-cifar100", data_dir=root, num_classes=5, **CIFAR_SMALL)
    _remove(root, "test")
    message = one_line_error(get_dataset, "synthetic-cifar100", data_dir=root, num_classes=5,
                     **CIFAR_SMALL)
    assert "INCOMPLETE: test is missing" in message
    assert message.endswith("delete it and re-run to generate it again")


# -- A data folder that is a file ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny-imagenet", "cifar10", "synthetic-tiny-imagenet",
                                  "synthetic-cifar100"])
def test_a_data_dir_that_is_a_file_says_so(tmp_path, name, no_download):
    path = tmp_path / "data.zip"
    path.write_bytes(b"PK")
    message = one_line_error(get_dataset, name, data_dir=path)
    assert message.startswith(f"the data folder {path} is a file, not a folder: pass the folder")
    assert message.endswith("as --data-dir") and path.read_bytes() == b"PK"


# -- Fingerprints -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fp") / "syn")


def _cifar(data_dir, **kw):
    return get_dataset("synthetic-cifar10", data_dir=data_dir, num_classes=4,
                       **dict(CIFAR_SMALL, **kw))


def test_the_same_data_loaded_twice_has_the_same_fingerprint(cifar_dir):
    a, b = _cifar(cifar_dir).fingerprint(), _cifar(cifar_dir).fingerprint()
    assert a == b and json.loads(json.dumps(a)) == a
    assert describe_fingerprint_difference(json.loads(json.dumps(a)), b) is None
    assert a["classes"] == [f"synthetic_{i}" for i in range(4)]
    assert (a["train"]["count"], a["train"]["sampled"], a["val"]["count"]) == (12, 12, 8)
    assert "test" not in a  # validation on the test set: one split, recorded once


# Another interpreter with another hash seed reads the same folder; it skips TensorFlow (seconds
# to import) by standing in for ImageSet with the fields a fingerprint reads.
_OTHER_PROCESS = """
import json, sys
from tinynet.data import cifar
from tinynet.data.datasets import TrainData, fingerprint_of

class Split:
    def __init__(self, images, labels):
        self.images, self.labels, self.image_size, self.in_memory = images, labels, 32, True

    def __len__(self):
        return len(self.labels)

a = cifar.load(sys.argv[1], "cifar10")
test = Split(a.test_images, a.test_labels)
data = TrainData(train=Split(a.train_images, a.train_labels), val=test, test=test,
                 class_names=a.class_names, description={})
print(json.dumps(fingerprint_of(data)), "tensorflow" in sys.modules)
"""


def test_fingerprints_agree_across_processes(cifar_dir):
    here = _cifar(cifar_dir).fingerprint()
    proc = subprocess.run([sys.executable, "-c", _OTHER_PROCESS, cifar_dir], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONHASHSEED="12345"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    fingerprint, tensorflow = proc.stdout.strip().rsplit(" ", 1)
    assert json.loads(fingerprint) == here and tensorflow == "False"


def test_other_data_of_the_same_size_is_told_apart(cifar_dir, tmp_path):
    stored = _cifar(cifar_dir).fingerprint()
    other = _cifar(str(tmp_path / "seed6"), seed=6).fingerprint()
    phrase = describe_fingerprint_difference(stored, other)
    assert other["train"]["count"] == stored["train"]["count"]
    assert "the training labels differ" in phrase and "the sampled training images differ" \
        in phrase and "class list" not in phrase
    split = _cifar(cifar_dir, val_split=4).fingerprint()
    assert describe_fingerprint_difference(stored, split) == (
        "the training set has 8 images, 12 recorded; the validation set has 4 images, 8 "
        "recorded; the recorded data had no separate test set, this data has one")


def test_tiny_imagenet_fingerprint_ignores_the_cache_mode_and_sees_the_seed(small_root, tmp_path):
    memory = get_dataset("tiny-imagenet", data_dir=small_root, cache="memory", download=False)
    files = get_dataset("tiny-imagenet", data_dir=small_root, cache="none", download=False)
    assert not files.train.in_memory and memory.fingerprint() == files.fingerprint()
    assert memory.fingerprint()["classes"] == memory.class_ids
    spec = dict(num_classes=5, train_per_class=8, val_per_class=4, test_images=3,
                grayscale_every=7)
    from tinynet.data.synthetic import write_synthetic_tiny_imagenet
    root = write_synthetic_tiny_imagenet(str(tmp_path / "seed4"), seed=4, **spec)
    other = get_dataset("tiny-imagenet", data_dir=root, download=False).fingerprint()
    # Same wnids and per-class counts, so the training labels agree; the pixels do not.
    assert describe_fingerprint_difference(memory.fingerprint(), other).startswith(
        "the sampled training images differ; the validation labels differ")


def _data(labels, images, names):
    train = ImageSet(labels=labels, image_size=images.shape[1], images=images)
    return TrainData(train=train, val=train, class_names=names, description={})


def test_class_list_and_label_differences_are_described():
    labels = np.arange(100, dtype=np.int32) % 4
    images = np.arange(100 * 8 * 8 * 3, dtype=np.uint8).reshape(100, 8, 8, 3)
    base = fingerprint_of(_data(labels, images, ["a", "b", "c", "d"]))
    renamed = fingerprint_of(_data(labels, images, ["a", "b", "x", "d"]))
    assert describe_fingerprint_difference(base, renamed) == (
        "the class list differs (4 classes both; first difference: c recorded vs x now, "
        "class 2)")
    fewer = fingerprint_of(_data(labels % 3, images, ["a", "b", "c"]))
    assert describe_fingerprint_difference(base, fewer).startswith(
        "the class list differs (4 classes recorded, 3 now); the training labels differ; the "
        "validation labels differ")
    relabelled = fingerprint_of(_data(labels[::-1].copy(), images, ["a", "b", "c", "d"]))
    assert describe_fingerprint_difference(base, relabelled) == (
        "the training labels differ; the validation labels differ")
    assert describe_fingerprint_difference(None, base) is None  # a run from before fingerprints
    assert "unreadable" in describe_fingerprint_difference("junk", base)


def test_fingerprint_is_cheap_for_tiny_imagenet_size():
    # 100,000 images of 64 px as a zero-copy view: the size of Tiny ImageNet's training set.
    images = np.broadcast_to(np.zeros((1, 64, 64, 3), np.uint8), (100_000, 64, 64, 3))
    data = _data(np.arange(100_000, dtype=np.int32) % 200, images, [f"n{i:08d}" for i in
                                                                     range(200)])
    start = time.perf_counter()
    fingerprint = data.fingerprint()
    assert time.perf_counter() - start < 0.5
    assert fingerprint["train"]["sampled"] == 64 and len(json.dumps(fingerprint)) < 4000
