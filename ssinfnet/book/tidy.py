"""Tidying executed notebooks: progress bars as a terminal would leave them.

Papermill stores every redraw of a text progress bar (carriage returns, cursor-up escapes) as its own
stream output, thousands per training cell. :func:`tidy_notebook` merges consecutive stream outputs,
keeps what a terminal would finally show on each line, and drops the blank lines that cleared bars
leave. Results, tables and figures are untouched.
"""

from __future__ import annotations

import re

import nbformat

_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NOISE = ("TqdmWarning: IProgress not found", "from .autonotebook import tqdm as notebook_tqdm")


_BAR = re.compile(r"\d+%\|")
_COUNTER = re.compile(r"\s*\d+/\d+\s*$")


def terminal_text(text: str) -> str:
    """Text as a terminal leaves it: per line, what follows the last carriage return, ANSI escapes
    (cursor moves of nested bars) removed, blank lines and tqdm's notebook warning dropped; of each
    progress bar (grouped by its description without epoch counters) only its last state is kept,
    after the other lines."""
    lines, bars = [], {}
    for line in _ESCAPES.sub("", text).split("\n"):
        final = (line.split("\r")[-1] if "\r" in line else line).rstrip()
        if not final.strip() or any(n in final for n in _NOISE):
            continue
        if _BAR.search(final):
            key = _COUNTER.sub("", final.split(":")[0])
            bars.pop(key, None)  # re-insert: groups ordered by their last appearance
            bars[key] = final
        else:
            lines.append(final)
    lines += list(bars.values())
    return "\n".join(lines) + ("\n" if lines else "")


def tidy_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Merge consecutive stream outputs of each code cell and apply :func:`terminal_text` (in place)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and merged and merged[-1].output_type == "stream" \
                    and merged[-1].name == out.name:
                merged[-1].text += out.text
            else:
                merged.append(out)
        tidy = []
        for out in merged:
            if out.output_type == "stream":
                out.text = terminal_text(out.text)
                if not out.text:
                    continue
            tidy.append(out)
        cell.outputs = tidy
    return nb


def shrink_images(nb: nbformat.NotebookNode, min_bytes: int = 150_000, max_width: int = 1400
                  ) -> nbformat.NotebookNode:
    """Re-encode large PNG outputs with an adaptive 256-colour palette (in place), first scaling any
    wider than ``max_width`` pixels down to it (the book shows figures about 800 px wide); figures of
    grey CT with two overlay colours lose nothing visible and shrink several-fold."""
    import base64
    import io

    from PIL import Image

    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = out.get("data", {})
            if "image/png" not in data or len(data["image/png"]) < min_bytes * 4 // 3:
                continue
            img = Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert("RGB")
            if img.width > max_width:
                img = img.resize((max_width, round(img.height * max_width / img.width)), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
            packed = base64.b64encode(buf.getvalue()).decode("ascii")
            if len(packed) < len(data["image/png"]):
                data["image/png"] = packed
    return nb


def tidy_file(path) -> None:
    """Tidy an executed notebook file in place (progress bars, then large figures)."""
    nb = nbformat.read(path, as_version=4)
    nbformat.write(shrink_images(tidy_notebook(nb)), path)


#: Jupyter Book leaves out cells with this tag (input and output).
REMOVE_TAG = "remove-cell"


def hide_default_parameters(nb: nbformat.NotebookNode) -> int:
    """Tag the ``parameters`` cell (the defaults) ``remove-cell`` when papermill's ``injected-parameters``
    cell follows it, so the rendered page shows only the values in effect (in place; the notebook still
    runs and validates as before). Returns the number of cells tagged (0 or 1)."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell, nxt in zip(code, code[1:]):
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags and "injected-parameters" in nxt.metadata.get("tags", []):
            if REMOVE_TAG not in tags:
                cell.metadata["tags"] = [*tags, REMOVE_TAG]
            return 1
    return 0


def prepare_for_book(path) -> None:
    """Tidy an executed notebook for the rendered book (in place): :func:`tidy_file`, then
    :func:`hide_default_parameters`."""
    tidy_file(path)
    nb = nbformat.read(path, as_version=4)
    if hide_default_parameters(nb):
        nbformat.write(nb, path)
