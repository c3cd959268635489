"""A PNG grid of training images beside augmented versions of them (like Fig. 2 of seed 002
and Fig. 12 of seed 001), to check by eye that a recipe is plausible.

    python tools/preview_augmentations.py --recipe densenet_model2 --data-dir data   # runs/previews/
    python tools/preview_augmentations.py --recipe all --dataset synthetic --out docs/augmentations

Each row is one training image: the original, then ``--versions`` augmented copies, each drawn
with its own seed through the same backend training uses (``--backend``: ``imgaug``, the
default, or ``native``, the TensorFlow ops). ``--backend both`` puts the two side by side: the
same images and keys through each, in two titled column groups (imgaug | native), to compare
by eye what ``tests/test_augment_equivalence.py`` compares statistically. With ``all``, one
PNG per recipe.

    python tools/preview_augmentations.py --recipe resnet_heavy --dataset synthetic --backend both
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tinynet.experiment import OneLineParser, positive_int, random_seed, run_cli  # noqa: E402


BACKEND_CHOICES = ["imgaug", "native", "both"]


def _augment(aug, images, key):
    """``images`` (a NumPy NHWC batch) through ``aug`` with randomness from ``key``."""
    import numpy as np

    if hasattr(aug, "augment_numpy"):  # the imgaug backend's own NumPy entry point
        return np.asarray(aug.augment_numpy(images, key))
    import tensorflow as tf  # otherwise the augmentation contract (images, labels, key)

    out, _ = aug(tf.constant(images), tf.zeros([len(images)], tf.int32),
                 tf.constant(key, tf.int64))
    return np.asarray(out).astype(images.dtype)


def _draw(axes, columns, names, titles):
    for r in range(len(columns[0])):
        for c, batch in enumerate(columns):
            ax = axes[r][c]
            ax.imshow(batch[r], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        if names is not None:
            axes[r][0].set_ylabel(names[r][:18], fontsize=6)


def preview(recipe, images, names, versions, path, seed=0, backend="imgaug"):
    """Writes the grid for ``recipe`` to ``path``: ``images`` (rows) and ``versions`` augmented
    copies of each through ``backend`` (imgaug, native, or both side by side)."""
    import numpy as np
    from matplotlib.figure import Figure

    from tinynet.augment import get_augmenter, get_recipe
    from tinynet.data.pipeline import resize_batch

    size = get_recipe(recipe).input_size
    if size and size != images.shape[1]:  # e.g. the CIFAR recipe crops 32 px images
        images = resize_batch(images, size).numpy()
    keys = [np.array([seed, v, 0]) for v in range(versions)]
    backends = ["imgaug", "native"] if backend == "both" else [backend]
    augmented = {b: [_augment(get_augmenter(recipe, b), images, k) for k in keys] for b in backends}
    rows = len(images)
    if backend != "both":
        fig = Figure(figsize=(1.3 * (versions + 1), 1.3 * rows))
        axes = fig.subplots(rows, versions + 1, squeeze=False)
        _draw(axes, [images] + augmented[backend], names,
              ["original"] + [f"aug {c}" for c in range(1, versions + 1)])
        fig.suptitle(f"recipe {recipe}" + ("" if backend == "imgaug" else f" ({backend})"),
                     fontsize=10)
        fig.tight_layout()
    else:  # column groups: original | imgaug | native, the same images and keys in each
        fig = Figure(figsize=(1.3 * (2 * versions + 1) + 0.4, 1.3 * rows + 0.6),
                     layout="constrained")
        groups = fig.subfigures(1, 3, width_ratios=[1, versions, versions], wspace=0.02)
        for group, title, columns, column_names in [
                (groups[0], "input", [images], ["original"]),
                (groups[1], "imgaug", augmented["imgaug"],
                 [f"imgaug {c}" for c in range(1, versions + 1)]),
                (groups[2], "native", augmented["native"],
                 [f"native {c}" for c in range(1, versions + 1)])]:
            axes = group.subplots(rows, len(columns), squeeze=False)
            _draw(axes, columns, names if group is groups[0] else None, column_names)
            group.suptitle(title, fontsize=9)
        fig.suptitle(f"recipe {recipe}: imgaug | native (same images, same keys)", fontsize=10)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)


def main(argv=None):
    from tinynet.augment import list_recipes

    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", required=True, help=f"one of {', '.join(list_recipes())}, or all")
    from tinynet.data.datasets import list_datasets

    parser.add_argument("--dataset", choices=list_datasets() + ["synthetic"],
                        default="tiny-imagenet", help="a registered dataset ('synthetic' = "
                                                      "synthetic-tiny-imagenet)")
    parser.add_argument("--data-dir", default=None,
                        help="the dataset's folder or its parent (default data/); for generated "
                             "data, where it is made (default data/<dataset>)")
    parser.add_argument("--images", type=positive_int, default=6, help="rows: images to show")
    parser.add_argument("--versions", type=positive_int, default=5, help="augmented copies each")
    parser.add_argument("--seed", type=random_seed, default=0,
                        help="seeds the choice of images and the augmentation (0 to 2**32-1)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="imgaug",
                        help="the augmentation backend: imgaug (default), native (TensorFlow "
                             "ops), or both side by side")
    parser.add_argument("--out", default=os.path.join("runs", "previews"),
                        help="folder for <recipe>.png (default runs/previews; the grids in "
                             "docs/augmentations are regenerated with --out docs/augmentations)")
    args = parser.parse_args(argv)
    recipes = list_recipes() if args.recipe == "all" else [args.recipe]
    if not set(recipes) <= set(list_recipes()):
        parser.error(f"unknown recipe {args.recipe!r}; known: {', '.join(list_recipes())}, all")

    import numpy as np

    from tinynet.data.datasets import ALIASES, dataset_arguments, default_data_dir, get_dataset

    name = ALIASES.get(args.dataset, args.dataset)
    kwargs = {"data_dir": args.data_dir or default_data_dir(name)}
    if "download" in dataset_arguments(name):
        kwargs["download"] = False
    data = get_dataset(name, **kwargs)
    if args.images > len(data.train):
        parser.error(f"--images {args.images} is more than the {len(data.train)} training "
                     f"images of {name}")
    pick = np.random.default_rng(args.seed).choice(len(data.train), args.images, replace=False)
    if data.train.in_memory:
        images = data.train.images[pick]
    else:
        from tinynet.data.images import decode_images
        images, _ = decode_images([data.train.paths[i] for i in pick], data.train.image_size)
    names = [data.class_names[data.train.labels[i]].split(",")[0] for i in pick]
    for recipe in recipes:
        path = os.path.join(args.out, f"{recipe}.png")
        preview(recipe, images, names, args.versions, path, args.seed, args.backend)
        print(f"wrote {path}")


if __name__ == "__main__":
    run_cli(main)
