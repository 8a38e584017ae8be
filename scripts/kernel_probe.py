"""Print which CPU kernels PyTorch uses and one raw number that depends on them.

``make test`` runs the whole suite under several kernel choices (see ``.ci/run``); this probe shows that
each choice really changes the arithmetic: five Adam steps of the smoke profile's InfNet on fixed random
tensors, the final loss printed with every digit. Settings it reads from the environment:
``ATEN_CPU_CAPABILITY`` (PyTorch's own kernels: ``default``, ``avx2``, ``avx512``) and
``ONEDNN_MAX_CPU_ISA`` (oneDNN's convolutions: ``SSE41``, ``AVX2``, ...).

Usage: ``python scripts/kernel_probe.py`` prints one JSON line.
"""

import json
import os

import torch
from torch.nn import functional as F


def probe_loss(steps: int = 5) -> float:
    """Loss after ``steps`` Adam steps of the smoke InfNet (64 px, batch 4) on seeded random tensors."""
    from ssinfnet.models.registry import build_model
    from ssinfnet.book.profiles import get_profile

    torch.manual_seed(0)
    model = build_model("infnet", **get_profile("smoke").infnet_kwargs())
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x, y = torch.randn(4, 1, 64, 64), (torch.rand(4, 1, 64, 64) > 0.7).float()
    for _ in range(steps):
        out = model(x)
        logits = out[model.prediction_key] if isinstance(out, dict) else out
        loss = F.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.item())


if __name__ == "__main__":
    torch.set_num_threads(1)  # thread count changes the sums too: keep it fixed
    print(json.dumps({"ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
                      "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                      "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                      "loss": repr(probe_loss())}))
