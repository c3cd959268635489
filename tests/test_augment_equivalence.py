"""The native (TensorFlow) augmentation backend draws from the same distribution as imgaug.

The two backends share the recipe trees (``tinynet.augment.recipes``) but not their random
streams, so they are compared statistically: the SAME fixed input images go through each
backend under many keys, and distributions of per-image statistics are compared, for every
whole recipe and for every transform node of every recipe on its own (a one-node pipeline: the
node alone, and for a ``Sometimes`` the container too).

Samples. Each case augments N = 1,000 images per backend (3,000 for the random flips and the
32 px CIFAR recipes: cheap, and sharper), under many keys ``(seed, epoch, step)``, from a pool
of POOL structured images (smooth gradients and sharp-edged discs, values 45..200 so that
photometric transforms do not clip; 32 px images that encode their coordinates, for the CIFAR
crops; those normalised, for ``cifar_crop_flip_mean_border``). The i-th image of both backends
has the same input. imgaug draws ``random_order`` once per batch, so the images of a batch are
correlated there: the random-order recipes run in batches of 50 under 20 keys, and every
standard error is cluster-robust, from the means of groups of consecutive images (the batches
there; groups of 20 elsewhere, where every draw is per image). The native backend runs
through its contract ``aug(images, labels, key)``, without XLA where it offers that
(``_without_xla``: compiling ~40 pipelines takes minutes on 2 CPU cores).

Tolerances (derived from the sample sizes; one rule, used everywhere):
- A mean (a per-image statistic's mean, or a rate: the mean of a 0/1 indicator), two-sample:
  |m_imgaug - m_native| <= K * se + a tiny floor, se the SE of the mean of the PAIRED
  differences (same input image; the spread between inputs cancels).
- A spread (the std of a per-image statistic over images): |s_imgaug - s_native| <= K *
  sqrt(se_imgaug^2 + se_native^2), se(s) by the delta method on the mean of the squared
  deviations d = (x - mean)^2: se(s) = se(mean d) / (2 s).
- K = 4.5: this file makes about 700 such comparisons; a two-sided normal tail beyond 4.5 SE is
  6.8e-6 (about 2.5e-4 with an SE estimated from 20 batch means, t with 19 df), so with
  backends that truly agree a failure by sampling alone is unlikely (about 1% over the file).
  Everything is seeded: a run's outcome is fixed, not flaky.
- Distribution shape: two-sample Kolmogorov-Smirnov, D <= c(ALPHA) * sqrt(2 / N_eff),
  c(ALPHA) = sqrt(-ln(ALPHA / 2) / 2) = 2.47 for ALPHA = 1e-5 (D <= 0.11 at N_eff = 1,000),
  N_eff = N / the design effect (cluster SE / i.i.d. SE)^2 where that exceeds 1.
- Against an analytic value (flip probabilities, Multiply's gain and LinearContrast's alpha ~
  U(a, b), AdditiveGaussianNoise's sigma after imgaug's rounding, per-channel shares):
  |m - analytic| <= K * se(m) (a rate's se from the expected p), the spread likewise.
- Crop offsets: Pearson chi-square against uniform, and a 2 x cells chi-square between the
  backends, each below the chi-square quantile 1 - ALPHA.
With the fake native backend "imgaug under other seeds" every check passes; perturbing it
(Fliplr p 0.43, Flipud p 0.25, blur sigma (0, 1.6), per-channel noise, contrast (0.8, 1.35),
Multiply (0.78, 1.25), hue +-12, rotate +-20 for 20, nearest for bilinear) fails checks
(development check, not part of the file; CropAndPad -0.2 for -0.25 and CoarseDropout p up to
0.17 for 0.2 went unnoticed at these sample sizes).

Each assertion message names the case (recipe and transform), the statistic, both values and
the tolerance. ``test_preview_tool_draws_both_backends`` runs tools/preview_augmentations.py's
``--backend both`` on generated data.
"""
import functools
import importlib.util
import inspect
import math
import os

import numpy as np
import pytest

# CI runs this file in its second step (pytest -m slow): the default run's budget
pytestmark = pytest.mark.slow
import tensorflow as tf
from scipy import stats

from tinynet.augment.recipes import (T, SomeOf, Sequential, Sometimes, get_recipe, list_recipes,
                                     to_imgaug)

POOL, N = 100, 1000  # input pool; augmented images per backend and case (see _n)
K = 4.5  # standard errors allowed in every mean / rate / spread comparison (module docstring)
ALPHA = 1e-5  # KS and chi-square level
KS_C = math.sqrt(-math.log(ALPHA / 2) / 2)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- input images

@functools.lru_cache(maxsize=None)
def _pool(kind):
    """The fixed inputs: ``u64`` (uint8 64 px), ``u32`` / ``f32`` (the CIFAR recipes' 32 px,
    uint8 / normalised float). The 32 px images encode their coordinates (R = 20 + 6 * row,
    G = 20 + 6 * column, B a structured image) so that a crop's offset and a flip can be read
    back exactly."""
    rng = np.random.default_rng(20240601)
    size = 64 if kind == "u64" else 32
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((POOL, size, size, 3))
    for i in range(POOL):
        for c in range(3):
            a, b, phase = rng.uniform(-1.5, 1.5, 3)
            img = 0.5 + 0.3 * np.sin(2 * np.pi * (a * xx + b * yy) + 3 * phase)
            for _ in range(4):  # sharp-edged discs: edges for blur and geometry to move
                cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.06, 0.2)
                img = img + rng.uniform(-0.4, 0.4) * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)
            out[i, :, :, c] = img
    lo, hi = out.min(axis=(1, 2), keepdims=True), out.max(axis=(1, 2), keepdims=True)
    images = np.round(45 + 155 * (out - lo) / (hi - lo)).astype(np.uint8)  # values 45..200
    if kind == "u64":
        return images
    rows, cols = np.mgrid[0:32, 0:32]
    images[..., 0], images[..., 1] = 20 + 6 * rows, 20 + 6 * cols  # 20..206, never 0
    if kind == "u32":
        return images
    assert kind == "f32", kind
    return ((images / 255.0 - _MEAN) / _STD).astype(np.float32)  # its 0: the mean colour


_MEAN, _STD = np.array([0.49, 0.48, 0.45]), np.array([0.25, 0.24, 0.26])  # CIFAR-like


def _batch(case):
    """Images per key. 50 for a recipe that draws an order per batch (``random_order``), with
    20 keys, so that the batch-level draws average out and the standard errors see them (the
    groups below are then the batches); else 200 (5 keys), as every draw is per image and the
    native backend's per-call cost in eager mode is this file's bottleneck."""
    return 50 if _random_order(case.node) else 200


def _group(case):
    """Images per group for the standard errors: the batch where batches matter, else 20."""
    return _batch(case) if _random_order(case.node) else 20  # (groups of consecutive images)


def _random_order(node):
    if isinstance(node, Sometimes):
        return _random_order(node.child)
    return isinstance(node, (SomeOf, Sequential)) and (
        node.random_order or any(_random_order(c) for c in node.children))


def _n(case):
    """Augmented images per backend: N, and 3 N where it is cheap and sharpens a check: the
    flips with 0 < p < 1 (a rate within +-0.041 of p = 0.5 instead of +-0.071 at N) and the
    32 px recipes."""
    if case.transform in ("Fliplr", "Flipud"):
        return 3 * N if 0 < case.node.kwargs.get("p", 1) < 1 else N
    return 3 * N if case.kind in ("u32", "f32") else N


def _keys(case):
    return [np.array([7, epoch, step], np.int64) for epoch in range(5)
            for step in range(_n(case) // _batch(case) // 5)]


def _inputs(case):
    """The inputs in sample order: key j augments pool images (j * batch + i) % POOL."""
    return _pool(case.kind)[np.arange(_n(case)) % POOL]


# ----------------------------------------------------------------------------- the cases

class Case:
    """One pipeline run through both backends: a whole recipe or one node of it."""

    def __init__(self, recipes, label, node, kind, whole):
        self.recipes, self.label, self.node = recipes, label, node
        self.kind, self.whole = kind, whole

    @property
    def id(self):
        return f"{'+'.join(self.recipes)}/{self.label}"

    @property
    def transform(self):
        if isinstance(self.node, Sequential) and not self.whole:
            return "Pad+CropToFixedSize"
        return self.node.kind if isinstance(self.node, T) else None


def _describe(node):
    if isinstance(node, T):
        params = ",".join(f"{k}={_short(v)}" for k, v in node.kwargs.items())
        return f"{node.kind}({params})"
    if isinstance(node, Sometimes):
        return f"Sometimes({node.p},{_describe(node.child)})"
    return type(node).__name__


def _short(v):
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (tuple, list)):
        return "(" + ",".join(_short(x) for x in v) + ")"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_short(x)}" for k, x in v.items()) + "}"
    return str(v)


def _cases():
    found = {}

    def add(recipe, label, node, kind, whole):
        key = (node, kind, whole)
        if key in found:
            found[key].recipes.append(recipe)
        else:
            found[key] = Case([recipe], label, node, kind, whole)

    for name in list_recipes():
        recipe = get_recipe(name)
        kind = ("f32" if recipe.on_normalized else "u32") if recipe.input_size == 32 else "u64"
        add(name, "recipe", recipe.pipeline, kind, True)
        if isinstance(recipe.pipeline, T):
            continue  # the recipe is one transform: the whole-recipe case is that transform
        children = list(recipe.pipeline.children)
        for i, child in enumerate(children):
            if getattr(child, "kind", None) in RESIZING:
                continue
            add(name, f"{i}:{_describe(child)}", child, kind, False)
            if isinstance(child, Sometimes):
                add(name, f"{i}:{_describe(child.child)}", child.child, kind, False)
        # Pad(px=4, keep_size=False) and CropToFixedSize change the size, which the contract
        # (images in, images of the same shape out) cannot express alone: they run as a pair
        pair = [c for c in children if getattr(c, "kind", None) in RESIZING]
        if pair:
            label = "+".join(f"{children.index(c)}:{_describe(c)}" for c in pair)
            add(name, label, Sequential(pair), kind, False)
    return list(found.values())


RESIZING = ("Pad", "CropToFixedSize")


CASES = _cases()


def _case(case_id):
    return next(c for c in CASES if c.id == case_id)


# ----------------------------------------------------------------------------- running

@functools.lru_cache(maxsize=None)
def _without_xla():
    """Whether ``NativeAugment`` offers ``jit_compile=False`` and it runs here. XLA compiles
    each of this file's ~40 pipelines (a whole recipe: 9-16 s on 2 CPU cores), which would
    make the file take minutes; it changes no distribution (the same stateless draws and
    arithmetic, up to float rounding), so the checks run without it where they can."""
    from tinynet.augment.native_backend import NativeAugment

    if "jit_compile" not in inspect.signature(NativeAugment).parameters:
        return False
    try:
        NativeAugment(T("Fliplr", p=0.5), jit_compile=False)(
            tf.zeros([1, 4, 4, 3], tf.uint8), tf.zeros([1]), tf.constant([0, 0, 0], tf.int64))
    except Exception:  # noqa: BLE001 (e.g. a random algorithm that only XLA implements)
        return False
    return True


def _native_augmenter(recipe_or_node):
    from tinynet.augment.native_backend import NativeAugment

    if _without_xla():
        return NativeAugment(recipe_or_node, jit_compile=False)
    return NativeAugment(recipe_or_node)


def _run_native(case, inputs):
    """Batch by batch, each key through the contract ``aug(images, labels, key)``."""
    aug = _native_augmenter(case.recipes[0] if case.whole else case.node)
    b = _batch(case)
    labels = tf.zeros([b], tf.int32)
    return np.concatenate([aug(tf.constant(inputs[j * b:(j + 1) * b]), labels,
                               tf.constant(key))[0].numpy()
                           for j, key in enumerate(_keys(case))])


def _run_imgaug(case, inputs):
    b = _batch(case)
    if case.whole:  # the production backend, by recipe name
        from tinynet.augment import get_augmenter
        aug = get_augmenter(case.recipes[0], "imgaug")
        return np.concatenate([aug.augment_numpy(inputs[j * b:(j + 1) * b], key)
                               for j, key in enumerate(_keys(case))])
    aug = to_imgaug(case.node)  # seeded as ImgaugAugment seeds
    out = []
    for j, key in enumerate(_keys(case)):
        entropy = np.random.SeedSequence([int(k) for k in key])
        aug.seed_(int(entropy.generate_state(1, np.uint32)[0]))
        x = inputs[j * b:(j + 1) * b]
        out.append(np.asarray(aug(images=x), dtype=x.dtype))
    return np.concatenate(out)


# ----------------------------------------------------------------------------- statistics

def _sums(v, axis=1):
    """Exact sums for uint8-valued data (integer accumulators: 10x faster than float64 here)."""
    return v.sum(axis=axis, dtype=np.int64 if v.dtype.kind in "ui" else np.float64)


def _pixel_stats(x, y):
    """Per-image statistics of the outputs ``y`` (inputs ``x``): name -> array [N]."""
    n, m = len(y), y[0].size
    flat, xflat = y.reshape(n, -1), x.reshape(n, -1)
    integer = y.dtype == np.uint8
    mean = _sums(flat) / m
    square = np.square(flat, dtype=np.uint16) if integer else np.square(flat, dtype=np.float64)
    rgb = y.reshape(n, -1, 3)
    chroma = (np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
              - np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2]))
    absdiff = (np.maximum(flat, xflat) - np.minimum(flat, xflat))
    return {"changed": (flat != xflat).any(axis=1).astype(float),
            "mean intensity": mean,
            "pixel std": np.sqrt(np.maximum(_sums(square) / m - mean ** 2, 0)),
            "colourfulness (max-min over channels)": _sums(chroma) / (m // 3),
            "fraction of zero values": (flat == 0).sum(axis=1) / m,
            "mean |output - input|": _sums(absdiff) / m}


def _flip_stats(x, y):
    same = lambda a, b: np.all((a == b).reshape(len(a), -1), axis=1).astype(float)  # noqa: E731
    return {"flipped left-right": same(y, x[:, :, ::-1]), "flipped up-down": same(y, x[:, ::-1]),
            "unchanged": same(y, x)}


def _fit(x, y):
    """Per image and channel: least-squares slope of output on input pixels, and the means."""
    n = len(x)
    xr, yr = x[:, ::2].reshape(n, -1, 3), y[:, ::2].reshape(n, -1, 3)  # every other row: enough
    m = xr.shape[1]
    sx, sy = _sums(xr), _sums(yr)
    sxx = _sums(np.square(xr, dtype=np.uint16))
    sxy = _sums(np.multiply(xr, yr, dtype=np.uint16))
    slope = (sxy - sx * sy / m) / (sxx - sx * sx / m)
    return slope, sx / m, sy / m


def _photometric_stats(kind, x, y):
    """The parameter each photometric transform drew, read back per image (see ANALYTIC)."""
    if kind in ("Multiply", "LinearContrast"):
        slope, xm, ym = _fit(x, y)
        center = 0.0 if kind == "Multiply" else 127.0  # imgaug: 127 + alpha * (v - 127)
        # the mean output minus the linear model through the centre: imgaug's LUTs truncate
        # (astype(uint8)), so it is -0.5 there; a rounding implementation gives 0
        residual = (ym - (center + slope * (xm - center)))[:, 0]
        name = "gain (slope, channel 0)" if kind == "Multiply" else "alpha (slope, channel 0)"
        return {name: slope[:, 0],
                "per-channel factors (channel slopes differ)":
                    (np.ptp(slope, axis=1) > 0.005).astype(float),
                "offset from the linear model (rounding)": residual}
    noise = (y.astype(np.int16) - x).reshape(len(x), -1, 3)
    m = noise[0].size
    mean = _sums(noise.reshape(len(x), -1)) / m
    square = _sums(np.square(noise, dtype=np.int32).reshape(len(x), -1)) / m
    same = (noise[..., 0] == noise[..., 1]) & (noise[..., 1] == noise[..., 2])
    return {"noise sigma (std of output - input)": np.sqrt(square - mean ** 2),
            "noise mean": mean,
            "noise equal in all channels (fraction of pixels)": same.mean(axis=1)}


def _hue_stats(x, y):
    """AddToHueAndSaturation: the hue rotation (degrees, chroma-weighted circular mean over
    pixels) and the chroma ratio, output vs input."""
    def hue_chroma(img):
        f = img.astype(np.float32)
        r, g, b = f[..., 0], f[..., 1], f[..., 2]
        return np.arctan2(math.sqrt(3) * (g - b), 2 * r - g - b), np.ptp(f, axis=-1)
    x, y = x[:, ::4], y[:, ::4]  # every 4th row: enough for one angle per image
    hx, cx = hue_chroma(x)
    hy, cy = hue_chroma(y)
    w = (cx * cy).reshape(len(x), -1)
    d = (hy - hx).reshape(len(x), -1)
    shift = np.degrees(np.arctan2((w * np.sin(d)).sum(1), (w * np.cos(d)).sum(1)))
    return {"hue rotation (degrees)": shift,
            "chroma ratio": cy.reshape(len(y), -1).mean(1) / cx.reshape(len(x), -1).mean(1)}


def _statistics(case, x, y):
    s = _pixel_stats(x, y)
    if case.transform in ("Fliplr", "Flipud"):
        s.update(_flip_stats(x, y))
    if case.transform in ("Multiply", "LinearContrast", "AdditiveGaussianNoise"):
        s.update(_photometric_stats(case.transform, x, y))
    if case.transform == "AddToHueAndSaturation":
        s.update(_hue_stats(x, y))
    return s


@functools.lru_cache(maxsize=None)
def _results(case_id):
    """Runs a case through both backends: {backend: (per-image statistics {name: [n]}, the
    decoded crops of a CIFAR crop case or None)}. The images themselves are not kept (they
    would take about 2 GB over all cases)."""
    case = _case(case_id)
    x = _inputs(case)
    out = {}
    for backend, run in (("imgaug", _run_imgaug), ("native", _run_native)):
        y = run(case, x)
        crops = None
        if _is_crop_case(case):
            x_padded = np.pad(x, [(0, 0), (4, 4), (4, 4), (0, 0)])  # Pad(px=4, pad_cval=0)
            crops = _decode_crops(x_padded, y, case.kind.startswith("f"), flips=case.whole)
        out[backend] = (_statistics(case, x, y), crops)
    return out


def _stats(case_id):
    return {backend: r[0] for backend, r in _results(case_id).items()}


def _group_means(v, group):
    return v.reshape(-1, group).mean(axis=1)


def _mean_se(v, group):
    """The mean of a per-image statistic and its cluster-robust SE, from the means of groups
    of consecutive images (``_group``: the batches where batches matter)."""
    g = _group_means(v, group)
    return v.mean(), g.std(ddof=1) / math.sqrt(len(g))


def _std_se(v, group):
    """The std of a per-image statistic and its SE (delta method on the mean of squared
    deviations, cluster-robust as ``_mean_se``)."""
    d = (v - v.mean()) ** 2
    s = math.sqrt(d.mean())
    g = _group_means(d, group)
    se_var = g.std(ddof=1) / math.sqrt(len(g))
    return s, (se_var / (2 * s) if s > 0 else se_var ** 0.5)


def _design_effect(v, group):
    iid = v.std(ddof=1) / math.sqrt(len(v))
    return max(1.0, (_mean_se(v, group)[1] / iid) ** 2) if iid > 0 else 1.0


def _floor(a, b, n):
    """An absolute floor for the tolerances: float round-off, and a rate estimated as exactly
    0 or 1 on both sides (half a count in ``n`` on each)."""
    return 1e-9 + 1e-6 * max(abs(a), abs(b)) + 0.5 / n


# ----------------------------------------------------------------------------- which checks

BINARY = {"changed", "flipped left-right", "flipped up-down", "unchanged",
          "per-channel factors (channel slopes differ)"}


def _stat_names(case):
    x = _pool(case.kind)[:2]
    names = list(_pixel_stats(x, x))
    if case.transform in ("Fliplr", "Flipud"):
        names += list(_flip_stats(x, x))
    if case.transform in ("Multiply", "LinearContrast", "AdditiveGaussianNoise"):
        names += list(_photometric_stats(case.transform, x, x))
    if case.transform == "AddToHueAndSaturation":
        names += list(_hue_stats(x, x))
    return names


# Checks expected to fail because of a documented difference between the backends; each names
# the difference (none so far: see the report of the task that wrote this file).
def _params():
    out = []
    for case in CASES:
        for name in _stat_names(case):
            key = f"{case.id}|{name}"
            out.append(pytest.param(case.id, name, id=key))
    return out


def _where(case_id, name):
    case = _case(case_id)
    return f"recipe {'+'.join(case.recipes)}, {case.label}, statistic {name!r}"


@pytest.mark.parametrize("case_id,name", _params())
def test_backends_agree(case_id, name):
    """The statistic's mean (a rate for 0/1 statistics) and spread agree within K SE, and its
    distributions within the KS bound."""
    s = _stats(case_id)
    a, b = s["imgaug"][name], s["native"][name]
    where = _where(case_id, name)
    group = _group(_case(case_id))
    problems = []
    # paired by input image (the i-th images of both backends had the same input), so the
    # spread between inputs cancels: SE of the mean difference from its group means
    ma, mb = a.mean(), b.mean()
    tol = K * _mean_se(a - b, group)[1] + _floor(ma, mb, len(a))
    if abs(ma - mb) > tol:
        problems.append(f"mean: imgaug {ma:.5g} vs native {mb:.5g}, |diff| {abs(ma - mb):.3g} > "
                        f"tolerance {tol:.3g} ({K} SE of the paired difference)")
    if name not in BINARY:  # (a rate's spread is fixed by the rate)
        (sa, sea), (sb, seb) = _std_se(a, group), _std_se(b, group)
        tol = K * math.hypot(sea, seb) + _floor(sa, sb, len(a))
        if abs(sa - sb) > tol:
            problems.append(f"std: imgaug {sa:.5g} vs native {sb:.5g}, |diff| {abs(sa - sb):.3g}"
                            f" > tolerance {tol:.3g} ({K} SE)")
        n_eff = len(a) / max(_design_effect(a, group), _design_effect(b, group))
        varies = np.ptp(np.concatenate([a, b])) > 0
        d = stats.ks_2samp(a, b, method="asymp").statistic if varies else 0.0
        bound = KS_C * math.sqrt(2 / n_eff)
        if d > bound:
            problems.append(f"KS statistic {d:.3f} > bound {bound:.3f} (alpha {ALPHA:g}, "
                            f"N_eff {n_eff:.0f})")
    assert not problems, f"{where}: " + "; ".join(problems)


# ----------------------------------------------------------------------------- analytic values

def _uniform(a, b):
    return (a + b) / 2, (b - a) / math.sqrt(12)


def _rounded_noise_sigma(scales):
    """E and std over images of the std of round(sigma * Z) (imgaug rounds the noise), for
    sigma drawn from ``scales`` (equally likely values)."""
    k = np.arange(-200, 201)
    sig = []
    for s in scales:
        if s == 0:
            sig.append(0.0)
            continue
        p = stats.norm.cdf((k + 0.5) / s) - stats.norm.cdf((k - 0.5) / s)
        sig.append(math.sqrt((p * k ** 2).sum()))
    sig = np.array(sig)
    return sig.mean(), sig.std()


def _analytic():
    """(case id, statistic) -> (expected mean, expected std or None) from the parameters."""
    out = {}
    for case in CASES:
        node = case.node
        if not isinstance(node, T):
            continue
        kw = node.kwargs
        if node.kind in ("Fliplr", "Flipud"):
            p = kw.get("p", 1.0)
            name = "flipped left-right" if node.kind == "Fliplr" else "flipped up-down"
            out[case.id, name] = (p, None)
        elif node.kind in ("Multiply", "LinearContrast"):
            lo, hi = kw["mul"] if node.kind == "Multiply" else kw["alpha"]
            name = "gain (slope, channel 0)" if node.kind == "Multiply" else \
                "alpha (slope, channel 0)"
            out[case.id, name] = _uniform(lo, hi)
            out[case.id, "per-channel factors (channel slopes differ)"] = (
                float(kw.get("per_channel", 0.0)), None)
        elif node.kind == "AdditiveGaussianNoise":
            scale = kw["scale"]
            grid = (np.linspace(scale[0], scale[1], 2001) if isinstance(scale, tuple)
                    else [float(scale)])
            mean, spread = _rounded_noise_sigma(grid)
            if not isinstance(scale, tuple):  # one sigma: the spread is the estimator's
                spread = mean / math.sqrt(2 * 64 * 64)  # (channels share the noise)
            out[case.id, "noise sigma (std of output - input)"] = (mean, spread)
            out[case.id, "noise mean"] = (0.0, None)
            out[case.id, "noise equal in all channels (fraction of pixels)"] = (
                0.0 if kw.get("per_channel") else 1.0, None)
    return out


ANALYTIC = _analytic()


@pytest.mark.parametrize("case_id,name", sorted(ANALYTIC),
                         ids=[f"{c}|{n}" for c, n in sorted(ANALYTIC)])
@pytest.mark.parametrize("backend", ["imgaug", "native"])
def test_matches_the_analytic_value(case_id, name, backend):
    """Flip rates, Multiply's gain, LinearContrast's alpha and AdditiveGaussianNoise's sigma
    (mean and spread) as the parameters say, within K SE of the sample (a rate's SE from the
    expected p; tolerance 0.01 on "noise equal in all channels", which clipping at 0/255 can
    lower slightly)."""
    expected_mean, expected_std = ANALYTIC[case_id, name]
    v = _stats(case_id)[backend][name]
    where = f"{_where(case_id, name)}, backend {backend}"
    group = _group(_case(case_id))
    m, se = _mean_se(v, group)
    if name in BINARY:
        se = max(se, math.sqrt(expected_mean * (1 - expected_mean) / len(v)))
    tol = K * se + _floor(m, expected_mean, len(v)) + (0.01 if "all channels" in name else 0.0)
    assert abs(m - expected_mean) <= tol, (
        f"{where}: mean {m:.5g} vs analytic {expected_mean:.5g}, tolerance {tol:.3g} ({K} SE)")
    if expected_std is not None:
        s, se = _std_se(v, group)
        tol = K * se + _floor(s, expected_std, len(v))
        assert abs(s - expected_std) <= tol, (
            f"{where}: std {s:.5g} vs analytic {expected_std:.5g}, tolerance {tol:.3g} ({K} SE)")


# ----------------------------------------------------------------------------- crops

def _decode_crops(x_padded, y, normalised, flips):
    """The (top, left) offset in the padded image, and whether flipped, of each 32 px output,
    read from the coordinate code at the output's centre, then checked exactly."""
    centre = y[:, 16, 16, :2].astype(np.float64)
    nxt = y[:, 16, 17, 1].astype(np.float64)
    if normalised:  # back to the 0..255 code
        centre = (centre * _STD[:2] + _MEAN[:2]) * 255
        nxt = (nxt * _STD[1] + _MEAN[1]) * 255
    row, col = np.round((centre - 20) / 6).T.astype(int)
    flipped = (nxt < centre[:, 1]) if flips else np.zeros(len(y), bool)
    top = row + 4 - 16
    left = np.where(flipped, col + 4 - 15, col + 4 - 16)
    for i in range(len(y)):
        expect = x_padded[i, top[i]:top[i] + 32, left[i]:left[i] + 32]
        if flipped[i]:
            expect = expect[:, ::-1]
        assert expect.shape == y[i].shape and np.array_equal(expect, y[i]), (
            f"output {i} is not a 32 px crop (offset {top[i]}, {left[i]}, flipped "
            f"{flipped[i]}) of the padded input")
    return top, left, flipped


def _is_crop_case(case):
    return case.kind in ("u32", "f32") and (case.whole or case.transform == "Pad+CropToFixedSize")


CROP_CASES = [c.id for c in CASES if _is_crop_case(c)]


def _crops(case_id):
    return {backend: r[1] for backend, r in _results(case_id).items()}


# imgaug's CropToFixedSize takes crop_top = int((1 - u) * (40 - 32)), u ~ U[0, 1): offsets 0..7
# uniformly, 8 only if u == 0 exactly. So neither backend may be uniform over 0..8 (torchvision's
# RandomCrop(32, padding=4) is): the native backend must reproduce imgaug's 0..7.


@pytest.mark.parametrize("backend", ["imgaug", "native"])
@pytest.mark.parametrize("case_id", CROP_CASES)
def test_crop_offsets_are_uniform(case_id, backend):
    top, left, flipped = _crops(case_id)[backend]
    where = f"{_where(case_id, 'crop offset')}, backend {backend}"
    for axis, v in (("top", top), ("left", left)):
        counts = np.bincount(v, minlength=9)
        assert counts[8:].sum() == 0 and v.min() >= 0, (
            f"{where}: {axis} offsets outside imgaug's 0..7: counts over 0..8 {counts.tolist()}")
        chi2 = stats.chisquare(counts[:8]).statistic
        bound = stats.chi2.ppf(1 - ALPHA, 7)
        assert chi2 <= bound, (f"{where}: {axis} offsets not uniform over 0..7: counts "
                               f"{counts.tolist()}, chi-square {chi2:.1f} > {bound:.1f}")
    if _case(case_id).whole:  # the recipe ends with Fliplr(0.5)
        n = len(flipped)
        rate, tol = flipped.mean(), K * math.sqrt(0.25 / n) + _floor(0.5, 0.5, n)
        assert abs(rate - 0.5) <= tol, f"{where}: flip rate {rate:.4f} vs 0.5, tolerance {tol:.3f}"


@pytest.mark.parametrize("case_id", CROP_CASES)
def test_crop_offsets_agree(case_id):
    crops = _crops(case_id)
    for i, axis in enumerate(("top", "left")):
        table = np.array([np.bincount(crops[b][i], minlength=9) for b in ("imgaug", "native")])
        table = table[:, table.sum(axis=0) > 0]
        chi2, _, dof, _ = stats.chi2_contingency(table, correction=False)
        bound = stats.chi2.ppf(1 - ALPHA, dof)
        assert chi2 <= bound, (f"{_where(case_id, axis + ' crop offset')}: imgaug counts "
                               f"{table[0].tolist()} vs native {table[1].tolist()}, chi-square "
                               f"{chi2:.1f} > {bound:.1f}")


def test_every_transform_of_every_recipe_is_compared():
    covered = {(r, n) for c in CASES for r in c.recipes
               for n in (c.node.children if c.transform == "Pad+CropToFixedSize" else [c.node])}
    for name in list_recipes():
        tree = get_recipe(name).pipeline
        nodes = [tree] if isinstance(tree, T) else list(tree.children)
        nodes += [n.child for n in nodes if isinstance(n, Sometimes)]
        for node in nodes:
            assert (name, node) in covered, (name, node)
    assert {type(get_recipe(r).pipeline) for r in list_recipes()} <= {T, SomeOf, Sequential}


# ----------------------------------------------------------------------------- the preview tool

def test_preview_tool_draws_both_backends(tmp_path):
    """``--backend both`` on generated CIFAR-like data: one PNG, imgaug | native columns (the
    CIFAR recipe: the tool uses the production native augmenter, compiled, and this one is
    quick to compile)."""
    import matplotlib.image

    spec = importlib.util.spec_from_file_location(
        "preview_augmentations", os.path.join(REPO, "tools", "preview_augmentations.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["--recipe", "cifar_crop_flip", "--dataset", "synthetic-cifar10", "--data-dir",
               str(tmp_path / "data"), "--images", "2", "--versions", "2", "--backend", "both",
               "--out", str(tmp_path / "out")])
    path = tmp_path / "out" / "cifar_crop_flip.png"
    assert path.exists() and path.stat().st_size > 0
    grid = matplotlib.image.imread(path)
    assert grid.ndim == 3 and grid.shape[1] > grid.shape[0] > 100  # 5 columns, 2 rows
