"""The dataset registry: names, arguments, the splits and normalisation each dataset owns, and
rebuilding a dataset from what a run records."""
import numpy as np
import pytest

from tinynet.data.datasets import get_dataset, list_datasets
from tinynet.errors import TinynetError

from conftest import cli_error, cli_output


def test_registry_names():
    assert set(list_datasets()) == {"tiny-imagenet", "cifar10", "cifar100",
                                    "synthetic-tiny-imagenet", "synthetic-cifar10",
                                    "synthetic-cifar100"}
    with pytest.raises(TinynetError, match="unknown dataset 'imagenet'"):
        get_dataset("imagenet")
    with pytest.raises(TinynetError, match="takes no argument.*val_split.*it accepts: data_dir"):
        get_dataset("tiny-imagenet", val_split=10)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar") / "synthetic"
    return root, get_dataset("synthetic-cifar10", data_dir=root, val_split=30, split_seed=43,
                             train_per_class=12, test_per_class=4)


def test_cifar_splits_and_statistics(cifar):
    _, data = cifar
    assert (len(data.train), len(data.val), len(data.test)) == (90, 30, 40)
    assert data.train.images.shape == (90, 32, 32, 3) and data.train.images.dtype == np.uint8
    mean, std = data.normalization("mean_std")
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], rtol=1e-6)
    np.testing.assert_allclose(std, [0.2023, 0.1994, 0.2010], rtol=1e-6)
    np.testing.assert_array_equal(data.normalization("mean")[0], data.train.channel_mean())
    assert data.normalization(None) == (None, None)
    assert data.spec == {"name": "synthetic-cifar10", "args": {
        "data_dir": data.spec["args"]["data_dir"], "val_split": 30, "split_seed": 43,
        "train_per_class": 12, "test_per_class": 4}}


def test_a_recorded_spec_rebuilds_the_same_data(cifar):
    _, data = cifar
    again = get_dataset(data.spec["name"], **data.spec["args"])
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(again, split).images, getattr(data, split).images)
        np.testing.assert_array_equal(getattr(again, split).labels, getattr(data, split).labels)
    other = get_dataset("synthetic-cifar10", **dict(data.spec["args"], split_seed=44))
    assert not np.array_equal(other.val.labels, data.val.labels) or not np.array_equal(
        other.val.images, data.val.images)


def test_val_split_zero_validates_on_the_test_set(cifar):
    root, _ = cifar
    data = get_dataset("synthetic-cifar10", data_dir=root, val_split=0, train_per_class=12,
                       test_per_class=4)
    assert len(data.train) == 120 and data.val is data.test


def test_tiny_imagenet_has_no_published_statistics(small_root):
    data = get_dataset("tiny-imagenet", data_dir=small_root, download=False)
    assert data.num_classes == 5 and data.test is None and len(data.class_ids) == 5
    with pytest.raises(TinynetError, match="no published mean/std"):
        data.normalization("mean_std")


def test_flags_a_dataset_does_not_take_are_one_line_errors(tmp_path, capsys):
    from tinynet.papers import get_paper

    line = cli_error(get_paper("densenet_model1").main, [
        "--quick", "--val-split", "100", "--data-dir", tmp_path, "--run-dir", tmp_path / "run"],
        capsys)
    assert "--val-split does not apply to dataset 'synthetic-tiny-imagenet'" in line
    out = cli_output(get_paper("cifar_resnet_design").main, ["--help"], capsys)
    assert "synthetic-cifar100" in out and "--val-split" in out


def test_each_generated_dataset_takes_only_its_own_sizes(tmp_path):
    with pytest.raises(TinynetError, match="takes no argument.*test_per_class"):
        get_dataset("synthetic-tiny-imagenet", data_dir=tmp_path, test_per_class=3)
    with pytest.raises(TinynetError, match="takes no argument.*val_per_class"):
        get_dataset("synthetic-cifar10", data_dir=tmp_path, val_per_class=3)
