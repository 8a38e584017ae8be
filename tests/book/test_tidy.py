import nbformat

from ssinfnet.book.tidy import terminal_text, tidy_notebook


def test_terminal_text_keeps_final_bar_states_and_plain_lines():
    text = ("\rseg 1/3:  50%|#  | 1/2\rseg 1/3: 100%|##| 2/2\n"
            "result 0.5\n\x1b[A\rcv x: 100%|##| 3/3\n\rseg 2/3: 100%|##| 2/2\n\n")
    assert terminal_text(text) == "result 0.5\ncv x: 100%|##| 3/3\nseg 2/3: 100%|##| 2/2\n"
    assert terminal_text("warn: TqdmWarning: IProgress not found\n\n") == ""


def test_tidy_merges_streams_and_keeps_other_outputs():
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="\rbar: 10%|#| 1/10"),
                    nbformat.v4.new_output("stream", name="stderr", text="\rbar: 100%|#| 10/10\n"),
                    nbformat.v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=1),
                    nbformat.v4.new_output("stream", name="stdout", text="\n")]
    nb = tidy_notebook(nbformat.v4.new_notebook(cells=[cell]))
    outs = nb.cells[0].outputs
    assert [o.output_type for o in outs] == ["stream", "execute_result"]
    assert outs[0].text == "bar: 100%|#| 10/10\n" and outs[1].data["text/plain"] == "42"


def test_shrink_images_repacks_large_pngs_only():
    import base64
    import io

    import numpy as np
    from PIL import Image

    from ssinfnet.book.tidy import shrink_images

    rng = np.random.default_rng(0)
    img = (rng.integers(0, 4, (300, 300, 1)) * 60 + np.zeros((1, 1, 3))).astype(np.uint8)  # 4 colours, noisy
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=0)
    big = base64.b64encode(buf.getvalue()).decode()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": big}),
                    nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="})]
    out = shrink_images(nbformat.v4.new_notebook(cells=[cell]), min_bytes=1000).cells[0].outputs
    small = out[0].data["image/png"]
    assert len(small) < len(big) and out[1].data["image/png"] == "iVBORw0KGgo="
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(small))).convert("RGB"))
    np.testing.assert_array_equal(back, img)  # 4 colours survive a 256-colour palette exactly


def _papermill_like(injected: bool) -> nbformat.NotebookNode:
    cells = [nbformat.v4.new_markdown_cell("# Chapter"),
             nbformat.v4.new_code_cell('profile = "smoke"', metadata={"tags": ["parameters"]})]
    if injected:
        cells.append(nbformat.v4.new_code_cell('# Parameters\nprofile = "cpu"\n',
                                               metadata={"tags": ["injected-parameters"]}))
    cells.append(nbformat.v4.new_code_cell("print(profile)"))
    return nbformat.v4.new_notebook(cells=cells)


def test_the_defaults_cell_is_hidden_when_papermill_injected_values():
    from ssinfnet.book.tidy import REMOVE_TAG, hide_default_parameters

    nb = _papermill_like(injected=True)
    assert hide_default_parameters(nb) == 1
    assert nb.cells[1].metadata["tags"] == ["parameters", REMOVE_TAG]
    assert nb.cells[2].metadata["tags"] == ["injected-parameters"]  # the values in effect stay on the page
    assert hide_default_parameters(nb) == 1 and nb.cells[1].metadata["tags"].count(REMOVE_TAG) == 1
    source = _papermill_like(injected=False)  # a source notebook (nbval, refresh): left alone
    assert hide_default_parameters(source) == 0 and source.cells[1].metadata["tags"] == ["parameters"]


def test_prepare_for_book_rewrites_the_file(tmp_path):
    from ssinfnet.book.tidy import REMOVE_TAG, prepare_for_book

    path = tmp_path / "01_x.ipynb"
    nbformat.write(_papermill_like(injected=True), path)
    prepare_for_book(path)
    assert REMOVE_TAG in nbformat.read(path, as_version=4).cells[1].metadata["tags"]
