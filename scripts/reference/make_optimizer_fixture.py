"""Reference values for diffmem's Adam/AdamW, clip_grad_norm_ and EMA (PyTorch CPU, float32).

Run with Debian's python3-torch: /usr/bin/python3 scripts/reference/make_optimizer_fixture.py
Writes packages/core/src/training/__tests__/fixtures/optimizer.json (committed; tests need no torch).
"""
import json, os
import torch

torch.manual_seed(0)
p0 = torch.randn(7)
grads = [torch.randn(7) * s for s in (1.0, 3.0, 0.5, 2.0)]
out = {"p0": p0.tolist(), "grads": [g.tolist() for g in grads], "cases": {}}
for kind, cls, wd in (("adamw", torch.optim.AdamW, 0.01), ("adam", torch.optim.Adam, 0.1)):
    p = torch.nn.Parameter(p0.clone())
    opt = cls([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    norms = []
    for g in grads:
        p.grad = g.clone()
        norms.append(float(torch.nn.utils.clip_grad_norm_([p], 1.0)))
        opt.step()
    out["cases"][kind] = {"weight_decay": wd, "max_norm": 1.0, "norms": norms, "final": p.detach().tolist()}
path = os.path.join(os.path.dirname(__file__), "../../packages/core/src/training/__tests__/fixtures/optimizer.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", os.path.normpath(path))
