"""Every gin file parses, starts with its command and what it produces, and binds SPEC values."""

import pathlib

import gin
import pytest

from synthetic_pretraining.train import main

GIN_DIR = pathlib.Path(main.DEFAULT_GIN_DIR)
RUN_FILES = sorted(p.relative_to(GIN_DIR).as_posix() for p in GIN_DIR.rglob("*.gin")
                   if not p.relative_to(GIN_DIR).as_posix().startswith("models/"))
REQUIRED = ["MIXTURE_OR_TASK_NAME = 'set'", "MODEL_DIR = '/tmp/x'", "CHECKPOINT_PATH = '/tmp/c'",
            "STATISTICS_CHECKPOINT = '/tmp/s'", "INIT_ID = 'per_param_grouping___init_scale'",
            "PRE_ATTN_LN_VALUE = 0.4", "STUDY_DATA_DIR = '/tmp/study_data'"]


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.mark.parametrize("name", sorted(p.relative_to(GIN_DIR).as_posix()
                                        for p in GIN_DIR.rglob("*.gin")))
def test_header_gives_command_and_product(name):
  text = (GIN_DIR / name).read_text()
  header = text.split("\n\n")[0]
  assert text.startswith("# "), name
  commands = ("python -m synthetic_pretraining.train", "synthetic-pretraining mini",
              "Use with a run file")
  assert any(c in header for c in commands), f"{name}: header must give the command"
  assert "Produces" in header, f"{name}: header must say what the run produces"


@pytest.mark.parametrize("name", RUN_FILES)
def test_run_files_parse_with_their_required_macros(name):
  bindings = []
  for binding in REQUIRED:
    macro = binding.split(" = ")[0]
    if f"{macro} = %gin.REQUIRED" in _all_text(GIN_DIR / name):
      bindings.append(binding)
  main.parse_gin(["models/tiny.gin", name], bindings, [str(GIN_DIR)])
  assert gin.query_parameter("%MODEL_CONFIG") is not None
  assert main.unset_required_macros() == []


def _all_text(path: pathlib.Path) -> str:
  text = path.read_text()
  for line in text.splitlines():
    if line.startswith("include "):
      text += _all_text(GIN_DIR / line.split("'")[1])
  return text


@pytest.mark.parametrize("task,lr,steps,batch", [("code_translation", 3e-3, 150_000, 32),
                                                 ("retrosynthesis", 3e-3, 400_000, 128),
                                                 ("webqsp", 1e-3, 50_000, 32),
                                                 ("squad", 1e-3, 250_000, 128)])
def test_finetune_experiments_bind_spec_settings(task, lr, steps, batch):
  main.parse_gin(["models/t5_small.gin", f"experiments/finetune/{task}.gin"],
                 ["MODEL_DIR = '/tmp/x'"], [str(GIN_DIR)])
  assert gin.query_parameter("%LEARNING_RATE") == lr
  assert gin.query_parameter("%TRAIN_STEPS") == steps
  assert gin.query_parameter("%BATCH_SIZE") == batch
  assert gin.query_parameter("%BEAM_SIZE") == 4
  assert gin.query_parameter("%FACTORS") == "constant"
  assert str(gin.query_parameter("optim.learning_rate_schedule.factors")) == "%FACTORS"


def test_pretrain_experiment_binds_paper_schedule():
  main.parse_gin(["models/t5_small.gin", "experiments/pretrain/synthetic.gin"],
                 ["MODEL_DIR = '/tmp/x'", "MIXTURE_OR_TASK_NAME = 'set'"], [str(GIN_DIR)])
  assert gin.query_parameter("%TRAIN_STEPS") == 80_000
  assert gin.query_parameter("%TASK_FEATURE_LENGTHS") == {"inputs": 512, "targets": 512}
  assert gin.query_parameter("%Z_LOSS") == 0.0
  assert gin.query_parameter("%FACTORS") == "constant * rsqrt_decay"
  assert gin.query_parameter("%WARMUP_STEPS") == 10_000


def test_includes_resolve_beside_an_unrelated_runs_folder(tmp_path, monkeypatch):
  """A `runs/` folder on sys.path (e.g. experiment outputs in the working directory) looks like a
  Python package to gin's package reader; includes must still come from the project's gin/."""
  (tmp_path / "runs").mkdir()
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.chdir(tmp_path)
  main.parse_gin(["models/tiny.gin", "experiments/finetune/webqsp.gin"],
                 ["MODEL_DIR = '/tmp/x'"], [str(GIN_DIR)])
  assert gin.query_parameter("%TRAIN_STEPS") == 50_000


@pytest.mark.parametrize("table", ["experiments/table2_init.gin",
                                   "experiments/table3_pre_attn_ln.gin"])
def test_include_order_does_not_matter(table):
  # Both files include runs/finetune.gin; each file is read once, so either order gives the same
  # configuration (the task's settings are not reset by a later include).
  bindings = ["MODEL_DIR = '/tmp/x'", "INIT_ID = 'per_param_grouping___init_scale'",
              "STATISTICS_CHECKPOINT = '/tmp/s'"]
  bindings = [b for b in bindings if b.split(" = ")[0] in _all_text(GIN_DIR / table) + "MODEL_DIR"]
  configs = []
  for files in ([table, "experiments/finetune/retrosynthesis.gin"],
                ["experiments/finetune/retrosynthesis.gin", table]):
    gin.clear_config()
    main.parse_gin(["models/t5_small.gin", *files], bindings, [str(GIN_DIR)])
    assert gin.query_parameter("%TRAIN_STEPS") == 400_000  # retrosynthesis.gin's, not the base's
    assert gin.query_parameter("%MIXTURE_OR_TASK_NAME") == "retrosynthesis"
    assert str(gin.query_parameter("%INIT_HOOK")) == "@init_stats.apply_initialisation"
    configs.append(gin.config_str())
  assert configs[0] == configs[1]


def test_a_file_given_twice_is_read_once():
  files = main.parse_gin(["models/t5_small.gin", "experiments/finetune/squad.gin",
                          "runs/finetune.gin"], ["MODEL_DIR = '/tmp/x'"], [str(GIN_DIR)])
  assert len(files) == len(set(files))
  assert gin.query_parameter("%TRAIN_STEPS") == 250_000  # Not reset to runs/finetune.gin's.
