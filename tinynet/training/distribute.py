"""Where the work runs: a ``tf.distribute`` strategy for every experiment, and its devices.

``--strategy`` (every experiment script):

    default      one device (the first GPU, else the CPU); ``--devices X`` picks it
    mirrored     synchronous data parallelism over the local devices (``--devices``: names or
                 a count; default every GPU, else the CPU)
    multiworker  ``MultiWorkerMirroredStrategy`` over the machines ``TF_CONFIG`` lists, one
                 process (the same command) per worker
    tpu          ``TPUStrategy`` on the Colab / Cloud TPU that ``TPUClusterResolver`` finds
                 (documented, not tested here: this project has no TPU)

The protocol's batch size is the **global** batch: the runner's input pipeline makes batches of
that size and the strategy splits each across the replicas (Keras' ``fit`` distributes the
dataset), so a protocol means the same optimisation on one device or eight (the runner refuses
a batch that does not split evenly: Keras would average the unequal shares' means). Model,
optimizers and compiled metrics are built in the strategy's scope; Keras scales each
replica's loss by 1 / replicas and the gradients are summed, i.e. averaged over the global
batch.
``--sync-bn`` makes every ``BatchNormalization`` use the global batch's statistics
(``synchronized=True``, an all-reduce per BN layer per step) instead of its replica's.

Devices: ``CPU:1`` or ``--devices 2`` on a machine with no GPU makes logical CPU devices
(``tf.config.set_logical_device_configuration``), so data and model parallelism can be
exercised, and tested, without accelerators: they share the same cores, so they show overhead,
not speed-up. This must happen before TensorFlow starts its runtime, which is why the command
line calls ``configure_devices`` before any data is loaded.

Multi-worker: the run directory must be one folder every worker sees (a shared filesystem or
``gs://``). The chief (task ``chief``, or ``worker`` 0 when the cluster has no chief) writes
it; the other workers read the same checkpoints to resume and write nothing (model variables
are mirrored, so reading them needs no collective op and the chief's checkpoint is the
cluster's). Keras 3 (up to 3.15 at least, keras-team/keras#20585) cannot ``fit`` under this
strategy: its symbolic build reduces the first batch as a whole structure and its metric
reduction asks for axis 0 of scalars; ``prepare_model`` and ``_patch_multiworker_metrics``
work around both (the two-process test in ``tests/test_distribute.py`` checks it still runs).
"""
import os

from tinynet.devices import device_index, normalize_device
from tinynet.errors import TinynetError

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")

MAX_LOGICAL_CPUS = 64  # beyond, TensorFlow takes minutes to set them up (and they share cores)


def parse_devices(text):
    """``--devices`` / ``--model-parallel``: ``"GPU:0,GPU:1"`` -> normalised names, or a count
    ``"4"`` -> 4. Duplicates are refused."""
    text = str(text).strip()
    if text.isdigit():
        if int(text) < 1:
            raise TinynetError(f"--devices {text}: expected at least one device")
        return int(text)
    names = [normalize_device(part) for part in text.split(",") if part.strip()]
    if not names:
        raise TinynetError(f"no device in {text!r}; use a comma-separated list such as "
                           f"GPU:0,GPU:1, or a count")
    if len(set(names)) != len(names):
        raise TinynetError(f"{text!r} names a device twice")
    return names


def configure_devices(devices):
    """Makes the devices ``devices`` (a list of names, a count or None) refers to exist, creating
    logical CPU devices when CPUs beyond the first are named, or a count is given on a machine
    without GPUs. Returns the device names (a count becomes the first N GPUs, or N CPUs).
    Raises ``TinynetError`` for a GPU that is not there, or when logical devices are needed
    after TensorFlow has started its runtime."""
    if devices is None:
        return None
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if isinstance(devices, int):
        if gpus:
            if devices > len(gpus):
                raise TinynetError(f"--devices {devices}: this machine has {len(gpus)} GPU(s)")
            devices = [f"/device:GPU:{i}" for i in range(devices)]
        else:
            devices = [f"/device:CPU:{i}" for i in range(devices)]
    gpu_indices = [i for i in (device_index(d, "GPU") for d in devices) if i is not None]
    if gpu_indices and max(gpu_indices) >= len(gpus):
        raise TinynetError(f"{devices} names GPU:{max(gpu_indices)}, but this machine has "
                           f"{len(gpus)} GPU(s) (CPU:N devices can be made up on any machine)")
    if any(device_index(d, "TPU") is not None for d in devices):
        raise TinynetError("TPU devices are used through --strategy tpu, not named")
    cpus = 1 + max([i for i in (device_index(d, "CPU") for d in devices) if i is not None]
                   or [0])
    if cpus > MAX_LOGICAL_CPUS:
        raise TinynetError(f"--devices: {cpus} CPU devices asked for on a machine without GPUs "
                           f"for them; logical CPU devices share this machine's "
                           f"{os.cpu_count()} cores and at most {MAX_LOGICAL_CPUS} are made "
                           f"(they test multi-device code; pass a count up to "
                           f"{MAX_LOGICAL_CPUS})")
    ensure_logical_cpus(cpus)
    return devices


def ensure_logical_cpus(count):
    """Splits the (first) physical CPU into ``count`` logical devices, unless there are
    already that many."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    # (listing logical devices would start the runtime and fix them)
    if count <= 1 or len(tf.config.get_logical_device_configuration(cpu) or [None]) >= count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError:
        raise TinynetError(f"{count} CPU devices were asked for after TensorFlow had started; "
                           f"configure devices before any TensorFlow op runs") from None


# One strategy object per kind and devices for the life of the process: two mirrored strategies
# over the same devices number their collective ops alike, and a second one's all-reduces
# (a sweep's next run) then meet the first's and abort with a shape mismatch (measured, TF 2.21).
_CREATED = {}


def make_strategy(name="default", devices=None, log=print):
    """The ``tf.distribute`` strategy ``name`` over ``devices`` (see the module docstring); the
    same object again for the same arguments."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise TinynetError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    if name in ("multiworker", "tpu") and devices is not None:
        raise TinynetError(f"--devices does not apply to --strategy {name}: each worker uses "
                           f"all its accelerators (choose them with CUDA_VISIBLE_DEVICES)")
    devices = configure_devices(devices)
    if name == "default":
        if devices is None:
            return tf.distribute.get_strategy()
        if len(devices) > 1:
            raise TinynetError(f"--devices names {len(devices)} devices: use --strategy "
                               f"mirrored to train on several")
        return tf.distribute.OneDeviceStrategy(devices[0])
    key = (name, tuple(devices or ()))
    if key in _CREATED:
        return _CREATED[key]
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices)
    elif name == "multiworker":
        strategy = _multiworker_strategy()
    else:
        strategy = _tpu_strategy()
    _CREATED[key] = strategy
    log(f"strategy {name}: {strategy.num_replicas_in_sync} replica(s)"
        + (f" on {', '.join(devices)}" if devices else ""))
    return strategy


def _multiworker_strategy():
    import json

    import tensorflow as tf

    config = os.environ.get("TF_CONFIG")
    if not config:
        raise TinynetError("--strategy multiworker reads the cluster from TF_CONFIG, which is not "
                           "set; see the README (one command per worker)")
    try:
        parsed = json.loads(config)
        task = parsed["task"]
        cluster = parsed["cluster"]
        members = cluster[task["type"]]
        members[int(task["index"])]
    except (ValueError, KeyError, TypeError, IndexError):
        raise TinynetError('TF_CONFIG must be JSON like {"cluster": {"worker": ["host:port", '
                           '...]}, "task": {"type": "worker", "index": 0}}') from None
    _patch_multiworker_metrics()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as e:
        raise TinynetError(f"the multi-worker strategy must be made before TensorFlow starts "
                           f"({str(e).splitlines()[0]}); make it first thing") from None


def _tpu_strategy():
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise TinynetError(f"no TPU found ({type(e).__name__}: {str(e).splitlines()[0]}); on "
                           f"Colab choose a TPU runtime, on Cloud set TPU_NAME") from None
    return tf.distribute.TPUStrategy(resolver)


def is_multiworker(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver is not None and bool(resolver.cluster_spec().as_dict()) and (
        resolver.task_type is not None)


def is_chief(strategy):
    """Whether this process writes the run directory: always, except a multi-worker member
    that is neither the ``chief`` task nor ``worker`` 0 of a cluster without one."""
    if not is_multiworker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0


def prepare_model(model, strategy):
    """Lets ``model.fit`` run under ``strategy``: the model (built in its scope) takes its
    symbolic build from one replica's share of the first batch. Keras reduces that batch
    across replicas with ``strategy.reduce``, which MultiWorkerMirroredStrategy refuses for a
    structure (keras-team/keras#20585); the shapes of one replica's share are all it needs."""
    import tensorflow as tf
    from keras import tree

    if not hasattr(model, "_maybe_symbolic_build") or model._distribute_strategy is None:
        return model
    build = model._maybe_symbolic_build

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(local, next(it))
                break
        return build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build
    return model


_PATCHED = []


def _patch_multiworker_metrics():
    """Keras' TensorFlow trainer averages each logged metric over workers with
    ``strategy.reduce("MEAN", value, axis=0)``, which fails for the scalars the metrics are;
    given as one-element vectors, the same call averages them. Applied once, only for
    ``--strategy multiworker``; everything else in Keras is untouched."""
    if _PATCHED:
        return
    import tensorflow as tf
    from keras import tree
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            values = tree.map_structure(
                lambda v: tf.reshape(v, [1]) if len(v.shape) == 0 else v, values)
        return original(values, strategy, reduction)

    trainer.reduce_per_replica = reduce_per_replica
    _PATCHED.append(original)


def synchronize_batch_norm(model):
    """Turns on ``synchronized`` in every Keras ``BatchNormalization`` of ``model`` (read when
    the training step is traced); returns how many. The fused-kernel layer cannot synchronise
    and is refused."""
    import keras

    from tinynet.layers import FusedBatchNormalization

    count = 0
    for layer in _all_layers(model):
        if isinstance(layer, FusedBatchNormalization):
            raise TinynetError(f"--sync-bn: layer {layer.name} uses the fused batch-norm kernel, "
                               f"which cannot synchronise replicas; build the model without it")
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            count += 1
    return count


def _all_layers(model):
    """Every layer of ``model``, nested ones included (each once)."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def distribute_input(dataset, strategy):
    """``dataset`` with the sharding the strategy needs: under multi-worker, each worker keeps
    its share of every global batch (``DATA``; the pipeline is seeded by (seed, epoch, step),
    so every worker builds the same batches). Other strategies split batches without it."""
    if not is_multiworker(strategy):
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def replica_statistics(model):
    """The BatchNormalization moving statistics of ``model``: the variables whose replicas
    drift apart under a strategy unless BN is synchronised (see ``replica_averager``)."""
    import keras

    return [v for layer in _all_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized
            for v in (layer.moving_mean, layer.moving_variance)]


def replica_averager(model, strategy):
    """A function that sets every replica's copy of the BN moving statistics to the mean over
    all replicas (None when there is nothing to average).

    Keras 3 creates them as mirrored variables without an aggregation, so under a data-parallel
    strategy each replica keeps averaging its own share of the batches: replica 0's copy is
    what is read (checkpoints, saved models) while validation in ``fit`` normalises each share
    of the validation batch with its replica's copy (measured: a val_loss that the
    checkpointed weights do not give, and a resumed run that validates differently). Averaged
    at the end of every training epoch (``callbacks.ReplicaStatistics``), the copies agree
    before validation and before the checkpoint; as the moving averages are linear this equals
    tf.keras' per-step MEAN aggregation, for one all-reduce per epoch instead of one per BN
    layer per step. (The moving variance becomes the replicas' mean variance, not the global
    batch's: --sync-bn gives that.)"""
    import tensorflow as tf

    variables = replica_statistics(model)
    if strategy.num_replicas_in_sync < 2 or not variables:
        return None
    sizes = [int(v.value.shape.num_elements()) for v in variables]

    @tf.function
    def average():
        flat = strategy.run(lambda: tf.concat([tf.reshape(v.value, [-1]) for v in variables], 0))
        mean = strategy.reduce(tf.distribute.ReduceOp.MEAN, flat, axis=None)
        for v, part in zip(variables, tf.split(mean, sizes)):
            v.assign(tf.reshape(part, v.shape))

    return average
