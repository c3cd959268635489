"""CIFAR-10/100 on generated data in the real format: parsing, archives, hostile files, splits."""
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest

from tinynet.data import cifar
from tinynet.data.tiny_imagenet import md5sum
from tinynet.data.synthetic import (ensure_synthetic_cifar, render_synthetic_cifar,
                                    write_synthetic_cifar, write_synthetic_cifar_archive)

from conftest import one_line_error

SMALL = dict(train_per_class=3, test_per_class=2, seed=5)




def _generated(tmp_path, name="cifar10", **spec):
    folder = cifar.DATASETS[name].folder
    return write_synthetic_cifar(str(tmp_path / folder), name, **dict(SMALL, **spec))


# ---------------------------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_generated_set_parses_back_to_what_was_rendered(tmp_path, name, classes):
    spec = dict(train_per_class=2, test_per_class=1, seed=7)
    root = write_synthetic_cifar(str(tmp_path / "set"), name, **spec)
    real = cifar.DATASETS[name]
    assert set(real.files) <= set(os.listdir(root))  # the real layout, data_batch_1..5 included
    data = cifar.load(root, name)
    assert data.train_images.shape == (classes * 2, 32, 32, 3)
    assert data.test_images.shape == (classes, 32, 32, 3)
    assert data.train_images.dtype == np.uint8 and data.test_images.dtype == np.uint8
    assert data.train_labels.dtype == np.int32 and data.test_labels.dtype == np.int32
    assert data.class_names == [f"synthetic_{i}" for i in range(classes)]
    assert data.num_classes == classes
    np.testing.assert_array_equal(np.bincount(data.train_labels, minlength=classes), 2)
    np.testing.assert_array_equal(np.bincount(data.test_labels, minlength=classes), 1)
    rendered = render_synthetic_cifar(name, **spec)
    np.testing.assert_array_equal(data.train_images, rendered.train_images)
    np.testing.assert_array_equal(data.train_labels, rendered.train_labels)
    np.testing.assert_array_equal(data.test_images, rendered.test_images)
    np.testing.assert_array_equal(data.test_labels, rendered.test_labels)


def test_cifar10_batches_are_concatenated_in_order(tmp_path):
    root = _generated(tmp_path, num_classes=4, train_per_class=5)  # 20 images over 5 batches
    sizes = []
    for file in cifar.DATASETS["cifar10"].train_files:
        with open(os.path.join(root, file), "rb") as f:
            sizes.append(len(pickle.load(f, encoding="bytes")[b"labels"]))
    assert sizes == [4] * 5
    assert len(cifar.load(root, "cifar10").train_labels) == 20


def _hand_made_batch(n):
    """A batch whose pixel (image i, channel c, row y, column x) is c*80 + y + 2x + i, written
    channel-major exactly as the CIFAR page describes the rows."""
    data = np.zeros((n, 3072), np.uint8)
    for i in range(n):
        for c in range(3):
            for y in range(32):
                for x in range(32):
                    data[i, c * 1024 + y * 32 + x] = c * 80 + y + 2 * x + i
    return {b"batch_label": b"testing batch 1 of 1", b"labels": [0] * n, b"data": data,
            b"filenames": [b"hand_made_%d.png" % i for i in range(n)]}


def test_channel_major_rows_become_nhwc(tmp_path):
    root = _generated(tmp_path)
    with open(os.path.join(root, "test_batch"), "wb") as f:
        pickle.dump(_hand_made_batch(2), f, protocol=2)
    images = cifar.load(root, "cifar10").test_images
    y, x = np.mgrid[0:32, 0:32]
    for i in range(2):
        for c in range(3):
            np.testing.assert_array_equal(images[i, :, :, c], c * 80 + y + 2 * x + i)


def _python2_pickle(batch):
    """``batch`` pickled as Python 2's cPickle wrote the real files: str keys and pixel bytes
    (read back as bytes), numpy.core names, and no _codecs (Python 3 needs it at protocol 2)."""
    def string(b):  # BINSTRING: a Python 2 str
        return b"T" + struct.pack("<I", len(b)) + b

    def integer(v):  # BININT
        return b"J" + struct.pack("<i", v)

    data = batch[b"data"]
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + integer(0) + b"\x85"
             + string(b"b") + b"\x87R(" + integer(1) + integer(len(data)) + integer(3072)
             + b"\x86cnumpy\ndtype\n" + string(b"u1") + integer(0) + integer(1) + b"\x87R("
             + integer(3) + string(b"|") + b"NNN" + integer(-1) + integer(-1) + integer(0)
             + b"tb\x89" + string(data.tobytes()) + b"tb")
    labels = b"](" + b"".join(integer(v) for v in batch[b"labels"]) + b"e"
    names = b"](" + b"".join(string(f) for f in batch[b"filenames"]) + b"e"
    return (b"\x80\x02}(" + string(b"batch_label") + string(batch[b"batch_label"])
            + string(b"labels") + labels + string(b"data") + array + string(b"filenames") + names
            + b"u.")


def test_python2_pickles_as_in_the_real_archive_are_read(tmp_path):
    root = _generated(tmp_path)
    with open(os.path.join(root, "test_batch"), "wb") as f:
        f.write(_python2_pickle(_hand_made_batch(2)))
    images = cifar.load(root, "cifar10").test_images
    y, x = np.mgrid[0:32, 0:32]
    for i in range(2):
        for c in range(3):
            np.testing.assert_array_equal(images[i, :, :, c], c * 80 + y + 2 * x + i)


class _RunsCode:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def test_pickle_that_runs_code_is_refused(tmp_path):
    root = _generated(tmp_path)
    proof = tmp_path / "code_ran"
    batch = _hand_made_batch(1)
    batch[b"data"] = _RunsCode(proof)
    with open(os.path.join(root, "test_batch"), "wb") as f:
        pickle.dump(batch, f, protocol=2)
    message = one_line_error(cifar.load, root, "cifar10")
    assert "test_batch" in message and "system" in message and "refusing" in message
    assert not proof.exists()


def test_truncated_pickle_is_reported_by_name(tmp_path):
    root = _generated(tmp_path)
    path = os.path.join(root, "data_batch_3")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    message = one_line_error(cifar.load, root, "cifar10")
    assert "data_batch_3" in message and "truncated or corrupt" in message


@pytest.mark.parametrize("change, words", [
    (lambda b: b.update({b"labels": [10] * len(b[b"labels"])}), "outside the 10 classes"),
    (lambda b: b.update({b"data": b[b"data"][:, :3000]}), "expected uint8 [N, 3072]"),
    (lambda b: b.update({b"data": b[b"data"].astype(np.float32)}), "expected uint8 [N, 3072]"),
    (lambda b: b.update({b"labels": b[b"labels"][:-1]}), "one per image"),
    (lambda b: b.pop(b"labels"), "no b'labels' entry"),
])
def test_wrong_batch_contents_are_reported_by_name(tmp_path, change, words):
    root = _generated(tmp_path)
    path = os.path.join(root, "data_batch_2")
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    change(batch)
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)
    message = one_line_error(cifar.load, root, "cifar10")
    assert "data_batch_2" in message and words in message


def test_missing_test_batch_is_named(tmp_path):
    root = _generated(tmp_path)
    os.remove(os.path.join(root, "test_batch"))
    for data_dir in (root, str(tmp_path)):  # the folder itself, or the folder holding it
        message = one_line_error(cifar.prepare, data_dir, "cifar10", allow_download=False)
        assert "test_batch" in message and "data_batch" not in message
    assert "test_batch" in one_line_error(cifar.load, root, "cifar10")


def test_unknown_dataset_name_is_refused(tmp_path):
    assert "cifar10, cifar100" in one_line_error(cifar.prepare, tmp_path, "cifar1000")


# ---------------------------------------------------------------------------------------------
# Archives


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_prepare_extracts_a_generated_archive(tmp_path, name):
    real = cifar.DATASETS[name]
    archive, md5 = write_synthetic_cifar_archive(str(tmp_path), name, num_classes=3, **SMALL)
    assert os.path.basename(archive) == real.archive
    root = cifar.prepare(tmp_path, name, allow_download=False, md5=md5)
    assert root == str(tmp_path / real.folder)
    assert sorted(os.listdir(tmp_path)) == sorted([real.archive, real.folder])  # no .partial
    assert len(cifar.load(root, name).train_labels) == 3 * SMALL["train_per_class"]
    # Found, not extracted again, from the folder holding it or the folder itself.
    assert cifar.prepare(tmp_path, name, allow_download=False, md5="0" * 32) == root
    assert cifar.prepare(root, name, allow_download=False) == root


def test_prepare_downloads_through_a_part_file(tmp_path):
    archive, md5 = write_synthetic_cifar_archive(str(tmp_path / "mirror"), "cifar10", **SMALL)
    data_dir = tmp_path / "data"
    root = cifar.prepare(data_dir, "cifar10", url=(tmp_path / "mirror" / os.path.basename(archive))
                         .as_uri(), md5=md5)
    assert sorted(os.listdir(data_dir)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert cifar.load(root, "cifar10").test_images.shape == (20, 32, 32, 3)


def test_failed_download_says_where_to_put_the_archive(tmp_path):
    data_dir = tmp_path / "data"
    url = (tmp_path / "nowhere.tar.gz").as_uri()
    message = one_line_error(cifar.prepare, data_dir, "cifar10", url=url)
    assert "could not download" in message and "cifar-10-python.tar.gz" in message
    assert str(data_dir) in message
    assert os.listdir(data_dir) == []  # the .part file is gone


def test_offline_message_names_archive_folder_url_and_md5(tmp_path):
    real = cifar.DATASETS["cifar100"]
    message = one_line_error(cifar.prepare, tmp_path, "cifar100", allow_download=False)
    for part in (str(tmp_path), real.archive, real.folder, real.url, real.md5):
        assert part in message
    assert os.listdir(tmp_path) == []


def test_wrong_md5_is_refused(tmp_path):
    archive, md5 = write_synthetic_cifar_archive(str(tmp_path), "cifar10", **SMALL)
    message = one_line_error(cifar.prepare, tmp_path, "cifar10", allow_download=False)
    assert md5 in message and cifar.DATASETS["cifar10"].md5 in message
    assert "delete it and download it again" in message
    assert os.listdir(tmp_path) == ["cifar-10-python.tar.gz"]


def _hostile_archive(data_dir, member):
    """``cifar-10-python.tar.gz`` with one genuine-looking file and then ``member``."""
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, "cifar-10-python.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        readme = tarfile.TarInfo("cifar-10-batches-py/readme.html")
        readme.size = 4
        tar.addfile(readme, io.BytesIO(b"<p/>"))
        if member.isfile():
            member.size = 6
            tar.addfile(member, io.BytesIO(b"gotcha"))
        else:
            tar.addfile(member)
    return path, md5sum(path)


def _member(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize("member_name", [
    "../escape", "cifar-10-batches-py/../../escape", "{tmp}/escape"])
def test_archive_entry_outside_the_target_is_refused(tmp_path, member_name):
    data_dir = tmp_path / "data"
    _, md5 = _hostile_archive(data_dir, _member(member_name.format(tmp=tmp_path)))
    message = one_line_error(cifar.prepare, data_dir, "cifar10", md5=md5)
    assert "refusing to extract" in message and "escape" in message
    assert os.listdir(data_dir) == ["cifar-10-python.tar.gz"]  # nothing extracted, no .partial
    assert sorted(os.listdir(tmp_path)) == ["data"]


@pytest.mark.parametrize("kind, words", [
    (tarfile.SYMTYPE, "symbolic link"), (tarfile.LNKTYPE, "hard link"),
    (tarfile.FIFOTYPE, "special file"), (tarfile.CHRTYPE, "special file"),
    (tarfile.BLKTYPE, "special file")])
def test_links_devices_and_fifos_are_refused(tmp_path, kind, words):
    member = _member("cifar-10-batches-py/test_batch", kind,
                     linkname="/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else "")
    _, md5 = _hostile_archive(tmp_path, member)
    message = one_line_error(cifar.prepare, tmp_path, "cifar10", md5=md5)
    assert "test_batch" in message and words in message
    assert os.listdir(tmp_path) == ["cifar-10-python.tar.gz"]


def test_archive_that_is_not_a_tar_is_refused(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"not a tar at all" * 100)
    message = one_line_error(cifar.prepare, tmp_path, "cifar10", md5=md5sum(str(path)))
    assert "not a valid .tar.gz" in message
    assert os.listdir(tmp_path) == ["cifar-10-python.tar.gz"]


# ---------------------------------------------------------------------------------------------
# Generator and validation split


def test_generator_is_deterministic_and_ensure_refuses_another_spec(tmp_path):
    a, b = render_synthetic_cifar(**SMALL), render_synthetic_cifar(**SMALL)
    np.testing.assert_array_equal(a.train_images, b.train_images)
    other = render_synthetic_cifar(**dict(SMALL, seed=6))
    assert not np.array_equal(a.train_images, other.train_images)
    root = str(tmp_path / "gen")
    assert ensure_synthetic_cifar(root, "cifar10", **SMALL) == root
    assert ensure_synthetic_cifar(root, "cifar10", num_classes=None, **SMALL) == root
    assert "seed" in one_line_error(ensure_synthetic_cifar, root, "cifar10", **dict(SMALL, seed=6))
    assert "cifar100" in one_line_error(ensure_synthetic_cifar, root, "cifar100", **SMALL)
    assert "already exists" in one_line_error(write_synthetic_cifar, root)


def test_split_validation_is_a_seeded_partition():
    train, val = cifar.split_validation(50000, 5000, 43)
    assert len(train) == 45000 and len(val) == 5000
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.union1d(train, val), np.arange(50000))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)  # sorted
    again = cifar.split_validation(50000, 5000, 43)
    np.testing.assert_array_equal(val, again[1])
    np.testing.assert_array_equal(train, again[0])
    assert not np.array_equal(val, cifar.split_validation(50000, 5000, 44)[1])
    perm = np.random.default_rng(43).permutation(50000)  # the documented recipe
    np.testing.assert_array_equal(val, np.sort(perm[:5000]))


def test_split_validation_zero_means_validate_on_test_and_bad_values_are_refused():
    train, val = cifar.split_validation(100, 0, 1)
    assert val is None
    np.testing.assert_array_equal(train, np.arange(100))
    for bad in (-1, 100, 101, 2.5, True):
        assert "0 (validate on the test set) to 99" in one_line_error(cifar.split_validation, 100, bad, 1)


def test_a_generated_set_made_meanwhile_by_another_process_is_kept(tmp_path):
    """Two workers of a cluster generating the same data at once: the second rename finds the
    first's complete copy, keeps it and leaves no temporary folder."""
    from tinynet.data.synthetic import MARKER, _built_in_place, _cifar_spec, write_synthetic_cifar
    root = str(tmp_path / "synthetic-cifar10")
    kw = dict(num_classes=3, train_per_class=5, test_per_class=2)
    with _built_in_place(root, _cifar_spec("cifar10", seed=0, **kw)) as tmp:
        write_synthetic_cifar(root, "cifar10", **kw)  # the other process finishes first
        with open(os.path.join(tmp, "data_batch_1"), "wb") as f:
            f.write(b"ours")
    assert sorted(os.listdir(tmp_path)) == ["synthetic-cifar10"]
    assert cifar.load(root, "cifar10").train_images.shape[0] == 15
    with pytest.raises(OSError):  # a different dataset at the same place is not "the same"
        with _built_in_place(root, _cifar_spec("cifar10", seed=1, **kw)):
            pass
    assert os.path.exists(os.path.join(root, MARKER))
