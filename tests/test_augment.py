"""imgaug under NumPy 2, run once per batch inside tf.data, seeded by (seed, epoch, step)."""
import numpy as np
import pytest
import tensorflow as tf

from tinynet.augment import ImgaugAugment, list_recipes
from tinynet.augment.imgaug_compat import import_imgaug
from tinynet.errors import TinynetError


def test_imgaug_imports_under_numpy_2():
    assert int(np.__version__.split(".")[0]) >= 2
    iaa = import_imgaug().augmenters
    out = iaa.Fliplr(1.0)(images=np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3))
    np.testing.assert_array_equal(out[0, :, 0], np.arange(12, dtype=np.uint8).reshape(2, 2, 3)[:, 1])


@pytest.fixture
def batch():
    return np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)


def test_model1_recipe_changes_images_and_keeps_shape(batch):
    aug = ImgaugAugment("densenet_model1")
    out = aug.augment_numpy(batch, np.array([0, 1, 2]))
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert not np.array_equal(out, batch)


def test_same_key_same_output_other_key_other_output(batch):
    a, b = ImgaugAugment("densenet_model1"), ImgaugAugment("densenet_model1")
    for epoch in range(3):  # a's augmenter has a history, b's has not
        a.augment_numpy(batch, np.array([0, epoch, 0]))
    key = np.array([0, 7, 1])
    np.testing.assert_array_equal(a.augment_numpy(batch, key), b.augment_numpy(batch, key))
    assert not np.array_equal(a.augment_numpy(batch, key), a.augment_numpy(batch, np.array([0, 8, 1])))
    assert not np.array_equal(a.augment_numpy(batch, key), a.augment_numpy(batch, np.array([1, 7, 1])))


def test_one_python_call_per_batch_with_static_shape(batch):
    aug = ImgaugAugment("densenet_model1")
    ds = tf.data.Dataset.from_tensor_slices(np.repeat(batch[None], 5, axis=0))
    labels = tf.data.Dataset.from_tensor_slices(np.arange(30, dtype=np.int32).reshape(5, 6))
    keys = tf.data.Dataset.from_tensor_slices(np.arange(15, dtype=np.int64).reshape(5, 3))
    ds = tf.data.Dataset.zip(ds, labels, keys).map(aug, num_parallel_calls=2, deterministic=True)
    assert ds.element_spec[0].shape == (6, 64, 64, 3)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 5 and aug.calls == 5
    assert [list(y) for _, y in batches] == np.arange(30).reshape(5, 6).tolist()  # labels pass


def test_unknown_recipe_is_an_error():
    assert "densenet_model1" in list_recipes()
    with pytest.raises(TinynetError, match="unknown augmentation recipe"):
        ImgaugAugment("autoaugment")


RECIPES = list_recipes()


def test_every_papers_recipe_is_registered():
    assert set(RECIPES) >= {"densenet_model1", "densenet_model2", "resnet_basic", "resnet_heavy",
                            "cifar_crop_flip", "flip"}


def _batch_for(recipe):
    from tinynet.augment import get_recipe
    size = get_recipe(recipe).input_size or 64
    return np.random.default_rng(0).integers(0, 256, (8, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_changes_images_keeps_shape_and_is_seeded(recipe):
    x = _batch_for(recipe)
    aug = ImgaugAugment(recipe)
    out = aug.augment_numpy(x, np.array([0, 1, 0]))
    assert out.shape == x.shape and out.dtype == np.uint8 and not np.array_equal(out, x)
    np.testing.assert_array_equal(out, ImgaugAugment(recipe).augment_numpy(x, np.array([0, 1, 0])))
    assert not np.array_equal(out, aug.augment_numpy(x, np.array([1, 1, 0])))  # other seed
    assert not np.array_equal(out, aug.augment_numpy(x, np.array([0, 2, 0])))  # other epoch


@pytest.mark.slow  # (a fresh interpreter: CI's slow step)
def test_recipes_build_in_a_fresh_interpreter():
    """imgaug must import under NumPy 2 whichever recipe is built first."""
    import subprocess
    import sys
    for recipe in RECIPES:
        code = f"from tinynet.augment import build_recipe; build_recipe({recipe!r})"
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_mean_subtraction_pipeline(small_root):
    # (which protocols subtract the mean: test_resnet_experiment.test_variants_follow_seed_001)
    from tinynet.data import tiny_imagenet
    from tinynet.data.pipeline import eval_dataset, load_split
    images = load_split(tiny_imagenet.load_index(small_root).train, 64, cache="memory")
    mean = images.channel_mean()
    np.testing.assert_allclose(mean, images.images.reshape(-1, 3).mean(axis=0) / 255, rtol=1e-6)
    x = np.concatenate([x for x, _ in eval_dataset(images, 16, mean=mean)])
    np.testing.assert_allclose(x.reshape(-1, 3).mean(axis=0), 0, atol=1e-5)
    streamed = load_split(tiny_imagenet.load_index(small_root).train, 64, cache="none")
    np.testing.assert_array_equal(streamed.channel_mean(), mean)  # same bits in both modes
