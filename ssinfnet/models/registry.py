"""Build models by name: ``build_model("infnet", backbone="resnet18")``.

Each name maps to a constructor with the defaults of its role (single = 1 input channel and 1
output, multi = image + prior in, background/GGO/consolidation out); keyword arguments override
them (e.g. ``head="inpaint"``).
"""

from __future__ import annotations

import difflib
from functools import partial
from types import MappingProxyType

from torch import nn

from .coach import Coach
from .fcn8s import FCN8s
from .infnet import InfNet
from .multi import MultiInfNet
from .unet import UNet

__all__ = ["build_model", "list_models"]

_MODELS = MappingProxyType({
    "infnet": partial(InfNet, in_chans=1, out_chans=1),
    "infnet_multi": partial(MultiInfNet, in_chans=2, out_chans=3),
    "unet": partial(UNet, in_chans=1, out_chans=1),
    "unet_multi": partial(UNet, in_chans=2, out_chans=3),
    "fcn8s": partial(FCN8s, in_chans=1, out_chans=3),
    "coach": partial(Coach, in_chans=1),
})


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with ``kwargs`` overriding its defaults.

    Raises
    ------
    ValueError
        Unknown ``name`` (the message suggests the closest names).
    """
    if name not in _MODELS:
        close = difflib.get_close_matches(str(name), list(_MODELS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"name {name!r} is not a registered model ({', '.join(list_models())}){hint}")
    return _MODELS[name](**kwargs)
