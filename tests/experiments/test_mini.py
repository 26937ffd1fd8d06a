"""The mini-study end to end in its smoke profile (real data, a few steps per run)."""

import csv
import json
import math

import numpy as np
import pytest

from tests.conftest import shared_data_path


@pytest.mark.slow
def test_mini_study_smoke_produces_every_output(tmp_path):
  raw = shared_data_path("retrosynthesis", "train_sources").parent.parent
  from synthetic_pretraining.experiments import mini
  out = tmp_path / "study"
  assert mini.main(["--profile", "smoke", "--out", str(out), "--raw_data_dir", str(raw)]) == 0
  results = out / "results"
  summary = json.loads((results / "summary.json").read_text())
  rows = ("from_scratch", "natural", "set", "lime", "identity", "set_statistics", "pre_attn_ln",
          "copy")
  assert set(summary["rows"]) == set(rows)
  for row in rows:
    assert {"benefit", "ci_low", "ci_high"} <= set(summary["rows"][row])
  task = summary["tasks"]["retrosynthesis"]
  assert {"natural_minus_scratch", "se", "in_headline"} <= set(task)
  assert task["num_test_examples"] == 24 and task["num_seeds"] == 2
  phases = summary["phases"]
  assert summary["wall_seconds"] > 0 and phases["preparation"] >= 0
  # Every phase the budget is reported by: preparation, each pre-training, fine-tuning (of which
  # evaluation), tables.
  for row in ("natural", "set", "lime", "identity"):
    assert phases[f"pretrain/{row} (worker seconds)"] > 0
  assert 0 < phases["evaluation, inside finetune (worker seconds)"] < phases[
      "finetune (worker seconds)"]
  assert phases["tables"] > 0
  assert "paper: 67 / 65 / 39" in summary["headline"]
  assert summary["sentences"]
  # natural − scratch recomputed from the runs' own per-example files.
  def per_byte(row):
    loss = tokens = 0.0
    for seed in range(2):
      with np.load(out / "finetune" / row / "retrosynthesis" / f"seed_{seed}" /
                   "test_eval.npz") as f:
        loss += f["loss_sum"].sum()
        tokens += f["num_tokens"].sum()
    return loss / tokens
  assert task["natural_minus_scratch"] == pytest.approx(per_byte("from_scratch") -
                                                         per_byte("natural"))
  # Copy baseline: exact match of input vs target over the test split, by hand.
  test_lines = (out / "data" / "study" / "retrosynthesis" / "test.tsv").read_text().splitlines()
  pairs = [line.split("\t") for line in test_lines]
  expected_em = 100.0 * sum(i == t for i, t in pairs) / len(pairs)
  assert task["copy"]["em"] == pytest.approx(expected_em)
  markdown = (results / "results.md").read_text()
  assert "| set_statistics |" in markdown and "copy (prediction = input)" in markdown
  with open(results / "results.csv", newline="") as f:
    records = list(csv.DictReader(f))
  assert {r["row"] for r in records} >= set(rows)
  assert (results / "benefit.png").stat().st_size > 1000
  # Re-running skips every finished run and reproduces the same numbers.
  assert mini.main(["--profile", "smoke", "--out", str(out), "--raw_data_dir", str(raw)]) == 0
  again = json.loads((results / "summary.json").read_text())
  assert again["tasks"]["retrosynthesis"]["natural_minus_scratch"] == pytest.approx(
      task["natural_minus_scratch"])
  assert not any(key.startswith(("finetune (worker", "evaluation")) for key in again["phases"])


def test_gpu_profile_plans_a_t5_small_sized_study():
  import gin
  from synthetic_pretraining.experiments import mini
  from synthetic_pretraining.train import main as train_main
  train_main.parse_gin([mini.PROFILES["gpu"]], [], None)
  try:
    cfg = mini.StudyConfig()
  finally:
    gin.clear_config()
  assert cfg.model_gin == "models/t5_small.gin" and cfg.workers == 1
  assert "ACTIVATION_DTYPE = 'bfloat16'" in cfg.model_bindings
  assert cfg.finetune_batch_size == 128 and cfg.seeds >= 3
  assert set(cfg.rows) == set(mini.ALL_ROWS)
  runs = mini.plan_runs(cfg, "/out", "/data")
  finetunes = [r for r in runs if r.phase == "finetune"]
  assert len(finetunes) == len(cfg.tasks) * cfg.seeds * len(cfg.rows)
  assert [r.key for r in runs[:1]] == ["pretrain/natural"]  # longest pre-training first
  stats_run = next(r for r in finetunes if "/set_statistics/" in r.key)
  assert "INIT_ID = 'per_param_grouping___init_scale'" in stats_run.bindings
  assert stats_run.deps == ["pretrain/set"]


@pytest.mark.slow
def test_gpu_profile_runs_on_cpu_at_smoke_size(tmp_path):
  """The gpu profile's run files, bf16 activations and one-worker set-up, with a shrunk model."""
  raw = shared_data_path("retrosynthesis", "train_sources").parent.parent
  from synthetic_pretraining.experiments import mini
  out = tmp_path / "gpu"
  shrink = ("--gin.study.StudyConfig.model_bindings=['t5.T5Config.vocab_size = 384', "
            "'t5.T5Config.emb_dim = 32', 't5.T5Config.num_heads = 2', 't5.T5Config.head_dim = 16', "
            "'t5.T5Config.mlp_dim = 64', 't5.T5Config.num_encoder_layers = 1', "
            "'t5.T5Config.num_decoder_layers = 1', \"ACTIVATION_DTYPE = 'bfloat16'\"]")
  assert mini.main(["--profile", "gpu", "--smoke", "--out", str(out), "--raw_data_dir", str(raw),
                    "--seeds", "1", shrink,
                    "--gin.study.StudyConfig.rows=['from_scratch', 'natural']"]) == 0
  summary = json.loads((out / "results" / "summary.json").read_text())
  assert set(summary["rows"]) == {"from_scratch", "natural", "copy"}
  info = json.loads((out / "finetune" / "natural" / "retrosynthesis" / "seed_0" /
                      "run_info.json").read_text())
  assert info["model_config"]["dtype"] == "bfloat16"
  assert info["model_config"]["num_encoder_layers"] == 1
