"""Every SPEC §5.3 / §5.4 setting of every pre-training and fine-tuning gin file, as resolved by gin.

The values are read from the parsed configuration (macros resolved, configurables called), not from
the files' text, so the pins hold however the files are arranged (includes, shared bases).
Expected values are SPEC §5.1-§5.4's tables, written out here.
"""

import inspect

import gin
import pytest

from synthetic_pretraining.train import main

GIN_DIR = main.DEFAULT_GIN_DIR

# SPEC §5.4 table (+ §3 feature lengths): lr, steps, batch, ckpt = eval period, max decode, pack,
# inference split, #examples, (input, target) lengths.
FINETUNE = {
    "cnndm_10k": (1e-3, 100_000, 128, 10_000, 148, False, "test", 20_000, (512, 256)),
    "code_translation": (3e-3, 150_000, 32, 10_000, 1024, False, "test", 5_000, (1024, 1024)),
    "mtop": (1e-3, 100_000, 128, 10_000, 128, False, "test", 5_000, (1024, 128)),
    "retrosynthesis": (3e-3, 400_000, 128, 10_000, 256, False, "test", 5_000, (256, 256)),
    "squad": (1e-3, 250_000, 128, 10_000, 128, True, "validation", 20_000, (512, 128)),
    "webqsp": (1e-3, 50_000, 32, 5_000, 256, False, "test", 20_000, (2048, 256)),
}
# SPEC §5.3: release pretrain.sh (80k steps at 512/512) and the authors' final_exps settings.
PRETRAIN = {
    "synthetic": ("set", 80_000, (512, 512)),
    "natural_span_corruption": ("natural_span_corruption", 80_000, (512, 512)),
    "lime": ("lime", 224_288, (256, 256)),
    "nonsense_summary": ("nonsense_summary", 224_288, (1024, 1024)),
    "nesting_language": ("nesting_language", 524_288, (256, 256)),
}


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def resolve(value):
  """A binding's value with macro references (%NAME) followed to their final value."""
  for _ in range(20):
    if isinstance(value, gin.config.ConfigurableReference) and value.selector == "gin.macro":
      value = gin.query_parameter(str(value))
    else:
      return value
  raise AssertionError(f"macro chain too long at {value}")


def binding(selector):
  return resolve(gin.query_parameter(selector))


def _references(value, name) -> bool:
  if isinstance(value, gin.config.ConfigurableReference):
    return value.selector == "gin.macro" and str(value) == f"%{name}"
  if isinstance(value, (list, tuple)):
    return any(_references(v, name) for v in value)
  if isinstance(value, dict):
    return any(_references(v, name) for v in value.values())
  return False


def setting(name):
  """A macro's resolved value, after checking that some configurable's binding uses it (so the
  value reaches the run, whatever the configurable is called after a refactor)."""
  value = resolve(gin.query_parameter(f"%{name}"))
  # pylint: disable=protected-access
  users = [key for key, params in gin.config._CONFIG.items() if key[1] != "gin.macro"
           for v in params.values() if _references(v, name)]
  macro_users = [key for key, params in gin.config._CONFIG.items() if key[1] == "gin.macro"
                 and key[0] != name for v in params.values() if _references(v, name)]
  assert users or any(setting_is_used(k[0]) for k in macro_users), f"macro {name} is not used"
  return value


def setting_is_used(name) -> bool:
  try:
    setting(name)
    return True
  except AssertionError:
    return False


def effective(selector, fn):
  """The value `fn` receives for its parameter: the gin binding, else the signature's default."""
  try:
    return binding(selector)
  except ValueError:
    return inspect.signature(fn).parameters[selector.rsplit(".", 1)[1]].default


def _parse(files, bindings):
  main.parse_gin(["models/t5_small.gin", *files], ["MODEL_DIR = '/tmp/x'", *bindings], [GIN_DIR])


def _schedule():
  """The learning-rate schedule as the run builds it (optim.learning_rate_schedule under gin)."""
  from synthetic_pretraining.train import optim  # pylint: disable=g-import-not-at-top
  fn = optim.learning_rate_schedule()
  return lambda step: float(fn(step))


def _common_model_and_training_pins():
  assert binding("t5.T5Config.dropout_rate") == 0.1 and setting("DROPOUT_RATE") == 0.1
  assert binding("t5.T5Config.vocab_size") == 32128
  assert setting("MODEL_CONFIG") is not None
  assert setting("KEEP_CHECKPOINTS") is None  # All checkpoints kept.
  assert setting("EVAL_PERIOD") == setting("PERIOD")  # Teacher-forced eval at every checkpoint.
  # Adafactor (SPEC §5.2) as the run would construct it: gin bindings, else optim.adafactor's
  # defaults (tests/train/test_adafactor_reference.py checks what those settings do).
  from synthetic_pretraining.train import optim  # pylint: disable=g-import-not-at-top
  spec_5_2 = {"decay_rate": 0.8, "clipping_threshold": 1.0, "min_dim_size_to_factor": 128,
              "multiply_by_parameter_scale": True, "epsilon1": 1e-30, "momentum": None}
  for key, value in spec_5_2.items():
    assert effective(f"optim.adafactor.{key}", optim.adafactor) == value, key


@pytest.mark.parametrize("task", sorted(FINETUNE))
def test_finetune_file_binds_the_spec_table(task):
  lr, steps, batch, period, decode, pack, split, num_examples, lengths = FINETUNE[task]
  _parse([f"experiments/finetune/{task}.gin"], [])
  from synthetic_pretraining.train import evaluation  # pylint: disable=g-import-not-at-top
  assert setting("MIXTURE_OR_TASK_NAME") == task
  assert setting("TRAIN_STEPS") == steps
  assert setting("BATCH_SIZE") == batch
  assert setting("PERIOD") == period
  assert setting("EVAL_PERIOD") == period
  assert setting("PACK") is pack
  assert setting("TASK_FEATURE_LENGTHS") == {"inputs": lengths[0], "targets": lengths[1]}
  assert setting("Z_LOSS") == 1e-4  # Base gin's z-loss in fine-tuning.
  # Teacher-forced accuracy on 128 batches of the validation split.
  assert setting("EVAL_STEPS") == 128
  schedule = _schedule()  # Constant LR, no warm-up.
  assert schedule(0) == pytest.approx(lr) and schedule(steps) == pytest.approx(lr)
  assert schedule(123) == pytest.approx(lr)
  # Inference eval: beam 4, alpha 0.6, max decode length, split and number of examples.
  ev = "evaluation.InferenceEvaluator"
  assert binding(f"{ev}.mixture_or_task_name") == task
  assert setting("BEAM_SIZE") == 4 and binding(f"{ev}.beam_size") == 4
  assert effective(f"{ev}.alpha", evaluation.InferenceEvaluator.__init__) == 0.6
  assert setting("MAX_DECODE_LENGTH") == decode
  assert binding(f"{ev}.max_decode_length") == decode
  assert setting("INFER_EVAL_SPLIT") == split and binding(f"{ev}.split") == split
  assert setting("EVALUATOR_NUM_EXAMPLES") == num_examples
  assert binding(f"{ev}.num_examples") == num_examples
  assert binding(f"{ev}.task_feature_lengths") == setting("TASK_FEATURE_LENGTHS")
  _common_model_and_training_pins()


@pytest.mark.parametrize("name", sorted(PRETRAIN))
def test_pretrain_file_binds_the_spec_settings(name):
  task, steps, lengths = PRETRAIN[name]
  extra = ["MIXTURE_OR_TASK_NAME = 'set'"] if name == "synthetic" else []
  _parse([f"experiments/pretrain/{name}.gin"], extra)
  assert setting("MIXTURE_OR_TASK_NAME") == task
  assert setting("TRAIN_STEPS") == steps
  assert setting("BATCH_SIZE") == 128
  assert setting("PERIOD") == 5_000
  assert setting("EVAL_PERIOD") == 5_000
  assert setting("EVAL_STEPS") == 20
  assert setting("PACK") is False
  assert setting("Z_LOSS") == 0.0  # The pre-training gin overrides z-loss to 0.
  assert setting("TASK_FEATURE_LENGTHS") == {"inputs": lengths[0], "targets": lengths[1]}
  assert setting("INITIAL_CHECKPOINT_PATH") is None
  # lr = 1/sqrt(max(step, 10 000)): 0.01 for the first 10k steps, then inverse-sqrt decay.
  schedule = _schedule()
  for step, rate in [(0, 0.01), (1, 0.01), (9_999, 0.01), (10_000, 0.01), (40_000, 0.005),
                     (250_000, 0.002)]:
    assert schedule(step) == pytest.approx(rate, rel=1e-6), step
  _common_model_and_training_pins()


@pytest.mark.parametrize("name", ["table2_init", "table3_pre_attn_ln"])
def test_table_files_keep_the_finetune_defaults(name):
  bindings = ["MIXTURE_OR_TASK_NAME = 'mtop'"]
  if name == "table2_init":
    bindings += ["STATISTICS_CHECKPOINT = '/tmp/s'", "INIT_ID = 'per_param_grouping___init_scale'"]
  _parse([f"experiments/{name}.gin"], bindings)
  assert setting("Z_LOSS") == 1e-4
  assert setting("EVAL_STEPS") == 128
  assert binding("evaluation.InferenceEvaluator.beam_size") == 4
  _common_model_and_training_pins()


def test_t5_small_model_matches_spec_5_1():
  _parse(["experiments/finetune/mtop.gin"], [])
  expected = {"emb_dim": 512, "num_heads": 8, "head_dim": 64, "num_encoder_layers": 6,
              "num_decoder_layers": 6, "mlp_dim": 2048, "mlp_activations": ("relu",),
              "logits_via_embedding": True, "dtype": "float32"}
  for key, value in expected.items():
    assert binding(f"t5.T5Config.{key}") == value, key


def test_setting_requires_the_macro_to_reach_a_configurable():
  _parse(["experiments/finetune/mtop.gin"], [])
  gin.parse_config("UNUSED_SETTING = 3")
  assert gin.query_parameter("%UNUSED_SETTING") == 3
  with pytest.raises(AssertionError, match="not used"):
    setting("UNUSED_SETTING")
  assert setting("EVAL_PERIOD") == 10_000  # Used through a configurable's binding.
