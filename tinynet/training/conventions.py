"""Whose training rules a run follows -- the original code's framework or Keras' -- and how runs
made before the choice existed keep theirs.

Two computations of Keras differ from PyTorch's and Torch7's, the frameworks of the original
code of seeds 000 (PyTorch), 003 (Torch7) and 004 (PyTorch):

* the optimizer's update: SGD's and RMSprop's momentum, where Adagrad, Adam and RMSprop add
  ``eps`` (``tinynet.training.torch_optimizers``); an optimizer spec names PyTorch's rules with
  ``"convention": "torch"``;
* BatchNormalization's moving variance, updated with the unbiased batch variance
  (``tinynet.layers.TorchBatchNormalization``); a model builder takes ``batch_norm="torch"``.

Those papers' protocols use the originals' rules. ``--keras-semantics`` trains with Keras' own
instead (reported as a difference from the paper). The Keras-origin papers (seed 002's
DenseNets) and seed 001 (no public code) keep Keras' rules.

Seed 002's Model 2 puts its L2 penalty on kernels only, as the notebook does (``bias_l2=False``;
tinynet used to penalise the biases too).

Run directories made before these rules existed recorded none of these keys and trained with
Keras' rules (and Model 2 with its biases penalised). Resuming one -- or continuing from one
with ``--continue-epochs`` -- keeps what it trained with, so that the run stays one computation
and resumes bit for bit: ``keep_recorded_rules`` gives the command's protocol and model
arguments the recorded form, and the run says so. A new run directory gets the originals'.
"""
__all__ = ["INTRODUCED_MODEL_ARGUMENTS", "ORIGINAL_RULES", "add_keras_semantics_flag",
           "batch_norm", "keep_recorded_rules", "optimizer_convention",
           "with_optimizer_convention"]

# model arguments the papers pass since their builders gained them: {argument: (the original
# code's value, what it changes)}; the builder's default is what a model recorded without the
# argument was built with
INTRODUCED_MODEL_ARGUMENTS = {
    "batch_norm": ("torch", "BatchNormalization's moving variance"),
    "bias_l2": (False, "the L2 penalty on Model 2's biases"),
    "source": ("torchvision", "DenResNet's torchvision backbones"),
}
# the framework each paper's original code ran on, where its rules are not Keras'
ORIGINAL_RULES = {"cifar_resnet_design": "PyTorch", "multi_resnet_cifar": "Torch7",
                  "denresnet": "PyTorch"}


def add_keras_semantics_flag(parser, framework):
    """``--keras-semantics`` on a paper whose original ran on ``framework``."""
    parser.add_argument(
        "--keras-semantics", action="store_true",
        help=f"train with Keras' optimizer update and BatchNormalization moving variance instead "
             f"of {framework}'s, which the original code used (SGD's momentum keeps the lr in "
             f"Keras' velocity, Keras' BN averages the biased batch variance; see "
             f"tinynet.training.conventions)")


def batch_norm(args):
    """The ``batch_norm`` model argument of a run of an original-rules paper."""
    return "keras" if getattr(args, "keras_semantics", False) else "torch"


def optimizer_convention(args):
    """The optimizer specs' ``"convention"`` of such a run (``None``: Keras', the key left out)."""
    return None if getattr(args, "keras_semantics", False) else "torch"


def with_optimizer_convention(protocol, convention):
    """``protocol`` with every optimizer spec's ``"convention"`` set (``None``: removed)."""
    def change(spec):
        spec = {k: v for k, v in spec.items() if k != "convention"}
        return dict(spec, convention=convention) if convention else spec
    return protocol._with_optimizers(change)


def _predates_conventions(recorded_protocol):
    """Whether the recorded protocol's optimizer specs predate ``"convention"``."""
    specs = [recorded_protocol.get("optimizer") or {}] + [
        s.get("optimizer") or {} for s in recorded_protocol.get("stages", ())]
    return not any("convention" in spec for spec in specs)


def keep_recorded_rules(recorded, protocol, model_kwargs):
    """The protocol and model arguments with which a run recorded as ``recorded`` (a config.json,
    of the run directory or of a ``--continue-epochs`` parent) goes on: unchanged, unless the
    record predates the originals' rules; then without them, as it was trained. Returns
    ``(protocol, model_kwargs, kept)``, ``kept`` naming what was reverted (empty: nothing)."""
    kept = []
    if not recorded:
        return protocol, model_kwargs, kept
    recorded_kwargs = recorded.get("model_kwargs") or {}
    for key, (original, what) in INTRODUCED_MODEL_ARGUMENTS.items():
        if key in model_kwargs and key not in recorded_kwargs:
            if model_kwargs[key] == original:
                kept.append(what)
            model_kwargs = {k: v for k, v in model_kwargs.items() if k != key}
    recorded_protocol = recorded.get("protocol") or {}
    if recorded_protocol and _predates_conventions(recorded_protocol):
        before = protocol
        protocol = with_optimizer_convention(protocol, None)
        if protocol.to_dict() != before.to_dict():
            kept.insert(0, "the optimizer's update")
    return protocol, model_kwargs, kept
