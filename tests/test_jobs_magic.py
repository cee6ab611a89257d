"""``%nbprod run`` in a notebook: a live progress display, then the job's card; ``%nbprod runs``."""

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

FILES = Path(__file__).parent / "files"
pytestmark = pytest.mark.slow


def test_the_magic_shows_live_progress_then_the_result_card(nbprod_home, tmp_path):
    import papermill

    outer = new_notebook(cells=[
        new_code_cell("%load_ext nbprod"),
        new_code_cell(f"result = %nbprod run {FILES / 'params.ipynb'} -p alpha 2 --timeout 60\nresult"),
        new_code_cell("print(result.status, result.run_id)"),
        new_code_cell("%nbprod runs"),
    ])
    outer.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(outer, tmp_path / "outer.ipynb")
    done = papermill.execute_notebook(str(tmp_path / "outer.ipynb"), str(tmp_path / "outer-out.ipynb"),
                                      progress_bar=False, cwd=str(tmp_path))
    outputs = done.cells[1].outputs
    progress = [o for o in outputs if o.output_type == "display_data"
                and "nbprod-progress" in o.data.get("text/html", "")]
    assert len(progress) == 1, "one display, updated in place"
    assert "finished" in progress[0].data["text/html"]
    card = next(o for o in outputs if o.output_type == "execute_result")
    assert "FINISHED: " in card.data["text/html"] and "cell times (wall)" in card.data["text/html"]
    status, run_id = done.cells[2].outputs[0].text.split()
    assert status == "FINISHED"
    table = done.cells[3].outputs[0].data["text/html"]
    assert "start (UTC)" in table and run_id[:8] in table
