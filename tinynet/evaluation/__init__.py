"""Evaluation of a finished (or running) run directory, rebuilt from what the run recorded.

``load_run(run_dir)`` reads config.json, rebuilds the dataset through the registry
(``tinynet.data.datasets.get_dataset`` with the recorded name and arguments), loads the saved
model, and applies the input normalisation and validation resolution the run trained with, so
every tool evaluates exactly what training validated.
"""
import dataclasses

import numpy as np

from tinynet import io as tio
from tinynet.errors import TinynetError


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

    def dataset(self, name="val", batch_size=None):
        """The split as the run's validation saw it: ``(x, int labels)`` batches."""
        from tinynet.data.pipeline import eval_dataset

        protocol = self.config["protocol"]
        return eval_dataset(self.split(name), batch_size or protocol["eval_batch_size"],
                            protocol["val_resolution"], self.config.get("interpolation", "nearest"),
                            self.mean, self.std)

    def predict(self, name="val"):
        """``(probabilities [N, classes], labels [N])`` of a split."""
        probabilities = self.model.predict(self.dataset(name), verbose=0)
        return probabilities, self.split(name).labels

    def evaluate(self, name="val"):
        """Top-1/top-5 accuracy and cross-entropy of the saved model on a split."""
        probabilities, labels = self.predict(name)
        return metrics(probabilities, labels)


def metrics(probabilities, labels):
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    p_true = probabilities[np.arange(len(labels)), labels]
    top1 = float(np.mean(probabilities.argmax(axis=1) == labels))
    return {"images": int(len(labels)), "top1_accuracy": top1,
            "top5_accuracy": float(np.mean((top5 == labels[:, None]).any(axis=1))),
            "top1_error": 1 - top1,
            "loss": float(-np.mean(np.log(np.clip(p_true, 1e-7, 1.0))))}


def load_run(run_dir, which="best", skip_corrupt=False):
    """The run in ``run_dir``: its config, its ``which`` ("best" or "final") saved model and
    its dataset rebuilt from the registry."""
    import keras

    import tinynet  # noqa: F401  (registers every custom layer, loss and optimizer)
    from tinynet.data.datasets import get_dataset

    config_path = tio.join(run_dir, "config.json")
    model_path = tio.join(run_dir, f"{which}_model.keras")
    for path, what in ((config_path, "a run directory"), (model_path, f"a saved {which} model")):
        if not tio.exists(path):
            raise TinynetError(f"{path} is missing: {run_dir} is not {what} yet "
                               f"(train first, or pass --model best/final)")
    try:
        config = tio.read_json(config_path)
    except ValueError as e:
        raise TinynetError(f"{config_path} is unreadable ({e}); the run directory is damaged")
    spec = config.get("dataset", {})
    if "name" not in spec:
        raise TinynetError(f"{config_path} does not record its dataset's registry name (a run "
                           f"made before tinynet 0.2); re-run the experiment to evaluate it")
    args = dict(spec.get("args", {}))
    if skip_corrupt and "skip_corrupt" in args:
        args["skip_corrupt"] = True
    data = get_dataset(spec["name"], **args)
    model = keras.models.load_model(model_path)
    return LoadedRun(run_dir=str(run_dir), config=config, model=model, data=data)
