"""A PNG grid of training images beside augmented versions of them (like Fig. 2 of seed 002
and Fig. 12 of seed 001), to check by eye that a recipe is plausible.

    python tools/preview_augmentations.py --recipe densenet_model2 --data-dir data
    python tools/preview_augmentations.py --recipe all --dataset synthetic --out docs/augmentations

Each row is one training image: the original, then ``--versions`` augmented copies, each drawn
with its own seed through the same backend training uses (``ImgaugAugment``). With ``all``,
one PNG per recipe.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tinynet.experiment import OneLineParser, positive_int, run_cli  # noqa: E402


def preview(recipe, images, names, versions, path, seed=0):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tinynet.augment import ImgaugAugment

    if recipe.startswith("cifar"):  # the CIFAR recipe crops 32 px images
        images = images[:, ::2, ::2]
    aug = ImgaugAugment(recipe)
    columns = [images] + [aug.augment_numpy(images, np.array([seed, v, 0]))
                          for v in range(versions)]
    rows = len(images)
    fig, axes = plt.subplots(rows, versions + 1, figsize=(1.3 * (versions + 1), 1.3 * rows),
                             squeeze=False)
    for r in range(rows):
        for c, batch in enumerate(columns):
            ax = axes[r][c]
            ax.imshow(batch[r], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if c == 0 else f"aug {c}", fontsize=8)
        axes[r][0].set_ylabel(names[r][:18], fontsize=6)
    fig.suptitle(f"recipe {recipe}", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    from tinynet.augment import list_recipes

    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", required=True, help=f"one of {', '.join(list_recipes())}, or all")
    parser.add_argument("--dataset", choices=["tiny-imagenet", "synthetic"], default="tiny-imagenet")
    parser.add_argument("--data-dir", default=None,
                        help="Tiny ImageNet folder or its parent (default data/); for synthetic "
                             "data, where it is generated (default data/synthetic)")
    parser.add_argument("--images", type=positive_int, default=6, help="rows: images to show")
    parser.add_argument("--versions", type=positive_int, default=5, help="augmented copies each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/augmentations",
                        help="folder for <recipe>.png (default docs/augmentations)")
    args = parser.parse_args(argv)
    recipes = list_recipes() if args.recipe == "all" else [args.recipe]
    if not set(recipes) <= set(list_recipes()):
        parser.error(f"unknown recipe {args.recipe!r}; known: {', '.join(list_recipes())}, all")

    import numpy as np

    from tinynet.data import tiny_imagenet
    from tinynet.data.images import decode_images
    from tinynet.data.synthetic import ensure_synthetic_tiny_imagenet

    if args.dataset == "synthetic":
        root = ensure_synthetic_tiny_imagenet(args.data_dir or os.path.join("data", "synthetic"),
                                              num_classes=20, train_per_class=100,
                                              val_per_class=20, test_images=20)
    else:
        root = tiny_imagenet.prepare(args.data_dir or "data", allow_download=False)
    index = tiny_imagenet.load_index(root)
    pick = np.random.default_rng(args.seed).choice(len(index.train), args.images, replace=False)
    images, _ = decode_images([index.train.paths[i] for i in pick], 64)
    names = [index.class_names[index.train.labels[i]].split(",")[0] for i in pick]
    for recipe in recipes:
        path = os.path.join(args.out, f"{recipe}.png")
        preview(recipe, images, names, args.versions, path, args.seed)
        print(f"wrote {path}")


if __name__ == "__main__":
    run_cli(main)
