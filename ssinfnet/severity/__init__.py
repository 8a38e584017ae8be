"""Severity: lung masks, infection ratios and CT severity scores, agreement with references."""
