"""Test set-up: 8 host CPU devices (before jax is imported) and paths to the shared data.

Missing prerequisites skip a test on a developer's machine but FAIL it in CI (`CI=true`, exported by
`.ci/run`): the shared data beside the repository (`shared_data_path`) and the project's required
dependencies (`require_module`, and any `pytest.importorskip` of a module in REQUIRED_MODULES).
"""

import importlib
import os
import pathlib
import re

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ["XLA_FLAGS"] += "" if "device_count" in os.environ["XLA_FLAGS"] else (
    " --xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # pylint: disable=g-import-not-at-top

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("SP_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# Top-level modules the project requires (setup.py install_requires + t5, installed by setup.sh).
# Optional measuring aids (torch, transformers) are not listed: their tests may skip anywhere.
REQUIRED_MODULES = frozenset({
    "jax", "flax", "optax", "orbax", "seqio", "tensorflow", "tensorflow_text",
    "tensorflow_datasets", "gin", "sentencepiece", "clu", "rouge_score", "sacrebleu", "numpy",
    "scipy", "t5", "synthetic_pretraining", "tensorstore", "msgpack", "nbclient", "nbformat"})


def in_ci() -> bool:
  """True when the environment says this is a CI run (CI=true/1/yes, as CI services set it)."""
  return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing_prerequisite(reason: str) -> None:
  """Skips the calling test with `reason`, or fails it in CI (a CI run must not lose tests)."""
  if in_ci():
    pytest.fail(f"CI=true and a prerequisite is missing: {reason}", pytrace=False)
  pytest.skip(reason, allow_module_level=True)


def shared_data_path(*parts: str) -> pathlib.Path:
  """Path under ../shared/data; skips (fails in CI) the calling test when it is absent."""
  path = SHARED_DATA.joinpath(*parts)
  if not path.exists():
    missing_prerequisite(
        f"shared data not found: {path} (expected ../shared/data beside the repository; "
        "set SP_SHARED_DATA to its location)")
  return path


def require_module(name: str):
  """Imports a required dependency; skips (fails in CI) the calling test if it cannot be imported."""
  try:
    return importlib.import_module(name)
  except ImportError as e:
    missing_prerequisite(f"required dependency {name!r} cannot be imported ({e}); "
                         "run `bash scripts/setup.sh`")
  return None


_IMPORTORSKIP = re.compile(r"could not import '([A-Za-z0-9_.]+)'")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  """In CI, a `pytest.importorskip` of a required module is a failure, not a skip."""
  del item, call
  outcome = yield
  report = outcome.get_result()
  if not (report.skipped and in_ci() and isinstance(report.longrepr, tuple)):
    return
  message = str(report.longrepr[2])
  match = _IMPORTORSKIP.search(message)
  if match and match.group(1).split(".")[0] in REQUIRED_MODULES:
    report.outcome = "failed"
    report.longrepr = f"CI=true and a required dependency is missing: {message}"


@pytest.fixture
def shared_data():
  return shared_data_path
