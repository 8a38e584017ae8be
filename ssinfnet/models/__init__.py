"""Networks: InfNet (single), multi-class InfNet, U-Net, FCN8s, the coach, and weight transfer."""

from .coach import Coach, mask_from_scores, random_masks
from .fcn8s import FCN8s
from .infnet import InfNet
from .modes import eval_mode
from .multi import MultiInfNet
from .registry import build_model, list_models
from .transfer import TransferReport, transfer_weights
from .unet import UNet

__all__ = ["Coach", "FCN8s", "InfNet", "MultiInfNet", "TransferReport", "UNet", "build_model",
           "eval_mode", "list_models", "mask_from_scores", "random_masks", "transfer_weights"]
