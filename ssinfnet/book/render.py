"""Assemble and render the Jupyter Book of one run.

The committed ``notebooks/`` are the sources (with smoke outputs, which nbval checks). A rendered book
shows the executed notebooks of one run folder (``runs/<profile>`` for real data,
``runs/<profile>-synthetic`` for the embedded default): :func:`assemble` copies the book's pages and the
run's notebooks into ``_book/<run name>/`` and :func:`build` renders that with Jupyter Book 1.x (no
re-execution) to ``_build/html``. In the copies, each chapter's defaults cell (tagged ``parameters``) is
hidden when papermill's ``injected-parameters`` cell follows it, so a page shows only the values in effect;
the results page is the run's verdict (:mod:`ssinfnet.book.results_page`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from .tidy import prepare_for_book
from .context import REPO_ROOT
from .runner import list_notebooks

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["'](https?:)?//(?!localhost)[^"']+["']""")


def assemble(run_dir: str | Path, repo: Path = REPO_ROOT) -> Path:
    """Copy config, pages and the executed notebooks of ``run_dir`` into ``_book/<run name>``.

    Raises FileNotFoundError naming the missing run notebooks (run ``python -m ssinfnet run`` first).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_absolute():
        run_dir = repo / run_dir
    chapters = list_notebooks(repo / "notebooks")
    missing = [p.name for p in chapters if not (run_dir / p.name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir}: executed notebooks missing: {', '.join(missing)}; "
                                f"run `python -m ssinfnet run` first")
    dest = repo / "_book" / run_dir.name
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "notebooks").mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(repo / name, dest / name)
    shutil.copytree(repo / "book", dest / "book", symlinks=False)
    for p in chapters:
        shutil.copy2(run_dir / p.name, dest / "notebooks" / p.name)
        prepare_for_book(dest / "notebooks" / p.name)  # defaults cell hidden when papermill injected values
    if (run_dir / "manifest.json").is_file():
        from .results_page import write_results_page

        write_results_page(run_dir, dest / "book" / "results.md")
    return dest


def build(run_dir: str | Path, repo: Path = REPO_ROOT, output: Path | None = None) -> Path:
    """Render the run in ``run_dir`` to ``_build/html`` and check it loads nothing from the internet."""
    src = assemble(run_dir, repo)
    output = output or repo
    exe = Path(sys.executable).with_name("jupyter-book")  # the console script of this environment
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(src), "--path-output", str(output)]
    subprocess.run(cmd, check=True)
    html = output / "_build" / "html"
    bad = external_urls(html)
    if bad:
        print(f"warning: {len(bad)} external URLs in the rendered book, e.g. {bad[:3]}", file=sys.stderr)
    return html


def external_urls(html_dir: Path) -> list[str]:
    """``src``/``href`` attributes of the rendered HTML that load from another host (scripts, styles,
    images); plain hyperlinks to references are allowed (``<a href>`` is not loaded by the browser)."""
    found = []
    for page in Path(html_dir).rglob("*.html"):
        text = page.read_text(errors="replace")
        for tag in re.finditer(r"<(script|link|img|iframe)\b[^>]*>", text):
            m = EXTERNAL.search(tag.group(0))
            if m and "rel=\"canonical\"" not in tag.group(0):
                found.append(f"{page.name}: {tag.group(0)[:120]}")
    return found
