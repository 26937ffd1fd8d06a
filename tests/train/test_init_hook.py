"""The statistics / constant initialisations wired into the gin-bound training loop.

The loop calls `init_hook(params)` on a fresh run (after the optional weight transfer) and trains
from the result. It never saves a step-0 checkpoint (`train_steps = 0` returns before the loop), so
the end-to-end test trains ONE step with learning rate 0: Adafactor's update is then lr·u = 0 and
the step-1 checkpoint holds exactly the initial parameters. That this really is a no-op is checked
by the same test: every parameter the hook must not touch has to equal a default initialisation
with the same seed bit for bit.
"""

import os
import re
import shlex

import gin
import jax
import numpy as np
import pytest

from synthetic_pretraining.model import t5
from synthetic_pretraining.train import checkpoints
from synthetic_pretraining.train import init_stats
from synthetic_pretraining.train import main

GIN_DIR = main.DEFAULT_GIN_DIR
TABLE2 = "experiments/table2_init.gin"
TABLE3 = "experiments/table3_pre_attn_ln.gin"
PRE_ATTENTION_LN = re.compile(r"(encoder/layers_\d+/pre_attention_layer_norm|"
                              r"decoder/layers_\d+/pre_(self|cross)_attention_layer_norm)/scale$")
# Runs the gin-bound loop on the toy copy task: tiny model, one step, no evaluation.
TOY_RUN = ["MIXTURE_OR_TASK_NAME = 'toy_copy'", "MIXTURE_OR_TASK_MODULE = 'tests.train.toy_tasks'",
           "TASK_FEATURE_LENGTHS = {'inputs': 12, 'targets': 12}", "BATCH_SIZE = 8",
           "TRAIN_STEPS = 1", "EVAL_PERIOD = 0", "LOG_PERIOD = 1",
           "loop.train.inference_evaluator = None"]


@pytest.fixture(autouse=True)
def _clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def _flat(tree):
  return {k: np.asarray(v) for k, v in init_stats.flatten_params(tree).items()}


def _default_init(seed=0):
  return _flat(jax.device_get(t5.init_params(t5.get_config("tiny"), seed)))


def _statistics_source():
  """A tiny-model tree whose statistics differ clearly from a default init's."""
  rng = np.random.default_rng(5)
  source = {}
  for name, value in _default_init(seed=3).items():
    source[name] = (value * rng.uniform(0.2, 2.0) + rng.normal(0, 0.3, value.shape)).astype(
        np.float32)
  return source


@pytest.mark.slow
def test_gin_bound_loop_trains_from_the_statistics_initialisation(tmp_path):
  source = _statistics_source()
  stats_dir = tmp_path / "statistics_run"
  writer = checkpoints.Checkpointer(str(stats_dir))
  writer.save(7, {"params": init_stats.unflatten_params(source)}, force=True)
  writer.close()
  model_dir = tmp_path / "finetune"
  main.parse_gin(["models/tiny.gin", TABLE2], TOY_RUN + [
      f"MODEL_DIR = '{model_dir}'", "LEARNING_RATE = 0.0",
      "INIT_ID = 'preattnln_per_param_grouping___init_scale'",
      f"STATISTICS_CHECKPOINT = '{stats_dir}'"], [GIN_DIR])

  main.run()

  assert sorted(int(d) for d in os.listdir(model_dir / "checkpoints") if d.isdigit()) == [1]
  saved = _flat(checkpoints.load_params(str(model_dir)))
  default = _default_init(seed=0)
  assert saved.keys() == default.keys()
  changed = sorted(n for n in saved if PRE_ATTENTION_LN.match(n))
  assert len(changed) == 2 + 2 * 2  # encoder: 1 per layer; decoder: self + cross per layer
  for name in saved:
    if name in changed:
      mean = np.mean(source[name].astype(np.float64))
      np.testing.assert_array_equal(saved[name], np.full(source[name].shape, np.float32(mean)),
                                    err_msg=name)
      assert not np.allclose(saved[name], default[name])
    else:
      np.testing.assert_array_equal(saved[name], default[name], err_msg=name)
  # The run directory records how it was initialised.
  config = (model_dir / "config.gin").read_text()
  assert "INIT_HOOK = @init_stats.apply_initialisation" in config
  assert re.search(r"^(loop\.)?InitConfig\.hook = %INIT_HOOK$", config, re.M)
  assert "INIT_ID = 'preattnln_per_param_grouping___init_scale'" in config

  # A resumed run restores its checkpoint and does not re-initialise.
  from synthetic_pretraining.train import loop  # pylint: disable=g-import-not-at-top

  def must_not_run(params):
    raise AssertionError("init_hook called on resume")

  gin.clear_config()
  loop.train(model_dir=str(model_dir), model_config=t5.get_config("tiny"),
             dataset=loop.DatasetConfig("toy_copy", {"inputs": 12, "targets": 12}, 8,
                                        module="tests.train.toy_tasks"),
             train_steps=1, evaluation=loop.EvalConfig(period=0),
             initialization=loop.InitConfig(hook=must_not_run))


def test_table2_hook_through_gin_matches_init_from_statistics(tmp_path):
  """The file's bindings reach `init_from_statistics` with the bound scheme, seed and checkpoint."""
  source = _statistics_source()
  npz = tmp_path / "stats.npz"
  init_stats.save_npz_params(str(npz), init_stats.unflatten_params(source))
  default = _default_init()
  main.parse_gin(["models/tiny.gin", TABLE2], [
      "MIXTURE_OR_TASK_NAME = 'toy_copy'", f"MODEL_DIR = '{tmp_path / 'run'}'",
      "INIT_ID = 'per_param_grouping___init_scale'", f"STATISTICS_CHECKPOINT = '{npz}'",
      "INIT_SEED = 11"], [GIN_DIR])
  hook = gin.query_parameter("%INIT_HOOK")
  assert hook.configurable.wrapped is init_stats.apply_initialisation.__wrapped__

  result = _flat(init_stats.apply_initialisation(init_stats.unflatten_params(default)))

  expected = _flat(init_stats.init_from_statistics(init_stats.unflatten_params(default),
                                                   init_stats.unflatten_params(source),
                                                   "per_param_grouping___init_scale", seed=11))
  assert result.keys() == expected.keys()
  for name in result:
    np.testing.assert_array_equal(result[name], expected[name], err_msg=name)
  np.testing.assert_array_equal(result["token_embedder/embedding"],
                                default["token_embedder/embedding"])
  norm = "decoder/layers_1/pre_mlp_layer_norm/scale"
  np.testing.assert_array_equal(result[norm], np.float32(np.mean(source[norm].astype(np.float64))))


@pytest.mark.parametrize("include_pre_mlp", [False, True])
def test_table3_hook_through_gin_sets_the_constant(tmp_path, include_pre_mlp):
  default = _default_init()
  main.parse_gin(["models/tiny.gin", TABLE3], [
      "MIXTURE_OR_TASK_NAME = 'toy_copy'", f"MODEL_DIR = '{tmp_path / 'run'}'",
      "PRE_ATTN_LN_VALUE = 0.15", f"INCLUDE_PRE_MLP = {include_pre_mlp}"], [GIN_DIR])
  assert gin.query_parameter("%INIT_HOOK").configurable.wrapped is (
      init_stats.apply_initialisation.__wrapped__)

  result = _flat(init_stats.apply_initialisation(init_stats.unflatten_params(default)))

  set_names = [n for n in result if PRE_ATTENTION_LN.match(n) or (
      include_pre_mlp and n.endswith("pre_mlp_layer_norm/scale"))]
  assert len(set_names) == (6 + 4 if include_pre_mlp else 6)
  for name in result:
    if name in set_names:
      np.testing.assert_array_equal(result[name], np.full(default[name].shape, np.float32(0.15)))
    else:
      np.testing.assert_array_equal(result[name], default[name], err_msg=name)


def test_table3_default_value_is_the_release_default(tmp_path):
  main.parse_gin(["models/t5_small.gin", TABLE3], [
      "MIXTURE_OR_TASK_NAME = 'code_translation'", f"MODEL_DIR = '{tmp_path}'"], [GIN_DIR])
  assert gin.query_parameter("%PRE_ATTN_LN_VALUE") == 0.4
  assert gin.query_parameter("%INCLUDE_PRE_MLP") is False
  # Table 3 starts from a default init: no checkpoint is transferred.
  assert gin.query_parameter("%INITIAL_CHECKPOINT_PATH") is None


def test_table2_requires_its_macros(tmp_path):
  with pytest.raises(main.GinConfigError, match="INIT_ID, STATISTICS_CHECKPOINT"):
    main.parse_gin(["models/t5_small.gin", TABLE2], [
        "MIXTURE_OR_TASK_NAME = 'code_translation'", f"MODEL_DIR = '{tmp_path}'"], [GIN_DIR])


def _header_command(path):
  """The command in a gin file's leading comment, as argv after `python -m <module>`."""
  with open(path, encoding="utf-8") as f:
    comment = [line[1:].strip() for line in iter(f.readline, "") if line.startswith("#")]
  first = next(i for i, line in enumerate(comment) if line.startswith("python -m "))
  command = []
  for line in comment[first:]:
    command.append(line.rstrip("\\").strip())
    if not line.endswith("\\"):
      break
  argv = shlex.split(" ".join(command))
  assert argv[:3] == ["python", "-m", "synthetic_pretraining.train"]
  return argv[3:]


def _task_settings(gin_files, bindings):
  main.parse_gin(gin_files, bindings, [GIN_DIR])
  settings = {m: gin.query_parameter(f"%{m}") for m in (
      "MIXTURE_OR_TASK_NAME", "LEARNING_RATE", "TRAIN_STEPS", "BATCH_SIZE", "PERIOD",
      "MAX_DECODE_LENGTH", "TASK_FEATURE_LENGTHS")}
  gin.clear_config()
  return settings


@pytest.mark.parametrize("gin_file", [TABLE2, TABLE3])
def test_the_header_command_parses_and_keeps_the_task_settings(gin_file):
  """The command each experiment file documents is complete (no macro unset), binds the hook, and
  keeps the per-task file's settings (its include of runs/finetune.gin comes last)."""
  argv = _header_command(os.path.join(GIN_DIR, gin_file))
  args = main.parse_flags(argv)
  task_files = [f for f in args.gin_file if f.startswith("experiments/finetune/")]
  assert gin_file in args.gin_file and len(task_files) == 1
  expected = _task_settings(["models/t5_small.gin", task_files[0]], ["MODEL_DIR = '/tmp/x'"])

  main.parse_gin(args.gin_file, args.gin_bindings, [GIN_DIR])

  assert gin.query_parameter("%INIT_HOOK").configurable.wrapped is (
      init_stats.apply_initialisation.__wrapped__)
  assert {m: gin.query_parameter(f"%{m}") for m in expected} == expected
  assert gin.query_parameter("%EVALUATOR_NUM_EXAMPLES") == 10000
  assert gin.query_parameter("%INITIAL_CHECKPOINT_PATH") is None
  if gin_file == TABLE2:
    init_stats.parse_init_id(gin.query_parameter("%INIT_ID"))
