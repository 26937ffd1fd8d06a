"""notebooks/results.ipynb executes on run directories written by the test and draws its figures."""

import json
import pathlib
import sys

import nbformat
from nbclient import NotebookClient
import pytest

from tests.experiments.test_results import _paper_like_runs

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "results.ipynb"
KERNEL_NAME = "synthetic-pretraining-test-python"


def _kernel_spec_dir(root: pathlib.Path) -> pathlib.Path:
  """A kernel spec that runs this interpreter (the venv's), found first via JUPYTER_PATH.

  Relying on the name "python3" would pick up whichever spec the user's Jupyter config has first;
  a private spec pinned to sys.executable works the same in a fresh venv and in CI.
  """
  spec_dir = root / "kernels" / KERNEL_NAME
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "synthetic_pretraining tests", "language": "python"}))
  return root


def test_notebook_is_stored_without_outputs():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  code = [c for c in notebook.cells if c.cell_type == "code"]
  assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_notebook_executes_and_produces_its_figure(tmp_path, monkeypatch):
  _paper_like_runs(tmp_path / "runs")
  out_dir = tmp_path / "out"
  monkeypatch.setenv("JUPYTER_PATH", str(_kernel_spec_dir(tmp_path / "jupyter")))
  monkeypatch.setenv("SP_RESULTS_RUN_DIRS", str(tmp_path / "runs"))
  monkeypatch.setenv("SP_RESULTS_OUT", str(out_dir))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  notebook = nbformat.read(NOTEBOOK, as_version=4)

  NotebookClient(notebook, timeout=300, kernel_name=KERNEL_NAME,
                 resources={"metadata": {"path": str(tmp_path)}}).execute()

  outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert "13 runs; methods: from_scratch, lime, set, t5_1_1_small, off_the_shelf" in text
  markdown = "".join(o.data.get("text/markdown", "") for o in outputs
                     if o.output_type == "display_data")
  assert "| set | 67.5 ± 10.6 | 62.5 ± 17.7 | – | undef. | 65.0 ± 3.5 (2/4 tasks) |" in markdown
  images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
  assert len(images) == 2
  png = (out_dir / "benefit.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n"
  assert (out_dir / "validation_curves.png").stat().st_size > 0
  assert (out_dir / "results.md").read_text().startswith("## % of the benefit")
