"""tinynet.data.staging: a dataset archive kept once on persistent storage (Drive), copied to
the local disk and extracted there each session, as the Colab notebook uses it."""
import os
import pathlib

import pytest

from tinynet.data import cifar
from tinynet.data.staging import keep_archive, stage_dataset
from tinynet.data.synthetic import write_synthetic_cifar_archive

from conftest import one_line_error

SMALL = dict(train_per_class=3, test_per_class=2, seed=5)
ARCHIVE = cifar.get_spec("cifar10").archive


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A generated cifar-10-python.tar.gz at a file:// URL (the 'internet'), with its MD5."""
    path, md5 = write_synthetic_cifar_archive(str(tmp_path_factory.mktemp("server")), "cifar10",
                                              **SMALL)
    return pathlib.Path(path).as_uri(), md5


def test_the_first_session_downloads_once_to_the_kept_folder_and_extracts_locally(
        served, tmp_path):
    url, md5 = served
    keep, local = tmp_path / "drive", tmp_path / "local"
    root = stage_dataset("cifar10", keep, local, url, md5)
    assert root == str(local / "cifar-10-batches-py")
    assert len(cifar.load(root, "cifar10").train_labels) == 30  # 10 classes x 3
    assert os.listdir(keep) == [ARCHIVE]  # no .part left behind
    assert sorted(os.listdir(local)) == sorted([ARCHIVE, "cifar-10-batches-py"])


def test_a_new_session_copies_the_kept_archive_and_downloads_nothing(served, tmp_path):
    url, md5 = served
    keep, local = tmp_path / "drive", tmp_path / "local"
    stage_dataset("cifar10", keep, local, url, md5)
    mtime = os.stat(keep / ARCHIVE).st_mtime_ns
    for _ in range(2):  # the local disk wiped with the session
        for item in sorted(local.rglob("*"), reverse=True):
            item.rmdir() if item.is_dir() else item.unlink()
        root = stage_dataset("cifar10", keep, local, "file:///nowhere/" + ARCHIVE, md5)
        assert os.path.isdir(root)
    assert os.stat(keep / ARCHIVE).st_mtime_ns == mtime


def test_an_extracted_local_copy_is_used_as_it_is(served, tmp_path):
    url, md5 = served
    keep, local = tmp_path / "drive", tmp_path / "local"
    root = stage_dataset("cifar10", keep, local, url, md5)
    os.remove(keep / ARCHIVE)
    os.remove(local / ARCHIVE)
    assert stage_dataset("cifar10", keep, local, "file:///nowhere/" + ARCHIVE, md5) == root
    assert not (keep / ARCHIVE).exists()  # the cell run twice in one session copies nothing


def test_a_download_with_the_wrong_md5_is_removed_and_said(served, tmp_path):
    url, md5 = served
    keep, local = tmp_path / "drive", tmp_path / "local"
    message = one_line_error(stage_dataset, "cifar10", keep, local, url, "0" * 32)
    assert md5 in message and "0" * 32 in message and "re-run" in message
    assert os.listdir(keep) == [] and not local.exists()


def test_an_unreachable_download_says_where_to_put_the_archive_by_hand(tmp_path):
    message = one_line_error(keep_archive, "cifar10", tmp_path / "drive",
                             "file:///nowhere/" + ARCHIVE, "0" * 32)
    assert "could not download" in message and str(tmp_path / "drive") in message
    assert ARCHIVE in message and os.listdir(tmp_path / "drive") == []


def test_a_damaged_kept_archive_is_refused_and_kept(served, tmp_path):
    """The kept file may be the user's only copy: the refusal names it and deletes nothing of
    theirs."""
    url, md5 = served
    keep, local = tmp_path / "drive", tmp_path / "local"
    keep.mkdir()
    (keep / ARCHIVE).write_bytes(b"not an archive")
    message = one_line_error(stage_dataset, "cifar10", keep, local, url, md5)
    assert f"the kept archive {keep / ARCHIVE} has MD5" in message and md5 in message
    assert (keep / ARCHIVE).read_bytes() == b"not an archive"
    assert os.listdir(local) == []


@pytest.mark.parametrize("name", ["imagenet", "synthetic-cifar10"])
def test_a_dataset_without_an_archive_is_refused(name, tmp_path):
    message = one_line_error(stage_dataset, name, tmp_path / "drive", tmp_path / "local")
    assert name in message and "tiny-imagenet" in message
    assert os.listdir(tmp_path) == []


def test_a_local_data_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "local").write_text("x")
    message = one_line_error(stage_dataset, "cifar10", tmp_path / "drive", tmp_path / "local")
    assert "is a file, not a folder" in message
    assert not (tmp_path / "drive").exists()
