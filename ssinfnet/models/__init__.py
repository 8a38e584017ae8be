"""Networks: InfNet (single), multi-class InfNet, U-Net, FCN8s, the coach, and weight transfer."""
