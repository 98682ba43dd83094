"""notebooks/quickstart.ipynb: committed without outputs, and it runs top to bottom."""

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


def test_the_notebook_is_kept_without_outputs():
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"][:80]
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"


def _text(cell) -> str:
    """Everything a cell showed: streams, results and displays (plain text and HTML)."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/html", "")]
    return "\n".join(parts)


@pytest.mark.slow
def test_the_notebook_runs_from_any_directory(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    client.execute()
    shown = "\n".join(_text(cell) for cell in notebook.cells)
    assert "folk-transformer" in shown and "folk-gru" in shown  # the models by name
    assert "<table>" in shown and "form (bars per part)" in shown  # the TuneSet display
    assert "X:2\n% musicseq" in shown  # tune 2 numbered, with its provenance
    assert "M:6/8" in shown and "K:Ador" in shown and "Q:3/8=116" in shown
    assert "<audio" in shown  # a player
    work = tmp_path / "quickstart-out"
    assert (work / "tune_2.ogg").stat().st_size > 10_000
    assert (work / "models" / "my-folk-gru" / "model.keras").is_file()
    assert (work / "my-folk-gru-savedmodel" / "saved_model.pb").is_file()
