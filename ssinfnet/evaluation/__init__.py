"""Evaluation: the paper's and Inf-Net's metrics, the book's tables, the ``evaluate`` command (light: no torch)."""
