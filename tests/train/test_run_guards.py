"""Runs that cannot silently go wrong (issue 14 item 6) and one explicit run configuration (issue 11):
vocabulary-size check, non-finite loss, MODEL_DIR lock, resume compatibility and history,
fallback from a corrupted checkpoint, no skeleton folders, one metrics record per step after a
resume, every bound configurable used."""

import json
import os
import re
import shutil

import gin
import jax
import numpy as np
import pytest

from synthetic_pretraining.model import t5
from synthetic_pretraining.train import checkpoints
from synthetic_pretraining.train import loop
from synthetic_pretraining.train import main
from synthetic_pretraining.train import metrics_io

TOY = ["MIXTURE_OR_TASK_NAME = 'toy_copy'", "MIXTURE_OR_TASK_MODULE = 'tests.train.toy_tasks'",
       "TASK_FEATURE_LENGTHS = {'inputs': 12, 'targets': 12}", "BATCH_SIZE = 8",
       "EVAL_STEPS = 0", "LOG_PERIOD = 1", "FACTORS = 'constant'", "LEARNING_RATE = 0.01"]
FILES = ["models/tiny.gin", "runs/pretrain.gin"]


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def run(model_dir, *bindings, files=FILES):
  return main.run_from_gin(files, TOY + [f"MODEL_DIR = '{model_dir}'", *bindings])


def steps_of(model_dir):
  return sorted(int(d) for d in os.listdir(os.path.join(model_dir, "checkpoints")) if d.isdigit())


def params_equal(a, b):
  return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


def test_vocabulary_too_small_fails_before_training_with_both_sizes(tmp_path):
  model_dir = tmp_path / "run"
  with pytest.raises(loop.VocabularyMismatchError) as error:
    run(model_dir, "VOCAB_SIZE = 100", "TRAIN_STEPS = 2")
  message = str(error.value)
  assert "vocabulary size 100" in message and "359 ids" in message  # ByteVocabulary + 100 extra
  assert "VOCAB_SIZE" in message and "'toy_copy'" in message
  assert not model_dir.exists()  # Checked before anything is created.


def test_vocabulary_equal_to_the_task_size_is_accepted():
  import seqio  # pylint: disable=g-import-not-at-top
  import tests.train.toy_tasks  # pylint: disable=g-import-not-at-top,unused-import
  toy = seqio.get_mixture_or_task("toy_copy")
  loop.check_vocabulary_size(t5.get_config("tiny", vocab_size=359), toy)
  with pytest.raises(loop.VocabularyMismatchError, match="358 .*359 ids"):
    loop.check_vocabulary_size(t5.get_config("tiny", vocab_size=358), toy)


def _toy_dataset():
  return loop.DatasetConfig("toy_copy", {"inputs": 12, "targets": 12}, 8,
                            module="tests.train.toy_tasks")


def test_nonfinite_loss_stops_the_run_and_leaves_no_skeleton(tmp_path):
  def nan_everywhere(params):
    return jax.tree.map(lambda x: np.full_like(np.asarray(x), np.nan), params)

  def train(model_dir, **kwargs):
    loop.train(model_dir=str(model_dir), model_config=t5.get_config("tiny"),
               dataset=_toy_dataset(), train_steps=1,
               checkpointing=loop.CheckpointConfig(period=1),
               initialization=loop.InitConfig(hook=nan_everywhere), **kwargs)

  fresh = tmp_path / "fresh"
  with pytest.raises(loop.NonFiniteLossError, match=r"loss is nan at step 1.*stop_on_nonfinite"):
    train(fresh)
  assert not fresh.exists()  # No checkpoint was written; the folder it created is gone.
  existing = tmp_path / "existing"
  existing.mkdir()
  (existing / "notes.txt").write_text("mine")
  with pytest.raises(loop.NonFiniteLossError):
    train(existing)
  assert sorted(os.listdir(existing)) == ["notes.txt"]  # Only what the run created is removed.
  # Configurable: the same run goes on when asked to.
  train(fresh, stop_on_nonfinite_loss=False)
  assert steps_of(fresh) == [1]
  losses = [r["loss"] for r in metrics_io.read(str(fresh)) if r["group"] == "train"]
  assert losses == [None]  # NaN is written as null.


def test_live_run_holds_the_model_dir(tmp_path):
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  holder = checkpoints.ModelDirLock(str(model_dir)).acquire()  # As another live run would.
  try:
    with pytest.raises(checkpoints.ModelDirInUseError, match=rf"in use by another live run "
                       rf"\(pid {os.getpid()} on "):
      run(model_dir, "TRAIN_STEPS = 1")
  finally:
    holder.release()
  assert os.listdir(model_dir) == []


def test_resume_with_another_configuration_is_refused_unless_allowed(tmp_path):
  model_dir = tmp_path / "run"
  run(model_dir, "TRAIN_STEPS = 1", "PERIOD = 1")
  for binding, field in (("BATCH_SIZE = 16", "batch_size: recorded 8, now 16"),
                         ("TASK_FEATURE_LENGTHS = {'inputs': 12, 'targets': 10}",
                          "task_feature_lengths"),
                         ("t5.T5Config.mlp_dim = 128", "model_config: recorded {'mlp_dim': 256}"),
                         ("MIXTURE_OR_TASK_NAME = 'other'", "mixture_or_task_name")):
    if "other" in binding:  # A second registered task, same data.
      import seqio  # pylint: disable=g-import-not-at-top
      toy = seqio.get_mixture_or_task("toy_copy")
      seqio.TaskRegistry.remove("other")
      seqio.TaskRegistry.add("other", source=toy.source, output_features=toy.output_features,
                             preprocessors=toy.preprocessors)
    gin.clear_config()
    with pytest.raises(loop.RunConfigMismatchError, match=re.escape(field)):
      run(model_dir, "TRAIN_STEPS = 2", binding)
  assert steps_of(model_dir) == [1]
  gin.clear_config()
  run(model_dir, "TRAIN_STEPS = 2", "PERIOD = 1", "BATCH_SIZE = 16", "ALLOW_CONFIG_CHANGE = True")
  assert steps_of(model_dir) == [1, 2]
  info = checkpoints.read_run_info(str(model_dir))
  assert info["batch_size"] == 16
  assert [h["start_step"] for h in info["history"]] == [0, 1]
  assert [h["batch_size"] for h in info["history"]] == [8, 16]
  assert info["history"][1]["changed"] == {"batch_size": {"recorded": 8, "now": 16}}


def test_corrupted_newest_checkpoint_falls_back_and_metrics_keep_one_record_per_step(
    tmp_path, capsys):
  straight, broken = tmp_path / "straight", tmp_path / "broken"
  run(straight, "TRAIN_STEPS = 4", "PERIOD = 1")
  shutil.copytree(straight, broken)
  # The reproduction: the newest step's metadata truncated. And what a SIGKILL leaves:
  # a lock file without a live holder, a half-written metrics line.
  with open(broken / "checkpoints" / "4" / "default" / "_METADATA", "r+b") as f:
    f.truncate(1000)
  (broken / ".lock").write_text('{"pid": 999999999, "host": "gone", "since": "then"}')
  with open(broken / metrics_io.METRICS_FILE, "a", encoding="utf-8") as f:
    f.write('{"step": 5, "gr')
  gin.clear_config()
  capsys.readouterr()
  run(broken, "TRAIN_STEPS = 4", "PERIOD = 1")
  out = capsys.readouterr().out
  assert f"checkpoint {broken}/checkpoints/4 cannot be read" in out
  assert f"resumed from {broken}/checkpoints/3" in out
  assert (broken / "checkpoints_corrupted" / "4").is_dir()
  assert steps_of(broken) == [1, 2, 3, 4] and not (broken / ".lock").exists()
  # Bit-identical to the uninterrupted run.
  assert params_equal(checkpoints.load_params(str(broken / "checkpoints" / "4")),
                      checkpoints.load_params(str(straight / "checkpoints" / "4")))
  # One train record per step: step 4's, written before the corruption, was dropped.
  steps = [r["step"] for r in metrics_io.read(str(broken)) if r["group"] == "train"]
  assert steps == [1, 2, 3, 4]
  ref = {r["step"]: r["loss"] for r in metrics_io.read(str(straight)) if r["group"] == "train"}
  got = {r["step"]: r["loss"] for r in metrics_io.read(str(broken)) if r["group"] == "train"}
  assert got == pytest.approx(ref, rel=1e-6)


# Data folders are resolved when a dataset of a task that reads them is built (a toy task reads
# none); tests/data/test_downstream_tasks.py and test_synthetic_sources.py show their bindings
# reach the data.
LAZY = {"downstream_data_dir.data_dir", "synthetic_data_dir.path", "natural_corpus.path"}


def _keys(config_text):
  """'selector.param' of every binding in a gin config string (macros excluded; a scope such as
  the `MODEL_CONFIG/` of a macro-evaluated reference is dropped)."""
  keys = set()
  for line in config_text.splitlines():
    match = re.match(r"^([A-Za-z_][\w./]*)\.(\w+) = ", line)
    if match:
      keys.add(f"{match.group(1).rsplit('/', 1)[-1]}.{match.group(2)}")
  return keys


def test_finetune_run_uses_every_bound_configurable(tmp_path):
  # What gin reports as used by the run (its operative configuration) holds every binding the
  # files and command line make: nothing bound is silently ignored.
  run(tmp_path / "run", "TRAIN_STEPS = 1", "PERIOD = 1", "INFER_EVAL_SPLIT = 'validation'",
      "EVALUATOR_NUM_EXAMPLES = 8", "INFER_BATCH_SIZE = 8", "BEAM_SIZE = 1",
      "MAX_DECODE_LENGTH = 4",
      files=["models/tiny.gin", "runs/finetune.gin", "experiments/table3_pre_attn_ln.gin"])
  bound, used = _keys(gin.config_str()), _keys(gin.operative_config_str())
  assert "InitConfig.hook" in bound and not bound - used - LAZY, sorted(bound - used)


@pytest.mark.parametrize("binding", ["checkpoints.Checkpointer.period = 1",
                                     "partitioning.create_mesh.num_partitions = 2",
                                     "loop.train.checkpoint_period = 1"])
def test_bindings_that_would_be_ignored_are_rejected(tmp_path, binding):
  with pytest.raises(main.GinConfigError):
    run(tmp_path / "run", "TRAIN_STEPS = 1", binding)
  assert not (tmp_path / "run").exists()


def test_config_objects_reach_the_run_and_every_binding_is_used(tmp_path):
  # A binding of each config object's fields changes what the run does ...
  run(tmp_path / "a", "TRAIN_STEPS = 3", "loop.CheckpointConfig.period = 2",
      "loop.EvalConfig.steps = 1", "loop.EvalConfig.period = 3",
      "trainer.LossConfig.z_loss = 0.5", "loop.DatasetConfig.seed = 7")
  assert steps_of(tmp_path / "a") == [2, 3]
  records = list(metrics_io.read(str(tmp_path / "a")))
  assert [r["step"] for r in records if r["group"] == "training_eval"] == [3]
  assert all(r["z_loss"] > 0.0 for r in records if r["group"] == "train")  # pretrain: Z_LOSS 0
  info = json.loads((tmp_path / "a" / "run_info.json").read_text())
  assert info["mixture_or_task_name"] == "toy_copy" and info["batch_size"] == 8
  # ... and gin reports every binding of the files and the command line as used.
  bound, used = _keys(gin.config_str()), _keys(gin.operative_config_str())
  assert "DatasetConfig.seed" in bound and not bound - used - LAZY, sorted(bound - used)


def test_bad_values_name_the_parameter(tmp_path):
  with pytest.raises(ValueError, match=r"train_steps \(macro TRAIN_STEPS\) must be an integer "
                     r">= 0, got 'abc'"):
    run(tmp_path / "run", "TRAIN_STEPS = 'abc'")
  gin.clear_config()
  with pytest.raises(ValueError, match=r"TASK_FEATURE_LENGTHS\['inputs'\] must be an integer "
                     r">= 1, got 0"):
    run(tmp_path / "run", "TRAIN_STEPS = 1", "TASK_FEATURE_LENGTHS = {'inputs': 0, 'targets': 4}")
  assert not (tmp_path / "run").exists()
