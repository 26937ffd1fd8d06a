"""tests/conftest.py: missing shared data or required dependencies skip locally, fail in CI."""

import types

import pytest

from tests import conftest


@pytest.mark.parametrize("ci,expected", [("true", pytest.fail.Exception), ("", pytest.skip.Exception),
                                         ("1", pytest.fail.Exception)])
def test_missing_shared_data_fails_only_in_ci(monkeypatch, ci, expected):
  monkeypatch.setenv("CI", ci)
  with pytest.raises(expected, match="no_such_folder"):
    conftest.shared_data_path("no_such_folder", "x.txt")


@pytest.mark.parametrize("ci,expected", [("true", pytest.fail.Exception), ("false", pytest.skip.Exception)])
def test_missing_required_module_fails_only_in_ci(monkeypatch, ci, expected):
  monkeypatch.setenv("CI", ci)
  with pytest.raises(expected, match="sp_no_such_module"):
    conftest.require_module("sp_no_such_module")
  assert conftest.require_module("numpy").__name__ == "numpy"


def _skip_report(message):
  return types.SimpleNamespace(skipped=True, outcome="skipped", longrepr=("f.py", 3, message))


def _run_hook(report):
  hook = conftest.pytest_runtest_makereport(None, None)
  next(hook)
  with pytest.raises(StopIteration):
    hook.send(types.SimpleNamespace(get_result=lambda: report))
  return report


@pytest.mark.parametrize("module,ci,outcome", [("t5.evaluation.metrics", "true", "failed"),
                                               ("t5.evaluation.metrics", "", "skipped"),
                                               ("transformers", "true", "skipped")])
def test_importorskip_of_a_required_module_fails_in_ci(monkeypatch, module, ci, outcome):
  monkeypatch.setenv("CI", ci)
  report = _run_hook(_skip_report(f"Skipped: could not import '{module}': No module named x"))
  assert report.outcome == outcome


def test_ci_script_exports_ci():
  text = (conftest.REPO_ROOT / ".ci" / "run").read_text()
  assert "export CI=true" in text.split("scripts/test.sh")[0]
