"""Figures for the book. Every function returns a matplotlib ``Figure``; the notebook adds the caption.

One module per area: :mod:`.data`, :mod:`.training`, :mod:`.evaluation`, :mod:`.severity`, :mod:`.stats`.
"""


def show(fig, caption: str) -> None:
    """Display ``fig`` in a notebook followed by its caption (Markdown), then close it.

    The caption is an output, not a static cell, so it can say which data and profile produced the
    figure.
    """
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image, Markdown, display

    # Rendered to PNG here, so the output does not depend on the notebook's matplotlib backend.
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    display(Image(data=buf.getvalue(), format="png"))
    display(Markdown(f"*Figure.* {caption}"))
    plt.close(fig)
