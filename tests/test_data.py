"""Tiny ImageNet handling on generated trees: index, decoding, corrupt files, archives, pipeline."""
import hashlib
import os
import shutil
import zipfile

import numpy as np
import pytest

from tinynet.data import tiny_imagenet
from tinynet.data.images import decode_images
from tinynet.data.pipeline import eval_dataset, load_split, sample_indices, train_dataset
from tinynet.data.synthetic import write_synthetic_tiny_imagenet
from tinynet.errors import TinynetError


def test_index_follows_the_real_layout(small_root):
    index = tiny_imagenet.load_index(small_root)
    wnids = open(os.path.join(small_root, "wnids.txt")).read().split()
    assert index.wnids == sorted(wnids)  # class index = sorted wnids, as flow_from_directory
    assert len(index.train) == 5 * 8 and len(index.val) == 5 * 4 and len(index.test) == 3
    assert index.test.labels is None
    for path, label in zip(index.train.paths, index.train.labels):
        assert f"/train/{index.wnids[label]}/images/" in path
    annotations = dict(line.split("\t")[:2] for line in
                       open(os.path.join(small_root, "val", "val_annotations.txt")))
    for path, label in zip(index.val.paths, index.val.labels):
        assert annotations[os.path.basename(path)] == index.wnids[label]
    words = dict(line.rstrip("\n").split("\t") for line in open(os.path.join(small_root, "words.txt")))
    assert index.class_names == [words[w] for w in index.wnids]


def test_grayscale_jpeg_decodes_to_three_channels(small_root):
    index = tiny_imagenet.load_index(small_root)
    import cv2
    gray = [p for p in index.train.paths if cv2.imread(p, cv2.IMREAD_UNCHANGED).ndim == 2]
    assert gray, "the generated tree should hold grayscale JPEGs"
    images, kept = decode_images(gray, 64)
    assert images.shape == (len(gray), 64, 64, 3) and len(kept) == len(gray)
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_synthetic_is_deterministic_by_seed(tmp_path):
    def digest(root):
        h = hashlib.md5()
        for dirpath, _, files in sorted(os.walk(root)):
            for f in sorted(files):
                h.update(f.encode() + open(os.path.join(dirpath, f), "rb").read())
        return h.hexdigest()

    spec = dict(num_classes=3, train_per_class=4, val_per_class=2, test_images=1)
    a = write_synthetic_tiny_imagenet(str(tmp_path / "a"), seed=5, **spec)
    b = write_synthetic_tiny_imagenet(str(tmp_path / "b"), seed=5, **spec)
    c = write_synthetic_tiny_imagenet(str(tmp_path / "c"), seed=6, **spec)
    assert digest(a) == digest(b) != digest(c)


@pytest.fixture
def corrupt_root(small_root, tmp_path):
    root = str(tmp_path / "tiny")
    shutil.copytree(small_root, root)
    index = tiny_imagenet.load_index(root)
    bad = index.train.paths[3]
    with open(bad, "wb") as f:
        f.write(b"not a jpeg at all")
    return root, bad


def test_corrupt_image_is_named(corrupt_root):
    root, bad = corrupt_root
    split = tiny_imagenet.load_index(root).train
    with pytest.raises(TinynetError, match=f"corrupt or unreadable image {bad}.*--skip-corrupt"):
        load_split(split, 64, cache="memory")


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_corrupt_image_can_be_skipped(corrupt_root, cache):
    root, bad = corrupt_root
    split = tiny_imagenet.load_index(root).train
    images = load_split(split, 64, cache=cache, skip_corrupt=True)
    assert len(images) == len(split) - 1
    expected = np.delete(np.asarray(split.labels), split.paths.index(bad))
    np.testing.assert_array_equal(images.labels, expected)


def test_missing_index_file_is_a_clear_error(small_root, tmp_path):
    root = str(tmp_path / "tiny")
    shutil.copytree(small_root, root)
    os.remove(os.path.join(root, "val", "val_annotations.txt"))
    with pytest.raises(TinynetError, match="val_annotations.txt is missing"):
        tiny_imagenet.load_index(root)


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def test_escaping_zip_entry_is_refused(tmp_path):
    archive = _zip(tmp_path / "evil.zip", {"tiny-imagenet-200/wnids.txt": "n1\n",
                                           "../../outside.txt": "gotcha"})
    target = tmp_path / "out"
    with pytest.raises(TinynetError, match="outside"):
        tiny_imagenet.safe_extract(str(archive), str(target))
    assert not (tmp_path / "outside.txt").exists()
    assert not os.path.exists(tmp_path.parent / "outside.txt")


def test_wrong_md5_is_refused(tmp_path):
    archive = _zip(tmp_path / tiny_imagenet.ARCHIVE, {"tiny-imagenet-200/wnids.txt": "n1\n"})
    with pytest.raises(TinynetError, match="MD5"):
        tiny_imagenet.prepare(str(tmp_path), allow_download=False)
    assert not (tmp_path / tiny_imagenet.FOLDER).exists()


def test_verified_archive_is_extracted_and_indexed(small_root, tmp_path):
    archive = tmp_path / tiny_imagenet.ARCHIVE
    with zipfile.ZipFile(archive, "w") as z:
        for dirpath, _, files in os.walk(small_root):
            for f in files:
                full = os.path.join(dirpath, f)
                z.write(full, os.path.join(tiny_imagenet.FOLDER, os.path.relpath(full, small_root)))
    root = tiny_imagenet.prepare(str(tmp_path), allow_download=False,
                                 md5=tiny_imagenet.md5sum(str(archive)))
    assert tiny_imagenet.load_index(root).num_classes == 5
    assert sorted(os.listdir(tmp_path)) == [tiny_imagenet.FOLDER, tiny_imagenet.ARCHIVE]


def test_offline_download_says_where_to_put_the_archive(tmp_path):
    with pytest.raises(TinynetError, match=f"put.*{tiny_imagenet.ARCHIVE}.*{tmp_path}"):
        tiny_imagenet.prepare(str(tmp_path), url="http://127.0.0.1:9/tiny-imagenet-200.zip")
    assert not (tmp_path / tiny_imagenet.ARCHIVE).exists()
    with pytest.raises(TinynetError, match=f"no Tiny ImageNet in {tmp_path}"):
        tiny_imagenet.prepare(str(tmp_path), allow_download=False)


def test_sample_stream_is_seeded_and_positional():
    whole = sample_indices(10, seed=4, start=0, count=35)
    for p in range(3):
        assert sorted(whole[p * 10:(p + 1) * 10]) == list(range(10))  # each pass a permutation
    np.testing.assert_array_equal(sample_indices(10, 4, 13, 17), whole[13:30])
    assert not np.array_equal(whole[:10], sample_indices(10, 5, 0, 10))


@pytest.mark.parametrize("resolution,batch", [(32, 8), (64, 4), (16, 8)])
def test_train_batches_per_stage(small_root, resolution, batch):
    images = load_split(tiny_imagenet.load_index(small_root).train, 64, cache="memory")
    ds = train_dataset(images, seed=0, first_epoch=2, num_epochs=2, steps_per_epoch=3,
                       batch_size=batch, sample_offset=7, resolution=resolution)
    batches = list(ds)
    assert len(batches) == 6 and int(ds.cardinality()) == 6
    x, y = batches[0]
    assert x.shape == (batch, resolution, resolution, 3) and x.dtype.name == "float32"
    assert y.shape == (batch,) and 0.0 <= float(np.min(x)) and float(np.max(x)) <= 1.0
    expected = sample_indices(len(images), 0, 7, batch)
    np.testing.assert_array_equal(y, images.labels[expected])
    if resolution == 64:
        np.testing.assert_array_equal(x, images.images[expected] / np.float32(255))


def test_nearest_resize_matches_keras_flow_from_directory_subsampling(small_root):
    images = load_split(tiny_imagenet.load_index(small_root).val, 64, cache="memory")
    ds = train_dataset(images, seed=0, first_epoch=0, num_epochs=1, steps_per_epoch=1,
                       batch_size=4, sample_offset=0, resolution=32)
    x, _ = next(iter(ds))
    idx = sample_indices(len(images), 0, 0, 4)
    # nearest-neighbour 64 -> 32 keeps every other pixel
    np.testing.assert_array_equal(x.numpy() * 255, images.images[idx][:, 1::2, 1::2].astype(np.float32))


def test_validation_covers_the_split_once_in_order(small_root):
    images = load_split(tiny_imagenet.load_index(small_root).val, 64, cache="none")
    ys = np.concatenate([y for _, y in eval_dataset(images, batch_size=6, resolution=64)])
    np.testing.assert_array_equal(ys, images.labels)
