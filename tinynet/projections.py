"""Projected GPU training times of every paper: counted FLOPs over published peaks.

These are projections, not measurements. For each paper's model (its default configuration)
and protocol on the real dataset sizes:

    time = (training images x 3 x forward FLOPs at their resolution
            + validation images x forward FLOPs) / (the GPU's dense peak x EFFICIENCY)

Forward FLOPs per image are counted by TensorFlow's profiler on the real model
(``tinynet.models.flops``; ``FORWARD_FLOPS`` below, recounted by ``tools/benchmark.py
project`` and checked by tests/test_projections.py). Peaks are NVIDIA's datasheet figures
without sparsity, for the units a Keras run uses: float32 convolutions run on TF32 tensor cores
on Ampere, Ada and Hopper (TensorFlow's default); ``mixed_float16`` / ``mixed_bfloat16`` on
16-bit tensor cores; the T4 (Turing) has no TF32 or bfloat16 units. ``EFFICIENCY`` on CUDA
cores is calibrated on the papers' own K80 timings (``PAPER_TIMES``; tools/benchmark.py project
prints the efficiency each implies); on tensor cores it is an assumption, stated: small images
leave the large GPUs' tensor cores idle more than ImageNet-sized ones, so the A100 and H100
figures are the least certain.
Input pipelines, augmentation on the CPU and checkpoint writes are not counted.
"""
import dataclasses

TINY_IMAGENET_TRAIN, TINY_IMAGENET_VAL = 100_000, 10_000
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000


@dataclasses.dataclass(frozen=True)
class Gpu:
    """Dense peak TFLOPS of the units each precision runs on (None: no such units)."""

    name: str
    float32: float
    mixed_float16: float
    mixed_bfloat16: object
    memory_gb: int
    source: str


GPUS = {
    "K80": Gpu("K80 (one GK210)", 4.37, None, None, 12,
               "NVIDIA Tesla K80 datasheet: 8.73 TFLOPS fp32 at boost for the board's two GK210; "
               "Colab and the clouds lent one GK210"),
    "T4": Gpu("T4", 8.1, 65.0, None, 16, "NVIDIA T4 datasheet: fp32 8.1, fp16 tensor 65"),
    "L4": Gpu("L4", 60.0, 121.0, 121.0, 24,
              "NVIDIA L4 datasheet: TF32 120 and fp16/bf16 242 with sparsity, half without"),
    "A100": Gpu("A100 (SXM)", 156.0, 312.0, 312.0, 40,
                "NVIDIA A100 datasheet: TF32 156, fp16/bf16 312 (dense)"),
    "H100": Gpu("H100 (SXM)", 494.5, 989.5, 989.5, 80,
                "NVIDIA H100 datasheet: TF32 989 and fp16/bf16 1979 with sparsity, half "
                "without"),
}
# The share of the dense peak a paper's convnet is assumed to reach: "cuda" is float32 on CUDA
# cores (K80, and float32 on the T4), calibrated on the papers' K80 timings (PAPER_TIMES: they
# imply 0.23 to 0.29, ``tools/benchmark.py project`` prints each); "tensor" is TF32 or 16-bit
# tensor cores, an assumption not measured here (no GPU was lent to this project's sessions
# that wrote it): 64-px and 32-px images give a tensor core's tiles less work per launch than
# ImageNet's 224 px, so it is set below the CUDA-core figure.
EFFICIENCY = {"cuda": 0.25, "tensor": 0.15}
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

# What to pass on each GPU (README "Speed"): the 16-bit type the GPU has, XLA, and the input
# work on the accelerator (native augmentation backend).
SPEED_PRECISION = {"T4": "mixed_float16",  # Turing has no bfloat16
                   "L4": "mixed_bfloat16", "A100": "mixed_bfloat16", "H100": "mixed_bfloat16"}
SPEED_FLAGS = {gpu: ["--precision", precision, "--jit-compile", "--augment-backend", "native",
                     "--augment-on", "device"] for gpu, precision in SPEED_PRECISION.items()}

# Forward FLOPs of one image, counted (tools/benchmark.py project; tests/test_projections.py
# recounts them): (model, px) -> FLOPs. seed 001's ResNets keep 64 px to the first block (no
# stem downsampling), so they cost ImageNet-at-224 figures; the transfer models scale 64 px to
# 224 inside the model.
FORWARD_FLOPS = {
    ("densenet_model1", 16): 1_892_555_128,
    ("densenet_model1", 32): 7_570_125_208,
    ("densenet_model1", 64): 30_280_405_528,
    ("densenet_model2", 64): 12_956_319_720,
    ("resnet18", 64): 4_451_014_320,
    ("resnet34", 64): 9_287_790_000,
    ("resnet50", 64): 10_425_988_272,
    ("nyu_resnet24", 32): 1_060_277_436,
    ("multi_resnet200_k5", 32): 2_984_308_508,
    ("transfer_resnet18", 64): 3_635_210_032,
    ("transfer_resnet34", 64): 7_337_744_432,
    ("transfer_resnet50", 64): 8_205_207_344,
    ("transfer_resnet101", 64): 15_643_454_256,
    ("transfer_resnet152", 64): 23_084_894_000,
    ("transfer_densenet121", 64): 5_701_132_016,
}


@dataclasses.dataclass(frozen=True)
class Workload:
    """One model's whole protocol: ``epochs`` is [(training images, px)] per epoch;
    validation is ``val_images`` at ``val_px`` after every epoch."""

    paper: str
    model: str  # a key of FORWARD_FLOPS' models (a registered model name)
    kwargs: tuple  # the model's builder arguments, as sorted items
    epochs: tuple
    val_images: int
    val_px: int
    batch_size: int  # the last stage's (what tools/benchmark.py gpu measures)
    px: int
    what: str

    @property
    def resolutions(self):
        return sorted({px for _, px in self.epochs} | {self.val_px})

    def build_kwargs(self, px=None):
        """The builder arguments of the model at ``px`` (the last stage's by default)."""
        kwargs = dict(self.kwargs)
        if self.model != "multi_resnet200_k5":  # the CIFAR Multi-ResNet is 32 px only
            kwargs["input_shape"] = (px or self.px,) * 2 + (3,)
        return kwargs

    def training_images(self):
        return sum(n for n, _ in self.epochs)

    def flops(self, flops=None):
        """FLOPs of the whole protocol: 3x the forward pass per training image, the forward
        pass per validation image after every epoch."""
        flops = flops or FORWARD_FLOPS
        train = sum(3 * n * flops[self.model, px] for n, px in self.epochs)
        return train + len(self.epochs) * self.val_images * flops[self.model, self.val_px]

    def epoch_flops(self, px=None, flops=None):
        """FLOPs of one epoch of the whole training set at ``px`` (the last stage's), with
        its validation."""
        flops = flops or FORWARD_FLOPS
        px = px or self.px
        images = max(n for n, p in self.epochs if p == px)
        return 3 * images * flops[self.model, px] + self.val_images * flops[self.model,
                                                                              self.val_px]


def peak_tflops(gpu, precision):
    """``(dense peak TFLOPS, "cuda" or "tensor")`` of ``precision`` on ``gpu`` (a GPUS key);
    float32 runs on TF32 tensor cores from Ampere on (TensorFlow's default), on CUDA cores
    before; a 16-bit type the GPU lacks is None."""
    spec = GPUS[gpu]
    peak = getattr(spec, precision)
    if peak is None:
        return None, None
    return peak, ("cuda" if precision == "float32" and gpu in ("K80", "T4") else "tensor")


def project_seconds(flops, gpu, precision, efficiency=None):
    """Seconds ``flops`` take on ``gpu`` at ``precision`` (None where it has no such units)."""
    peak, units = peak_tflops(gpu, precision)
    if peak is None:
        return None
    return flops / (peak * 1e12 * (efficiency or EFFICIENCY)[units])


def _epochs(protocol, num_train, runs=1):
    return tuple((p.steps * protocol.stages[p.stage_index].batch_size,
                  protocol.stages[p.stage_index].resolution)
                 for p in protocol.epoch_plan(num_train)) * runs


def _last(protocol):
    return dict(batch_size=protocol.stages[-1].batch_size, px=protocol.stages[-1].resolution)


def _resnet_kwargs(paper):
    return dict(variant="e", stochastic_depth=paper.VARIANTS["final"][1], seed=0,
                weight_decay=paper.WEIGHT_DECAY, num_classes=200)


def workloads():
    """Every paper's default model and protocol (and seed 001's and seed 000's other
    models) as ``Workload``s, from ``tinynet.papers``' data on the real dataset sizes, keyed
    by model name."""
    from tinynet.papers import get_paper

    m1, m2, rn, nyu, mr, dr = (get_paper(name) for name in (
        "densenet_model1", "densenet_model2", "resnet_tiny_imagenet", "cifar_resnet_design",
        "multi_resnet_cifar", "denresnet"))
    tiny = dict(val_images=TINY_IMAGENET_VAL, val_px=64)
    progressive, cyclic = m1.PROTOCOLS["progressive"], m2.protocol()
    items = [
        Workload("densenet_model1", "densenet_model1", (("num_classes", 200),),
                 _epochs(progressive, TINY_IMAGENET_TRAIN), what="245 epochs, progressive "
                 "resizing 32/64/16/64 px", **tiny, **_last(progressive)),
        Workload("densenet_model2", "densenet_model2", (("num_classes", 200),),
                 _epochs(cyclic, TINY_IMAGENET_TRAIN), what="108 epochs, six cyclic phases",
                 **tiny, **_last(cyclic)),
    ]
    final = rn.protocol("final")
    for depth in (18, 34, 50):
        items.append(Workload("resnet_tiny_imagenet", f"resnet{depth}",
                              tuple(sorted(_resnet_kwargs(rn).items())),
                              _epochs(final, TINY_IMAGENET_TRAIN), what="the final variant: "
                              "70 epochs of 1,000 batches of 100", **tiny, **_last(final)))
    headline = nyu.protocol()
    items.append(Workload("cifar_resnet_design", nyu.MODEL, (("num_classes", 10),),
                          _epochs(headline, CIFAR_TRAIN - nyu.VAL_SPLIT, runs=2),
                          val_images=nyu.VAL_SPLIT, val_px=32,
                          what="200 epochs, then 200 more (the headline run)",
                          **_last(headline)))
    code = mr.protocol("cifar10")
    items.append(Workload("multi_resnet_cifar", "multi_resnet200_k5", (("num_classes", 10),),
                          _epochs(code, CIFAR_TRAIN), val_images=CIFAR_TEST, val_px=32,
                          what="164 epochs (the code's)", **_last(code)))
    for backbone in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                     "densenet121"):
        protocol = dr.protocol(backbone)
        items.append(Workload(
            "denresnet", f"transfer_{backbone}",
            (("image_size", 224), ("num_classes", 200), ("source", "torchvision"),
             ("weights", None)),
            _epochs(protocol, TINY_IMAGENET_TRAIN), what=f"{dr.SCHEDULE[backbone][1]} epochs "
            f"at batch {dr.SCHEDULE[backbone][0]}, 64 px scaled to 224 in the model", **tiny,
            **_last(protocol)))
    return {w.model: w for w in items}


@dataclasses.dataclass(frozen=True)
class PaperTime:
    """A time a paper reports, and the work it covers as FLOPs of a ``Workload``."""

    model: str
    gpu: str
    seconds: float
    what: str
    source: str

    def flops(self, workload, flops=None):
        flops = flops or FORWARD_FLOPS
        if self.what == "protocol":
            return workload.flops(flops)
        if self.what == "epoch":
            return workload.epoch_flops(flops=flops)
        batch, px = self.what  # one training iteration of ``batch`` images at ``px``
        return 3 * batch * flops[self.model, px]

    def implied_efficiency(self, workload, flops=None):
        """The share of the GPU's float32 peak the paper's run reached, if it did this work."""
        return self.flops(workload, flops) / (self.seconds * GPUS[self.gpu].float32 * 1e12)


PAPER_TIMES = (
    PaperTime("densenet_model1", "K80", 26 * 3600, "protocol",
              "Model 1's authors: 26 hours on Google Colab (as seed 002 reports it; GPU not "
              "named)"),
    PaperTime("densenet_model2", "K80", 36 * 3600, "protocol",
              "Model 2's authors: 108 epochs in 36 hours on Google Colab (as seed 002 reports "
              "it; GPU not named)"),
    PaperTime("resnet34", "K80", 2.45, (100, 64),
              "seed 001: 2.45 s per iteration of batch 100 on a K80 (without stochastic "
              "depth, all blocks computed)"),
    PaperTime("transfer_resnet18", "K80", 15 * 60, "epoch",
              "seed 000: about 15 min per epoch on a K80 for the shallow nets"),
    PaperTime("transfer_resnet152", "K80", 120 * 60, "epoch",
              "seed 000: over 120 min per epoch on a K80 for the deepest (a lower bound)"),
)
