"""Swin-T after torchvision/models/swin_transformer.py (V1): `features` = [patch embedding (Conv2d
patch x patch, Permute to [B, H, W, C], LayerNorm), stage of SwinTransformerBlocks, PatchMerging, ...],
then `norm`, average pooling over H, W and `head`. A block: x + drop(attn(norm1(x))), then
+ drop(mlp(norm2(x))), where `attn` (ShiftedWindowAttention: qkv, proj, relative_position_bias_table and the
relative_position_index buffer) attends within windows, cyclically shifted by half a window in every
second block (no shift where the window covers the map), with the mask torchvision builds per call.
State_dict keys features.1.0.attn.qkv.weight, features.1.1.attn.relative_position_bias_table,
features.2.reduction.weight, norm.bias, head.weight, ..."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from references.convnext import Permute, stochastic_depth


class PatchMerging(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x):
        h, w = x.shape[-3], x.shape[-2]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x))


def attention_mask(pad_h, pad_w, window, shift):
    mask = torch.zeros(pad_h, pad_w)
    count = 0
    for hs in ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None)):
        for ws in ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None)):
            mask[hs[0]:hs[1], ws[0]:ws[1]] = count
            count += 1
    mask = mask.view(pad_h // window[0], window[0], pad_w // window[1], window[1]).permute(0, 2, 1, 3)
    mask = mask.reshape(-1, window[0] * window[1])
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class ShiftedWindowAttention(nn.Module):
    def __init__(self, dim, window, shift, heads, attention_dropout=0.0, dropout=0.0):
        super().__init__()
        self.window, self.shift, self.heads = list(window), list(shift), heads
        self.attention_dropout, self.dropout = attention_dropout, dropout
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        wh, ww = self.window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), heads))
        coords = torch.flatten(torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")), 1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        rel[:, :, 0] += wh - 1
        rel[:, :, 1] += ww - 1
        rel[:, :, 0] *= 2 * ww - 1
        self.register_buffer("relative_position_index", rel.sum(-1).flatten())
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x):
        wh, ww = self.window
        n = wh * ww
        bias = self.relative_position_bias_table[self.relative_position_index].view(n, n, -1)
        bias = bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        b, h, w, c = x.shape
        x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
        _, ph, pw, _ = x.shape
        shift = [0 if wh >= ph else self.shift[0], 0 if ww >= pw else self.shift[1]]
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        nw = (ph // wh) * (pw // ww)
        x = x.view(b, ph // wh, wh, pw // ww, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b * nw, n, c)
        qkv = self.qkv(x).reshape(x.size(0), n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * (c // self.heads) ** -0.5
        attn = q.matmul(k.transpose(-2, -1)) + bias
        if sum(shift) > 0:
            attn = attn.view(b, nw, self.heads, n, n) + attention_mask(ph, pw, self.window, shift).unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, n, n)
        attn = F.dropout(F.softmax(attn, dim=-1), p=self.attention_dropout)
        x = attn.matmul(v).transpose(1, 2).reshape(b * nw, n, c)
        x = F.dropout(self.proj(x), p=self.dropout)
        x = x.view(b, ph // wh, pw // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b, ph, pw, c)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
        return x[:, :h, :w, :].contiguous()


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim, heads, window, shift, sd_prob, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = ShiftedWindowAttention(dim, window, shift, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim),
                                 nn.Dropout(0.0))
        self.sd_prob = sd_prob

    def forward(self, x):
        x = x + stochastic_depth(self.attn(self.norm1(x)), self.sd_prob, self.training)
        return x + stochastic_depth(self.mlp(self.norm2(x)), self.sd_prob, self.training)


class SwinTransformer(nn.Module):
    def __init__(self, patch_size=4, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window=7,
                 stochastic_depth_prob=0.2, num_classes=1000):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size),
                                Permute([0, 2, 3, 1]), nn.LayerNorm(embed_dim))]
        total, block_id = sum(depths), 0
        for s, (depth, heads) in enumerate(zip(depths, num_heads)):
            dim = embed_dim * 2 ** s
            stage = []
            for j in range(depth):
                shift = [0, 0] if j % 2 == 0 else [window // 2, window // 2]
                stage.append(SwinTransformerBlock(dim, heads, [window, window], shift,
                                                  stochastic_depth_prob * block_id / (total - 1)))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if s < len(depths) - 1:
                layers.append(PatchMerging(dim))
        self.features = nn.Sequential(*layers)
        last = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(last)
        self.head = nn.Linear(last, num_classes)

    def forward(self, x):
        x = self.norm(self.features(x)).permute(0, 3, 1, 2)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def swin_t(**kwargs):
    return SwinTransformer(**kwargs)
