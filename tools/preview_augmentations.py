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
    import numpy as np
    from matplotlib.figure import Figure

    from tinynet.augment import ImgaugAugment, get_recipe
    from tinynet.data.pipeline import resize_batch

    size = get_recipe(recipe).input_size
    if size and size != images.shape[1]:  # e.g. the CIFAR recipe crops 32 px images
        images = resize_batch(images, size).numpy()
    aug = ImgaugAugment(recipe)
    columns = [images] + [aug.augment_numpy(images, np.array([seed, v, 0]))
                          for v in range(versions)]
    rows = len(images)
    fig = Figure(figsize=(1.3 * (versions + 1), 1.3 * rows))
    axes = fig.subplots(rows, versions + 1, squeeze=False)
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/augmentations",
                        help="folder for <recipe>.png (default docs/augmentations)")
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
        preview(recipe, images, names, args.versions, path, args.seed)
        print(f"wrote {path}")


if __name__ == "__main__":
    run_cli(main)
