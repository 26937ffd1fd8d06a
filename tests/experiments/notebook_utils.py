"""Executing a notebook in tests with this interpreter's kernel, and reading its outputs."""

import json
import pathlib
import sys

import nbformat
from nbclient import NotebookClient

KERNEL_NAME = "synthetic-pretraining-test-python"


def kernel_spec_dir(root: pathlib.Path) -> pathlib.Path:
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


def assert_stored_without_outputs(path: pathlib.Path):
  notebook = nbformat.read(path, as_version=4)
  nbformat.validate(notebook)
  code = [c for c in notebook.cells if c.cell_type == "code"]
  assert code and all(not c.outputs and c.execution_count is None for c in code)
  return code


def execute(path: pathlib.Path, tmp_path: pathlib.Path, monkeypatch, env: dict[str, str]):
  """Runs the notebook with `env` set; returns (stream text, markdown, display outputs)."""
  monkeypatch.setenv("JUPYTER_PATH", str(kernel_spec_dir(tmp_path / "jupyter")))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  notebook = nbformat.read(path, as_version=4)
  NotebookClient(notebook, timeout=300, kernel_name=KERNEL_NAME,
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
  errors = [o for o in outputs if o.output_type == "error"]
  assert not errors, errors
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  displays = [o for o in outputs if o.output_type == "display_data"]
  markdown = "".join(o.data.get("text/markdown", "") for o in displays)
  return text, markdown, displays
