"""Two local processes × 4 CPU devices (jax.distributed, gloo) train like one process × 8 devices."""

import os
import socket
import subprocess
import sys

import pytest

from synthetic_pretraining.train import metrics_io
from tests.conftest import REPO_ROOT

ARGS = ["--gin_file=models/tiny.gin", "--gin_file=runs/pretrain.gin",
        "--gin.MIXTURE_OR_TASK_NAME='toy_copy'", "--gin.MIXTURE_OR_TASK_MODULE='tests.train.toy_tasks'",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 12, 'targets': 12}", "--gin.BATCH_SIZE=8",
        "--gin.TRAIN_STEPS=4", "--gin.PERIOD=100", "--gin.LOG_PERIOD=1", "--gin.EVAL_STEPS=0",
        "--gin.NUM_PARTITIONS=2", "--gin.loop.DatasetConfig.shuffle=False"]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(model_dir, devices, extra_env):
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **extra_env)
  return subprocess.Popen([sys.executable, "-m", "synthetic_pretraining.train", *ARGS,
                           f"--gin.MODEL_DIR='{model_dir}'"], cwd=REPO_ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _losses(model_dir):
  return [r["loss"] for r in metrics_io.read(model_dir) if r["group"] == "train"]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
  single_dir, multi_dir = str(tmp_path / "single"), str(tmp_path / "multi")
  port = _free_port()
  procs = [_launch(single_dir, 8, {})]
  procs += [_launch(multi_dir, 4, {"SP_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                                   "SP_NUM_PROCESSES": "2", "SP_PROCESS_ID": str(i),
                                   "SP_CPU_COLLECTIVES": "gloo"}) for i in range(2)]
  outputs = []
  for proc in procs:
    out, _ = proc.communicate(timeout=420)
    outputs.append(out)
    assert proc.returncode == 0, out
  assert "mesh {'data': 4, 'model': 2}" in outputs[1]  # 8 global devices across 2 processes
  single, multi = _losses(single_dir), _losses(multi_dir)
  assert len(single) == len(multi) == 4
  assert multi == pytest.approx(single, rel=1e-5)
  assert single[-1] < single[0]
