"""An installed (non-editable) copy works: a wheel built by `pip wheel`, installed with
`--no-deps` into a fresh virtualenv whose dependencies come from the test environment's site
packages, trains the tiny model for a few steps from a folder outside the source tree, with the
gin files it ships as package data."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_wheel_in_a_fresh_virtualenv_trains_from_tmp(tmp_path):
  src = tmp_path / "src"
  src.mkdir()
  for name in ("setup.py", "README.md"):
    shutil.copy(REPO_ROOT / name, src / name)
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")  # The build makes _native.
  for name in ("synthetic_pretraining", "tasks", "gin"):
    shutil.copytree(REPO_ROOT / name, src / name, ignore=ignore)
  pip = [sys.executable, "-m", "pip"]
  subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w",
                        str(tmp_path / "dist"), str(src)],
                 check=True, capture_output=True, timeout=300)
  (wheel,) = (tmp_path / "dist").glob("synthetic_pretraining-*.whl")
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                 timeout=120)
  python = venv / "bin" / "python"
  site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                         "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip()
  # Dependencies: the test environment's site packages, as a plain path (its .pth files, e.g. an
  # editable install of this project, are not processed there).
  (pathlib.Path(site) / "test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
  subprocess.run(pip + ["--python", str(python), "install", "--no-deps", "--no-index", "-q",
                        str(wheel)], check=True, capture_output=True, timeout=300)

  work = tmp_path / "elsewhere"  # Under /tmp, outside the source tree.
  work.mkdir()
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",) and not
         k.startswith("SP_")}
  env.update(TF_CPP_MIN_LOG_LEVEL="3", XLA_FLAGS="--xla_force_host_platform_device_count=1")
  where = subprocess.run(
      [str(python), "-c", "import synthetic_pretraining.tasks as t; from synthetic_pretraining."
       "train import main; print(t.__file__); print(main.DEFAULT_GIN_DIR)"],
      cwd=work, env=env, capture_output=True, text=True, timeout=300, check=True).stdout.split()
  assert all(pathlib.Path(p).is_relative_to(site) for p in where[-2:]), where
  run = work / "run"
  result = subprocess.run(
      [str(python), "-m", "synthetic_pretraining.train", "--gin_file=models/tiny.gin",
       "--gin_file=runs/pretrain.gin", "--gin.MIXTURE_OR_TASK_NAME='set'",
       "--gin.VOCABULARY='byte'", f"--gin.MODEL_DIR='{run}'", "--gin.TRAIN_STEPS=3",
       "--gin.BATCH_SIZE=4", "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 32}",
       "--gin.EVAL_STEPS=0", "--gin.LOG_PERIOD=1"],
      cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  assert "step 3: loss" in result.stdout
  assert (run / "checkpoints" / "3").is_dir()
  info = json.loads((run / "run_info.json").read_text())
  assert info["mixture_or_task_name"] == "set" and info["model_config"]["emb_dim"] == 64
