"""The native backend: a recipe tree (``tinynet.augment.recipes``) run as TensorFlow ops on the
whole batch, with stateless randomness seeded by the batch's ``(seed, epoch, step)`` key.

``NativeAugment(recipe)(images, labels, key) -> (images, labels)``: the augmentation contract
of ``ImgaugAugment`` (same ``on_normalized``), for ``tf.data.Dataset.map`` or a
``tf.function`` (e.g. the first step of a training step on an accelerator). ``recipe`` is a
registered name or any tree node (``NativeAugment(T("Multiply", mul=(0.8, 1.2)))``).

- Pure function of ``(images, key)``: every random draw is a ``tf.random.stateless_*`` op
  (ThreeFry under XLA, Philox without) whose seed is the backend's salt folded with the key,
  then with the node's path in the tree (child index at each level), then split per parameter. Same key -> bit-identical
  batch.
- The whole recipe is ONE ``tf.function(jit_compile=True)`` (XLA, also inside ``tf.data`` on
  CPU): every op has an XLA kernel and static shapes, so XLA fuses the elementwise work and
  the gathers; compiled once per input shape and dtype. ``NativeAugment(recipe,
  jit_compile=False)`` runs the same graph without XLA (no compile: quick to start, slower
  per batch) with Philox instead of ThreeFry (which has no non-XLA kernel): the same
  distributions and per-image semantics, other random bits (and XLA may fuse float rounding
  differently), so the two paths agree in distribution, not bit for bit. Each path is
  deterministic on its own.
- The batch keeps its dtype between transforms, as in imgaug: index transforms (flips, pad,
  crop to fixed size, dropout masks) work on it directly, the others compute in float32 and
  quantise uint8 results as imgaug's uint8 code does (rounded, or truncated where imgaug uses
  a lookup table: Multiply, LinearContrast). The output has the input's dtype and shape.
- Parameters follow imgaug 0.4: a number is deterministic, a tuple ``(a, b)`` uniform
  (inclusive integers for discrete parameters), a list a choice, ``"ALL"`` imgaug's full set
  as the explicit list the imgaug backend gets too (``recipes.all_values``, e.g. the pad
  modes sorted by name: the same order in every process and in both backends);
  ``per_channel`` is a probability per image.

Transforms, and how they compare with imgaug (the papers' recipes: Abai & Rajmalwar 2019's
Model 1/2, the ResNet recipes of seed 001, He et al. 2016's CIFAR crop/flip; see ``recipes``):

- ``Fliplr`` / ``Flipud`` (p per image): exact (one select over the reversed batch).
- ``Affine`` (scale, scale x/y, translate_percent, rotate, shear, order, cval, mode): the
  matrix is exactly imgaug's (skimage 0.26 ``AffineTransform`` chain about the centre
  ``(W/2 - 0.5, H/2 - 0.5)``; a tuple ``shear`` shears x and y by the same angle, a number only
  x; one sampled ``scale`` for both axes unless a dict), composed into ONE projective transform
  per image, run by ``native_ops.warp``: coordinate arithmetic and flat gathers (nearest:
  one, bilinear: four), each border mode (constant, edge, symmetric, reflect = OpenCV
  reflect-101, wrap) as index arithmetic on the tap coordinates (constant: the outside taps'
  weight goes to cval), per image on a mode id for ``"ALL"`` at about the cost of one mode;
  per-image order and per-channel cval. Approximate: OpenCV interpolates in fixed point (1/32 pixel coordinates,
  15-bit weights), so bilinear results may differ by 1 grey level and nearest may pick the
  neighbour at exact half-pixel ties; imgaug's identity-matrix shortcut is not taken (an
  identity warp returns the image unchanged anyway).
- ``CropAndPad`` / ``Crop`` (percent per side, sampled independently, rounded to pixels;
  pad_mode incl. ``"ALL"`` = numpy's 10 modes; pad_cval; keep_size): see
  ``native_ops.crop_pad_resize`` -- exact amounts and border modes, bilinear resize back
  (approximates cv2 INTER_AREA/INTER_LINEAR), approximate ``linear_ramp``/statistic modes.
  imgaug's guard against crops that leave < 1 pixel is not reproduced (the recipes crop at
  most 50% per axis).
- ``Pad`` (px, constant/edge/symmetric/reflect, keep_size=False) and ``CropToFixedSize``
  (uniform position): exact (offsets ``int((1 - u) * excess)``, u uniform in [0, 1), i.e.
  0..excess as imgaug draws them).
- ``CoarseDropout`` (p, size_percent, per_channel): exact semantics: per image a keep
  probability ``1 - p``, a low-resolution mask of ``max(int(size * H), 3)`` x
  ``max(int(size * W), 3)`` Bernoulli draws (per channel for the per_channel share of images),
  nearest upsampling as cv2 (``floor(dst * small / size)``); the random stream differs.
- ``GaussianBlur`` (sigma per image): imgaug's kernel size (``int(max(3.3 sigma, 5))`` made
  odd, ...), sigma <= 1e-3 leaves the image as is, OpenCV's reflect-101 border; separable
  per-image kernels. Approximate: OpenCV's 8-bit path uses fixed-point kernels (1 grey level).
- ``AdditiveGaussianNoise`` (loc, scale per image, per_channel): exact semantics (noise
  rounded, added, clipped); the random stream differs.
- ``Multiply`` (mul, per_channel), ``LinearContrast`` (alpha, per_channel; ``127 + alpha (v -
  127)``): exact for uint8 (float32 arithmetic and truncation as imgaug's lookup tables).
- ``AddToHueAndSaturation`` (value, per_channel=False; hue shift ``int(v / 255 * 180)``):
  OpenCV's 8-bit RGB -> HSV in integer arithmetic with its division tables (exact), the
  shifts (exact), OpenCV's float HSV -> RGB formula rounded: about a third of the pixels
  differ from OpenCV by 1 grey level (its 8-bit HSV2RGB path rounds differently).
- ``Sometimes`` (p per image), ``SomeOf`` (per image a count in imgaug's range -- ``(a,
  None)``: a..all, ``(a, b)``: a..b inclusive -- and a uniformly random subset of that size),
  ``Sequential``: exact semantics. ``random_order``: as imgaug, ONE random permutation of the
  children per batch, applied by a ``tf.while_loop`` over the positions with one
  ``tf.switch_case`` (each child runs once per batch, and is in the graph once). A child of
  a ``SomeOf``/``Sometimes`` runs on the whole batch and is selected per image
  (``_select``: static shapes for XLA, which fuses the select).

Random streams are TensorFlow's, not imgaug's: outputs are equal in distribution, not bit for
bit (``tests/test_augment_equivalence.py`` compares the two backends statistically).
"""
import math
import numbers
import threading

import tensorflow as tf

from tinynet.augment import native_ops as ops
from tinynet.augment.recipes import (ALL, Sequential, SomeOf, Sometimes, T, all_values,
                                     get_recipe)
from tinynet.errors import TinynetError

# Folded into every key first: b"native" as an integer (mixup uses b"mixup").
_SALT = tf.constant([0x6E6174697665, 0], tf.int64)

# Transforms that work on the batch's own dtype (index ops, 0/1 masks); the others run in
# float32 and are cast back (after imgaug's rounding/truncation for uint8).
_ANY_DTYPE = {"Fliplr", "Flipud", "Pad", "CropToFixedSize", "CoarseDropout"}


# The stateless algorithm of every draw: ThreeFry under XLA (XLA on CPU generates it several
# times faster than Philox, and its default "auto_select" normal sampler is ~40x slower), but
# ThreeFry has no TensorFlow (non-XLA) kernel, so ``NativeAugment(jit_compile=False)`` traces
# with Philox: the same distributions, other bits. Set while a ``NativeAugment`` traces
# (thread-local: tf.data may trace in parallel).
_ALG = threading.local()


def _alg():
    return getattr(_ALG, "alg", "threefry")


def _stateless_uniform(shape, seed, minval=0, maxval=None, dtype=tf.float32):
    return tf.random.stateless_uniform(shape, seed, minval, maxval, dtype, alg=_alg())


def _stateless_normal(shape, seed):
    return tf.random.stateless_normal(shape, seed, alg=_alg())


def _seeds(seed, n):
    return tf.random.experimental.stateless_split(seed, num=n)


def _uniform(shape, seed, lo=0.0, hi=1.0):
    return _stateless_uniform(shape, seed=seed, minval=lo, maxval=hi)


def _bernoulli(p, shape, seed):
    p = float(p)
    if p >= 1.0:
        return tf.ones(shape, tf.bool)
    if p <= 0.0:
        return tf.zeros(shape, tf.bool)
    return _uniform(shape, seed) < p


def _continuous(param, shape, seed):
    """imgaug's ``handle_continuous_param``: number -> that value, ``(a, b)`` -> uniform,
    list -> choice (float32 tensor of ``shape``)."""
    if isinstance(param, bool) or param is None:
        raise TinynetError(f"unsupported parameter {param!r}")
    if isinstance(param, numbers.Real):
        return tf.fill(shape, tf.constant(float(param), tf.float32))
    if isinstance(param, tuple) and len(param) == 2:
        a, b = float(min(param)), float(max(param))
        return _uniform(shape, seed, a, b)
    if isinstance(param, list):
        values = tf.constant([float(v) for v in param], tf.float32)
        i = _stateless_uniform(shape, seed, 0, len(param), dtype=tf.int32)
        return tf.gather(values, i)
    raise TinynetError(f"unsupported parameter {param!r}")


def _discrete(param, shape, seed):
    """imgaug's ``handle_discrete_param``: number, ``(a, b)`` -> inclusive integer uniform,
    list -> choice (int32 tensor)."""
    if isinstance(param, tuple) and len(param) == 2:
        a, b = int(min(param)), int(max(param))
        return _stateless_uniform(shape, seed, a, b + 1, dtype=tf.int32)
    if isinstance(param, list):
        values = tf.constant([int(v) for v in param], tf.int32)
        i = _stateless_uniform(shape, seed, 0, len(param), dtype=tf.int32)
        return tf.gather(values, i)
    return tf.fill(shape, tf.constant(int(param), tf.int32))


def _expand_all(kind, name, value):
    """``"ALL"`` as the recipes' explicit list (``recipes.all_values``): the same values in the
    same order as the imgaug backend gets, so draw i means the same value in both."""
    return all_values(kind, name) if isinstance(value, str) and value == ALL else value


def _choice_ids(param, names, shape, seed):
    """A categorical parameter (string or list of strings, ``"ALL"`` already expanded) as
    int32 ids of ``names`` (the drawn index refers to ``param``'s order, not ``names``');
    the python value too when it is deterministic."""
    if isinstance(param, str):
        return tf.fill(shape, names.index(param)), param
    ids = tf.constant([names.index(p) for p in param], tf.int32)
    i = _stateless_uniform(shape, seed, 0, len(param), dtype=tf.int32)
    return tf.gather(ids, i), (param[0] if len(param) == 1 else None)


def _per_channel(per_channel, b, seed):
    """Per image: draw per channel? (imgaug: probability ``per_channel``, True = 1)."""
    return _bernoulli(float(per_channel), [b], seed)


def _quantise(x, integer):
    """uint8 results of imgaug's OpenCV paths: rounded and clipped."""
    return tf.clip_by_value(tf.round(x), 0.0, 255.0) if integer else x


def _bcast(v):
    return v[:, None, None, None]


def _select(mask, y, x):
    """Per image ``y`` where ``mask`` [B] holds, else ``x``."""
    return tf.where(_bcast(mask), y, x)


# -- transforms: fn(x float32 [B, H, W, C], seed, integer, params) -> x ----------------------

def _flip(axis):
    def apply(x, seed, integer, p):
        p = float(p.get("p", 1.0))
        if p >= 1.0:
            return tf.reverse(x, [axis])
        return _select(_bernoulli(p, [tf.shape(x)[0]], seed), tf.reverse(x, [axis]), x)
    return apply


def _per_axis(value, default, b, seed_x, seed_y, seed_shared):
    """imgaug's x/y parameter: a dict draws each axis on its own, anything else one value for
    both (None: ``default``)."""
    value = default if value is None else value
    if isinstance(value, dict):
        return (_continuous(value.get("x", default), [b], seed_x),
                _continuous(value.get("y", default), [b], seed_y))
    both = _continuous(value, [b], seed_shared)
    return both, both


def _affine(x, seed, integer, p):
    b = tf.shape(x)[0]
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    s = _seeds(seed, 12)
    scale, translate, rotate, shear = (p.get(k) for k in
                                       ("scale", "translate_percent", "rotate", "shear"))
    if all(v is None for v in (scale, translate, p.get("translate_px"), rotate, shear)):
        scale = {"x": (0.9, 1.1), "y": (0.9, 1.1)}
        translate = {"x": (-0.1, 0.1), "y": (-0.1, 0.1)}
        rotate, shear = (-15, 15), {"x": (-10, 10), "y": (-10, 10)}
    if p.get("translate_px") is not None or p.get("fit_output"):
        raise TinynetError("native Affine: translate_px and fit_output are not supported")
    sx, sy = _per_axis(scale, 1.0, b, s[0], s[1], s[2])
    tx, ty = _per_axis(translate, 0.0, b, s[3], s[4], s[5])
    rot = _continuous(0.0 if rotate is None else rotate, [b], s[6])
    shear = 0.0 if shear is None else shear
    if isinstance(shear, dict):
        shx = _continuous(shear.get("x", 0.0), [b], s[7])
        shy = _continuous(shear.get("y", 0.0), [b], s[8])
    elif isinstance(shear, numbers.Real):
        shx, shy = _continuous(shear, [b], s[7]), tf.zeros([b])
    else:
        shx = shy = _continuous(shear, [b], s[7])
    deg = math.pi / 180.0
    matrix = ops.imgaug_affine_matrix(h, w, sx, sy, tx * w, ty * h, rot * deg, shx * deg,
                                      shy * deg)
    transforms = ops.inverse_rows(matrix)
    order = _expand_all("Affine", "order", p.get("order", 1))
    if any(o not in (0, 1) for o in (order if isinstance(order, list) else [order])):
        raise TinynetError("native Affine: only order 0 and 1 are supported")
    mode_ids, mode = _choice_ids(_expand_all("Affine", "mode", p.get("mode", "constant")),
                                 ops.MODES, [b], s[10])
    cval = _expand_all("Affine", "cval", p.get("cval", 0))  # ALL: uniform 0..255, as imgaug
    if not isinstance(order, list):
        order = int(order)
    else:
        order = order[0] if len(set(order)) == 1 else _discrete(order, [b], s[11])
    cv = _continuous(cval, [b, c], s[9])
    if integer:  # cv2 gets int(cval) (truncated), clipped to the dtype's range
        cv = tf.clip_by_value(tf.floor(cv), 0.0, 255.0)
    out = ops.warp(x, transforms, order, mode if mode is not None else mode_ids, cv)
    return _quantise(out, integer)


def _crop_and_pad(x, seed, integer, p, sign=1.0, defaults=(-0.1, 0.1)):
    b = tf.shape(x)[0]
    h, w = x.shape[1], x.shape[2]
    s = _seeds(seed, 7)
    if p.get("px") is not None:
        raise TinynetError("native CropAndPad/Crop: only percent is supported")
    percent = p.get("percent", defaults)
    if isinstance(percent, tuple) and len(percent) == 4:
        sides = [_continuous(v, [b], s[i]) for i, v in enumerate(percent)]
    elif p.get("sample_independently", True):
        all4 = _continuous(percent, [b, 4], s[0])
        sides = [all4[:, i] for i in range(4)]
    else:
        one = _continuous(percent, [b], s[0])
        sides = [one] * 4
    sides = [sign * v for v in sides]
    top, right, bottom, left = (tf.cast(tf.round(v * n), tf.int32)
                                for v, n in zip(sides, (h, w, h, w)))
    pad_mode = _expand_all("CropAndPad", "pad_mode", p.get("pad_mode", "constant"))
    mode_ids, _ = _choice_ids(pad_mode, ops.PAD_MODES, [b], s[4])
    modes = (pad_mode,) if isinstance(pad_mode, str) else tuple(pad_mode)
    cval = tf.cast(_discrete(p.get("pad_cval", 0), [b], s[5]), tf.float32) \
        if not isinstance(p.get("pad_cval", 0), float) else _continuous(p["pad_cval"], [b], s[5])
    if integer:
        cval = tf.clip_by_value(cval, 0.0, 255.0)
    if not p.get("keep_size", True):
        raise TinynetError("native CropAndPad/Crop: keep_size=False is not supported")
    out = ops.crop_pad_resize(x, top, right, bottom, left, mode_ids, cval, keep_size=True,
                              modes=modes)
    return _quantise(out, integer)


def _crop(x, seed, integer, p):
    return _crop_and_pad(x, seed, integer, p, sign=-1.0, defaults=(0.0, 0.1))


def _pad(x, seed, integer, p):
    px = p.get("px")
    if not isinstance(px, int) or p.get("percent") is not None or p.get("keep_size", True):
        raise TinynetError("native Pad: only an int px with keep_size=False is supported")
    mode = p.get("pad_mode", "constant")
    tf_mode = {"constant": "CONSTANT", "reflect": "REFLECT", "symmetric": "SYMMETRIC"}
    if mode == "edge":
        idx = lambda n: tf.clip_by_value(tf.range(-px, n + px), 0, n - 1)  # noqa: E731
        return tf.gather(tf.gather(x, idx(x.shape[1]), axis=1), idx(x.shape[2]), axis=2)
    if mode not in tf_mode:
        raise TinynetError(f"native Pad: pad_mode {mode!r} is not supported")
    return tf.pad(x, [[0, 0], [px, px], [px, px], [0, 0]], mode=tf_mode[mode],
                  constant_values=float(p.get("pad_cval", 0)))


def _crop_to_fixed_size(x, seed, integer, p):
    if p.get("position", "uniform") != "uniform":
        raise TinynetError("native CropToFixedSize: only position='uniform' is supported")
    b = tf.shape(x)[0]
    h, w = x.shape[1], x.shape[2]
    height, width = min(int(p["height"]), h), min(int(p["width"]), w)
    s = _seeds(seed, 2)
    ux, uy = _uniform([b], s[0]), _uniform([b], s[1])
    ox = tf.cast(tf.floor((1.0 - ux) * (w - width)), tf.int32)
    oy = tf.cast(tf.floor((1.0 - uy) * (h - height)), tf.int32)
    return ops.crop_offsets(x, oy, ox, height, width)


def _coarse_dropout(x, seed, integer, p):
    b = tf.shape(x)[0]
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    s = _seeds(seed, 5)
    prob = p.get("p", (0.02, 0.1))
    if isinstance(prob, tuple):
        keep = _uniform([b], s[0], 1.0 - float(prob[1]), 1.0 - float(prob[0]))
    else:
        keep = 1.0 - _continuous(prob, [b], s[0])
    size = p.get("size_percent")
    min_size = int(p.get("min_size", 3))
    if size is None or p.get("size_px") is not None:
        raise TinynetError("native CoarseDropout: only size_percent is supported")
    hi = float(max(size)) if isinstance(size, (tuple, list)) else float(size)
    hw = _continuous(tuple(size) if isinstance(size, (tuple, list)) else size, [b, 2], s[1])
    hs = tf.maximum(tf.cast(hw[:, 0] * h, tf.int32), min_size)
    ws = tf.maximum(tf.cast(hw[:, 1] * w, tf.int32), min_size)
    hmax, wmax = max(int(hi * h), min_size), max(int(hi * w), min_size)
    small = _uniform([b, hmax, wmax, c], s[2]) < _bcast(keep)
    per = _per_channel(p.get("per_channel", False), b, s[3])
    small = tf.where(_bcast(per), small, small[..., :1])
    mask = ops.nearest_upsample_mask(tf.cast(small, x.dtype), hs, ws, h, w)
    return x * mask  # (any dtype: the mask is 0/1)


def _gaussian_blur(x, seed, integer, p):
    b = tf.shape(x)[0]
    sigma_p = p.get("sigma", (0.0, 3.0))
    sigma = _continuous(sigma_p, [b], seed)
    hi = max(sigma_p) if isinstance(sigma_p, (tuple, list)) else sigma_p
    hi = float(hi)
    ks = 3.3 * hi if hi < 3 else (2.9 * hi if hi < 5 else 2.6 * hi)
    ks = int(max(ks, 5))
    ks += 1 - ks % 2
    kernels = ops.gaussian_kernels(sigma, ks)
    out = _quantise(ops.blur_separable(x, kernels), integer)
    return _select(sigma > 1e-3, out, x)


def _additive_gaussian_noise(x, seed, integer, p):
    b = tf.shape(x)[0]
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    s = _seeds(seed, 4)
    loc = _continuous(p.get("loc", 0.0), [b], s[0])
    scale = _continuous(p.get("scale", (0, 15)), [b], s[1])
    per_channel = p.get("per_channel", False)
    if float(per_channel) > 0.0:
        noise = _stateless_normal([b, h, w, c], s[2])
        per = _per_channel(per_channel, b, s[3])
        noise = tf.where(_bcast(per), noise, noise[..., :1])
    else:
        noise = _stateless_normal([b, h, w, 1], s[2])
    noise = noise * _bcast(scale) + _bcast(loc)
    if integer:
        return tf.clip_by_value(x + tf.round(noise), 0.0, 255.0)
    return x + noise


def _channel_values(x, seed, param, per_channel):
    b, c = tf.shape(x)[0], x.shape[3]
    s = _seeds(seed, 2)
    values = _continuous(param, [b, c], s[0])
    if float(per_channel) > 0.0:
        per = _per_channel(per_channel, b, s[1])
        values = tf.where(per[:, None], values, values[:, :1])
    else:
        values = tf.broadcast_to(values[:, :1], [b, c])
    return values[:, None, None, :]


def _multiply(x, seed, integer, p):
    mul = _channel_values(x, seed, p.get("mul", (0.8, 1.2)), p.get("per_channel", False))
    out = x * mul
    return tf.floor(tf.clip_by_value(out, 0.0, 255.0)) if integer else out


def _linear_contrast(x, seed, integer, p):
    alpha = _channel_values(x, seed, p.get("alpha", (0.6, 1.4)), p.get("per_channel", False))
    center = 127.0  # imgaug: int(0.5 * (0 + 255)) for uint8
    # the max is an identity that stops XLA/LLVM from contracting the multiply-add into an
    # FMA (more precise than numpy's two float32 roundings: it moves truncation boundaries)
    out = center + tf.maximum(alpha * (x - center), -3.0e38)
    return tf.floor(tf.clip_by_value(out, 0.0, 255.0)) if integer else out


def _add_to_hue_and_saturation(x, seed, integer, p):
    b = tf.shape(x)[0]
    if p.get("value") is None or p.get("per_channel", False):
        raise TinynetError("native AddToHueAndSaturation: only value=, per_channel=False")
    v = _discrete(p["value"], [b], seed)
    hue = tf.cast(tf.cast(v, tf.float32) / 255.0 * 180.0, tf.int32)  # int() truncation
    out = ops.add_hue_saturation_cv2(x, hue, v)
    return _quantise(out, integer)


TRANSFORMS = {
    "Fliplr": _flip(2), "Flipud": _flip(1), "Affine": _affine, "CropAndPad": _crop_and_pad,
    "Crop": _crop, "Pad": _pad, "CropToFixedSize": _crop_to_fixed_size,
    "CoarseDropout": _coarse_dropout, "GaussianBlur": _gaussian_blur,
    "AdditiveGaussianNoise": _additive_gaussian_noise, "Multiply": _multiply,
    "LinearContrast": _linear_contrast, "AddToHueAndSaturation": _add_to_hue_and_saturation,
}


# -- containers ------------------------------------------------------------------------------

def _child_seed(seed, i):
    return tf.random.experimental.stateless_fold_in(seed, i)


def _on_selected(node, x, mask, seed, integer):
    """``node`` applied to the images where ``mask`` [B] holds: computed for the whole batch
    and selected per image (static shapes, as XLA needs; fused, the select is nearly free)."""
    return _select(mask, apply_node(node, x, seed, integer), x)


def _run_children(children, x, seed, integer, random_order, masks=None):
    n = len(children)

    def child_fn(i):
        def run(x):
            s = _child_seed(seed, i)
            if masks is None:
                return apply_node(children[i], x, s, integer)
            return _on_selected(children[i], x, masks[:, i], s, integer)
        return run

    if not random_order or n < 2:
        for i in range(n):
            x = child_fn(i)(x)
        return x
    # imgaug: one random permutation of the children per batch; position k runs child
    # order[k] (a while loop over the positions, one switch_case of the n children: the
    # graph holds each child once).
    order = tf.argsort(_uniform([n], _child_seed(seed, -1)))
    order = tf.cast(order, tf.int32)
    shape = x.shape

    def body(k, x):
        branches = [(lambda i: lambda: tf.ensure_shape(child_fn(i)(x), shape))(i)
                    for i in range(n)]
        return k + 1, tf.ensure_shape(tf.switch_case(order[k], branches), shape)

    _, x = tf.while_loop(lambda k, x: k < n, body, [tf.constant(0), x])
    return tf.ensure_shape(x, shape)


def _some_of_counts(n, num, b, seed):
    if n is None:
        return tf.fill([b], num)
    if isinstance(n, numbers.Integral):
        return tf.fill([b], int(n))
    lo, hi = n
    hi = num if hi is None else int(hi)
    return tf.minimum(_stateless_uniform([b], seed, int(lo), hi + 1, tf.int32), num)


def apply_node(node, x, seed, integer):
    """Applies a tree node to the batch ``x`` (its dtype is kept between transforms, as in
    imgaug) with stateless ``seed`` ([2] int64). ``integer``: ``x`` is uint8 (each transform
    quantises its result as imgaug does)."""
    if isinstance(node, T):
        try:
            fn = TRANSFORMS[node.kind]
        except KeyError:
            raise TinynetError(f"native backend: transform {node.kind!r} is not supported; "
                               f"supported: {', '.join(sorted(TRANSFORMS))}") from None
        if node.kind in _ANY_DTYPE:
            return fn(x, seed, integer, node.kwargs)
        out = fn(tf.cast(x, tf.float32), seed, integer, node.kwargs)
        return tf.cast(out, x.dtype)
    if isinstance(node, Sometimes):
        mask = _bernoulli(float(node.p), [tf.shape(x)[0]], _child_seed(seed, -2))
        return _on_selected(node.child, x, mask, _child_seed(seed, 0), integer)
    if isinstance(node, Sequential):
        return _run_children(node.children, x, seed, integer, node.random_order)
    if isinstance(node, SomeOf):
        b, num = tf.shape(x)[0], len(node.children)
        s = _seeds(_child_seed(seed, -3), 2)
        n = node.n
        n = tuple(n) if isinstance(n, (tuple, list)) else n
        counts = _some_of_counts(n, num, b, s[0])
        ranks = tf.argsort(tf.argsort(_uniform([b, num], s[1]), axis=1), axis=1)
        masks = ranks < counts[:, None]  # a uniformly random subset of size count
        return _run_children(node.children, x, seed, integer, node.random_order, masks)
    raise TinynetError(f"not an augmentation tree node: {node!r}")


def key_seed(key):
    """The backend's base seed for a batch key (int64 [3] = seed, epoch, step)."""
    seed = _SALT
    key = tf.cast(tf.reshape(key, [-1]), tf.int64)
    for i in range(3):
        seed = tf.random.experimental.stateless_fold_in(seed, key[i])
    return seed


class NativeAugment:
    """``NativeAugment(recipe)(images, labels, key_int64[3]) -> (images, labels)``: the
    augmentation contract with TensorFlow ops (labels pass through). ``recipe``: a recipe
    name or a tree node (then ``on_normalized`` is False). Images uint8 or float (e.g. the
    normalised batch of an ``on_normalized`` recipe); the output keeps dtype and shape."""

    def __init__(self, recipe, jit_compile=True):
        self.recipe = recipe
        self.jit_compile = jit_compile
        self._augment = tf.function(self._apply, jit_compile=jit_compile, autograph=False)
        if isinstance(recipe, str):
            r = get_recipe(recipe)
            self.node, self.on_normalized = r.pipeline, r.on_normalized
        else:
            self.node, self.on_normalized = recipe, False
        _check(self.node)

    def __call__(self, images, labels, key):
        images = tf.convert_to_tensor(images)
        if images.dtype.is_integer and images.dtype != tf.uint8:
            raise TinynetError(f"native backend: uint8 or float images, not {images.dtype.name}")
        out = self._augment(images, tf.cast(tf.reshape(key, [3]), tf.int64))
        out.set_shape(images.shape)
        return out, labels

    def _apply(self, images, key):
        previous = getattr(_ALG, "alg", None)
        _ALG.alg = "threefry" if self.jit_compile else "philox"
        try:
            return apply_node(self.node, images, key_seed(key), images.dtype == tf.uint8)
        finally:
            if previous is None:
                del _ALG.alg
            else:
                _ALG.alg = previous


def _check(node):
    if isinstance(node, T):
        if node.kind not in TRANSFORMS:
            raise TinynetError(f"native backend: transform {node.kind!r} is not supported; "
                               f"supported: {', '.join(sorted(TRANSFORMS))}")
    elif isinstance(node, Sometimes):
        _check(node.child)
    elif isinstance(node, (SomeOf, Sequential)):
        for child in node.children:
            _check(child)
    else:
        raise TinynetError(f"not an augmentation tree node: {node!r}")
