"""PyTorch side of `npm run bench` (scripts/bench.mjs): the same UNet2DModel, weights and inputs.

scripts/bench.mjs writes, per configuration, a diffusers UNet folder saved by diffmem
(`saveUNet2DToFolder`) and an `io.safetensors` with the exact inputs it used (NHWC) and its
outputs; this script loads the weights into the self-contained reference
(`unet2d_reference.UNet2DReference`, diffusers' state-dict names) with `st_io`, checks that the
outputs agree, then times the same operations:

  forward      eps = unet(x_t, t[, y]) without autograd, batch B (and the cpu backend's batch)
  train step   x_t = sqrt(abar) x0 + sqrt(1 - abar) eps; loss = mse(unet(x_t, t[, y]), eps);
               backward; AdamW step (lr 1e-4, betas (0.9, 0.999), eps 1e-8, wd 1e-2)
  ddim         50 deterministic DDIM steps (eta 0; diffusers' defaults: linear betas 1e-4..0.02,
               T = 1000, "leading" spacing, clip_sample, set_alpha_to_one)

for each requested thread count (torch.set_num_threads; inter-op threads 1). Times are wall
(time.perf_counter) and process CPU time over all threads (time.process_time), in ms, median of
the repeats. Optionally also a brute-force k-NN (squared L2 by matmul + topk), the computation
@diffmem/metrics' ReferenceIndex performs.

The parity check of DDIM uses a short run (`checkSteps`, 10): 50-step trajectories of an untrained
(randomly initialised) network are chaotic — a 1e-6 change of x_T alone moves torch's own 50-step
result by ~1 — so only short trajectories can show agreement.

Linear layers, attention (bmm) and some convolutions run through the BLAS torch was linked
against; Debian's torch uses the system libblas.so.3, which may be the slow reference (netlib)
implementation. The output records which library was loaded (`blas`); set
LD_LIBRARY_PATH to an OpenBLAS directory (and OPENBLAS_NUM_THREADS) to use it instead.

Usage:  /usr/bin/python3 scripts/reference/bench_torch.py PLAN.json OUT.json
PLAN.json: {"threads": [1], "configs": [{"name", "unetDir", "io", "batch", "cpuBatch",
            "reps": {"forward", "train", "ddim"}, "ddimSteps", "checkSteps"}],
            "knn": {"refs", "queries", "dim", "k"}, "logChecks": true}
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402
from unet2d_reference import UNet2DReference  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def nchw(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2).contiguous()


def timed(fn, reps: int, warmup: int = 1) -> dict:
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        walls.append((time.perf_counter() - w0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
    return {"wallMs": statistics.median(walls), "cpuMs": statistics.median(cpus), "reps": reps}


def alphas_cumprod(T: int = 1000) -> torch.Tensor:
    # diffusers: betas = torch.linspace(beta_start, beta_end, T, dtype=float32); abar = cumprod(1 - betas)
    betas = torch.linspace(0.0001, 0.02, T, dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0)


def ddim_sample(model, latents, labels, steps: int, abar: torch.Tensor) -> torch.Tensor:
    """diffusers DDIMScheduler.step with eta 0, clip_sample, set_alpha_to_one, leading spacing."""
    T = abar.shape[0]
    r = T // steps
    x = latents
    B = x.shape[0]
    for i in reversed(range(steps)):
        t = i * r
        eps = model(x, torch.full((B,), t, dtype=torch.long), labels)
        a = abar[t]
        a_prev = abar[t - r] if t - r >= 0 else torch.tensor(1.0)
        x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x.clamp(-1, 1)


def load_case(c: dict):
    with open(os.path.join(c["unetDir"], "config.json")) as f:
        config = json.load(f)
    model = UNet2DReference(config)
    state = st_io.load(os.path.join(c["unetDir"], "diffusion_pytorch_model.safetensors"))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    io = st_io.load(c["io"])
    return config, model, io


def check(model, io: dict, abar: torch.Tensor, ddim_steps: int) -> dict:
    """Max |torch - diffmem| for the forward pass, the first train-step loss and DDIM samples."""
    labels = io.get("class_labels")
    labels = labels.long() if labels is not None else None
    with torch.no_grad():
        out = model(nchw(io["sample"]), io["timesteps"].long(), labels)
        fwd = (out - nchw(io["out_forward"])).abs().max().item()
        ref_scale = nchw(io["out_forward"]).abs().max().item()
        x0, noise, t = nchw(io["train_x0"]), nchw(io["train_noise"]), io["train_t"].long()
        a = abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(model(xt, t, labels), noise).item()
        ddim = ddim_sample(model, nchw(io["ddim_latents"]), labels, ddim_steps, abar)
        ddim_diff = (ddim - nchw(io["ddim_out"])).abs().max().item()
    return {
        "forwardMaxAbsDiff": fwd,
        "forwardMaxAbs": ref_scale,
        "trainLossTorch": loss,
        "trainLossDiffmem": io["train_loss"].item(),
        "ddimMaxAbsDiff": ddim_diff,
    }


def bench_case(model, io: dict, c: dict, abar: torch.Tensor) -> dict:
    labels = io.get("class_labels")
    labels = labels.long() if labels is not None else None
    reps = c["reps"]
    res = {}
    x = nchw(io["sample"])
    t = io["timesteps"].long()

    def forward(xb, tb, yb):
        with torch.no_grad():
            model(xb, tb, yb)

    res["forward"] = timed(lambda: forward(x, t, labels), reps["forward"])
    cb = c.get("cpuBatch")
    if cb and cb != x.shape[0]:
        xs, ts, ys = x[:cb], t[:cb], (labels[:cb] if labels is not None else None)
        res["forwardCpuBatch"] = {**timed(lambda: forward(xs, ts, ys), reps["forward"]), "batch": cb}

    x0, noise, tt = nchw(io["train_x0"]), nchw(io["train_noise"]), io["train_t"].long()
    a = abar[tt].view(-1, 1, 1, 1)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)

    def train_step():
        opt.zero_grad(set_to_none=True)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(model(xt, tt, labels), noise)
        loss.backward()
        opt.step()

    res["train"] = timed(train_step, reps["train"])
    lat = nchw(io["ddim_latents"])
    steps = c["ddimSteps"]
    with torch.no_grad():
        res["ddim"] = {**timed(lambda: ddim_sample(model, lat, labels, steps, abar), reps["ddim"], warmup=0), "steps": steps}
    return res


def bench_knn(spec: dict) -> dict:
    """Brute-force exact k-NN by ||q||^2 - 2 q.r + ||r||^2 with one matmul, then topk (smallest)."""
    g = torch.Generator().manual_seed(0)
    refs = torch.rand(spec["refs"], spec["dim"], generator=g)
    q = torch.rand(spec["queries"], spec["dim"], generator=g)
    rn = (refs * refs).sum(1)

    def search():
        d = (q * q).sum(1, keepdim=True) - 2 * q @ refs.T + rn[None, :]
        torch.topk(d, spec["k"], dim=1, largest=False)

    r = timed(search, 3)
    r["queriesPerSecondWall"] = spec["queries"] / (r["wallMs"] / 1000)
    r["queriesPerSecondCpu"] = spec["queries"] / (r["cpuMs"] / 1000)
    return r


def blas_library() -> str:
    """The BLAS shared library this process loaded (torch's matmuls run there; convs use oneDNN)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
        return ", ".join(sorted(libs)) or "none found in /proc/self/maps"
    except OSError:
        return "unknown"


def bench_matmul() -> dict:
    """[4096, 3072] x [3072, 64], the product scripts/bench-metrics.mjs measures on wasm."""
    a = torch.rand(4096, 3072)
    b = torch.rand(3072, 64)
    r = timed(lambda: a @ b, 3)
    flops = 2 * 4096 * 3072 * 64
    r["gflopsWall"] = flops / (r["wallMs"] / 1000) / 1e9
    r["gflopsCpu"] = flops / (r["cpuMs"] / 1000) / 1e9
    return r


def main():
    plan_file, out_file = sys.argv[1], sys.argv[2]
    with open(plan_file) as f:
        plan = json.load(f)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    abar = alphas_cumprod()
    out = {"torch": torch.__version__, "blas": blas_library(), "checks": {}, "results": {}}
    cases = {}
    torch.set_num_threads(1)
    for c in plan["configs"]:
        config, model, io = load_case(c)
        model.eval()
        cases[c["name"]] = (model, io, c)
        out["checks"][c["name"]] = chk = check(model, io, abar, c["checkSteps"])
        if plan.get("logChecks", True):
            log(f"[torch] {c['name']}: forward max|diff| {chk['forwardMaxAbsDiff']:.2e} (outputs up to {chk['forwardMaxAbs']:.2f}), "
                f"train loss {chk['trainLossTorch']:.6f} vs {chk['trainLossDiffmem']:.6f}, DDIM-{c['checkSteps']} max|diff| {chk['ddimMaxAbsDiff']:.2e}")
    for n in plan["threads"]:
        torch.set_num_threads(n)
        key = f"{n}"
        out["results"][key] = {}
        for name, (model, io, c) in cases.items():
            model.eval()
            log(f"[torch] timing {name} with {n} thread(s), BLAS {os.path.basename(out['blas'].split(', ')[-1])}")
            out["results"][key][name] = bench_case(model, io, c, abar)
        out["results"][key]["matmul"] = bench_matmul()
        if plan.get("knn"):
            out["results"][key]["knn"] = bench_knn(plan["knn"])
    with open(out_file, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
