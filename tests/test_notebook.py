"""examples/notebook.ipynb, executed in a real Jupyter kernel (nbclient +
ipykernel): any failing cell fails the test. The executed outputs then show
that a Result renders as HTML in the kernel (text/html, an execute_result and
a display_data), and that the local deploy ran against the real server.

Cost: ~30-40 s (kernel start, torch export, server start).
"""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    from onnxgate.pipeline.envs import serving as serving_env

    serving_env.create(quiet=True)  # the local deploy cell needs it (no-op when ready)
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"a notebook cell failed:\n{str(exc)[-3000:]}")
    return nb


def _outputs(nb, kind=None):
    return [
        o
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if kind is None or o.output_type == kind
    ]


def test_every_cell_runs_without_error(executed):
    code_cells = [c for c in executed.cells if c.cell_type == "code"]
    assert code_cells and all(c.get("execution_count") for c in code_cells)
    assert not _outputs(executed, "error")


def test_result_renders_as_html_in_the_kernel(executed):
    shown = [
        o
        for o in _outputs(executed)
        if o.output_type in ("execute_result", "display_data") and "text/html" in o.get("data", {})
    ]
    kinds = {o.output_type for o in shown}
    assert kinds == {"execute_result", "display_data"}  # `result` as the last expression, and display(result)
    for out in shown:
        html = out["data"]["text/html"]
        assert html.startswith("<iframe srcdoc=") and "PASSED" in html.upper()
        assert out["data"]["text/plain"].startswith("<Result PASSED")


def test_local_deploy_answered_and_stopped(executed):
    text = "".join(o.get("text", "") for o in _outputs(executed, "stream"))
    assert "LocalDeployment iris-forest v1 running at http://127.0.0.1:" in text
    assert "running: False" in text
    assert "AzureMLDeployment DRY RUN mlp -> endpoint onnxgate-mlp" in text
