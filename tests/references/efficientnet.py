"""EfficientNet-B0 after torchvision/models/efficientnet.py: `features` = [Conv2dNormActivation stem (3x3
stride 2, BN, SiLU), seven stages of MBConv blocks, Conv2dNormActivation 1x1 to 4 x 320], avgpool,
`classifier` = [Dropout(0.2), Linear]. An MBConv's `block` = [expand 1x1 (when the ratio is not 1),
depthwise kxk, SqueezeExcitation (fc1, fc2: 1x1 convs; SiLU, sigmoid; squeeze = max(1, in // 4)),
project 1x1 (BN, no activation)], stochastic depth (row) and the input added where stride is 1 and the
channels stay. State_dict keys features.2.0.block.1.0.weight, features.2.0.block.2.fc1.bias, ..."""
from __future__ import annotations

import math

import torch
from torch import nn

from references.convnext import stochastic_depth
from references.mobilenetv2 import make_divisible

# expand ratio, kernel, stride, input channels, output channels, layers: torchvision's bneck_conf for B0
B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
      (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


def conv_norm_act(cin, cout, kernel, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.SiLU(inplace=True)) if act else nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels, squeeze):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        scale = nn.functional.adaptive_avg_pool2d(x, 1)
        scale = torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(scale))))
        return scale * x


class MBConv(nn.Module):
    def __init__(self, expand, kernel, stride, cin, cout, sd_prob):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        hidden = cin * expand
        layers = [conv_norm_act(cin, hidden, 1)] if hidden != cin else []
        layers += [conv_norm_act(hidden, hidden, kernel, stride, groups=hidden),
                   SqueezeExcitation(hidden, max(1, cin // 4)), conv_norm_act(hidden, cout, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.sd_prob = sd_prob

    def forward(self, x):
        out = self.block(x)
        if self.use_res_connect:
            out = stochastic_depth(out, self.sd_prob, self.training) + x
        return out


class EfficientNet(nn.Module):
    def __init__(self, setting=B0, dropout=0.2, stochastic_depth_prob=0.2, num_classes=1000, width_mult=1.0,
                 depth_mult=1.0):
        super().__init__()
        setting = [(e, k, s, make_divisible(cin * width_mult), make_divisible(cout * width_mult),
                    int(math.ceil(n * depth_mult))) for e, k, s, cin, cout, n in setting]
        layers = [conv_norm_act(3, setting[0][3], 3, 2)]
        total = sum(s[5] for s in setting)
        block_id = 0
        for expand, kernel, stride, cin, cout, n in setting:
            stage = []
            for j in range(n):
                stage.append(MBConv(expand, kernel, stride if j == 0 else 1, cin if j == 0 else cout, cout,
                                    stochastic_depth_prob * block_id / total))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last = 4 * setting[-1][4]
        layers.append(conv_norm_act(setting[-1][4], last, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(last, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def efficientnet_b0(**kwargs):
    return EfficientNet(**kwargs)
