import nbformat

from ssinfnet.notebook_outputs import terminal_text, tidy_notebook


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
