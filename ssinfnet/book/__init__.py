"""The Jupyter Book: run contexts, chapter stages, running and rendering the notebooks, checks, profiles."""
