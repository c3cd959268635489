"""What makes two runs the same run, and two recorded datasets the same data.

A run directory is resumed only by the run that made it: the same model and builder
arguments, protocol, seed, resizing, augmentation backend, precision, XLA choice, parent run
(``--continue-epochs``) and data. ``run_identity`` is that record (config.json holds it, and
every checkpoint, so a lost config.json still refuses another run); ``check_same_run``
compares a recorded one with this command's.

The data is the same when ``dataset_identity`` agrees (the registry name, aliases resolved,
and the arguments that choose the images: CIFAR's held-out split, a generated set's sizes),
the sizes and classes agree, and the data fingerprint agrees where the record has one
(``TrainData.fingerprint``: class list, label hashes, sampled decoded images). Where the data
is read from (``LOCATION_ARGS``: folder, download, cache) and ``skip_corrupt`` are not
identity: ``skip_corrupt`` is a loading policy (skip and count corrupt files instead of
stopping at the first), and when it does drop images the training-set size and fingerprint
differ, which is refused on their own. Training (resume, ``--continue-epochs``) and evaluation
(``load_run``, ensembles) use this one definition.
"""
import json
import os

from tinynet.errors import TinynetError

# identity keys added after runs were made: a run directory without one was made with this value
IDENTITY_DEFAULTS = {"precision": "float32", "jit_compile": "auto"}
NOT_IDENTITY = ("skip_corrupt",)  # dataset arguments that do not choose the data


def dataset_identity(spec):
    """The part of a recorded dataset spec (``{"name", "args"}``) that says which data it is."""
    from tinynet.data.datasets import ALIASES, LOCATION_ARGS

    spec = spec or {}
    name = spec.get("name")
    args = {k: v for k, v in (spec.get("args") or {}).items()
            if k not in LOCATION_ARGS and k not in NOT_IDENTITY}
    return {"name": ALIASES.get(name, name), "args": args}


def recorded_dataset_spec(data):
    """``dataset_spec`` as config.json records it: the registry name and every argument but
    where the data is read from."""
    from tinynet.data.datasets import LOCATION_ARGS

    return {"name": data.spec.get("name"),
            "args": {k: v for k, v in data.spec.get("args", {}).items()
                     if k not in LOCATION_ARGS}}


def run_identity(protocol, model_name, model_kwargs, data, settings):
    """The record of what must match for a run directory to be resumed (``settings``: a
    ``tinynet.training.runner.RunSettings``)."""
    return {"model": model_name, "model_kwargs": model_kwargs, "protocol": protocol.to_dict(),
            "seed": settings.seed, "interpolation": settings.interpolation,
            "data": {"num_train": len(data.train), "num_val": len(data.val),
                     "num_classes": data.num_classes},
            "dataset_spec": recorded_dataset_spec(data),
            "augment_backend": settings.augment_backend,
            "init_from": absolute(settings.init_from) if settings.init_from else None,
            "precision": settings.precision, "jit_compile": settings.jit_compile,
            "data_fingerprint": data.fingerprint()}


def absolute(path):
    """A local path made absolute (what config.json records of a parent run); URLs as given."""
    from tinynet import io as tio

    return os.path.abspath(str(path)) if tio.is_local(path) else str(path)


def _plain(value):
    return json.loads(json.dumps(value))


def same_value(key, stored, ours):
    """Whether identity entry ``key`` recorded as ``stored`` is ``ours``."""
    if key == "dataset_spec":
        return dataset_identity(stored) == dataset_identity(_plain(ours))
    return _plain(ours) == stored


RESTART_KEEPS = "a finished run is kept aside in it, an unfinished one discarded"


def describe_difference(recorded, now, where):
    """``recorded`` and ``now`` in a few words: the values themselves when short, else the
    keys (or positions) where two records differ, and their values there when short."""
    def short(value):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."

    def paths(a, b, prefix=""):
        if isinstance(a, dict) and isinstance(b, dict):
            found = []
            for k in sorted(set(a) | set(b), key=str):
                found += paths(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
            return found
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            found = []
            for i, (x, y) in enumerate(zip(a, b)):
                found += paths(x, y, f"{prefix}[{i}]")
            return found
        return [] if a == b else [(prefix, a, b)]

    if len(repr(recorded)) + len(repr(now)) <= 160:
        return f"{recorded!r} in {where}, {now!r} now"
    differing = paths(recorded, now)
    shown = "; ".join(f"{p or 'the whole'}: {short(a)} in {where}, {short(b)} now"
                      for p, a, b in differing[:3])
    more = f"; and {len(differing) - 3} more" if len(differing) > 3 else ""
    return shown + more


def check_same_run(stored, identity, run_dir, where="config.json"):
    """Refuses to resume a run whose identity (as recorded in ``where``) differs from this
    command's. The data's fingerprint is compared where the record has one (older runs have
    none) and the difference described."""
    from tinynet.data.datasets import describe_fingerprint_difference

    for key, value in identity.items():
        if key == "data_fingerprint":
            difference = describe_fingerprint_difference(stored.get(key), _plain(value))
            if difference:
                raise TinynetError(
                    f"{run_dir} was trained on other data: {difference} (recorded in "
                    f"{where}); pass the dataset it was trained on, or --restart / another "
                    f"--run-dir")
            continue
        if not same_value(key, stored.get(key, IDENTITY_DEFAULTS.get(key)), value):
            raise TinynetError(
                f"{run_dir} holds a run with a different {key} "
                f"({describe_difference(stored.get(key), _plain(value), where)}); choose "
                f"another --run-dir, or pass --restart to start over there ({RESTART_KEEPS})")


def check_checkpoint_identity(meta, identity, protocol, seed, path, run_dir):
    """The run's identity from its checkpoint (config.json may be lost): the record itself in
    checkpoints written since it was added, else the seed and protocol they always held."""
    where = os.path.basename(path)
    if meta.get("identity"):
        check_same_run(meta["identity"], identity, run_dir, where)
        return
    for key, theirs, ours in (("seed", meta.get("seed"), seed),
                              ("protocol", meta.get("fingerprint"), protocol.fingerprint())):
        if theirs is not None and theirs != ours:
            raise TinynetError(f"{run_dir} holds a run with a different {key} (its checkpoint "
                               f"{where} says so); choose another --run-dir, or pass --restart "
                               f"to start over there ({RESTART_KEEPS})")
