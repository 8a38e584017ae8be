"""Assembling a run for the book: executed notebooks copied with the defaults cell hidden, the verdict page written."""
import json

import nbformat

from ssinfnet.book.render import assemble
from ssinfnet.book.tidy import REMOVE_TAG


def _notebook(injected: bool) -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_code_cell('profile = "smoke"', metadata={"tags": ["parameters"]})]
    if injected:
        cells.append(nbformat.v4.new_code_cell('# Parameters\nprofile = "cpu"\n',
                                               metadata={"tags": ["injected-parameters"]}))
    return nbformat.v4.new_notebook(cells=cells + [nbformat.v4.new_code_cell("print(profile)")])


def test_assemble_hides_the_defaults_and_writes_the_verdict(tmp_path):
    repo, run = tmp_path / "repo", tmp_path / "runs" / "cpu"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "book").mkdir()
    run.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        (repo / name).write_text("x: 1\n")
    nbformat.write(_notebook(injected=False), repo / "notebooks" / "01_data.ipynb")  # the source: untouched
    nbformat.write(_notebook(injected=True), run / "01_data.ipynb")  # as papermill executed it
    (run / "manifest.json").write_text(json.dumps({"profile": "cpu", "git_commit": "c" * 40}))

    dest = assemble(run, repo=repo)
    shown = nbformat.read(dest / "notebooks" / "01_data.ipynb", as_version=4)
    assert shown.cells[0].metadata["tags"] == ["parameters", REMOVE_TAG]
    assert shown.cells[1].metadata["tags"] == ["injected-parameters"]
    assert REMOVE_TAG not in nbformat.read(run / "01_data.ipynb", as_version=4).cells[0].metadata["tags"]
    assert REMOVE_TAG not in nbformat.read(repo / "notebooks" / "01_data.ipynb", as_version=4).cells[0].metadata["tags"]
    page = (dest / "book" / "results.md").read_text()
    assert page.startswith("# Verdict") and "**The `comparisons` artifact is absent from this run**" in page
