"""Recipes as data (bit-identical imgaug pipelines) and the native TensorFlow backend."""
import numpy as np
import pytest
import tensorflow as tf

from tinynet.augment import get_augmenter, get_recipe, list_recipes
from tinynet.augment.imgaug_compat import import_imgaug
from tinynet.augment.native_backend import NativeAugment
from tinynet.augment.recipes import (ALL, PAD_MODES_ALL, SomeOf, Sequential, Sometimes, T,
                                     build_recipe, to_imgaug)
from tinynet.errors import TinynetError

RECIPES = list_recipes()
# A recipe takes 5-15 s to XLA-compile on 2 cores: the compiled path of each runs in CI's slow
# step; the default run checks the recipes as data (the imgaug equivalence) and the nodes.
COMPILED = [pytest.param(r, marks=pytest.mark.slow) for r in RECIPES]


# -- the recipe factories as they were written before the recipes became data (verbatim, but
# for Model 2's pad_mode: see there) ------------------------------------------------------------

def _iaa():
    return import_imgaug().augmenters


def densenet_model1():
    iaa = _iaa()
    return iaa.SomeOf((0, None), [
        iaa.Affine(scale=(0.5, 1.5)),
        iaa.Affine(rotate=20),
        iaa.CoarseDropout((0.0, 0.2), size_percent=(0.05, 0.07)),
        iaa.AdditiveGaussianNoise(scale=0.05 * 255),
        iaa.CropAndPad(percent=(-0.25, 0.25)),
    ], random_order=True)


def densenet_model2():
    imgaug = import_imgaug()
    iaa = imgaug.augmenters
    sometimes = lambda aug: iaa.Sometimes(0.5, aug)  # noqa: E731
    return iaa.Sequential([
        iaa.Fliplr(0.5),
        iaa.Flipud(0.2),
        sometimes(iaa.GaussianBlur(sigma=(0, 2.0))),
        # (was pad_mode=imgaug.ALL: imgaug builds that list from a set, in an order that follows
        # PYTHONHASHSEED, so the mode drawn for a seed changed per process; the recipe now
        # passes the fixed, sorted PAD_MODES_ALL. Affine's mode=imgaug.ALL below is a fixed
        # list in imgaug already, equal to AFFINE_MODES_ALL, so it stays as written.)
        sometimes(iaa.CropAndPad(percent=(-0.1, 0.2), pad_mode=list(PAD_MODES_ALL),
                                 pad_cval=(0, 255))),
        sometimes(iaa.Affine(scale={"x": (0.8, 1.5), "y": (0.8, 1.5)},
                             translate_percent={"x": (-0.2, 0.2), "y": (-0.2, 0.2)},
                             rotate=(-45, 45), shear=(-16, 16), order=[0, 1], cval=(0, 255),
                             mode=imgaug.ALL)),
        sometimes(iaa.CoarseDropout((0.03, 0.15), size_percent=(0.02, 0.05), per_channel=0.2)),
        sometimes(iaa.Multiply((0.8, 1.2), per_channel=0.2)),
        sometimes(iaa.LinearContrast((0.75, 1.5), per_channel=0.5)),
    ], random_order=True)


def resnet_basic():
    return _iaa().Fliplr(0.5)


def resnet_heavy():
    iaa = _iaa()
    return iaa.SomeOf((1, 4), [
        iaa.Fliplr(1.0),
        iaa.Flipud(0.2),
        iaa.Crop(percent=(0, 0.15), keep_size=True),
        iaa.Affine(scale=(0.8, 1.25), mode="edge"),
        iaa.Affine(translate_percent={"x": (-0.125, 0.125), "y": (-0.125, 0.125)}, mode="edge"),
        iaa.Affine(rotate=(-15, 15), mode="edge"),
        iaa.Affine(shear=(-10, 10), mode="edge"),
        iaa.GaussianBlur(sigma=(0, 1.0)),
        iaa.AdditiveGaussianNoise(scale=(0, 0.04 * 255)),
        iaa.Multiply((0.75, 1.25)),
        iaa.LinearContrast((0.75, 1.35)),
        iaa.AddToHueAndSaturation((-15, 15)),
    ], random_order=True)


def cifar_crop_flip():
    iaa = _iaa()
    return iaa.Sequential([
        iaa.Pad(px=4, pad_mode="constant", pad_cval=0, keep_size=False),
        iaa.CropToFixedSize(width=32, height=32),
        iaa.Fliplr(0.5),
    ])


def cifar_crop_flip_mean_border():
    return cifar_crop_flip()  # (pad value 0 on normalised images: the mean colour)


def flip():
    return _iaa().Fliplr(0.5)


REFERENCE = {f.__name__: f for f in (densenet_model1, densenet_model2, resnet_basic,
                                     resnet_heavy, cifar_crop_flip,
                                     cifar_crop_flip_mean_border, flip)}


def _batch(recipe, n=8, seed=0):
    r = get_recipe(recipe)
    size = r.input_size or 64
    x = np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    if r.on_normalized:
        return ((x / 255.0 - 0.45) / 0.25).astype(np.float32)
    return x


def test_reference_covers_every_recipe():
    assert set(REFERENCE) == set(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_imgaug_from_data_is_bit_identical_to_the_handwritten_pipeline(recipe):
    x = _batch(recipe)
    for seed in (0, 1, 12345, 2**31 - 1):
        ref, new = REFERENCE[recipe](), build_recipe(recipe)
        ref.seed_(seed)
        new.seed_(seed)
        for _ in range(2):  # two successive batches from the same augmenter
            a = np.asarray(ref(images=x.copy()))
            b = np.asarray(new(images=x.copy()))
            assert a.dtype == b.dtype == x.dtype
            np.testing.assert_array_equal(a, b)


def test_nodes_are_hashable_data():
    node = get_recipe("densenet_model2").pipeline
    assert hash(node) == hash(get_recipe("densenet_model2").pipeline)
    affine = node.children[4].child
    assert affine.kwargs["order"] == [0, 1] and affine.kwargs["mode"] == ALL
    assert affine.kwargs["scale"] == {"x": (0.8, 1.5), "y": (0.8, 1.5)}
    iaa = import_imgaug().augmenters
    assert isinstance(to_imgaug(T("Multiply", mul=(0.8, 1.2))), iaa.Multiply)
    assert isinstance(to_imgaug(Sometimes(0.5, T("Fliplr", p=1.0))), iaa.Sometimes)
    assert isinstance(to_imgaug(SomeOf((1, 2), [T("Fliplr"), T("Flipud")])), iaa.SomeOf)
    assert isinstance(to_imgaug(Sequential([T("Fliplr")])), iaa.Sequential)
    assert to_imgaug(affine).mode.a == ["constant", "edge", "symmetric", "reflect", "wrap"]


# -- the native backend ----------------------------------------------------------------------

def _key(seed, epoch, step):
    return tf.constant([seed, epoch, step], tf.int64)


@pytest.mark.parametrize("recipe", COMPILED)
def test_native_recipe_shape_dtype_and_determinism(recipe):
    x = _batch(recipe)
    y = np.arange(len(x), dtype=np.int32)
    aug = get_augmenter(recipe, "native")
    assert isinstance(aug, NativeAugment) and aug.on_normalized == get_recipe(recipe).on_normalized
    out, labels = aug(x, y, _key(0, 1, 2))
    assert out.dtype == x.dtype and out.shape == x.shape
    np.testing.assert_array_equal(labels, y)
    assert not np.array_equal(out, x)
    np.testing.assert_array_equal(out, aug(x, y, _key(0, 1, 2))[0])  # same key: same batch
    np.testing.assert_array_equal(out, NativeAugment(recipe)(x, y, _key(0, 1, 2))[0])
    assert not np.array_equal(out, aug(x, y, _key(0, 1, 3))[0])  # other step
    assert not np.array_equal(out, aug(x, y, _key(1, 1, 2))[0])  # other seed


@pytest.mark.slow  # (XLA compiles: CI's slow step)
def test_native_recipes_without_xla():
    """``jit_compile=False``: Philox instead of ThreeFry (no non-XLA kernel), same contract."""
    for recipe in RECIPES:
        x = _batch(recipe)
        aug = NativeAugment(recipe, jit_compile=False)
        out, _ = aug(x, None, _key(0, 1, 2))
        assert out.dtype == x.dtype and out.shape == x.shape, recipe
        assert not np.array_equal(out, x), recipe
        np.testing.assert_array_equal(out, aug(x, None, _key(0, 1, 2))[0], err_msg=recipe)
        assert not np.array_equal(out, aug(x, None, _key(0, 1, 3))[0]), recipe


@pytest.mark.parametrize("recipe", COMPILED)
def test_native_recipe_in_tf_data_and_tf_function(recipe):
    x = _batch(recipe, n=4)
    y = np.arange(4, dtype=np.int32)
    aug = NativeAugment(recipe)
    keys = np.array([[0, 0, 0], [0, 0, 1]], np.int64)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat(2)
    ds = tf.data.Dataset.zip(ds, tf.data.Dataset.from_tensor_slices(keys))
    ds = ds.map(lambda xy, k: aug(xy[0], xy[1], k), num_parallel_calls=2, deterministic=True)
    assert ds.element_spec[0].shape == x.shape and ds.element_spec[0].dtype == x.dtype
    batches = [b for b, _ in ds.as_numpy_iterator()]
    fn = tf.function(lambda x, k: aug(x, None, k)[0])
    for b, k in zip(batches, keys):  # the same pure function of (x, key) in both graphs
        np.testing.assert_array_equal(b, fn(x, tf.constant(k)))
    assert not np.array_equal(batches[0], batches[1])


def test_native_backend_is_registered_and_rejects_unknown():
    assert isinstance(get_augmenter("flip", "native"), NativeAugment)
    with pytest.raises(TinynetError, match="unknown augmentation recipe"):
        NativeAugment("autoaugment")
    with pytest.raises(TinynetError, match="not supported"):
        NativeAugment(T("Superpixels"))


def _images(n=6, size=16, seed=3):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _run(node, x, key=(0, 0, 0)):
    return NativeAugment(node)(x, None, _key(*key))[0].numpy()


def test_fliplr_and_flipud_always():
    x = _images()
    np.testing.assert_array_equal(_run(T("Fliplr", p=1.0), x), x[:, :, ::-1])
    np.testing.assert_array_equal(_run(T("Flipud", p=1.0), x), x[:, ::-1])
    out = _run(T("Fliplr", p=0.5), _images(n=64))
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, _images(n=64))]
    kept = [np.array_equal(o, i) for o, i in zip(out, _images(n=64))]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 54


@pytest.mark.slow  # (XLA compiles: CI's slow step)
@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", ALL])
@pytest.mark.parametrize("order", [0, 1, [0, 1]])
def test_identity_affine_leaves_images_unchanged(mode, order):
    x = _images()
    node = T("Affine", scale=1.0, rotate=0.0, shear=0.0, order=order, mode=mode,
             cval=(0, 255) if mode == ALL else 0)
    np.testing.assert_array_equal(_run(node, x), x)


def test_affine_matches_imgaug_on_an_integer_translation():
    x = _images(size=32)
    node = T("Affine", translate_percent={"x": 0.125, "y": -0.25}, order=0, mode="edge")
    ref = to_imgaug(node)(images=x)
    np.testing.assert_array_equal(_run(node, x), ref)
    node = T("Affine", rotate=90, order=0, mode="constant")  # exact quarter turn
    ref = to_imgaug(node)(images=x)
    assert np.mean(_run(node, x) == ref) > 0.99


@pytest.mark.slow  # (XLA compiles: CI's slow step)
def test_cifar_pad_crop_offsets_lie_in_0_to_8():
    # A 32x32 crop of the 4-padded image is the image shifted by (oy - 4, ox - 4).
    x = np.random.default_rng(0).integers(1, 256, (256, 32, 32, 3), dtype=np.uint8)
    node = Sequential([T("Pad", px=4, pad_mode="constant", pad_cval=0, keep_size=False),
                       T("CropToFixedSize", width=32, height=32)])
    out = _run(node, x)
    seen = set()
    for o, i in zip(out, x):
        padded = np.pad(i, [(4, 4), (4, 4), (0, 0)])
        hits = [(oy, ox) for oy in range(9) for ox in range(9)
                if np.array_equal(padded[oy:oy + 32, ox:ox + 32], o)]
        assert len(hits) == 1
        seen.add(hits[0])
    assert {oy for oy, _ in seen} >= set(range(8)) and {ox for _, ox in seen} >= set(range(8))


@pytest.mark.slow  # (XLA compiles: CI's slow step)
def test_coarse_dropout_p1_zeroes_everything():
    x = _images()
    for per_channel in (False, True, 0.5):
        node = T("CoarseDropout", p=1.0, size_percent=(0.05, 0.5), per_channel=per_channel)
        assert not _run(node, x).any()
    out = _run(T("CoarseDropout", p=0.0, size_percent=0.1), x)
    np.testing.assert_array_equal(out, x)


def test_multiply_and_contrast_deterministic_equal_numpy():
    x = _images(size=8)
    expect = np.clip(x.astype(np.float32) * np.float32(1.3), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(_run(T("Multiply", mul=1.3), x), expect)
    np.testing.assert_array_equal(to_imgaug(T("Multiply", mul=1.3))(images=x), expect)
    table = np.clip(127 + np.float32(0.8) * (np.arange(256, dtype=np.float32) - 127), 0, 255)
    np.testing.assert_array_equal(_run(T("LinearContrast", alpha=0.8), x),
                                  table.astype(np.uint8)[x])


def test_node_level_api_for_any_transform():
    x = _images()
    aug = NativeAugment(T("Multiply", mul=(0.8, 1.2)))
    assert aug.on_normalized is False
    out = aug(x, None, _key(0, 0, 0))[0].numpy()
    ratio = out.astype(float).sum((1, 2, 3)) / x.astype(float).sum((1, 2, 3))
    assert np.all((ratio > 0.78) & (ratio < 1.21)) and np.std(ratio) > 0.01
    node = Sometimes(0.5, T("AdditiveGaussianNoise", scale=20))
    out = _run(node, _images(n=64))
    changed = [not np.array_equal(o, i) for o, i in zip(out, _images(n=64))]
    assert 10 < sum(changed) < 54
