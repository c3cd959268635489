"""Batched TensorFlow kernels of the native augmentation backend (``native_backend``).

Every function works on a whole float32 NHWC batch (dynamic batch size, static H, W, C) with
per-image parameters given as tensors of leading dimension B: no Python per image, no
``numpy_function``, no ``map_fn``; they run inside ``tf.data`` and ``tf.function``, and under
XLA (``jit_compile``): static shapes, no op without an XLA kernel, flat gathers of whole
pixels rather than small batched gathers, float arithmetic for index maps (XLA's integer
division is slow on CPU). The
imgaug/OpenCV conventions they reproduce are noted per function (pixel centres at integer
coordinates, OpenCV border modes, OpenCV's 8-bit HSV).
"""
import tensorflow as tf

# imgaug's (skimage's) border mode names, as ids; cv2 equivalents in brackets.
MODES = ("constant", "edge", "symmetric", "reflect", "wrap")
# constant (BORDER_CONSTANT), edge (BORDER_REPLICATE), symmetric (BORDER_REFLECT: fedcba|abcd),
# reflect (BORDER_REFLECT_101: edcb|abcd), wrap (BORDER_WRAP).
# numpy.pad modes used by CropAndPad's pad_mode (imgaug pads with cv2 or numpy):
PAD_MODES = ("constant", "edge", "symmetric", "reflect", "wrap",
             "linear_ramp", "maximum", "mean", "median", "minimum")


def map_index(i, n, mode):
    """Out-of-range integer indices ``i`` of an axis of length ``n`` (broadcastable tensors,
    int32) mapped into ``[0, n)`` as border ``mode`` (an int32 id of ``MODES``: a Python int,
    then only that mode's arithmetic is built, or a broadcastable tensor, per element) does;
    "constant" (and any id >= 5: numpy's other pad modes) maps like "edge" (the caller
    substitutes the fill value). Per-element modes cost one fold, not one per mode: the period
    (symmetric 2n, reflect-101 2n - 2, wrap n) and the fold point are selected on the small
    mode tensor, then the coordinates are folded once and clamped once."""
    # float32 arithmetic (exact for these small integers): XLA's integer division is slow
    f = tf.cast(i, tf.float32)
    n = tf.cast(tf.maximum(n, 1), tf.float32)

    def fmod(v, p):
        return v - p * tf.floor(v / p)

    clamp = tf.clip_by_value(f, 0.0, n - 1.0)  # edge (and constant)
    if isinstance(mode, int):
        if mode == 2:  # symmetric
            m = fmod(f, 2.0 * n)
            out = tf.where(m >= n, 2.0 * n - 1.0 - m, m)
        elif mode == 3:  # reflect-101
            p101 = tf.maximum(2.0 * n - 2.0, 1.0)
            m = fmod(f, p101)
            out = tf.where(n == 1.0, tf.zeros_like(m), tf.where(m >= n, p101 - m, m))
        elif mode == 4:
            out = fmod(f, n)
        else:
            out = clamp
        return tf.cast(out, tf.int32)
    # per element: the mode's period and fold point (m >= n -> fold - m), from the mode ids
    # (small tensors), then ONE fmod and fold of the coordinates (wrap never folds: m < n)
    period = tf.where(mode == 2, 2.0 * n, tf.where(mode == 3, tf.maximum(2.0 * n - 2.0, 1.0),
                                                   n))
    fold = tf.where(mode == 2, 2.0 * n - 1.0, period)
    m = fmod(f, period)
    folded = tf.where(m >= n, fold - m, m)
    periodic = (mode >= 2) & (mode <= 4)
    return tf.cast(tf.where(periodic, folded, clamp), tf.int32)


def map_coords(i, n, mode):
    """``map_index`` for a mode known when the graph is built (an imgaug name) or per image
    (int32 ids, a tensor)."""
    return map_index(i, n, MODES.index(mode) if isinstance(mode, str) else mode)


def skimage_affine(sx, sy, rotation, shear, tx, ty):
    """skimage 0.26 ``AffineTransform(scale=(sx, sy), rotation, shear, translation)`` matrices
    [B, 3, 3] (float64; scalar shear = x shear)."""
    c, s, t = tf.cos(rotation), tf.sin(rotation), tf.tan(shear)
    zero, one = tf.zeros_like(sx), tf.ones_like(sx)
    rows = [tf.stack([sx * c, -sy * (t * c + s), tx], -1),
            tf.stack([sx * s, -sy * (t * s - c), ty], -1),
            tf.stack([zero, zero, one], -1)]
    return tf.stack(rows, -2)


def imgaug_affine_matrix(height, width, scale_x, scale_y, tx_px, ty_px, rot, shear_x,
                         shear_y):
    """The forward (source -> destination pixel) matrices [B, 3, 3] float64 that imgaug 0.4's
    ``Affine`` builds (``_AffineSamplingResult.to_matrix``: about the centre
    ``(W/2 - 0.5, H/2 - 0.5)``, y shear via a -90/+90 degree rotation sandwich with imgaug's
    3.141592), angles in radians."""
    f = lambda v: tf.cast(v, tf.float64)  # noqa: E731
    scale_x, scale_y, tx_px, ty_px, rot, shear_x, shear_y = map(
        f, (scale_x, scale_y, tx_px, ty_px, rot, shear_x, shear_y))
    one, zero = tf.ones_like(scale_x), tf.zeros_like(scale_x)
    cx, cy = width / 2.0 - 0.5, height / 2.0 - 0.5
    to_topleft = skimage_affine(one, one, zero, zero, -cx * one, -cy * one)
    rot_m = skimage_affine(one, one, zero - 3.141592 / 2, zero, zero, zero)
    shear_ym = skimage_affine(one, one, zero, shear_y, zero, zero)
    rot_inv = skimage_affine(one, one, zero + 3.141592 / 2, zero, zero, zero)
    main = skimage_affine(scale_x, scale_y, rot, shear_x, tx_px, ty_px)
    to_center = skimage_affine(one, one, zero, zero, cx * one, cy * one)
    m = to_topleft
    for nxt in (rot_m, shear_ym, rot_inv, main, to_center):  # skimage "a + b": b @ a
        m = tf.matmul(nxt, m)
    return m


def inverse_rows(matrix):
    """Forward matrices [B, 3, 3] -> the 8 (output -> input) coefficients of
    ``ImageProjectiveTransformV3`` [B, 8] float32."""
    inv = tf.linalg.inv(matrix)
    inv = inv / inv[:, 2:3, 2:3]
    return tf.cast(tf.reshape(inv, [-1, 9])[:, :8], tf.float32)


def warp(x, transforms, order, mode, cval):
    """Projective warp of the batch as coordinate arithmetic + gathers (XLA-compilable):
    ``transforms`` [B, 8] (output -> input, ``ImageProjectiveTransformV3``'s layout),
    ``order`` 0 (nearest: one gather), 1 (bilinear: 4 gathers and a lerp) or int32 [B] per
    image; ``mode`` an imgaug name of ``MODES`` or int32 [B] ids per image; ``cval`` float32
    [B, C] (the fill of "constant").

    OpenCV conventions: pixel centres at integer coordinates; nearest rounds half up; bilinear
    taps outside the image read ``cval`` in constant mode (the border blends with it) or the
    mode's mirrored/wrapped/replicated pixel. Border modes only change the integer tap
    coordinates (``map_index``, per image on the mode id: one fold of the [B, H, W]
    coordinates, two per axis), so a per-image mode costs coordinate arithmetic, not
    per-mode image work: the gathers are the same. "constant" is a weight: an outside tap's
    bilinear weight goes to ``cval`` (``out = sum w v + (1 - sum w) cval``, one blend of the
    image)."""
    b, h, w, c = tf.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
    ys, xs = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32),
                         indexing="ij")
    t = transforms[:, :, None, None]
    den = t[:, 6] * xs + t[:, 7] * ys + 1.0
    sx = (t[:, 0] * xs + t[:, 1] * ys + t[:, 2]) / den
    sy = (t[:, 3] * xs + t[:, 4] * ys + t[:, 5]) / den
    if not isinstance(order, int):
        nearest = (order == 0)[:, None, None]
        sx = tf.where(nearest, tf.floor(sx + 0.5), sx)
        sy = tf.where(nearest, tf.floor(sy + 0.5), sy)
    elif order == 0:
        sx, sy = tf.floor(sx + 0.5), tf.floor(sy + 0.5)
    x0f, y0f = tf.floor(sx), tf.floor(sy)
    fx, fy = sx - x0f, sy - y0f
    # far-away coordinates (huge scales) would overflow int32
    x0 = tf.cast(tf.clip_by_value(x0f, -4.0 * w - 8, 5.0 * w + 8), tf.int32)
    y0 = tf.cast(tf.clip_by_value(y0f, -4.0 * h - 8, 5.0 * h + 8), tf.int32)
    m = mode if isinstance(mode, str) else mode[:, None, None]
    constant = (m == "constant") if isinstance(mode, str) else (m == 0)
    flat = tf.reshape(x, [-1, c])
    base = tf.range(b)[:, None, None] * (h * w)
    nearest_only = isinstance(order, int) and order == 0
    steps = (0,) if nearest_only else (0, 1)
    # per axis: the mapped tap coordinates, whether outside, the weights
    ty = [(map_coords(y0 + d, h, m) * w, (y0 + d < 0) | (y0 + d >= h)) for d in steps]
    tx = [(map_coords(x0 + d, w, m), (x0 + d < 0) | (x0 + d >= w)) for d in steps]
    wy, wx = (1.0 - fy, fy), (1.0 - fx, fx)
    out, wsum = None, None
    for dy in steps:
        for dx in steps:
            v = tf.gather(flat, base + ty[dy][0] + tx[dx][0])
            wgt = None if nearest_only else wy[dy] * wx[dx]
            if constant is not False:
                outside = ty[dy][1] | tx[dx][1]
                inside = ~outside if constant is True else ~(constant & outside)
                wgt = tf.where(inside, 1.0 if wgt is None else wgt, 0.0)
                wsum = wgt if wsum is None else wsum + wgt
            v = v if wgt is None else wgt[..., None] * v
            out = v if out is None else out + v
    if constant is not False:  # the weight of the outside taps goes to cval
        out = out + (1.0 - wsum)[..., None] * cval[:, None, None, :]
    return tf.ensure_shape(out, x.shape)


def crop_pad_resize(x, top, right, bottom, left, mode, cval, keep_size=True,
                    modes=PAD_MODES):
    """imgaug's ``CropAndPad`` for the batch: signed per-side amounts (int32 [B]; > 0 pads,
    < 0 crops), numpy pad ``mode`` (int32 [B], ids of ``PAD_MODES``), fill ``cval`` (float32
    [B]), then (``keep_size``) the resize back to H x W, as one separable resampling: two
    taps per axis, 4 flat gathers of the original pixels. ``modes``: the pad modes that can
    occur (the others' code is left out of the graph).

    Per-image modes cost (almost) nothing beyond one mode's: everything that depends on the
    mode is per axis ([B, H, 2] / [B, W, 2] tap coordinates and weights) or a gather index.
    Index modes (edge/symmetric/reflect/wrap) map the per-axis tap coordinates
    (``map_index``); ``constant`` and ``linear_ramp`` are separable per-axis weight factors
    (an outside tap's weight, or the ramp's share, goes to ``cval``: ``out = sum w v + (1 -
    sum w) cval``); the statistic modes gather their fill from a small table of per-image row /
    column / window statistics appended to the pixels (the tap's gather index points there).
    The statistics cost four masked reductions of the batch (max, or min as the max of the
    negated image, and sums; per image only the statistic its mode needs is kept), built only
    when a statistic mode can occur.

    Exact: crop/pad amounts, constant/edge/symmetric/reflect/wrap padding (numpy's modes, cv2's
    ``copyMakeBorder``), the result when the size does not change. Approximate: the resize is
    bilinear with half-pixel centres (cv2 ``INTER_LINEAR``, imgaug's choice when the padded
    image is larger; cv2 ``INTER_AREA``, imgaug's choice when it is smaller, differs slightly,
    and both round in fixed point); ``linear_ramp`` is numpy's ramp from the edge value to
    ``cval`` without numpy's rounding of the intermediate top/bottom stage; ``maximum``,
    ``minimum``, ``mean`` use numpy's per-column (top/bottom) and per-row (left/right)
    statistics, with the global statistic in the corners; ``median`` uses the mean."""
    b, h, w, c = tf.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
    ct, cb, cl, cr = (tf.maximum(-v, 0) for v in (top, bottom, left, right))
    pt, pb, pl, pr = (tf.maximum(v, 0) for v in (top, bottom, left, right))
    hc, wc = h - ct - cb, w - cl - cr  # cropped size
    h2, w2 = hc + pt + pb, wc + pl + pr  # cropped + padded size
    m = mode[:, None]
    weighted = [m_ for m_ in ("constant", "linear_ramp") if m_ in modes]

    def axis_taps(n_out, n2, n_c, c0, p0, p1):
        # bilinear taps in the padded image for each output index, mapped to the original;
        # the weights include the constant / linear_ramp factor (the rest goes to cval)
        n2f = tf.cast(n2, tf.float32)[:, None]
        i = tf.range(n_out, dtype=tf.float32)[None, :]
        if keep_size:
            src = tf.maximum((i + 0.5) * n2f / n_out - 0.5, 0.0)
        else:
            src = tf.broadcast_to(i, [b, n_out])
        i0 = tf.floor(src)
        frac = src - i0
        i0 = tf.cast(i0, tf.int32)
        taps = tf.stack([i0, tf.minimum(i0 + 1, n2[:, None] - 1)], -1)  # [B, n, 2]
        weights = tf.stack([1.0 - frac, frac], -1)
        u = taps - p0[:, None, None]  # index in the cropped image
        nc = n_c[:, None, None]
        outside = (u < 0) | (u >= nc)
        mm = m[:, :, None]
        if "linear_ramp" in modes:  # the edge value's share: 1 - distance / pad width
            dist = tf.where(u < 0, -u, u - nc + 1)  # distance beyond the edge (pad pixels)
            width = tf.where(u < 0, p0[:, None, None], p1[:, None, None])
            ramp = tf.where(outside, tf.cast(dist, tf.float32)
                            / tf.cast(tf.maximum(width, 1), tf.float32), 0.0)
            weights = tf.where(mm == 5, weights * (1.0 - ramp), weights)
        if "constant" in modes:
            weights = tf.where((mm == 0) & outside, 0.0, weights)
        src_idx = c0[:, None, None] + map_index(u, nc, mm)
        # per tap [B, n] (unstacked: slicing the stacks with new axes trips grappler's
        # arithmetic optimizer outside XLA)
        return (tf.unstack(v, axis=-1) for v in (src_idx, weights, outside))

    rows, wy, row_out = axis_taps(h, h2, hc, ct, pt, pb)  # 2 taps of [B, H] each
    cols, wx, col_out = axis_taps(w, w2, wc, cl, pl, pr)  # 2 taps of [B, W] each
    flat = tf.reshape(x, [-1, c])
    base = tf.range(b)[:, None, None] * (h * w)
    stat = [m_ for m_ in ("maximum", "mean", "median", "minimum") if m_ in modes]
    if stat:  # per image, its mode's row / column / window statistic, after the pixels
        row_s, col_s, glob_s = _window_stats(x, mode, ct, cb, cl, cr)
        n_px = b * (h * w)
        flat = tf.concat([flat, tf.reshape(row_s, [-1, c]), tf.reshape(col_s, [-1, c]),
                          glob_s], 0)
        is_stat = tf.reshape((mode >= 6) & (mode <= 9), [b, 1, 1])
        bi = tf.range(b)[:, None, None]
        row_base, col_base, glob_idx = n_px + bi * h, n_px + b * h + bi * w, n_px + b * (h + w) + bi
    out = 0.0
    for ty in (0, 1):  # 4 taps, each one flat gather
        r, ro = rows[ty][:, :, None], row_out[ty][:, :, None]  # [B, H, 1]
        for tx in (0, 1):
            col, co = cols[tx][:, None, :], col_out[tx][:, None, :]  # [B, 1, W]
            idx = base + r * w + col  # [B, H, W]
            if stat:  # top/bottom bands: the column's statistic; left/right: the row's
                idx = tf.where(is_stat & (ro | co), tf.where(
                    ro & co, glob_idx, tf.where(ro, col_base + col, row_base + r)), idx)
            v = tf.gather(flat, idx)  # [B, H, W, C]
            out += (wy[ty][:, :, None, None] * wx[tx][:, None, :, None]) * v
    if weighted:  # the weight that constant / linear_ramp took from the taps goes to cval
        wsum = (wy[0] + wy[1])[:, :, None] * (wx[0] + wx[1])[:, None, :]
        cv = tf.reshape(tf.cast(cval, x.dtype), [b, 1, 1, 1])
        out += (1.0 - wsum)[..., None] * cv
    return tf.ensure_shape(out, x.shape)


def _window_stats(x, mode, ct, cb, cl, cr):
    """Per image, the statistic its pad ``mode`` (ids 6..9 of ``PAD_MODES``: maximum, mean,
    median -> the mean, minimum) takes over each row and column of the crop window and over
    the whole window (numpy's statistic pad modes): (row [B, H, C], col [B, W, C], window
    [B, C]). Four masked reductions of the batch: max of the image (negated for "minimum":
    min = -max(-x)) and sum, each over rows and over columns; the window's from the rows'."""
    b, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    rin, cin = tf.range(h)[None, :], tf.range(w)[None, :]
    row_ok = (rin >= ct[:, None]) & (rin < (h - cb)[:, None])  # [B, H]
    col_ok = (cin >= cl[:, None]) & (cin < (w - cr)[:, None])  # [B, W]
    win = (row_ok[:, :, None, None] & col_ok[:, None, :, None])
    big = 3.0e38
    cnt_r = tf.reduce_sum(tf.cast(col_ok, tf.float32), 1)[:, None, None]  # pixels per row
    cnt_c = tf.reduce_sum(tf.cast(row_ok, tf.float32), 1)[:, None, None]
    sign = tf.reshape(tf.where(mode == 9, -1.0, 1.0), [b, 1, 1, 1])
    is_mean = tf.reshape((mode == 7) | (mode == 8), [b, 1, 1])
    hi = tf.where(win, x * sign, -big)
    xs = tf.where(win, x, 0.0)
    max_r, max_c = tf.reduce_max(hi, 2), tf.reduce_max(hi, 1)
    sum_r, sum_c = tf.reduce_sum(xs, 2), tf.reduce_sum(xs, 1)
    max_g = tf.reduce_max(tf.where(row_ok[:, :, None], max_r, -big), 1)
    sum_g = tf.reduce_sum(sum_r, 1)  # (rows outside the window sum to 0)
    s = sign[:, :, 0]  # [B, 1, 1]
    row_s = tf.where(is_mean, sum_r / cnt_r, s * max_r)
    col_s = tf.where(is_mean, sum_c / cnt_c, s * max_c)
    glob_s = tf.where(is_mean[:, 0], sum_g / (cnt_r * cnt_c)[:, 0], s[:, 0] * max_g)
    return row_s, col_s, glob_s


def crop_offsets(x, oy, ox, height, width):
    """Crops ``height`` x ``width`` at per-image offsets (int32 [B]) with two gathers."""
    rows = oy[:, None] + tf.range(height)[None, :]
    cols = ox[:, None] + tf.range(width)[None, :]
    out = tf.gather(tf.gather(x, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    return tf.ensure_shape(out, [x.shape[0], height, width, x.shape[3]])


def nearest_upsample_mask(small, hs, ws, height, width):
    """Nearest upsampling (cv2 ``INTER_NEAREST``: ``src = floor(dst * src_size / dst_size)``)
    of the top-left ``hs x ws`` (int32 [B]) corner of ``small`` [B, Hmax, Wmax, C] to
    ``height x width``, per image: one-hot selections over the few low-resolution rows and
    columns (elementwise, fused by XLA; small gathers are slow there)."""
    def idx(n_out, n_small):
        i = tf.range(n_out, dtype=tf.float32)[None, :]
        j = tf.floor(i * tf.cast(n_small, tf.float32)[:, None] / n_out)
        return tf.minimum(tf.cast(j, tf.int32), n_small[:, None] - 1)
    iy, ix = idx(height, hs), idx(width, ws)  # [B, height], [B, width]
    zero = tf.zeros([], small.dtype)
    rows = 0
    for i in range(small.shape[1]):  # [B, height, Wmax, C]
        rows += tf.where((iy == i)[:, :, None, None], small[:, i:i + 1], zero)
    out = 0
    for j in range(small.shape[2]):  # [B, height, width, C]
        out += tf.where((ix == j)[:, None, :, None], rows[:, :, j:j + 1], zero)
    return out


def gaussian_kernels(sigma, ksize_max):
    """cv2 ``getGaussianKernel`` per image, for imgaug's kernel size (``int(max(3.3 sigma,
    5))`` for sigma < 3, 2.9 sigma below 5, else 2.6 sigma; made odd), as [B, ksize_max]
    weights centred in ``ksize_max`` (zeros outside each image's own size)."""
    sigma = tf.cast(sigma, tf.float32)
    ks = tf.where(sigma < 3.0, 3.3 * sigma, tf.where(sigma < 5.0, 2.9 * sigma, 2.6 * sigma))
    ks = tf.cast(tf.floor(tf.maximum(ks, 5.0)), tf.int32)
    ks = ks + 1 - tf.math.floormod(ks, 2)
    r = ksize_max // 2
    d = tf.range(-r, r + 1, dtype=tf.float32)[None, :]
    s = tf.maximum(sigma, 1e-3)[:, None]
    g = tf.exp(-d * d / (2.0 * s * s))
    g = tf.where(tf.abs(d) <= tf.cast(ks // 2, tf.float32)[:, None], g, 0.0)
    return g / tf.reduce_sum(g, axis=1, keepdims=True)


def blur_separable(x, kernels):
    """Per-image separable convolution with [B, K] kernels (K odd), border reflect-101 (cv2's
    ``BORDER_REFLECT_101``, TF's pad mode "REFLECT"), as K shifted multiply-adds per axis."""
    k = kernels.shape[1]
    r = k // 2
    h, w = x.shape[1], x.shape[2]
    wgt = kernels[:, :, None, None, None]
    xp = tf.pad(x, [[0, 0], [r, r], [0, 0], [0, 0]], mode="REFLECT")
    out = sum(wgt[:, i] * xp[:, i:i + h] for i in range(k))
    xp = tf.pad(out, [[0, 0], [0, 0], [r, r], [0, 0]], mode="REFLECT")
    out = sum(wgt[:, i] * xp[:, :, i:i + w] for i in range(k))
    return tf.ensure_shape(out, x.shape)


def add_hue_saturation_cv2(x, hue, sat):
    """imgaug's ``AddToHueAndSaturation`` on uint8-valued RGB (float32 [B, H, W, 3] in 0..255):
    OpenCV's 8-bit ``RGB2HSV`` (integer arithmetic with OpenCV's division tables: exact),
    ``H = (H + hue) mod 180``, ``S = clip(S + sat, 0, 255)``, then OpenCV's ``HSV2RGB`` float
    formula (sextant, p/q/t), rounded (may differ from OpenCV by 1 grey level). Shifts are
    [B] numbers. Integer arithmetic and float64 division tables: XLA cannot change a bit."""
    rgb = tf.cast(x, tf.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = tf.maximum(tf.maximum(r, g), b)
    diff = v - tf.minimum(tf.minimum(r, g), b)
    # OpenCV's division tables (cvRound of double quotients), computed per pixel in float64
    # (the same double division: exact) instead of looked up (gathers are slow under XLA)
    vd, dd = tf.cast(v, tf.float64), tf.cast(diff, tf.float64)
    sdiv = tf.cast(tf.where(v > 0, tf.round(255.0 * 4096.0 / tf.maximum(vd, 1.0)), 0.0), tf.int32)
    hdiv = tf.cast(tf.where(diff > 0, tf.round(180.0 * 4096.0 / (6.0 * tf.maximum(dd, 1.0))),
                            0.0), tf.int32)
    s = tf.bitwise.right_shift(diff * sdiv + 2048, 12)  # floor division by 4096
    h = tf.where(v == r, g - b, tf.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = tf.bitwise.right_shift(h * hdiv + 2048, 12)  # (arithmetic shift: floor, as //)
    h = tf.where(h < 0, h + 180, h)
    h = h + tf.cast(hue, tf.int32)[:, None, None]  # shifts within +-180: mod 180 by selects
    h = tf.where(h < 0, h + 180, tf.where(h >= 180, h - 180, h))
    s = tf.clip_by_value(s + tf.cast(sat, tf.int32)[:, None, None], 0, 255)
    hf = tf.cast(h, tf.float32) * (6.0 / 180.0)
    sf = tf.cast(s, tf.float32) * (1.0 / 255.0)
    vf = tf.cast(v, tf.float32) * (1.0 / 255.0)
    sector = tf.floor(hf)
    f = hf - sector
    sector = tf.math.floormod(tf.cast(sector, tf.int32), 6)
    pp = vf * (1.0 - sf)
    qq = vf * (1.0 - sf * f)
    tt = vf * (1.0 - sf * (1.0 - f))
    table = [(vf, tt, pp), (qq, vf, pp), (pp, vf, tt), (pp, qq, vf), (tt, pp, vf), (vf, pp, qq)]
    out = []
    for ch in range(3):
        val = table[5][ch]
        for k in range(4, -1, -1):
            val = tf.where(sector == k, table[k][ch], val)
        out.append(val)
    return tf.round(tf.stack(out, -1) * 255.0)


__all__ = ["MODES", "PAD_MODES", "map_index", "imgaug_affine_matrix", "inverse_rows",
           "map_coords", "warp", "crop_pad_resize", "crop_offsets",
           "nearest_upsample_mask", "gaussian_kernels", "blur_separable",
           "add_hue_saturation_cv2"]
