"""Lesion segmentation: the paper's variants, fitting, cross-validation, prediction and the ``predict`` command."""
