"""MobileNetV2 after torchvision/models/mobilenetv2.py: `features` = [Conv2dNormActivation stem,
17 InvertedResidual blocks (`.conv` Sequential), Conv2dNormActivation 1x1 to 1280], `classifier` =
[Dropout(0.2), Linear]; state_dict keys features.0.0.weight, features.2.conv.1.1.running_mean, ..."""
from __future__ import annotations

from torch import nn

# t (expansion), c (channels), n (repeats), s (first stride): the paper's table 2
SETTINGS = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
            [6, 320, 1, 1]]


def make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class Conv2dNormActivation(nn.Sequential):
    """torchvision.ops.misc.Conv2dNormActivation with BatchNorm2d and ReLU6: children 0, 1, 2."""

    def __init__(self, inp, out, kernel_size=3, stride=1, groups=1):
        super().__init__(nn.Conv2d(inp, out, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden, kernel_size=1))
        layers += [Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=1000, width_mult=1.0, dropout=0.2):
        super().__init__()
        input_channel = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        features = [Conv2dNormActivation(3, input_channel, stride=2)]
        for t, c, n, s in SETTINGS:
            out = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(input_channel, out, s if i == 0 else 1, t))
                input_channel = out
        features.append(Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(x.flatten(1))
