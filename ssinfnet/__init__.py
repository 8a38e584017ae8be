"""ssinfnet: self-supervised COVID-19 CT lesion segmentation (SSInfNet re-implementation).

The package holds every model, loss, loop, metric and statistic used by the book's notebooks.
Importing it performs no I/O and no network access.
"""

__version__ = "0.1.0"
