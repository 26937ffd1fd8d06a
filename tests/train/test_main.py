"""The gin entry point: clear configuration errors, resume after a kill, incompatible checkpoints."""

import os
import signal
import subprocess
import sys
import time

import gin
import numpy as np
import pytest

from synthetic_pretraining.train import checkpoints
from synthetic_pretraining.train import loop
from synthetic_pretraining.train import main
from tests.conftest import REPO_ROOT

TOY = ["--gin_file=models/tiny.gin", "--gin_file=runs/pretrain.gin",
       "--gin.MIXTURE_OR_TASK_NAME='toy_copy'", "--gin.MIXTURE_OR_TASK_MODULE='tests.train.toy_tasks'",
       "--gin.TASK_FEATURE_LENGTHS={'inputs': 12, 'targets': 12}", "--gin.BATCH_SIZE=8",
       "--gin.EVAL_STEPS=0", "--gin.LOG_PERIOD=10"]


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def run_in_process(model_dir, *extra):
  return main.main(TOY + [f"--gin.MODEL_DIR='{model_dir}'", *extra])


def test_misspelt_binding_names_the_parameter(tmp_path):
  with pytest.raises(main.GinConfigError, match="doesn't have a parameter named 'trian_steps'"):
    run_in_process(tmp_path, "--gin.loop.train.trian_steps=3")


def test_unknown_gin_file_and_flag():
  with pytest.raises(main.GinConfigError, match="gin file 'runs/pretrian.gin' not found"):
    main.parse_gin(["runs/pretrian.gin"], [], [main.DEFAULT_GIN_DIR])
  with pytest.raises(SystemExit):
    main.parse_flags(["--gin_file=runs/pretrain.gin", "--steps=3"])


def test_missing_required_macro_is_named():
  with pytest.raises(main.GinConfigError, match="required gin macro.* not set: MODEL_DIR"):
    main.main(TOY)


def test_console_reports_missing_macro_without_traceback():
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  proc = subprocess.run([sys.executable, "-m", "synthetic_pretraining.train", *TOY],
                        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert "error: required gin macro(s) not set: MODEL_DIR" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_incompatible_checkpoint_names_the_parameters(tmp_path):
  run_in_process(tmp_path, "--gin.TRAIN_STEPS=1", "--gin.PERIOD=1")
  gin.clear_config()
  # Resuming with another model is refused as a change of run (issue 14) ...
  with pytest.raises(loop.RunConfigMismatchError, match="model_config: recorded {'mlp_dim': 256}"):
    run_in_process(tmp_path, "--gin.TRAIN_STEPS=2", "--gin.t5.T5Config.mlp_dim=128")
  gin.clear_config()
  # ... and when allowed, the checkpoint's parameters are checked against the model's.
  with pytest.raises(checkpoints.IncompatibleCheckpointError) as error:
    run_in_process(tmp_path, "--gin.TRAIN_STEPS=2", "--gin.t5.T5Config.mlp_dim=128",
                   "--gin.ALLOW_CONFIG_CHANGE=True")
  message = str(error.value)
  assert "encoder/layers_0/mlp/wi/kernel: checkpoint (64, 256) vs model (64, 128)" in message
  assert "decoder/layers_1/mlp/wo/kernel" in message
  assert "attention/query" not in message  # only the differing parameters are listed


def _cli(model_dir, steps, period):
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3",
             XLA_FLAGS="--xla_force_host_platform_device_count=8")
  cmd = [sys.executable, "-m", "synthetic_pretraining.train", *TOY, f"--gin.MODEL_DIR='{model_dir}'",
         f"--gin.TRAIN_STEPS={steps}", f"--gin.PERIOD={period}", "--gin.DROPOUT_RATE=0.1",
         "--gin.FACTORS='constant'", "--gin.LEARNING_RATE=0.01"]
  return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _steps(model_dir):
  ckpt_dir = os.path.join(model_dir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    return []
  return sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())


def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path):
  """Kill a run (SIGKILL) after its step-20 checkpoint; the resumed run matches at step 40."""
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  reference = _cli(straight, 40, 20)
  victim = _cli(killed, 10_000, 20)
  deadline = time.time() + 240
  while 20 not in _steps(killed):
    assert victim.poll() is None, victim.stdout.read()
    assert time.time() < deadline, "no checkpoint within 240 s"
    time.sleep(0.05)
  victim.send_signal(signal.SIGKILL)
  victim.wait()
  for step in _steps(killed):  # Keep only the step-20 checkpoint, as if killed right after it.
    if step > 20:
      subprocess.run(["rm", "-rf", os.path.join(killed, "checkpoints", str(step))], check=True)
  resumed = _cli(killed, 40, 20)
  out, _ = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, out
  assert "resumed from" in out and "/checkpoints/20" in out
  out_ref, _ = reference.communicate(timeout=300)
  assert reference.returncode == 0, out_ref
  a = checkpoints.load_params(os.path.join(straight, "checkpoints", "40"))
  b = checkpoints.load_params(os.path.join(killed, "checkpoints", "40"))
  import jax  # pylint: disable=g-import-not-at-top
  diffs = jax.tree.leaves(jax.tree.map(lambda x, y: float(np.abs(x - y).max()), a, b))
  assert max(diffs) <= 1e-6
  # And training did move the parameters (the comparison is not between two untouched inits).
  c = checkpoints.load_params(os.path.join(killed, "checkpoints", "20"))
  moved = jax.tree.leaves(jax.tree.map(lambda x, y: float(np.abs(x - y).max()), b, c))
  assert max(moved) > 1e-3


def test_eval_gin_evaluates_a_checkpoint(tmp_path):
  from synthetic_pretraining.train import metrics_io
  run_in_process(tmp_path / "run", "--gin.TRAIN_STEPS=3", "--gin.PERIOD=3")
  gin.clear_config()
  out = tmp_path / "eval"
  main.main(["--gin_file=models/tiny.gin", "--gin_file=runs/eval.gin",
             "--gin.MIXTURE_OR_TASK_NAME='toy_copy'",
             "--gin.MIXTURE_OR_TASK_MODULE='tests.train.toy_tasks'",
             "--gin.TASK_FEATURE_LENGTHS={'inputs': 12, 'targets': 12}", "--gin.BATCH_SIZE=8",
             "--gin.EVAL_STEPS=2", f"--gin.CHECKPOINT_PATH='{tmp_path / 'run'}'",
             f"--gin.MODEL_DIR='{out}'", "--gin.evaluation.evaluate.inference_evaluator=None"])
  records = list(metrics_io.read(str(out)))
  assert len(records) == 1
  assert records[0]["step"] == 3 and records[0]["group"] == "training_eval"
  assert records[0]["num_tokens"] > 0 and 0.0 <= records[0]["accuracy"] <= 1.0
