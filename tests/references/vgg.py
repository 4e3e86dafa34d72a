"""VGG after torchvision/models/vgg.py: `features` (convolutions and pools as one Sequential), `avgpool`,
`classifier`; state_dict keys features.0.weight ... classifier.6.bias."""
from __future__ import annotations

from torch import nn

CFG_A = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]   # VGG-11


def make_features(cfg, in_channels=3, width=64):
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out = v * width // 64
            layers += [nn.Conv2d(in_channels, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features, num_classes=1000, dropout=0.5, width=64, hidden=4096):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(8 * width * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def vgg11(num_classes=1000, width=64, hidden=4096):
    """torchvision's vgg11 (configuration A, no batch norm); `width` and `hidden` scale it down for tests."""
    return VGG(make_features(CFG_A, width=width), num_classes=num_classes, width=width, hidden=hidden)
