"""Evaluation of a finished (or running) run directory, rebuilt from what the run recorded.

``load_run(run_dir)`` reads config.json, rebuilds the dataset through the registry
(``tinynet.data.datasets.get_dataset`` with the recorded name and arguments), loads the saved
model, and applies the input normalisation and validation resolution the run trained with, so
every tool evaluates exactly what training validated. ``metrics`` gives top-1/top-5 accuracy,
top-1 error and cross-entropy of predicted probabilities.

Modules:

    crops         10-crop testing (4 corners + centre, each also flipped, softmax averaged):
                  ``LoadedRun.predict(name, ten_crop=True)`` and ``ten_crop_views``
    ensembles     softmax averaging of several runs (``Ensemble.load``), refusing members
                  trained on different data, and the members-and-ensemble accuracy table
    submissions   the Tiny ImageNet challenge's test submission ("<file> <wnid>" lines)
    tables        Markdown tables for the reports tools and experiments write

``tools/ensemble.py`` and ``tools/error_analysis.py`` are the command lines on top.
"""
import dataclasses

import numpy as np

from tinynet.errors import TinynetError
from tinynet.training.identity import dataset_identity  # noqa: F401  (the one definition)


@dataclasses.dataclass
class LoadedRun:
    run_dir: str
    config: dict
    model: object  # keras.Model
    data: object  # tinynet.data.datasets.TrainData

    @property
    def mean(self):
        m = self.config.get("input_mean")
        return None if m is None else np.asarray(m, np.float32)

    @property
    def std(self):
        s = self.config.get("input_std")
        return None if s is None else np.asarray(s, np.float32)

    def split(self, name):
        image_set = getattr(self.data, name, None)
        if image_set is None:
            raise TinynetError(f"dataset {self.data.spec.get('name')!r} has no labelled "
                               f"{name} split")
        return image_set

    @property
    def eval_batch_size(self):
        return self.config["protocol"]["eval_batch_size"]

    def _eval_inputs(self):
        """``(resolution, interpolation, mean, std)``: how the run prepared validation images."""
        return (self.config["protocol"]["val_resolution"],
                self.config.get("interpolation", "nearest"), self.mean, self.std)

    def dataset(self, name="val", batch_size=None):
        """The split as the run's validation saw it: ``(x, int labels)`` batches."""
        from tinynet.data.pipeline import eval_dataset

        return eval_dataset(self.split(name), batch_size or self.eval_batch_size,
                            *self._eval_inputs())

    def predict_images(self, image_set, ten_crop=False, crop_size=None, batch_size=None):
        """``[N, classes]`` probabilities of an ``ImageSet`` (any split, the unlabelled test
        images included), prepared as the run validated; with ``ten_crop`` the softmax averaged
        over the ten views of ``tinynet.evaluation.crops`` (``crop_size`` px crops, default
        7/8 of the image side)."""
        batch_size = batch_size or self.eval_batch_size
        if ten_crop:
            from tinynet.evaluation.crops import predict_ten_crop

            return predict_ten_crop(self.model, image_set, batch_size, *self._eval_inputs(),
                                    crop_size=crop_size)
        if crop_size is not None:
            raise TinynetError("a crop size applies to 10-crop testing only; pass ten_crop=True "
                               "(--ten-crop) with it")
        from tinynet.data.pipeline import eval_dataset

        ds = eval_dataset(image_set, batch_size, *self._eval_inputs())
        return self.model.predict(ds, verbose=0)

    def predict(self, name="val", ten_crop=False, crop_size=None):
        """``(probabilities [N, classes], labels [N])`` of a split; ``ten_crop``: averaged over
        the ten views (``predict_images``)."""
        image_set = self.split(name)
        return self.predict_images(image_set, ten_crop, crop_size), image_set.labels

    def evaluate(self, name="val", ten_crop=False, crop_size=None):
        """Top-1/top-5 accuracy and cross-entropy of the saved model on a split."""
        probabilities, labels = self.predict(name, ten_crop, crop_size)
        return metrics(probabilities, labels)


def metrics(probabilities, labels):
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    p_true = probabilities[np.arange(len(labels)), labels]
    top1 = float(np.mean(probabilities.argmax(axis=1) == labels))
    return {"images": int(len(labels)), "top1_accuracy": top1,
            "top5_accuracy": float(np.mean((top5 == labels[:, None]).any(axis=1))),
            "top1_error": 1 - top1,
            "loss": float(-np.mean(np.log(np.clip(p_true, 1e-7, 1.0))))}


def read_run_config(run_dir, which="best"):
    """config.json of the run in ``run_dir``, after checking that the run has its ``which``
    saved model and records its dataset; TF-free and cheap (no dataset, no model)."""
    from tinynet.run_reader import CONFIG, RunReader

    reader = RunReader(run_dir)
    for name, what in ((CONFIG, "a run directory"), (f"{which}_model.keras",
                                                      f"a saved {which} model")):
        if not reader.exists(name):
            raise TinynetError(f"{reader.file(name)} is missing: {run_dir} is not {what} yet "
                               f"(train first, or pass --model best/final)")
    config = reader.read_config()
    if "name" not in config.get("dataset", {}):
        raise TinynetError(f"{reader.file(CONFIG)} does not record its dataset's registry name (a run "
                           f"made before tinynet 0.2); re-run the experiment to evaluate it")
    return config


def load_model_file(path):
    """``keras.models.load_model(path)``, with a missing or damaged file named in one line
    (Keras says "File not found" of a file that is there but not a Keras archive)."""
    import zipfile

    import keras

    from tinynet import io as tio

    if not tio.exists(path):
        raise TinynetError(f"{path} is missing: the run has not saved that model (it is "
                           f"written when the run validates; finish or resume the run)")
    local = tio.is_local(path)
    if local and not zipfile.is_zipfile(path):
        raise TinynetError(f"{path} is damaged: not a Keras archive (a .keras file is a zip); "
                           f"restore it from a copy, or leave this run out")
    try:
        return keras.models.load_model(path)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError) as e:
        reason = (str(e).splitlines() or [""])[0][:200]
        raise TinynetError(f"{path} is damaged: Keras cannot load it ({type(e).__name__}: "
                           f"{reason}); restore it from a copy, or leave this run out") from None


def load_run(run_dir, which="best", skip_corrupt=False, data=None):
    """The run in ``run_dir``: its config, its ``which`` ("best" or "final") saved model and
    its dataset rebuilt from the registry, or ``data`` (a ``TrainData`` another run loaded)
    when given, which must be the same data (``dataset_identity``)."""
    import keras

    import tinynet  # noqa: F401  (registers every custom layer, loss and optimizer)
    from tinynet import io as tio
    from tinynet.data.datasets import get_dataset

    config = read_run_config(run_dir, which)
    spec = config["dataset"]
    if data is None:
        args = dict(spec.get("args", {}))
        if skip_corrupt and "skip_corrupt" in args:
            args["skip_corrupt"] = True
        data = get_dataset(spec["name"], **args)
    elif dataset_identity(spec) != dataset_identity(data.spec):
        raise TinynetError(f"{run_dir} was trained on {dataset_identity(spec)}, not on the "
                           f"given {dataset_identity(data.spec)}")
    model = load_model_file(tio.join(run_dir, f"{which}_model.keras"))
    return LoadedRun(run_dir=str(run_dir), config=config, model=model, data=data)
