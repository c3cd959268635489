"""The model definitions of seed 004 (Singh, Kumar & Biyani, NYU Mini-Project 1, "Residual
Network Design"), copied from the original repository so that tinynet's ``cifar_resnet`` can be
checked against the code that produced the paper's numbers.

Source: https://github.com/95anantsingh/NYU-ResNet-On-Steroids, file ``models.py`` at commit
a45055c1dd5f1b7777f73cafeab4d0d1972a3486 (the repository's HEAD, 2022-03-25; ``models.py`` last
changed in 4eebe9ddcc06e7649ab9f75ba2a300f603525ad9). The repository is MIT-licensed (its
LICENSE file, reproduced below as the license requires), so the model code is copied verbatim:
``BasicBlock``, ``ResNet`` and the named configurations ``project1_model`` ... ``ResNet8``, with
their comments, between the two ``# ----`` marker lines below.

What differs from the file, and nothing else:

* dropped: lines 48-56 of ``models.py``, the ``print`` of the model configuration in
  ``ResNet.__init__`` (output only; a comment marks the place);
* formatting: lines 9, 11 and 61 (longer than 100 characters) are wrapped inside their
  parentheses, the string of line 61 split into two adjacent literals (the same string), and
  trailing whitespace removed. Apart from the dropped ``print``, the copy's syntax tree
  (``ast.dump``) equals the file's.

Added after the copy (tinynet's, not the original's): ``build_original`` (any configuration of
the design space through the original ``ResNet``), ``keras_torch_pairs``, ``to_torch_layout``
and ``copy_from_keras`` (a tinynet ``cifar_resnet`` Keras model's weights into the original
module, by the name mapping of ``tinynet/models/cifar_resnet.py``'s module docstring).

The original's license:

    MIT License

    Copyright (c) 2022 Anant

    Permission is hereby granted, free of charge, to any person obtaining a copy
    of this software and associated documentation files (the "Software"), to deal
    in the Software without restriction, including without limitation the rights
    to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
    copies of the Software, and to permit persons to whom the Software is
    furnished to do so, subject to the following conditions:

    The above copyright notice and this permission notice shall be included in all
    copies or substantial portions of the Software.

    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
    IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
    FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
    AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
    LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
    OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
    SOFTWARE.
"""
import numpy as np
import torch

REPOSITORY = "https://github.com/95anantsingh/NYU-ResNet-On-Steroids"
COMMIT = "a45055c1dd5f1b7777f73cafeab4d0d1972a3486"

# ---- models.py of NYU-ResNet-On-Steroids@a45055c, MIT License, Copyright (c) 2022 Anant ----
import torch.nn as nn
import torch.nn.functional as F

class BasicBlock(nn.Module):

    def __init__(self, in_planes, planes, kernel_size, skip_kernel, stride=1):
        super(BasicBlock, self).__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=kernel_size, stride=stride,
                               padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=kernel_size, stride=1,
                               padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=skip_kernel, stride=stride, bias=False),
                nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class ResNet(nn.Module):

    def __init__(self,N:int, B:list, C:list, F:list, K:list, P:int, num_classes=10):
        super(ResNet, self).__init__()
        self.in_planes = C[0]
        self.block = BasicBlock
        self.N = N                # No. of Residual Layers
        self.B = B                # No. of Residual Blocks in Residual Layer i
        self.C = C                # No. of channels in Residual Layer i
        self.F = F                # Conv. kernel size in Residual Layer i
        self.K = K                # Skip connection kernel size in Residual Layer i
        self.P = P                # Average pool kernel size
        self.layers = []          # layers container
        self.S = [2] * N          # strides for layers
        self.S[0] = 1

        # Output Liner layer input dimension
        self.outLayerInSize = C[N-1]*(32//(P*2**(N-1)))*(32//(P*2**(N-1)))

        # [dropped here: lines 48-56 of models.py, the print of the model configuration]

        self.conv1 = nn.Conv2d(3, C[0], kernel_size=F[0], stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(C[0])
        for i in range(N):
            exec("self.layer{} = self._make_layer(self.block, self.C[{}], self.B[{}], "
                 "self.F[{}], self.K[{}], self.S[{}])"\
                .format(i+1,i,i,i,i,i))
            exec("self.layers.append(self.layer{})".format(i+1))
        self.linear = nn.Linear(self.outLayerInSize, num_classes)


    def _make_layer(self, block, planes, num_blocks, kernel_size, skip_kernel, stride):
        strides = [stride] + [1]*(num_blocks-1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_planes, planes, kernel_size, skip_kernel, stride))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        for layer in self.layers:
            out = layer(out)
        out = F.avg_pool2d(out, self.P)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


# N: : # Residual Layers
# Bi : # Residual blocks in Residual Layer i
# Ci : # channels in Residual Layer i
# Fi : Conv. kernel size in Residual Layer i
# Ki : Skip connection kernel size in Residual Layer i
# P  : Average pool kernel size


def project1_model():

    B=[3,3,2,3]
    C=[64,128,128,256]
    F=[3,3,3,3]
    K=[1,1,1,1]
    P=4
    N=len(B)

    return ResNet(N, B, C, F, K, P)

def ResNet10_1():

    N=4
    B=[1,1,1,1]
    C=[64,128,256,512]
    F=[3,3,3,3]
    K=[1,1,1,1]
    P=4

    return ResNet(N, B, C, F, K, P)

def ResNet10_2():

    N=3
    B=[1,1,1]
    C=[32,64,128]
    F=[3,3,3]
    K=[1,1,1]
    P=4

    return ResNet(N, B, C, F, K, P)

def ResNet24_2():

    N=3
    B=[3,3,3]
    C=[64,128,256]
    F=[3,3,3]
    K=[1,1,1]
    P=4

    return ResNet(N, B, C, F, K, P)


def ResNet34_1():

    N=4
    B=[3,4,6,3]
    C=[64,128,256,512]
    F=[3,3,3,3]
    K=[1,1,1,1]
    P=4

    return ResNet(N, B, C, F, K, P)


def ResNet16_1():

    B=[2,1,2,2]
    C=[64,128,256,256]
    F=[3,3,3,3]
    K=[1,1,1,1]
    P=4
    N=len(B)

    return ResNet(N, B, C, F, K, P)


def ResNet24_1():

    B=[3,3,2,3]
    C=[64,128,128,256]
    F=[3,3,3,3]
    K=[1,1,1,1]
    P=4
    N=len(B)

    return ResNet(N, B, C, F, K, P)


def ResNet48_1():

    B=[8,5,5,5]
    C=[64,128,128,128]
    F=[3,3,3,3]
    K=[1,1,1,1]
    P=4
    N=len(B)

    return ResNet(N, B, C, F, K, P)


def ResNet_test():

    B=[1,1,1,1]
    C=[64,128,256,512]
    F=[3,3,3,3]
    K=[1,1,1,1]
    P=4
    N=len(B)

    return ResNet(N, B, C, F, K, P)


def ResNetXYZ():

    B=[1,1,1]
    C=[64,128,128]
    F= [3,3,3]
    K= [1,1,1]
    P=4
    N=len(B)

    return ResNet(N, B, C, F, K, P)


def ResNet86():

    B= [10,8,10,14]
    C= [16,32,64,128]
    F= [3,3,3,3]
    K= [1,1,1,1]
    P= 4
    N= len(B)

    return ResNet(N, B, C, F, K, P)


def ResNet12():

    B= [2,1,1,1]
    C= [64,128,256,512]
    F= [3,3,3,3]
    K= [1,1,1,1]
    P= 4
    N= len(B)

    return ResNet(N, B, C, F, K, P)


def ResNet32():

    B= [4,4,4,3]
    C= [32,64,128,256]
    F= [3,3,3,3]
    K= [1,1,1,1]
    P= 4
    N= len(B)

    return ResNet(N, B, C, F, K, P)


def ResNet8():

    B= [1,1,1]
    C= [128,256,512]
    F= [3,3,3]
    K= [1,1,1]
    P= 4
    N= len(B)

    return ResNet(N, B, C, F, K, P)


# ---- end of the copy of models.py; below: tinynet's additions ----


def build_original(blocks=(3, 3, 2, 3), channels=(64, 128, 128, 256), conv_kernels=None,
                   skip_kernels=None, pool=4, num_classes=10):
    """The original ``ResNet(N, B, C, F, K, P, num_classes)`` for any configuration, with
    tinynet's argument names and defaults (``build_cifar_resnet``): N = len(blocks), F = 3s and
    K = 1s unless given. The defaults are ``project1_model()``, the paper's ResNet-24."""
    n = len(blocks)
    conv_kernels = [3] * n if conv_kernels is None else list(conv_kernels)
    skip_kernels = [1] * n if skip_kernels is None else list(skip_kernels)
    return ResNet(n, list(blocks), list(channels), conv_kernels, skip_kernels, pool,
                  num_classes=num_classes)


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
        raise ValueError("the Keras model and the original module do not match:\n  "
                         + "\n  ".join(problems))


def keras_torch_pairs(torch_model, keras_model):
    """``[(keras_variable, state_dict_key, kind), ...]`` for a tinynet ``cifar_resnet`` model and
    the original ``ResNet`` of the same configuration, by the mapping of tinynet's
    ``cifar_resnet`` docstring: ``stem_conv``/``stem_bn`` -> ``conv1``/``bn1``;
    ``layer{i}_block{b}_conv1``, ``_bn1``, ``_conv2``, ``_bn2``, ``_shortcut_conv``,
    ``_shortcut_bn`` -> ``layer{i}.{b-1}.conv1``, ``.bn1``, ``.conv2``, ``.bn2``,
    ``.shortcut.0``, ``.shortcut.1``; ``predictions`` -> ``linear``; BN [gamma, beta,
    moving_mean, moving_variance] -> weight, bias, running_mean, running_var. ``kind`` is the
    argument of ``to_torch_layout``. ``ValueError`` if anything is left unmapped."""
    pairs = []

    def conv(keras_name, torch_name):
        pairs.append((keras_model.get_layer(keras_name).kernel, f"{torch_name}.weight", "conv"))

    def bn(keras_name, torch_name):
        layer = keras_model.get_layer(keras_name)
        for variable, field in zip(
                (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance),
                ("weight", "bias", "running_mean", "running_var")):
            pairs.append((variable, f"{torch_name}.{field}", "vector"))

    conv("stem_conv", "conv1")
    bn("stem_bn", "bn1")
    for i, count in enumerate(torch_model.B, start=1):
        layer = getattr(torch_model, f"layer{i}")
        for b in range(1, count + 1):
            name, path = f"layer{i}_block{b}", f"layer{i}.{b - 1}"
            conv(f"{name}_conv1", f"{path}.conv1")
            bn(f"{name}_bn1", f"{path}.bn1")
            conv(f"{name}_conv2", f"{path}.conv2")
            bn(f"{name}_bn2", f"{path}.bn2")
            if len(layer[b - 1].shortcut):
                conv(f"{name}_shortcut_conv", f"{path}.shortcut.0")
                bn(f"{name}_shortcut_bn", f"{path}.shortcut.1")
    dense = keras_model.get_layer("predictions")
    pairs += [(dense.kernel, "linear.weight", "dense"), (dense.bias, "linear.bias", "vector")]
    _check_complete(pairs, torch_model, keras_model)
    return pairs


def copy_from_keras(torch_model, keras_model):
    """Copies a tinynet ``cifar_resnet`` Keras model's weights (BN moving statistics included)
    into the original ``ResNet`` ``torch_model`` (same configuration; ``build_original``), in
    place; returns ``torch_model``. ``ValueError`` if any state_dict entry or Keras weight is
    left uncopied or a shape differs (``keras_torch_pairs``). A channels_first Keras model
    shares the channels_last one's weights (its docstring), so either works."""
    pairs = keras_torch_pairs(torch_model, keras_model)
    state = torch_model.state_dict()
    with torch.no_grad():
        for variable, key, kind in pairs:
            value = np.ascontiguousarray(to_torch_layout(keras_variable_value(variable), kind))
            state[key].copy_(torch.from_numpy(value))
    return torch_model


def keras_variable_value(variable):
    """A Keras variable's value as a numpy array."""
    return np.asarray(variable.numpy())
