"""Self-contained PyTorch reference of diffusers' UNet2DModel forward pass.

Written from the math of diffusers' `models/unets/unet_2d.py`, `unet_2d_blocks.py`, `resnet.py`,
`downsampling.py`, `upsampling.py`, `embeddings.py` and `attention_processor.py` (the
`_from_deprecated_attn_block` self-attention run by `AttnProcessor2_0`), without importing
diffusers. Module attribute names reproduce diffusers' state-dict keys exactly, so a state dict
saved from this module loads into `diffusers.UNet2DModel` and vice versa.

Supported config fields: everything diffmem's TypeScript port supports (see
packages/core/src/models/unet_2d_config.ts): positional / fourier / learned time embeddings,
DownBlock2D / AttnDownBlock2D / UpBlock2D / AttnUpBlock2D, UNetMidBlock2D (or none),
downsample/upsample type conv or resnet, default / scale_shift time conditioning,
class embeddings (table or "timestep"), act_fn silu/swish/mish/gelu/relu.

Usage:
    model = UNet2DReference(config_dict)
    out = model(sample_nchw, timesteps, class_labels)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULTS = dict(
    in_channels=3,
    out_channels=3,
    center_input_sample=False,
    time_embedding_type="positional",
    time_embedding_dim=None,
    freq_shift=0,
    flip_sin_to_cos=True,
    mid_block_type="UNetMidBlock2D",
    layers_per_block=2,
    mid_block_scale_factor=1,
    downsample_padding=1,
    downsample_type="conv",
    upsample_type="conv",
    dropout=0.0,
    act_fn="silu",
    attention_head_dim=8,
    norm_num_groups=32,
    attn_norm_num_groups=None,
    norm_eps=1e-5,
    resnet_time_scale_shift="default",
    add_attention=True,
    class_embed_type=None,
    num_class_embeds=None,
    num_train_timesteps=None,
)


def activation(name: str) -> nn.Module:
    return {"silu": nn.SiLU(), "swish": nn.SiLU(), "mish": nn.Mish(), "gelu": nn.GELU(), "relu": nn.ReLU()}[name]


def timestep_embedding(t: torch.Tensor, dim: int, flip_sin_to_cos: bool, shift: float, max_period: int = 10000) -> torch.Tensor:
    """DDPM sinusoid: f_k = exp(-ln(max_period) k / (half - shift)); [sin(t f), cos(t f)] (or flipped)."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32)
    exponent = exponent / (half - shift)
    freqs = torch.exp(exponent)
    args = t[:, None].float() * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


class Timesteps(nn.Module):
    def __init__(self, dim: int, flip_sin_to_cos: bool, shift: float):
        super().__init__()
        self.dim, self.flip, self.shift = dim, flip_sin_to_cos, shift

    def forward(self, t):
        return timestep_embedding(t, self.dim, self.flip, self.shift)


class GaussianFourierProjection(nn.Module):
    """Score-SDE Fourier features of log(sigma); parameter `weight` ~ N(0, scale^2), not trained."""

    def __init__(self, size: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(size) * scale, requires_grad=False)

    def forward(self, x):
        x = torch.log(x)
        proj = x[:, None] * self.weight[None, :] * 2 * math.pi
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


class Downsample2D(nn.Module):
    """Stride-2 3x3 conv; padding 0 pads right/bottom by one first. Without conv: 2x2 average pool."""

    def __init__(self, channels: int, use_conv: bool, padding: int = 1):
        super().__init__()
        self.use_conv, self.padding = use_conv, padding
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x):
        if not self.use_conv:
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1), mode="constant", value=0)
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps, act, time_norm, out_scale, up=False, down=False):
        super().__init__()
        self.time_norm, self.out_scale, self.up, self.down = time_norm, out_scale, up, down
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, 2 * cout if time_norm == "scale_shift" else cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps, affine=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nonlinearity = activation(act)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.nonlinearity(self.norm1(x))
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        elif self.down:
            x = F.avg_pool2d(x, 2, 2)
            h = F.avg_pool2d(h, 2, 2)
        h = self.conv1(h)
        e = self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        if self.time_norm == "default":
            h = self.norm2(h + e)
        else:
            scale, shift = torch.chunk(e, 2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.nonlinearity(h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.out_scale


class Attention(nn.Module):
    """Self-attention over H*W positions: GN -> q,k,v -> softmax(q k^T / sqrt(d)) v -> to_out.0 -> + residual."""

    def __init__(self, channels, head_dim, groups, eps, rescale):
        super().__init__()
        self.heads = channels // head_dim
        self.head_dim = head_dim
        inner = self.heads * head_dim
        self.rescale = rescale
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps, affine=True) if groups is not None else None
        self.to_q = nn.Linear(channels, inner)
        self.to_k = nn.Linear(channels, inner)
        self.to_v = nn.Linear(channels, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, channels), nn.Dropout(0.0)])

    def forward(self, x):
        residual = x
        b, c, h, w = x.shape
        if self.group_norm is not None:
            x = self.group_norm(x)
        s = x.view(b, c, h * w).transpose(1, 2)  # [B, HW, C]
        q, k, v = self.to_q(s), self.to_k(s), self.to_v(s)

        def split(t):
            return t.view(b, -1, self.heads, self.head_dim).transpose(1, 2)  # [B, heads, HW, d]

        q, k, v = split(q), split(k), split(v)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (self.head_dim**-0.5)
        probs = scores.float().softmax(dim=-1)
        o = torch.matmul(probs, v).transpose(1, 2).reshape(b, h * w, self.heads * self.head_dim)
        o = self.to_out[1](self.to_out[0](o))
        o = o.transpose(-1, -2).reshape(b, c, h, w)
        return (o + residual) / self.rescale


class DownBlock(nn.Module):
    def __init__(self, attn, n, cin, cout, temb, groups, eps, act, time_norm, head_dim, add_down, pad, down_type):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(cin if i == 0 else cout, cout, temb, groups, eps, act, time_norm, 1.0) for i in range(n)]
        )
        self.attentions = nn.ModuleList([Attention(cout, head_dim, groups, eps, 1.0) for _ in range(n)]) if attn else None
        self.downsamplers = None
        if add_down:
            if attn and down_type == "resnet":
                ds = ResnetBlock2D(cout, cout, temb, groups, eps, act, time_norm, 1.0, down=True)
            else:
                ds = Downsample2D(cout, True, pad)
            self.downsamplers = nn.ModuleList([ds])

    def forward(self, h, temb):
        skips = []
        for i, r in enumerate(self.resnets):
            h = r(h, temb)
            if self.attentions is not None:
                h = self.attentions[i](h)
            skips.append(h)
        if self.downsamplers is not None:
            ds = self.downsamplers[0]
            h = ds(h, temb) if isinstance(ds, ResnetBlock2D) else ds(h)
            skips.append(h)
        return h, skips


class UpBlock(nn.Module):
    def __init__(self, attn, n, cin, prev, cout, temb, groups, eps, act, time_norm, head_dim, add_up, up_type):
        super().__init__()
        rs = []
        for i in range(n):
            skip_c = cin if i == n - 1 else cout
            in_c = prev if i == 0 else cout
            rs.append(ResnetBlock2D(in_c + skip_c, cout, temb, groups, eps, act, time_norm, 1.0))
        self.resnets = nn.ModuleList(rs)
        self.attentions = nn.ModuleList([Attention(cout, head_dim, groups, eps, 1.0) for _ in range(n)]) if attn else None
        self.upsamplers = None
        if add_up:
            if attn and up_type == "resnet":
                us = ResnetBlock2D(cout, cout, temb, groups, eps, act, time_norm, 1.0, up=True)
            else:
                us = Upsample2D(cout)
            self.upsamplers = nn.ModuleList([us])

    def forward(self, h, skips, temb):
        for i, r in enumerate(self.resnets):
            h = torch.cat([h, skips.pop()], dim=1)
            h = r(h, temb)
            if self.attentions is not None:
                h = self.attentions[i](h)
        if self.upsamplers is not None:
            us = self.upsamplers[0]
            h = us(h, temb) if isinstance(us, ResnetBlock2D) else us(h)
        return h


class MidBlock(nn.Module):
    def __init__(self, c, temb, groups, attn_groups, eps, act, time_norm, head_dim, scale, add_attention):
        super().__init__()
        if attn_groups is None:
            attn_groups = groups if time_norm == "default" else None
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(c, c, temb, groups, eps, act, time_norm, scale), ResnetBlock2D(c, c, temb, groups, eps, act, time_norm, scale)]
        )
        self.attentions = nn.ModuleList([Attention(c, head_dim, attn_groups, eps, scale)]) if add_attention else None

    def forward(self, h, temb):
        h = self.resnets[0](h, temb)
        if self.attentions is not None:
            h = self.attentions[0](h)
        return self.resnets[1](h, temb)


def strip(name: str) -> str:
    return name[7:] if name.startswith("UNetRes") else name


class UNet2DReference(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        c = {**DEFAULTS, **{k: v for k, v in config.items() if not k.startswith("_")}}
        self.c = c
        boc = c["block_out_channels"]
        c0 = boc[0]
        temb = c["time_embedding_dim"] or 4 * c0
        g, eps, act, tn = c["norm_num_groups"], c["norm_eps"], c["act_fn"], c["resnet_time_scale_shift"]
        self.conv_in = nn.Conv2d(c["in_channels"], c0, 3, padding=1)
        tin = c0
        if c["time_embedding_type"] == "fourier":
            self.time_proj = GaussianFourierProjection(c0, 16)
            tin = 2 * c0
        elif c["time_embedding_type"] == "learned":
            self.time_proj = nn.Embedding(c["num_train_timesteps"], c0)
        else:
            self.time_proj = Timesteps(c0, c["flip_sin_to_cos"], c["freq_shift"])
        self.time_embedding = TimestepEmbedding(tin, temb)
        if c["class_embed_type"] == "timestep":
            self.class_embedding = TimestepEmbedding(tin, temb)
        elif c["num_class_embeds"] is not None:
            self.class_embedding = nn.Embedding(c["num_class_embeds"], temb)
        else:
            self.class_embedding = None
        hd = c["attention_head_dim"]
        downs = []
        out_c = c0
        for i, t in enumerate(c["down_block_types"]):
            in_c, out_c = out_c, boc[i]
            downs.append(
                DownBlock(strip(t) == "AttnDownBlock2D", c["layers_per_block"], in_c, out_c, temb, g, eps, act, tn,
                          hd if hd is not None else out_c, i != len(boc) - 1, c["downsample_padding"], c["downsample_type"])
            )
        self.down_blocks = nn.ModuleList(downs)
        self.mid_block = None
        if c["mid_block_type"] is not None:
            self.mid_block = MidBlock(boc[-1], temb, g, c["attn_norm_num_groups"], eps, act, tn,
                                      hd if hd is not None else boc[-1], c["mid_block_scale_factor"], c["add_attention"])
        rev = list(reversed(boc))
        ups = []
        out_c = rev[0]
        for i, t in enumerate(c["up_block_types"]):
            prev, out_c = out_c, rev[i]
            in_c = rev[min(i + 1, len(boc) - 1)]
            ups.append(
                UpBlock(strip(t) == "AttnUpBlock2D", c["layers_per_block"] + 1, in_c, prev, out_c, temb, g, eps, act, tn,
                        hd if hd is not None else out_c, i != len(boc) - 1, c["upsample_type"])
            )
        self.up_blocks = nn.ModuleList(ups)
        self.conv_norm_out = nn.GroupNorm(g, c0, eps=eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(c0, c["out_channels"], 3, padding=1)

    def forward(self, sample, timesteps, class_labels=None):
        c = self.c
        if c["center_input_sample"]:
            sample = 2 * sample - 1.0
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], dtype=torch.long)
        elif timesteps.dim() == 0:
            timesteps = timesteps[None]
        timesteps = timesteps * torch.ones(sample.shape[0], dtype=timesteps.dtype)
        emb = self.time_embedding(self.time_proj(timesteps).float())
        if self.class_embedding is not None:
            if c["class_embed_type"] == "timestep":
                emb = emb + self.class_embedding(self.time_proj(class_labels).float())
            else:
                emb = emb + self.class_embedding(class_labels)
        h = self.conv_in(sample)
        skips = [h]
        for b in self.down_blocks:
            h, s = b(h, emb)
            skips.extend(s)
        if self.mid_block is not None:
            h = self.mid_block(h, emb)
        for b in self.up_blocks:
            h = b(h, skips, emb)
        out = self.conv_out(self.conv_act(self.conv_norm_out(h)))
        if c["time_embedding_type"] == "fourier":
            out = out / timesteps.reshape((out.shape[0], 1, 1, 1))
        return out
