"""Generates the UNet2DModel parity fixtures used by packages/core/src/models/__tests__/.

For each tiny random config it writes, under packages/core/src/models/__tests__/fixtures/<name>/:
  config.json                          diffusers config (loadable by UNet2DModel.from_pretrained)
  diffusion_pytorch_model.safetensors  weights in torch layout (F16 / BF16 / F32 as listed below)
  io.safetensors                       sample [N,H,W,C] (NHWC), timesteps, class_labels, and the
                                       reference outputs expected [N,H,W,C] (NHWC) for the given
                                       timesteps and expected_scalar_t for one integer timestep
It also writes packages/core/src/safetensors/__tests__/fixtures/dtypes.safetensors (torch's own
F16/BF16 rounding of known values) for the reader's conversion test.

Run with Debian's torch:  /usr/bin/python3 scripts/reference/make_unet_fixtures.py
Outputs are deterministic (fixed torch seeds, single thread).
"""

from __future__ import annotations

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402
from unet2d_reference import UNet2DReference  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "packages", "core", "src", "models", "__tests__", "fixtures")
ST_OUT = os.path.join(ROOT, "packages", "core", "src", "safetensors", "__tests__", "fixtures")

# google/ddpm-cifar10-32's config with every width divided by 16 and norm groups chosen so each
# group has the same number of channels as in the real model (4 at level 0, 8 elsewhere).
CIFAR_TINY = {
    "_class_name": "UNet2DModel",
    "act_fn": "silu",
    "attention_head_dim": None,
    "block_out_channels": [8, 16, 16, 16],
    "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "in_channels": 3,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-06,
    "norm_num_groups": 2,
    "out_channels": 3,
    "sample_size": 32,
    "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}

CASES = [
    # (a) DDPM CIFAR-10 topology; F16 weights with legacy attention names (query/key/value/proj_attn).
    dict(name="ddpm_cifar10_tiny", config=CIFAR_TINY, dtype=torch.float16, legacy=True, seed=1,
         timesteps=torch.tensor([999, 17]), labels=None, scalar_t=500),
    # (b) class-conditional (num_class_embeds): class embedding added to the time embedding.
    dict(name="class_conditional", dtype=torch.float32, legacy=False, seed=2, scalar_t=250,
         config={"_class_name": "UNet2DModel", "sample_size": 8, "block_out_channels": [8, 16],
                 "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
                 "layers_per_block": 1, "norm_num_groups": 4, "num_class_embeds": 10, "attention_head_dim": None},
         timesteps=torch.tensor([500, 3]), labels=torch.tensor([7, 0])),
    # (c) multi-head attention with diffusers' default flags (flip_sin_to_cos, downsample_padding 1); BF16 weights.
    dict(name="multihead_defaults", dtype=torch.bfloat16, legacy=False, seed=3, scalar_t=0,
         config={"_class_name": "UNet2DModel", "sample_size": 8, "block_out_channels": [16, 24],
                 "down_block_types": ["AttnDownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D"],
                 "layers_per_block": 1, "norm_num_groups": 4, "attention_head_dim": 4},
         timesteps=torch.tensor([0, 250]), labels=None),
    # (d) the less common paths: Fourier time features, scale_shift, resnet down/up samplers, GELU,
    #     centred input, mid-block scale, class_embed_type "timestep", custom time_embedding_dim,
    #     attn_norm_num_groups.
    dict(name="variants_fourier", dtype=torch.float32, legacy=False, seed=4, scalar_t=None,
         config={"_class_name": "UNet2DModel", "sample_size": 8, "block_out_channels": [8, 16],
                 "down_block_types": ["AttnDownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D"],
                 "layers_per_block": 1, "norm_num_groups": 4, "attention_head_dim": 4, "time_embedding_type": "fourier",
                 "resnet_time_scale_shift": "scale_shift", "downsample_type": "resnet", "upsample_type": "resnet",
                 "act_fn": "gelu", "center_input_sample": True, "mid_block_scale_factor": 1.4142135623730951,
                 "class_embed_type": "timestep", "time_embedding_dim": 24, "attn_norm_num_groups": 2},
         timesteps=torch.tensor([0.05, 37.5]), labels=torch.tensor([3, 9])),
    # (e) learned time embedding, no mid block, Mish, 1 → 2 channels.
    dict(name="variants_learned", dtype=torch.float32, legacy=False, seed=5, scalar_t=7,
         config={"_class_name": "UNet2DModel", "sample_size": 8, "block_out_channels": [8, 8],
                 "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
                 "layers_per_block": 1, "norm_num_groups": 4, "time_embedding_type": "learned",
                 "num_train_timesteps": 50, "mid_block_type": None, "act_fn": "mish", "in_channels": 1, "out_channels": 2},
         timesteps=torch.tensor([49, 0]), labels=None),
]

LEGACY = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def randomize_norms(model: torch.nn.Module, gen: torch.Generator) -> None:
    """GroupNorm starts at gamma=1, beta=0; perturb it so the affine path is actually tested."""
    for m in model.modules():
        if isinstance(m, torch.nn.GroupNorm):
            with torch.no_grad():
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))


def legacy_name(key: str) -> str:
    if ".attentions." not in key:
        return key
    for new, old in LEGACY.items():
        if f".{new}." in key:
            return key.replace(f".{new}.", f".{old}.")
    return key


def nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1).contiguous()


def make_case(case: dict) -> None:
    torch.manual_seed(case["seed"])
    gen = torch.Generator().manual_seed(case["seed"] + 100)
    model = UNet2DReference(case["config"]).eval()
    randomize_norms(model, gen)
    # Round the weights to the storage dtype so the reference runs on exactly what is saved.
    state = {k: v.detach().to(case["dtype"]) for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() for k, v in state.items()})

    cfg = case["config"]
    n = 2
    size = cfg["sample_size"]
    x = torch.randn(n, cfg.get("in_channels", 3), size, size, generator=gen)
    t = case["timesteps"]
    labels = case["labels"]
    with torch.no_grad():
        out = model(x, t, labels)
        scalar = model(x, case["scalar_t"], labels) if case["scalar_t"] is not None else None

    folder = os.path.join(OUT, case["name"])
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    saved = {legacy_name(k) if case["legacy"] else k: v for k, v in state.items()}
    st_io.save(os.path.join(folder, "diffusion_pytorch_model.safetensors"), saved, {"format": "pt"})
    io = {"sample": nhwc(x), "timesteps": t, "expected": nhwc(out)}
    if labels is not None:
        io["class_labels"] = labels
    if scalar is not None:
        io["expected_scalar_t"] = nhwc(scalar)
        io["scalar_t"] = torch.tensor([case["scalar_t"]])
    st_io.save(os.path.join(folder, "io.safetensors"), io)
    nparams = sum(v.numel() for v in state.values())
    print(f"{case['name']}: {len(state)} tensors, {nparams} params, |out| max {out.abs().max():.3f}")


def make_dtypes() -> None:
    values = torch.tensor([0.0, -0.0, 1.0, -2.0, 0.1, 65504.0, 1e-7, 6e-8, 70000.0, 1 / 3, 3.14159, -1e-3, 1e30, float("inf")])
    os.makedirs(ST_OUT, exist_ok=True)
    st_io.save(
        os.path.join(ST_OUT, "dtypes.safetensors"),
        {
            "f32": values,
            "f16": values.half(),
            "f16_as_f32": values.half().float(),
            "bf16": values.bfloat16(),
            "bf16_as_f32": values.bfloat16().float(),
            "f64": values.double(),
            "i64": torch.tensor([-(2**40), 0, 7]),
            "i32": torch.tensor([-5, 2**31 - 1], dtype=torch.int32),
            "u8": torch.tensor([0, 255], dtype=torch.uint8),
            "bool": torch.tensor([True, False, True]),
            "scalar": torch.tensor(2.5),
            "empty": torch.zeros(0, 3),
        },
        {"written_by": "scripts/reference/make_unet_fixtures.py"},
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    for c in CASES:
        make_case(c)
    make_dtypes()
