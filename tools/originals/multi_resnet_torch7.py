"""Seed 003's original code (Abdi & Nahavandi 2016, "Multi-Residual Networks", arXiv 1609.05672),
Lua Torch on fb.resnet.torch, transliterated line by line to PyTorch, with Torch7's SGD.

Sources (each cited by file and line below):

* github.com/masoudabd/multi-resnet at commit 01ab719c90f86d0dda8e1883164021a0798f6b43 (HEAD,
  2016-11-25): ``models/mpreresnet.lua`` (basic pre-activation multi-residual network; last
  changed in d3afc8cce59b072c16c5d1651658b5f0d79afdae), ``models/multi-resnet.lua`` (bottleneck
  network; last changed in ab83377a385e71f49f47541b139fccb63cad26cb), ``opts.lua`` (default
  shortcut type) and ``train.lua`` (the optimiser's configuration).
* github.com/torch/optim at commit a5ceed7c21a56d32a36706823e8436741b230d1c (HEAD, 2017-11-27):
  ``sgd.lua`` (last changed in 63994c78b2eef4266e62e88e0ae444ee0c37074d).
* github.com/torch/nn at commit 872682558c48ee661ebff693aa5a41fcdefa7873 (HEAD, 2017-10-02): the
  semantics of the Torch7 modules the models use (``SpatialConvolution.lua``,
  ``BatchNormalization.lua`` + ``lib/THNN/generic/BatchNormalization.c``,
  ``SpatialAveragePooling.lua``, ``SpatialMaxPooling.lua``, ``Concat.lua``, ``ConcatTable.lua``,
  ``CAddTable.lua``, ``MulConstant.lua``, ``View.lua``, ``Linear.lua``). The models use
  ``cudnn.SpatialConvolution``, ``cudnn.SpatialAveragePooling`` and ``cudnn.ReLU``, cuDNN
  implementations of the ``nn`` modules of the same names with the same arguments.

Licenses: masoudabd/multi-resnet has no LICENSE file (its Lua files carry fb.resnet.torch's
header, "licensed under the BSD-style license found in the LICENSE file in the root directory",
but the repository ships none), so nothing of it is copied here: this is tinynet's own PyTorch
code that follows the Lua's structure, statement by statement, citing the lines it follows.
torch/optim is BSD-3-Clause (its COPYRIGHT.txt); ``torch7_sgd`` is likewise a transliteration,
not a copy.

Torch7 semantics, and how each is reproduced:

* ``nn.SpatialBatchNormalization(n)``: eps 1e-5, momentum 0.1, running mean 0 and variance 1 at
  the start (BatchNormalization.lua 50-54); training normalises by the biased batch variance
  and updates ``running_var`` with the UNBIASED one, ``sum / (n - 1)``
  (THNN BatchNormalization.c 40, 44-50): exactly ``torch.nn.BatchNorm2d(n, eps=1e-5,
  momentum=0.1)``.
* ``SpatialConvolution(nIn, nOut, kW, kH, dW, dH, padW, padH)`` (note the W-before-H order;
  dW, dH default 1, padW 0, padH padW: SpatialConvolution.lua 4-18) -> ``nn.Conv2d`` with
  (kH, kW), (dH, dW), (padH, padW). The Lua's ConvInit removes every convolution's bias
  (``v.bias = nil`` when ``cudnn.version >= 4000``, mpreresnet.lua 233-235, multi-resnet.lua
  173-175; cuDNN 4+ is what cudnn.torch's R4/R5 bindings require), so ``bias=False``.
* The type A shortcut (mpreresnet.lua 38-44): ``nn.SpatialAveragePooling(1, 1, s, s)`` (a 1x1
  window with stride s, floor mode: ``x[:, :, ::s, ::s]``) followed by ``nn.Concat(2)`` of
  ``nn.Identity()`` and ``nn.MulConstant(0)``: the subsampled map and as many zero channels,
  concatenated on dimension 2 of the NCHW batch (Lua's 1-based dimension 2 = channels).
* The branch layout: a ``nn.ConcatTable`` feeds the block input to each of the k branches
  (``ls[i]``) and to the shortcut; ``nn.CAddTable(true)`` sums the table in order,
  ``((out_1 + out_2) + ...)``, in place into the first entry (CAddTable.lua 9-18). In
  mpreresnet.lua the shortcut is the table's last entry (``(f_1 + ... + f_k) + shortcut``);
  multi-resnet.lua first sums the branches in an inner table and then adds the shortcut.
* Head: SBatchNorm, ReLU, ``Avg(8, 8, 1, 1)`` (an 8x8 average, so 32x32 inputs), ``nn.View(C)``
  with ``setNumInputDims(3)`` (flatten per sample), ``nn.Linear``.
* Initialisation (ConvInit, BNInit, the Linear bias): reproduced by ``lua_init`` for
  documentation; weights are normally copied in from Keras (``copy_from_keras``).

Not transliterated: ``ModelParallelTable`` (mpreresnet.lua 94-100, ``-modelParallel true``: the
same sum over two GPUs), ``ShareGradInput`` (memory sharing of gradInput buffers: an identity
here), ``model:cuda()``, cuDNN modes and ``model:get(1).gradInput = nil`` (device and memory).

One addition that is not in the Lua: ``width`` scales the base width 16 to ``b = round(16 *
width)`` as tinynet's ``width`` does (mpreresnet: stages b, 2b, 4b; multi-resnet: stem b and
stages 4b, 8b, 16b), so that the check runs on CPU; ``width=1`` is the Lua exactly.
"""
import math

import numpy as np
import torch
from torch import nn

MULTI_RESNET_REPOSITORY = "https://github.com/masoudabd/multi-resnet"
MULTI_RESNET_COMMIT = "01ab719c90f86d0dda8e1883164021a0798f6b43"
OPTIM_REPOSITORY = "https://github.com/torch/optim"
OPTIM_COMMIT = "a5ceed7c21a56d32a36706823e8436741b230d1c"
NN_REPOSITORY = "https://github.com/torch/nn"
NN_COMMIT = "872682558c48ee661ebff693aa5a41fcdefa7873"
MPRERESNET_LUA = "models/mpreresnet.lua"
MULTI_RESNET_LUA = "models/multi-resnet.lua"


# --- Torch7 modules (torch/nn@8726825) -------------------------------------------------------

class Sequential(nn.Sequential):
    """``nn.Sequential`` (Sequential.lua): modules applied in order; ``add`` appends and returns
    the container, as ``:add`` does in Lua (so calls chain)."""

    def add(self, module):
        self.append(module)
        return self


class ConcatTable(nn.ModuleList):
    """``nn.ConcatTable`` (ConcatTable.lua 9-14): every module applied to the same input; the
    outputs as a list (a Lua table), in the order the modules were added."""

    def add(self, module):
        self.append(module)
        return self

    def forward(self, x):
        return [module(x) for module in self]


class Concat(nn.ModuleList):
    """``nn.Concat(dimension)`` (Concat.lua 9-31): every module applied to the same input, the
    outputs concatenated along the 1-based Lua ``dimension`` (2 on an NCHW batch: channels)."""

    def __init__(self, dimension):
        super().__init__()
        self.dimension = dimension

    def add(self, module):
        self.append(module)
        return self

    def forward(self, x):
        return torch.cat([module(x) for module in self], dim=self.dimension - 1)


class CAddTable(nn.Module):
    """``nn.CAddTable(ip)`` (CAddTable.lua 9-18): ``output = input[1]`` (the same tensor when
    ``ip``, else a copy), then ``output:add(input[i])`` for i = 2, 3, ...: the entries summed
    in table order into the first."""

    def __init__(self, ip=False):
        super().__init__()
        self.inplace = bool(ip)

    def forward(self, inputs):
        output = inputs[0] if self.inplace else inputs[0].clone()
        for tensor in inputs[1:]:
            output = output.add_(tensor)
        return output


class MulConstant(nn.Module):
    """``nn.MulConstant(c, ip)`` (MulConstant.lua 3-25): the input times ``c``; not in place by
    default."""

    def __init__(self, constant_scalar, ip=False):
        super().__init__()
        self.constant_scalar = constant_scalar
        self.inplace = bool(ip)

    def forward(self, x):
        return x.mul_(self.constant_scalar) if self.inplace else x * self.constant_scalar


class View(nn.Module):
    """``nn.View(sizes...)`` with ``setNumInputDims`` (View.lua 26-35, 37-75): the last
    ``numInputDims`` dimensions of the input reshaped to ``sizes``; dimensions before them
    (the batch) kept."""

    def __init__(self, *size):
        super().__init__()
        self.size = tuple(size)
        self.numInputDims = None

    def setNumInputDims(self, numInputDims):  # noqa: N802 (the Lua method's name)
        self.numInputDims = numInputDims
        return self

    def forward(self, x):
        if self.numInputDims is not None and x.dim() > self.numInputDims:
            return x.reshape(*x.shape[:x.dim() - self.numInputDims], *self.size)
        return x.reshape(*self.size)


Identity = nn.Identity  # nn.Identity: the input itself


def Convolution(nInputPlane, nOutputPlane, kW, kH, dW=1, dH=1, padW=0, padH=None):  # noqa: N802
    """``cudnn.SpatialConvolution`` / ``nn.SpatialConvolution`` (SpatialConvolution.lua 4-18),
    without the bias the models' ConvInit removes (see the module docstring)."""
    padH = padW if padH is None else padH
    return nn.Conv2d(nInputPlane, nOutputPlane, (kH, kW), stride=(dH, dW), padding=(padH, padW),
                     bias=False)


def SBatchNorm(nOutput, eps=1e-5, momentum=0.1):  # noqa: N802
    """``nn.SpatialBatchNormalization(nOutput)``: BatchNormalization.lua 50-54 and THNN's
    BatchNormalization.c 24-54 (biased variance to normalise, unbiased into ``running_var``),
    which is ``torch.nn.BatchNorm2d`` with the same eps and momentum."""
    return nn.BatchNorm2d(nOutput, eps=eps, momentum=momentum)


def ReLU(ip=False):  # noqa: N802
    """``cudnn.ReLU(ip)``."""
    return nn.ReLU(inplace=bool(ip))


def SpatialAveragePooling(kW, kH, dW=1, dH=1, padW=0, padH=0):  # noqa: N802
    """``nn.SpatialAveragePooling`` / ``cudnn.SpatialAveragePooling`` (SpatialAveragePooling.lua
    3-15: floor mode, padding counted)."""
    return nn.AvgPool2d((kH, kW), stride=(dH, dW), padding=(padH, padW), ceil_mode=False,
                        count_include_pad=True)


Avg = SpatialAveragePooling  # mpreresnet.lua 18, multi-resnet.lua 24: cudnn.SpatialAveragePooling


def Max(kW, kH, dW=None, dH=None, padW=0, padH=0):  # noqa: N802
    """``nn.SpatialMaxPooling`` (SpatialMaxPooling.lua 3-19: dW, dH default kW, kH; floor)."""
    dW = kW if dW is None else dW
    dH = kH if dH is None else dH
    return nn.MaxPool2d((kH, kW), stride=(dH, dW), padding=(padH, padW), ceil_mode=False)


def Linear(inputSize, outputSize):  # noqa: N802
    """``nn.Linear(inputSize, outputSize)`` (Linear.lua 3-13; its reset, 21-40, draws weight and
    bias from U(+-1/sqrt(inputSize)), as ``torch.nn.Linear`` does)."""
    return nn.Linear(inputSize, outputSize)


def ShareGradInput(module, key):  # noqa: N802
    """mpreresnet.lua 54-58: marks ``module`` for gradInput memory sharing; no numerical
    effect, so the module itself."""
    assert key
    return module


def lua_init(model):
    """The Lua's initialisation (mpreresnet.lua 229-255 = multi-resnet.lua 169-195): ConvInit,
    every convolution's weight from N(0, sqrt(2 / (kW * kH * nOutputPlane))) (the bias removed);
    BNInit, gamma 1 and beta 0; every Linear's bias zero (its weight keeps nn.Linear's
    U(+-1/sqrt(inputSize)))."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):  # ConvInit
                n = module.kernel_size[1] * module.kernel_size[0] * module.out_channels
                module.weight.normal_(0, math.sqrt(2 / n))
            elif isinstance(module, nn.BatchNorm2d):  # BNInit
                module.weight.fill_(1)
                module.bias.zero_()
            elif isinstance(module, nn.Linear):
                module.bias.zero_()
    return model


def _base_width(width):
    """``round(16 * width)`` (tinynet's width rule; 16 at width 1, the Lua's value)."""
    base = int(round(16 * width))
    if base < 1:
        raise ValueError(f"width {width!r} leaves the base width 16 under one channel")
    return base


# --- models/mpreresnet.lua (basic blocks) --------------------------------------------------------

def mpreresnet(depth, k, shortcut_type=None, dataset="cifar10", width=1.0):
    """``createModel(opt)`` of models/mpreresnet.lua (lines 23-272), ``opt.depth = depth``,
    ``opt.k = k``, ``opt.shortcutType = shortcut_type``, ``opt.dataset = dataset``;
    ``shortcut_type=None`` is opts.lua's default (lines 77-87: 'A' on CIFAR, 'B' on ImageNet).
    ``width`` is not the Lua's (module docstring); ImageNet only at width 1."""
    # opts.lua 78, 82, 86: an empty -shortcutType becomes 'B' (imagenet) or 'A' (cifar)
    if shortcut_type is None:
        shortcut_type = "B" if dataset == "imagenet" else "A"
    # lines 24-28
    shortcutType = shortcut_type or "B"
    iChannels = None

    # lines 31-48: the shortcut layer is either identity or 1x1 convolution
    def shortcut(nInputPlane, nOutputPlane, stride):
        useConv = shortcutType == "C" or (shortcutType == "B" and nInputPlane != nOutputPlane)
        if useConv:
            # 1x1 convolution (line 37: no padding)
            return Sequential().add(Convolution(nInputPlane, nOutputPlane, 1, 1, stride, stride))
        elif nInputPlane != nOutputPlane:
            # strided, zero-padded identity shortcut (lines 40-44)
            return (Sequential()
                    .add(SpatialAveragePooling(1, 1, stride, stride))
                    .add(Concat(2)
                         .add(Identity())
                         .add(MulConstant(0))))
        else:
            return Identity()

    # lines 62-107: the basic residual layer block (k residual functions)
    def basicblock(n, stride, type_=None):
        nonlocal iChannels
        nInputPlane = iChannels                                          # line 63
        iChannels = n                                                    # line 64

        ls = {}                                                          # lines 66-68
        convs = ConcatTable()
        block = Sequential()

        if type_ == "both_preact":                                       # lines 72-75
            block.add(ShareGradInput(SBatchNorm(nInputPlane), "preact"))
            block.add(ReLU(True))

        for i in range(1, k + 1):                                        # lines 77-88
            ls[i] = Sequential()
            if type_ != "no_preact" and type_ != "both_preact":
                ls[i].add(SBatchNorm(nInputPlane))
                ls[i].add(ReLU(True))
            ls[i].add(Convolution(nInputPlane, n, 3, 3, stride, stride, 1, 1))
            ls[i].add(SBatchNorm(n))
            ls[i].add(ReLU(True))
            ls[i].add(Convolution(n, n, 3, 3, 1, 1, 1, 1))
            convs.add(ls[i])

        convs.add(shortcut(nInputPlane, n, stride))                      # line 90

        # lines 94-104: without modelParallel, the table and an in-place CAddTable
        block.add(convs)
        block.add(CAddTable(True))
        return block

    # lines 110-160: the bottleneck residual layer (k residual functions)
    def bottleneck(n, stride, type_=None):
        nonlocal iChannels
        nInputPlane = iChannels                                          # line 111
        iChannels = n * 4                                                # line 112

        ls = {}                                                          # lines 114-116
        convs = ConcatTable()
        block = Sequential()

        if type_ == "both_preact":                                       # lines 121-124
            block.add(ShareGradInput(SBatchNorm(nInputPlane), "preact"))
            block.add(ReLU(True))

        for i in range(1, k + 1):                                        # lines 126-140
            ls[i] = Sequential()
            if type_ != "no_preact" and type_ != "both_preact":
                ls[i].add(SBatchNorm(nInputPlane))
                ls[i].add(ReLU(True))
            ls[i].add(Convolution(nInputPlane, n, 1, 1, 1, 1, 0, 0))
            ls[i].add(SBatchNorm(n))
            ls[i].add(ReLU(True))
            ls[i].add(Convolution(n, n, 3, 3, stride, stride, 1, 1))
            ls[i].add(SBatchNorm(n))
            ls[i].add(ReLU(True))
            ls[i].add(Convolution(n, n * 4, 1, 1, 1, 1, 0, 0))
            convs.add(ls[i])

        convs.add(shortcut(nInputPlane, n * 4, stride))                  # line 142

        block.add(convs)                                                 # lines 146-156
        block.add(CAddTable(True))
        return block

    # lines 163-174: creates count residual blocks with specified number of features
    def layer(block, features, count, stride, type_=None):
        s = Sequential()
        if count < 1:
            return s
        s.add(block(features, stride, "no_preact" if type_ == "first" else "both_preact"))
        for _ in range(2, count + 1):
            s.add(block(features, 1))
        return s

    model = Sequential()                                                 # line 176
    if dataset == "imagenet":                                            # lines 177-207
        if width != 1.0:
            raise ValueError("width applies to the CIFAR network only")
        cfg = {
            18: ((2, 2, 2, 2), 512, basicblock),
            34: ((3, 4, 6, 3), 512, basicblock),
            50: ((3, 4, 6, 3), 2048, bottleneck),
            101: ((3, 4, 23, 3), 2048, bottleneck),
            152: ((3, 8, 36, 3), 2048, bottleneck),
            200: ((3, 24, 36, 3), 2048, bottleneck),
        }
        assert depth in cfg, "Invalid depth: " + str(depth)
        definition, nFeatures, block = cfg[depth]
        iChannels = 64

        # the ResNet ImageNet model
        model.add(Convolution(3, 64, 7, 7, 2, 2, 3, 3))
        model.add(SBatchNorm(64))
        model.add(ReLU(True))
        model.add(Max(3, 3, 2, 2, 1, 1))
        model.add(layer(block, 64, definition[0], 1, "first"))
        model.add(layer(block, 128, definition[1], 2))
        model.add(layer(block, 256, definition[2], 2))
        model.add(layer(block, 512, definition[3], 2))
        model.add(ShareGradInput(SBatchNorm(iChannels), "last"))
        model.add(ReLU(True))
        model.add(Avg(7, 7, 1, 1))
        model.add(View(nFeatures).setNumInputDims(3))
        model.add(Linear(nFeatures, 1000))
    elif dataset == "cifar10":                                           # lines 208-224
        # model type specifies number of layers for CIFAR-10 model
        assert (depth - 2) % 6 == 0, "depth should be one of 20, 32, 44, 56, 110, 1202"
        n = (depth - 2) // 6
        b = _base_width(width)  # 16 in the Lua (width 1)
        iChannels = b

        # the ResNet CIFAR-10 model
        model.add(Convolution(3, b, 3, 3, 1, 1, 1, 1))
        model.add(layer(basicblock, b, n, 1))
        model.add(layer(basicblock, 2 * b, n, 2))
        model.add(layer(basicblock, 4 * b, n, 2))
        model.add(ShareGradInput(SBatchNorm(iChannels), "last"))
        model.add(ReLU(True))
        model.add(Avg(8, 8, 1, 1))
        model.add(View(4 * b).setNumInputDims(3))
        model.add(Linear(4 * b, 10))
    else:
        raise ValueError("invalid dataset: " + dataset)                  # line 226

    lua_init(model)                                                      # lines 229-255
    model.lua_file = MPRERESNET_LUA
    return model


# --- models/multi-resnet.lua (bottleneck blocks) ---------------------------------------------

def multi_resnet(depth, k, dataset="cifar10", width=1.0):
    """``createModel(opt)`` of models/multi-resnet.lua (lines 29-207), ``opt.depth = depth``,
    ``opt.k = k``, ``opt.dataset = dataset`` ('cifar10' or 'cifar100'). ``width`` is not the
    Lua's (module docstring)."""
    # lines 33-112: the new residual unit (k bottleneck residual functions)
    def bottleneck(nInputPlane, nOutputPlane, stride):
        assert nOutputPlane % 4 == 0
        nBottleneckPlane = nOutputPlane // 4                             # line 35

        if nInputPlane == nOutputPlane:  # most residual units have this shape (line 38)
            ls = {}                                                      # lines 40-59
            convs = ConcatTable()
            for i in range(1, k + 1):
                ls[i] = Sequential()
                # conv1x1
                ls[i].add(SBatchNorm(nInputPlane))
                ls[i].add(ReLU(True))
                ls[i].add(Convolution(nInputPlane, nBottleneckPlane, 1, 1, stride, stride, 0, 0))
                # conv3x3
                ls[i].add(SBatchNorm(nBottleneckPlane))
                ls[i].add(ReLU(True))
                ls[i].add(Convolution(nBottleneckPlane, nBottleneckPlane, 3, 3, 1, 1, 1, 1))
                # conv1x1
                ls[i].add(SBatchNorm(nBottleneckPlane))
                ls[i].add(ReLU(True))
                ls[i].add(Convolution(nBottleneckPlane, nOutputPlane, 1, 1, 1, 1, 0, 0))
                convs.add(ls[i])

            sum_convs = (Sequential()                                    # lines 61-63
                         .add(convs)
                         .add(CAddTable(True)))

            shortcut = Identity()                                        # line 66

            return (Sequential()                                         # lines 68-72
                    .add(ConcatTable()
                         .add(sum_convs)
                         .add(shortcut))
                    .add(CAddTable(True)))
        else:  # residual units for increasing dimensions (lines 73-111)
            block = Sequential()
            # common BN, ReLU
            block.add(SBatchNorm(nInputPlane))
            block.add(ReLU(True))

            ls = {}
            convs = ConcatTable()
            for i in range(1, k + 1):
                ls[i] = Sequential()
                # conv1x1
                ls[i].add(Convolution(nInputPlane, nBottleneckPlane, 1, 1, stride, stride, 0, 0))
                # conv3x3
                ls[i].add(SBatchNorm(nBottleneckPlane))
                ls[i].add(ReLU(True))
                ls[i].add(Convolution(nBottleneckPlane, nBottleneckPlane, 3, 3, 1, 1, 1, 1))
                # conv1x1
                ls[i].add(SBatchNorm(nBottleneckPlane))
                ls[i].add(ReLU(True))
                ls[i].add(Convolution(nBottleneckPlane, nOutputPlane, 1, 1, 1, 1, 0, 0))
                convs.add(ls[i])

            sum_convs = (Sequential()                                    # lines 99-101
                         .add(convs)
                         .add(CAddTable(True)))

            shortcut = Sequential()                                      # lines 103-104
            shortcut.add(Convolution(nInputPlane, nOutputPlane, 1, 1, stride, stride, 0, 0))

            return (block                                                # lines 106-110
                    .add(ConcatTable()
                         .add(sum_convs)
                         .add(shortcut))
                    .add(CAddTable(True)))

    # lines 115-123: stacking residual units on the same stage
    def layer(block, nInputPlane, nOutputPlane, count, stride):
        s = Sequential()
        s.add(block(nInputPlane, nOutputPlane, stride))
        for _ in range(2, count + 1):
            s.add(block(nOutputPlane, nOutputPlane, 1))
        return s

    model = Sequential()                                                 # line 125
    if dataset not in ("cifar10", "cifar100"):                           # line 165-166
        raise ValueError("invalid dataset: " + dataset)
    # lines 126-164 (cifar10) and 146-164 (cifar100) differ only in the classes (10 / 100)
    assert (depth - 2) % 9 == 0, "depth should be 9n+2 (e.g., 164 or 1001 in the paper)"
    n = (depth - 2) // 9
    b = _base_width(width)
    nStages = (b, 4 * b, 8 * b, 16 * b)  # {16, 64, 128, 256} in the Lua (width 1), line 133

    model.add(Convolution(3, nStages[0], 3, 3, 1, 1, 1, 1))  # one conv at the beginning, 32x32
    model.add(layer(bottleneck, nStages[0], nStages[1], n, 1))  # stage 1 (32x32)
    model.add(layer(bottleneck, nStages[1], nStages[2], n, 2))  # stage 2 (16x16)
    model.add(layer(bottleneck, nStages[2], nStages[3], n, 2))  # stage 3 (8x8)
    model.add(SBatchNorm(nStages[3]))
    model.add(ReLU(True))
    model.add(Avg(8, 8, 1, 1))
    model.add(View(nStages[3]).setNumInputDims(3))
    model.add(Linear(nStages[3], 10 if dataset == "cifar10" else 100))  # lines 143 / 163

    lua_init(model)                                                      # lines 169-195
    model.lua_file = MULTI_RESNET_LUA
    return model


# --- torch/optim sgd.lua --------------------------------------------------------------------

def _lua_or(value, default):
    """Lua's ``value or default``: ``default`` only when ``value`` is nil (None) or false
    (0 is true in Lua, so ``dampening = 0`` stays 0)."""
    return default if value is None or value is False else value


def torch7_sgd(params, grads, config=None, state=None):
    """``optim.sgd(opfunc, x, config, state)`` of torch/optim@a5ceed7 sgd.lua (lines 27-90) on
    lists of tensors, updated in place (Lua updates the one flattened parameter vector of
    ``model:getParameters()``: elementwise the same). ``grads`` are what ``opfunc`` returns
    (train.lua 39-41 and 60-64: the gradients of the batch, computed before the call); like the
    Lua's ``dfdx`` they are modified in place by the weight decay and Nesterov steps.
    ``config``/``state`` are dicts with the Lua's keys (``learningRate``, ``learningRateDecay``,
    ``weightDecay``, ``weightDecays``, ``momentum``, ``dampening``, ``nesterov``,
    ``learningRates``; ``evalCounter``, ``dfdx``, ...); ``learningRates``/``weightDecays`` are
    lists of tensors shaped as ``params``. Returns ``params``.

    fb.resnet.torch's configuration (multi-resnet train.lua 20-27): learningRate opt.LR (0.1),
    learningRateDecay 0, momentum 0.9, nesterov true, dampening 0, weightDecay 1e-4 (applied to
    every parameter, BN's and biases included), learningRate reset each epoch (line 34)."""
    # (0) get/update state                                               lines 28-41
    config = config if config is not None else {}
    state = state if state is not None else config
    lr = _lua_or(config.get("learningRate"), 1e-3)
    lrd = _lua_or(config.get("learningRateDecay"), 0)
    wd = _lua_or(config.get("weightDecay"), 0)
    mom = _lua_or(config.get("momentum"), 0)
    damp = _lua_or(config.get("dampening"), mom)
    nesterov = _lua_or(config.get("nesterov"), False)
    lrs = config.get("learningRates")
    wds = config.get("weightDecays")
    state["evalCounter"] = _lua_or(state.get("evalCounter"), 0)
    nevals = state["evalCounter"]
    assert not nesterov or (mom > 0 and damp == 0), \
        "Nesterov momentum requires a momentum and zero dampening"

    # (1) evaluate f(x) and df/dx                                        line 44
    x, dfdx = list(params), list(grads)

    with torch.no_grad():
        # (2) weight decay with single or individual parameters          lines 47-55
        if wd != 0:
            for g, p in zip(dfdx, x):
                g.add_(p, alpha=wd)
        elif wds is not None:
            if "decayParameters" not in state:
                state["decayParameters"] = [torch.empty_like(g) for g in dfdx]
            for d, w, p, g in zip(state["decayParameters"], wds, x, dfdx):
                d.copy_(w).mul_(p)
                g.add_(d)

        # (3) apply momentum                                             lines 58-69
        if mom != 0:
            if "dfdx" not in state:
                state["dfdx"] = [g.clone() for g in dfdx]
            else:
                for buf, g in zip(state["dfdx"], dfdx):
                    buf.mul_(mom).add_(g, alpha=1 - damp)
            if nesterov:
                for g, buf in zip(dfdx, state["dfdx"]):
                    g.add_(buf, alpha=mom)
            else:
                dfdx = state["dfdx"]

        # (4) learning rate decay (annealing)                            line 72
        clr = lr / (1 + nevals * lrd)

        # (5) parameter update with single or individual learning rates  lines 75-83
        if lrs is not None:
            if "deltaParameters" not in state:
                state["deltaParameters"] = [torch.empty_like(p) for p in x]
            for d, r, g, p in zip(state["deltaParameters"], lrs, dfdx, x):
                d.copy_(r).mul_(g)
                p.add_(d, alpha=-clr)
        else:
            for p, g in zip(x, dfdx):
                p.add_(g, alpha=-clr)

    # (6) update evaluation counter                                      line 86
    state["evalCounter"] = state["evalCounter"] + 1
    return params


# --- tinynet's Keras Multi-ResNet -> the transliteration ---------------------------------------

def to_torch_layout(value, kind):
    """A Keras weight's value (numpy) in PyTorch's layout: ``"conv"`` (kh, kw, I, O) ->
    (O, I, kh, kw); ``"dense"`` (in, out) -> (out, in); ``"vector"`` unchanged."""
    value = np.asarray(value)
    if kind == "conv":
        return np.transpose(value, (3, 2, 0, 1))
    if kind == "dense":
        return value.T
    if kind == "vector":
        return value
    raise ValueError(f"unknown weight kind {kind!r}; expected 'conv', 'dense' or 'vector'")


def _check_complete(pairs, torch_model, keras_model):
    """``ValueError`` unless ``pairs`` maps every state_dict entry of ``torch_model`` (BN's
    ``num_batches_tracked`` aside: a counter that no computation with a set momentum reads) and
    every weight of ``keras_model`` exactly once, with equal shapes in PyTorch's layout."""
    state = torch_model.state_dict()
    wanted = {key for key in state if not key.endswith("num_batches_tracked")}
    keys = [key for _, key, _ in pairs]
    unknown = sorted(set(keys) - set(state))
    twice = sorted({key for key in keys if keys.count(key) > 1})
    missing = sorted(wanted - set(keys))
    used = [id(variable) for variable, _, _ in pairs]
    unused = [w.path for w in keras_model.weights if id(w) not in set(used)]
    problems = []
    if unknown:
        problems.append(f"keys not in the PyTorch module: {unknown}")
    if twice:
        problems.append(f"keys mapped twice: {twice}")
    if missing:
        problems.append(f"PyTorch entries left uncopied: {missing}")
    if unused:
        problems.append(f"Keras weights without a PyTorch counterpart: {unused}")
    if len(set(used)) != len(used):
        problems.append("a Keras weight is mapped twice")
    for variable, key, kind in pairs:
        if key in state:
            shape = to_torch_layout(np.zeros(variable.shape), kind).shape
            if tuple(shape) != tuple(state[key].shape):
                problems.append(f"{variable.path} {tuple(variable.shape)} -> {key}: "
                                f"{tuple(shape)} in PyTorch's layout, the module has "
                                f"{tuple(state[key].shape)}")
    if problems:
        raise ValueError("the Keras model and the transliteration do not match:\n  "
                         + "\n  ".join(problems))


def _block_parts(block, lua_file):
    """(shared pre-activation BN or None, [branch Sequentials], shortcut module) of one block
    of the transliteration, as the Lua builds it (see ``mpreresnet`` / ``multi_resnet``)."""
    children = list(block)
    preact = children[0] if isinstance(children[0], nn.BatchNorm2d) else None
    tables = [child for child in children if isinstance(child, ConcatTable)]
    if len(tables) != 1 or not isinstance(children[-1], CAddTable):
        raise ValueError(f"not a block of {lua_file}: {block}")
    table = list(tables[0])
    if lua_file == MPRERESNET_LUA:  # ConcatTable(ls[1..k], shortcut)
        return preact, table[:-1], table[-1]
    sum_convs, shortcut = table  # ConcatTable(Sequential(ConcatTable(ls[1..k]), CAdd), shortcut)
    return preact, list(sum_convs[0]), shortcut


def keras_torch_pairs(torch_model, keras_model):
    """``[(keras_variable, state_dict_key, kind), ...]`` for tinynet's ``build_multi_resnet``
    model and the transliteration of the same configuration (``mpreresnet`` for
    ``block="basic"``, ``multi_resnet`` for ``block="bottleneck"``), by the layer names of
    tinynet/models/multi_resnet.py's docstring: ``stem_conv``; per block ``stage{s}_block{b}``
    (a MultiResidual), its ``_preact_bn``, the branches ``_branch{i}`` with ``_bn{j}`` /
    ``_conv{j}`` (bn{j} before conv{j}), ``_shortcut_conv`` (type B) or a ZeroPadShortcut (type
    A); ``final_bn``; ``predictions``. ``kind`` is the argument of ``to_torch_layout``.
    ``ValueError`` on any structural difference or anything left unmapped."""
    lua_file = getattr(torch_model, "lua_file", None)
    if lua_file not in (MPRERESNET_LUA, MULTI_RESNET_LUA):
        raise ValueError("torch_model must come from mpreresnet() or multi_resnet()")
    if not isinstance(torch_model[-1], nn.Linear) or len(torch_model) != 9:
        raise ValueError("only the CIFAR networks have a tinynet counterpart")
    names = {id(module): name for name, module in torch_model.named_modules()}
    pairs = []

    def conv(keras_layer, module):
        if tuple(keras_layer.strides) != tuple(module.stride):
            raise ValueError(f"{keras_layer.name}: strides {tuple(keras_layer.strides)}, the "
                             f"Lua's convolution {names[id(module)]} has {module.stride}")
        pairs.append((keras_layer.kernel, f"{names[id(module)]}.weight", "conv"))

    def bn(keras_layer, module):
        for variable, field in zip((keras_layer.gamma, keras_layer.beta,
                                    keras_layer.moving_mean, keras_layer.moving_variance),
                                   ("weight", "bias", "running_mean", "running_var")):
            pairs.append((variable, f"{names[id(module)]}.{field}", "vector"))

    conv(keras_model.get_layer("stem_conv"), torch_model[0])
    for s in (1, 2, 3):
        for b, block in enumerate(torch_model[s], start=1):
            name = f"stage{s}_block{b}"
            preact, branches, shortcut = _block_parts(block, lua_file)
            keras_block = keras_model.get_layer(name)
            if preact is not None:
                bn(keras_model.get_layer(f"{name}_preact_bn"), preact)
            if len(branches) != len(keras_block.branches):
                raise ValueError(f"{name}: {len(keras_block.branches)} branches in Keras, "
                                 f"{len(branches)} in the Lua")
            for i, (branch, keras_branch) in enumerate(zip(branches, keras_block.branches), 1):
                prefix = f"{name}_branch{i}"
                if keras_branch.name != prefix:
                    raise ValueError(f"{name}: branch {i} is {keras_branch.name!r} in Keras")
                convs = 0
                for module in branch:
                    if isinstance(module, nn.BatchNorm2d):  # bn{j} precedes conv{j}
                        bn(keras_branch.get_layer(f"{prefix}_bn{convs + 1}"), module)
                    elif isinstance(module, nn.Conv2d):
                        convs += 1
                        conv(keras_branch.get_layer(f"{prefix}_conv{convs}"), module)
            keras_shortcut = keras_block.shortcut
            if isinstance(shortcut, nn.Identity):
                if keras_shortcut is not None:
                    raise ValueError(f"{name}: identity shortcut in the Lua, "
                                     f"{keras_shortcut.name!r} in Keras")
            elif isinstance(shortcut[0], nn.Conv2d):  # type B / projection
                if keras_shortcut is None or keras_shortcut.name != f"{name}_shortcut_conv":
                    raise ValueError(f"{name}: 1x1 convolution shortcut in the Lua, "
                                     f"{keras_shortcut!r} in Keras")
                conv(keras_shortcut, shortcut[0])
            else:  # type A: SpatialAveragePooling(1, 1, s, s) + Concat(Identity, MulConstant(0))
                stride = shortcut[0].stride[0]
                if type(keras_shortcut).__name__ != "ZeroPadShortcut" or \
                        keras_shortcut.stride != stride:
                    raise ValueError(f"{name}: type A shortcut (stride {stride}) in the Lua, "
                                     f"{keras_shortcut!r} in Keras")
    bn(keras_model.get_layer("final_bn"), torch_model[4])
    dense = keras_model.get_layer("predictions")
    linear = names[id(torch_model[8])]
    pairs += [(dense.kernel, f"{linear}.weight", "dense"), (dense.bias, f"{linear}.bias", "vector")]
    _check_complete(pairs, torch_model, keras_model)
    return pairs


def copy_from_keras(torch_model, keras_model):
    """Copies a tinynet Multi-ResNet (``build_multi_resnet``, CIFAR, channels last) Keras
    model's weights, BN moving statistics included, into the transliteration ``torch_model``
    of the same configuration, in place; returns ``torch_model``. ``ValueError`` if a block,
    branch or shortcut differs or any state_dict entry or Keras weight is left uncopied
    (``keras_torch_pairs``)."""
    pairs = keras_torch_pairs(torch_model, keras_model)
    state = torch_model.state_dict()
    with torch.no_grad():
        for variable, key, kind in pairs:
            value = np.ascontiguousarray(to_torch_layout(np.asarray(variable.numpy()), kind))
            state[key].copy_(torch.from_numpy(value))
    return torch_model


# --- self-check ---------------------------------------------------------------------------------

def _parameter_count(model):
    """Torch7's ``model:getParameters():size()[1]``: every weight and bias (BN's included)."""
    return sum(p.numel() for p in model.parameters())


def _self_check():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dtype = torch.float64

    # torch7_sgd with dampening 0 and Nesterov = torch.optim.SGD(nesterov=True), across an lr
    # change (train.lua 34 resets learningRate every epoch; the Lua's buffer holds no lr).
    shapes = [(3, 4), (5,), (2, 3, 3, 3)]
    start = [torch.randn(s, dtype=dtype) for s in shapes]
    steps = [[torch.randn(s, dtype=dtype) for s in shapes] for _ in range(6)]
    rates = [0.1, 0.1, 0.1, 0.01, 0.01, 0.001]

    def run_torch7(config):
        params, state = [p.clone() for p in start], {}
        for lr, grads in zip(rates, steps):
            config["learningRate"] = lr
            torch7_sgd(params, [g.clone() for g in grads], config, state)
        return params

    def run_pytorch(**kwargs):
        params = [p.clone().requires_grad_() for p in start]
        optimizer = torch.optim.SGD(params, lr=rates[0], foreach=False, **kwargs)
        for lr, grads in zip(rates, steps):
            for group in optimizer.param_groups:
                group["lr"] = lr
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
        return [p.detach() for p in params]

    def max_difference(a, b):
        return max(float((x - y).abs().max()) for x, y in zip(a, b))

    lua = run_torch7({"momentum": 0.9, "dampening": 0.0, "nesterov": True, "weightDecay": 1e-4})
    ref = run_pytorch(momentum=0.9, dampening=0.0, nesterov=True, weight_decay=1e-4)
    difference = max_difference(lua, ref)
    assert difference <= 1e-15, difference
    print(f"torch7_sgd (Nesterov, dampening 0, wd 1e-4) vs torch.optim.SGD: max |diff| "
          f"{difference:.1e} over {len(rates)} steps with lr changes")

    # dampening defaults to the momentum (sgd.lua 35); the first step copies the gradient into
    # the buffer without dampening (line 60), as torch.optim.SGD does
    lua = run_torch7({"momentum": 0.9})
    ref = run_pytorch(momentum=0.9, dampening=0.9)
    assert max_difference(lua, ref) <= 1e-15
    assert max_difference(lua, run_pytorch(momentum=0.9)) > 1e-3  # PyTorch's default: 0
    print("torch7_sgd without dampening given = torch.optim.SGD(dampening=momentum)")

    # learningRateDecay: clr = lr / (1 + evalCounter * lrd) (line 72)
    params, state = [p.clone() for p in start], {}
    expected = [p.clone() for p in start]
    for n, grads in enumerate(steps):
        torch7_sgd(params, [g.clone() for g in grads], {"learningRate": 0.1,
                                                          "learningRateDecay": 0.5}, state)
        expected = [p - 0.1 / (1 + n * 0.5) * g for p, g in zip(expected, grads)]
    assert max_difference(params, expected) <= 1e-15 and state["evalCounter"] == len(steps)
    print("torch7_sgd learningRateDecay: lr / (1 + n * lrd)")

    # parameter counts = tinynet's table (tinynet/models/multi_resnet.py), which Torch prints
    for build, expected_count in ((lambda: mpreresnet(8, 4), 297_146),
                                  (lambda: mpreresnet(110, 1), 1_727_962),
                                  (lambda: multi_resnet(200, 5), 10_187_354),
                                  (lambda: multi_resnet(200, 5, "cifar100"), 10_210_484)):
        count = _parameter_count(build())
        assert count == expected_count, (count, expected_count)
    print("parameter counts: mpreresnet 8/k4, 110/k1 and multi-resnet 200/k5 (CIFAR-10, -100) "
          "equal tinynet's table")

    # the type A shortcut: x[:, :, ::2, ::2] and as many zero channels
    model = mpreresnet(8, 1, width=0.25)
    shortcut = list(model[2][0][-2])[-1]
    x = torch.randn(2, 4, 16, 16, dtype=dtype)
    expected = torch.cat([x[:, :, ::2, ::2], torch.zeros_like(x[:, :, ::2, ::2])], dim=1)
    assert torch.equal(shortcut.to(dtype)(x), expected)
    print("type A shortcut: x[:, :, ::2, ::2] with zero channels appended")

    # the ImageNet branch of mpreresnet.lua builds and runs (no tinynet counterpart)
    model = mpreresnet(18, 2, dataset="imagenet").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    print("mpreresnet ImageNet 18, k=2: output 1x1000")


if __name__ == "__main__":
    _self_check()
