"""The multi-residual block of Abdi & Nahavandi 2016 ("Multi-Residual Networks", arXiv
1609.05672): ``shortcut(x) + branch_1(x) + ... + branch_k(x)``, with the k residual functions
optionally split over several devices (model parallelism, the original's
``ModelParallelTable``).

Model parallelism
-----------------
``devices`` lists device names ("GPU:0", "/gpu:1", "/device:CPU:1", ...; stored normalised as
"/device:GPU:0"). With two or more devices the k branches are split into contiguous shares by
:func:`split_branches`: share sizes differ by at most one and the larger shares go to the
LATER devices (k=5 over 2 devices -> [2, 3]; over 3 -> [1, 2, 2]), because the first device
also computes the shortcut and the final additions. With fewer branches than devices the
first k devices take one branch each. Each device computes the partial sum of its share under
``tf.device``; the first device adds its share to the shortcut and then the other devices'
partial sums in device order. The original (``ModelParallelTable.lua``) is the case of two
devices and an even k: device 1 computes branches 1..k/2 and the shortcut, device 2 branches
k/2+1..k, and device 2's sum is copied to device 1 and added. Anything outside the layer (in
Multi-ResNet: the stem, the shared pre-activations of stage-first blocks, the head) runs where
TensorFlow places it by default, so list that device first.

The variables are created where Keras creates them (not under the branch's device), as the
original keeps its parameters on the base GPU and copies them to the other GPU every step;
TensorFlow copies the share's weights to its device when it reads them. ``devices`` changes
neither the weights nor their names: a split and an unsplit layer have the same variables,
so ``split.set_weights(unsplit.get_weights())`` works and the outputs agree to float
rounding (only the order of the additions differs).

The split needs TensorFlow. When the backend is not TensorFlow, when a listed device is not
among ``tf.config.list_logical_devices()``, or when a ``tf.distribute`` strategy with more
than one replica is active, the layer computes on one device (no placement) and warns, once
per process and reason (not once per block), naming the reason. ``devices=None`` or a single
device: no placement.

A layer with two or more devices sets ``supports_jit = False``, so Keras'
``jit_compile="auto"`` (XLA on GPU machines) does not compile the split into one single-device
XLA cluster; do not pass ``jit_compile=True`` to a model that splits.

The arithmetic uses ``keras.ops``; ``tensorflow`` is imported only for ``tf.device`` and the
checks above, and only on the TensorFlow backend. Channels-last only (the zero-padding
shortcut appends channels on the last axis).
"""
import warnings

import keras

from tinynet.devices import normalize_device
from tinynet.errors import TinynetError

_WARNED = set()  # the fallback reasons already warned about in this process


def _local_name(name):
    """A TensorFlow device name (possibly with /job:.../task:...) in ``/device:TYPE:N`` form."""
    tail = name[name.rfind("device:"):] if "device:" in name else name
    try:
        return normalize_device(tail)
    except TinynetError:
        return name


def split_branches(k, num_devices):
    """Sizes of the contiguous shares of ``k`` branches over ``num_devices`` devices.

    Shares differ by at most one and the larger ones are on the later devices (the first
    device also computes the shortcut and the additions): (4, 2) -> [2, 2], (5, 2) -> [2, 3],
    (5, 3) -> [1, 2, 2], (23, 2) -> [11, 12]. With ``k < num_devices`` only the first ``k``
    devices are used, one branch each: (2, 3) -> [1, 1].
    """
    if not (isinstance(k, int) and k >= 1 and isinstance(num_devices, int) and num_devices >= 1):
        raise TinynetError(f"split_branches needs positive integers; got k={k!r}, "
                           f"num_devices={num_devices!r}")
    if k < num_devices:
        return [1] * k
    base, extra = divmod(k, num_devices)
    return [base] * (num_devices - extra) + [base + 1] * extra


def _on_device(device, fn, x):
    """``fn(x)`` computed on ``device``, its backward pass too.

    ``tf.device`` places only the ops created under it: TensorFlow's gradient ops carry no
    device (measured, TF 2.21), so without this the placer would run every share's backward
    pass on the default device. The share is a ``tf.custom_gradient`` whose gradient, taken
    from a tape of the forward pass, is computed under the same ``tf.device``."""
    import tensorflow as tf

    @tf.custom_gradient
    def run(v):
        with tf.device(device), tf.GradientTape() as tape:
            tape.watch(v)
            y = fn(v)

        def grad(dy, variables=None):
            variables = list(variables or ())
            with tf.device(device):
                grads = tape.gradient(y, [v] + variables, output_gradients=dy)
            return grads[0], grads[1:]

        return y, grad

    return run(x)


def zero_pad_shortcut(x, stride):
    """Type A shortcut (channels last): subsample by ``stride`` (Torch's
    ``SpatialAveragePooling(1, 1, s, s)``) and append as many zero channels
    (``nn.Concat(2):add(nn.Identity()):add(nn.MulConstant(0))``), doubling the channels."""
    if stride != 1:
        x = x[:, ::stride, ::stride, :]
    return keras.ops.concatenate([x, keras.ops.zeros_like(x)], axis=-1)


@keras.saving.register_keras_serializable(package="tinynet")
class ZeroPadShortcut(keras.layers.Layer):
    """The parameter-free type A shortcut as a layer (see :func:`zero_pad_shortcut`)."""

    def __init__(self, stride=1, **kwargs):
        super().__init__(**kwargs)
        self.stride = int(stride)

    def call(self, inputs):
        return zero_pad_shortcut(inputs, self.stride)

    def compute_output_shape(self, input_shape):
        def sub(d):
            return None if d is None else -(-d // self.stride)

        channels = input_shape[-1]
        return (input_shape[0], sub(input_shape[1]), sub(input_shape[2]),
                None if channels is None else 2 * channels)

    def get_config(self):
        config = super().get_config()
        config["stride"] = self.stride
        return config


@keras.saving.register_keras_serializable(package="tinynet")
class MultiResidual(keras.layers.Layer):
    """``x -> shortcut(x) + sum_i branch_i(x)``, the branches optionally split over devices.

    Args:
        branches: a list of k >= 1 Keras layers or models, each mapping ``x`` to a residual of
            the output's shape.
        shortcut: ``None`` (identity) or a layer mapping ``x`` to the output's shape.
        devices: ``None`` or a list of device names; two or more split the branches (see the
            module docstring).
    """

    def __init__(self, branches, shortcut=None, devices=None, **kwargs):
        super().__init__(**kwargs)
        branches = list(branches)
        if not branches:
            raise TinynetError("MultiResidual needs at least one branch (k >= 1)")
        self.branches = branches
        self.shortcut = shortcut
        if devices is not None:
            if isinstance(devices, str):
                devices = [devices]
            devices = [normalize_device(d) for d in devices]
            if len(set(devices)) != len(devices):
                raise TinynetError(f"devices lists a device twice: {devices}")
        self.devices = devices
        # XLA compiles a function for one device: Keras' jit_compile="auto" must not fuse a split
        self.supports_jit = devices is None or len(devices) < 2
        self._missing = None

    @property
    def k(self):
        return len(self.branches)

    def build(self, input_shape):
        for branch in self.branches:
            if not branch.built:
                branch.build(input_shape)
        if self.shortcut is not None and not self.shortcut.built:
            self.shortcut.build(input_shape)

    def _placement(self):
        """The devices to split over, or None (unsplit); warns once on a fallback."""
        if self.devices is None or len(self.devices) < 2:
            return None
        reason = None
        if keras.backend.backend() != "tensorflow":
            reason = (f"the {keras.backend.backend()!r} backend has no device placement; "
                      f"computing on one device")
        else:
            import tensorflow as tf

            if self._missing is None:  # the logical devices are fixed once TF has started
                present = {_local_name(d.name) for d in tf.config.list_logical_devices()}
                self._missing = tuple(d for d in self.devices if d not in present)
            missing = self._missing
            if missing:
                reason = f"devices {list(missing)} not present; computing on one device"
            elif tf.distribute.has_strategy() and \
                    tf.distribute.get_strategy().num_replicas_in_sync > 1:
                reason = ("a tf.distribute strategy with more than one replica is active; "
                          "computing on one device")
        if reason is None:
            return self.devices
        if reason not in _WARNED:  # once per process, not once per block (132 in a 398-layer net)
            _WARNED.add(reason)
            warnings.warn(f"MultiResidual {self.name!r}: {reason} (said once for every block)",
                          RuntimeWarning, stacklevel=2)
        return None

    @staticmethod
    def _sum(tensors):
        total = tensors[0]
        for t in tensors[1:]:
            total = keras.ops.add(total, t)
        return total

    def _share(self, x, branches, with_shortcut, training):
        """``[shortcut(x) +] branch_1(x) + ...``, added in that order."""
        residuals = [b(x, training=training) for b in branches]
        if with_shortcut:
            head = x if self.shortcut is None else self.shortcut(x, training=training)
            residuals = [head] + residuals
        return self._sum(residuals)

    def call(self, inputs, training=None):
        x = inputs
        devices = self._placement()
        if devices is None:
            return self._share(x, self.branches, True, training)

        import tensorflow as tf

        shares = split_branches(self.k, len(devices))
        partials, start = [], 0
        for device, size in zip(devices, shares):
            branches = self.branches[start:start + size]
            # the first device also computes the shortcut
            partials.append(_on_device(device, lambda v, b=branches, first=start == 0:
                                       self._share(v, b, first, training), x))
            start += size
        with tf.device(devices[0]):
            return self._sum(partials)

    def compute_output_shape(self, input_shape):
        return self.branches[0].compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "branches": [keras.saving.serialize_keras_object(b) for b in self.branches],
            "shortcut": (None if self.shortcut is None
                         else keras.saving.serialize_keras_object(self.shortcut)),
            "devices": None if self.devices is None else list(self.devices),
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["branches"] = [keras.saving.deserialize_keras_object(b)
                              for b in config["branches"]]
        if config.get("shortcut") is not None:
            config["shortcut"] = keras.saving.deserialize_keras_object(config["shortcut"])
        return cls(**config)
