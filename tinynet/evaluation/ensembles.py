"""Ensembles of finished runs: the weighted average of the members' softmax outputs, as
DenResNet (seed 000) combined ResNet101, ResNet152 and DenseNet121 (equal weights, argmax).

    ensemble = Ensemble.load(["runs/resnet101", "runs/resnet152", "runs/densenet121"])
    probabilities, labels = ensemble.predict("val", ten_crop=True)
    rows = ensemble.evaluate_members("val", ten_crop=True)   # every member and the ensemble
    print(results_table(rows))

Members must have been trained on the same data (``tinynet.training.identity.dataset_identity``:
the registry name and the arguments that choose the data), hence the same class list in the same
order; the dataset is loaded once and shared. Each member prepares the images its own way (its
validation resolution, interpolation and normalisation, from its config.json), so members of
different families and input sizes mix freely.
"""
import dataclasses
import math
import os

import numpy as np

from tinynet.errors import TinynetError


def normalise_weights(weights, count):
    """``count`` weights summing to 1: equal when ``weights`` is None, else ``weights`` (finite,
    >= 0, not all 0) divided by their sum."""
    if weights is None:
        return np.full(count, 1.0 / count)
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise TinynetError(f"{len(weights)} weight(s) for {count} run(s): give one weight per "
                           f"run, in the order of the runs")
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise TinynetError(f"weights must be finite numbers >= 0, got {weights}")
    total = sum(weights)
    if total <= 0:
        raise TinynetError(f"the weights {weights} sum to 0; at least one must be positive")
    return np.asarray(weights, np.float64) / total


def combine(probabilities, weights):
    """The weighted sum of the members' ``[N, classes]`` probabilities (``weights`` summing to
    1), in float64, returned as float32. A weight of 1 (one run, or (1, 0)) returns the first
    member's probabilities exactly."""
    probabilities = list(probabilities)
    shapes = {np.shape(p) for p in probabilities}
    if len(shapes) != 1:
        raise TinynetError(f"members predict differently shaped outputs {sorted(shapes)}; were "
                           f"they trained on the same classes?")
    total = np.zeros(np.shape(probabilities[0]), np.float64)
    for w, p in zip(weights, probabilities):
        if w:
            total += w * np.asarray(p, np.float64)
    return total.astype(np.float32)


def member_labels(run_dirs):
    """Short names for the table: each run directory's base name, or the path as given where
    two base names collide."""
    names = [os.path.basename(os.path.normpath(str(d))) or str(d) for d in run_dirs]
    return [n if names.count(n) == 1 else str(d) for n, d in zip(names, run_dirs)]


def check_same_data(run_dirs, configs):
    """``TinynetError`` unless every run was trained on the first one's dataset."""
    from tinynet.training.identity import dataset_identity

    first = dataset_identity(configs[0]["dataset"])
    for run_dir, config in zip(run_dirs[1:], configs[1:]):
        other = dataset_identity(config["dataset"])
        if other != first:
            raise TinynetError(
                f"{run_dir} was trained on {other['name']} {other['args']}, {run_dirs[0]} on "
                f"{first['name']} {first['args']}: an ensemble averages class probabilities, so "
                f"its members need the same dataset and class list")


@dataclasses.dataclass
class Ensemble:
    runs: list  # tinynet.evaluation.LoadedRun, sharing one TrainData
    weights: np.ndarray  # sums to 1

    @classmethod
    def load(cls, run_dirs, weights=None, which="best", skip_corrupt=False):
        """Loads the runs (the dataset once), after checking, before anything heavy, that each
        has its saved model and that all were trained on the same data."""
        from tinynet.evaluation import load_run, read_run_config

        run_dirs = list(run_dirs)
        if not run_dirs:
            raise TinynetError("an ensemble needs at least one run directory")
        weights = normalise_weights(weights, len(run_dirs))
        configs = [read_run_config(d, which) for d in run_dirs]
        check_same_data(run_dirs, configs)
        first = load_run(run_dirs[0], which, skip_corrupt)
        runs = [first] + [load_run(d, which, skip_corrupt, data=first.data) for d in run_dirs[1:]]
        return cls.of(runs, weights)

    @classmethod
    def of(cls, runs, weights=None):
        """An ensemble of already loaded runs (``LoadedRun``s), checked as ``load`` does."""
        runs = list(runs)
        if not runs:
            raise TinynetError("an ensemble needs at least one run")
        check_same_data([r.run_dir for r in runs], [r.config for r in runs])
        ids = [list(r.data.class_ids or r.data.class_names) for r in runs]
        for run, classes in zip(runs[1:], ids[1:]):
            if classes != ids[0]:
                raise TinynetError(f"{run.run_dir} and {runs[0].run_dir} have different class "
                                   f"lists; an ensemble's members must share theirs")
        return cls(runs=runs, weights=normalise_weights(weights, len(runs)))

    @property
    def data(self):
        return self.runs[0].data

    @property
    def names(self):
        return member_labels([r.run_dir for r in self.runs])

    def split(self, name):
        image_set = self.runs[0].split(name)
        for run in self.runs[1:]:
            other = run.split(name)
            if other is not image_set and (len(other) != len(image_set) or not np.array_equal(
                    other.labels, image_set.labels)):
                raise TinynetError(f"{run.run_dir} and {self.runs[0].run_dir} evaluate different "
                                   f"{name} images")
        return image_set

    def predict_members_images(self, image_set, ten_crop=False, crop_size=None):
        """Each member's ``[N, classes]`` probabilities of an ``ImageSet``."""
        out = [run.predict_images(image_set, ten_crop, crop_size) for run in self.runs]
        for run, p in zip(self.runs, out):
            if p.shape[-1] != self.data.num_classes:
                raise TinynetError(f"{run.run_dir}'s model predicts {p.shape[-1]} classes, its "
                                   f"dataset has {self.data.num_classes}")
        return out

    def predict_images(self, image_set, ten_crop=False, crop_size=None):
        return combine(self.predict_members_images(image_set, ten_crop, crop_size), self.weights)

    def predict_members(self, name="val", ten_crop=False, crop_size=None):
        """``(list of each member's probabilities, labels)`` of a split."""
        image_set = self.split(name)
        return self.predict_members_images(image_set, ten_crop, crop_size), image_set.labels

    def predict(self, name="val", ten_crop=False, crop_size=None):
        """``(ensemble probabilities [N, classes], labels [N])`` of a split."""
        members, labels = self.predict_members(name, ten_crop, crop_size)
        return combine(members, self.weights), labels

    def evaluate(self, name="val", ten_crop=False, crop_size=None):
        from tinynet.evaluation import metrics

        return metrics(*self.predict(name, ten_crop, crop_size))

    def evaluate_members(self, name="val", ten_crop=False, crop_size=None):
        """Rows for ``results_table``: every member and the ensemble on the full images, then
        (with ``ten_crop``) the same with 10-crop testing. Each row: ``member``, ``model``,
        ``weight``, ``views`` and the ``tinynet.evaluation.metrics`` figures plus
        ``top5_error``. Each member predicts once per kind of view."""
        from tinynet.evaluation import metrics
        from tinynet.evaluation.crops import default_crop_size

        rows = []
        for tc in (False, True) if ten_crop else (False,):
            if tc:
                size = crop_size or default_crop_size(self.split(name).image_size)
                views = f"10-crop ({size} px)"
            else:
                views = "full image"
            members, labels = self.predict_members(name, tc, crop_size if tc else None)
            entries = [(n, r.config.get("model", "?"), w, p)
                       for n, r, w, p in zip(self.names, self.runs, self.weights, members)]
            entries.append(("ensemble", "+".join(r.config.get("model", "?") for r in self.runs),
                            1.0, combine(members, self.weights)))
            for member, model, weight, p in entries:
                m = metrics(p, labels)
                rows.append(dict(member=member, model=model, weight=float(weight), views=views,
                                 split=name, top5_error=1 - m["top5_accuracy"], **m))
        return rows


def results_table(rows):
    """A Markdown table of ``Ensemble.evaluate_members`` rows."""
    from tinynet.evaluation.tables import markdown_table

    header = ["member", "model", "weight", "views", "images", "top-1 acc", "top-5 acc",
              "top-1 error", "top-5 error"]
    body = [[r["member"], r["model"], f"{r['weight']:.4g}", r["views"], r["images"],
             f"{r['top1_accuracy']:.4f}", f"{r['top5_accuracy']:.4f}", f"{r['top1_error']:.4f}",
             f"{r['top5_error']:.4f}"] for r in rows]
    return markdown_table(header, body)
