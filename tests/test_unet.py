"""specs/unet.yaml against a hand-written torch U-Net (the usual PyTorch port: DoubleConv, Down, Up with
a stride-2 transposed convolution, OutConv), and its `dims:` declarations at work: the skips only
check because H and W are declared multiples of 16."""
import pytest
import torch
from torch import nn

import builder
from builder.core.types import record

SPEC = "specs/unet.yaml"


class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x1, x2):
        return self.conv(torch.cat([x2, self.up(x1)], dim=1))


class UNet(nn.Module):
    def __init__(self, channels=1, classes=2, w=64):
        super().__init__()
        self.inc = DoubleConv(channels, w)
        self.down1, self.down2 = Down(w, 2 * w), Down(2 * w, 4 * w)
        self.down3, self.down4 = Down(4 * w, 8 * w), Down(8 * w, 16 * w)
        self.up1, self.up2 = Up(16 * w, 8 * w), Up(8 * w, 4 * w)
        self.up3, self.up4 = Up(4 * w, 2 * w), Up(2 * w, w)
        self.outc = nn.Conv2d(w, classes, kernel_size=1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        return self.outc(self.up4(x, x1))


def weight_map():
    """Reference names -> spec paths: Sequential indices become the spec's conv1/bn1/conv2/bn2."""
    layers = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2"}
    pairs = [("outc", "outc")]
    for i, name in layers.items():
        pairs.append((f"inc.double_conv.{i}", f"inc.{name}"))
        for k in range(1, 5):
            pairs.append((f"down{k}.maxpool_conv.1.double_conv.{i}", f"down{k}.conv.{name}"))
            pairs.append((f"up{k}.conv.double_conv.{i}", f"up{k}.conv.{name}"))
    pairs += [(f"up{k}.up", f"up{k}.up") for k in range(1, 5)]
    return {"rules": [{"from": f"{a}.{{p}}", "to": f"{b}.{{p}}"} for a, b in pairs]}


def randomize(module, seed=0):
    """Every parameter and batch-norm statistic at random (running variances positive)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if t.is_floating_point():
                r = torch.rand(t.shape, generator=g)
                t.copy_(r + 0.5 if name.endswith("running_var") else r * 0.6 - 0.3)
    return module


def test_unet_parameters_match_the_reference_at_full_width():
    spec = builder.load(SPEC)
    assert spec.total_params == sum(p.numel() for p in UNet().parameters()) == 31_036_546


@pytest.mark.parametrize("shape", [(2, 1, 32, 48), (1, 1, 64, 16), (3, 1, 16, 16)])
def test_unet_matches_the_reference(shape):
    ref = randomize(UNet(w=4)).eval()
    ours = builder.load_weights(builder.build(SPEC, width=4), ref.state_dict(), weight_map()).eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert got.shape == (shape[0], 2, shape[2], shape[3])
    assert (want - got).abs().max().item() <= 1e-5


def test_unet_skips_need_the_multiple_of_16_declaration():
    text = open(SPEC).read().replace("W: {min: 16, multiple_of: 16, example: 256}", "W: {min: 16, example: 256}")
    with pytest.raises(builder.SpecError) as e:
        builder.load(text, width=4)
    msg = str(e.value)
    assert "up1.cat" in msg and "W//8 and 2*(W//16) are not equal for every size" in msg
    assert "declare `W: {multiple_of: 16}` under `dims:`" in msg


def test_unet_summary_shapes_are_short_and_exact():
    g = builder.load(SPEC, width=4).network().graph
    assert record(g, "down4.pool").out_shape == ("B", 32, "H//16", "W//16")
    assert record(g, "up1.cat").out_shape == ("B", 64, "H//8", "W//8")
    assert record(g, "outc").out_shape == ("B", 2, "H", "W")
