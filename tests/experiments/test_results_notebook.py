"""notebooks/results.ipynb executes on run directories written by the test and draws its figures."""

import pathlib

import pytest

from tests.experiments import notebook_utils
from tests.experiments.test_results import _paper_like_runs

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "results.ipynb"


def test_notebook_is_stored_without_outputs():
  notebook_utils.assert_stored_without_outputs(NOTEBOOK)


@pytest.mark.slow
def test_notebook_executes_and_produces_its_figure(tmp_path, monkeypatch):
  _paper_like_runs(tmp_path / "runs")
  out_dir = tmp_path / "out"
  text, markdown, displays = notebook_utils.execute(NOTEBOOK, tmp_path, monkeypatch, {
      "SP_RESULTS_RUN_DIRS": str(tmp_path / "runs"), "SP_RESULTS_OUT": str(out_dir)})
  assert "13 runs; methods: from_scratch, lime, set, t5_1_1_small, off_the_shelf" in text
  assert "| set | 67.5 ± 10.6 | 62.5 ± 17.7 | – | undef. | 65.0 ± 3.5 (2/4 tasks) |" in markdown
  images = [o for o in displays if "image/png" in o.data]
  assert len(images) == 2
  png = (out_dir / "benefit.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n"
  assert (out_dir / "validation_curves.png").stat().st_size > 0
  assert (out_dir / "results.md").read_text().startswith("## % of the benefit")
