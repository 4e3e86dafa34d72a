"""ConvNeXt after torchvision/models/convnext.py: `features` = [stem (Conv2d 4x4 stride 4, LayerNorm2d),
stage of CNBlocks, downsample (LayerNorm2d, Conv2d 2x2 stride 2), ...], `classifier` = [LayerNorm2d,
Flatten, Linear]; a CNBlock's `block` = [7x7 depthwise conv, Permute, LayerNorm, Linear 4x, GELU, Linear,
Permute] times `layer_scale` ([C, 1, 1]), stochastic depth (row), plus the input. State_dict keys
features.1.0.block.0.weight, features.1.0.layer_scale, features.2.0.weight, classifier.0.bias, ..."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (input channels, output channels or None, blocks): convnext_tiny
TINY = [(96, 192, 3), (192, 384, 3), (384, 768, 9), (768, None, 3)]


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(self.dims)


def stochastic_depth(x, p, training):
    if not training or p == 0.0:
        return x
    noise = torch.empty([x.shape[0]] + [1] * (x.dim() - 1), dtype=x.dtype).bernoulli_(1 - p)
    return x * noise / (1 - p)


class CNBlock(nn.Module):
    def __init__(self, dim, layer_scale, sd_prob):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True), Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]))
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.sd_prob = sd_prob

    def forward(self, x):
        return stochastic_depth(self.layer_scale * self.block(x), self.sd_prob, self.training) + x


class ConvNeXt(nn.Module):
    def __init__(self, setting=TINY, stochastic_depth_prob=0.1, layer_scale=1e-6, num_classes=1000):
        super().__init__()
        first = setting[0][0]
        layers = [nn.Sequential(nn.Conv2d(3, first, kernel_size=4, stride=4, padding=0, bias=True),
                                LayerNorm2d(first, eps=1e-6))]
        total = sum(n for _, _, n in setting)
        block_id = 0
        for cin, cout, n in setting:
            stage = []
            for _ in range(n):
                stage.append(CNBlock(cin, layer_scale, stochastic_depth_prob * block_id / (total - 1.0)))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if cout is not None:
                layers.append(nn.Sequential(LayerNorm2d(cin, eps=1e-6), nn.Conv2d(cin, cout, kernel_size=2, stride=2)))
        self.features = nn.Sequential(*layers)
        last = setting[-1][1] or setting[-1][0]
        self.classifier = nn.Sequential(LayerNorm2d(last, eps=1e-6), nn.Flatten(1), nn.Linear(last, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(x)


def convnext_tiny(**kwargs):
    return ConvNeXt(**kwargs)
