"""The mini-experiment pipeline end to end in a reduced configuration (real data, few steps)."""

import csv
import json
import os

import gin
import pytest

from tests.conftest import shared_data_path


@pytest.mark.slow
def test_mini_experiment_reduced(tmp_path, monkeypatch):
  raw = shared_data_path("retrosynthesis", "train_sources").parent.parent
  monkeypatch.setenv("SP_VOCAB", "byte")
  from synthetic_pretraining.experiments import mini
  gin.clear_config()
  tables = mini.mini_experiment(
      out_dir=str(tmp_path), seeds=1, raw_data_dir=str(raw),
      pretrain_tasks={"set": "set", "natural": "natural_span_corruption"},
      downstream_tasks=["retrosynthesis", "mtop"], synthetic_length_range=(10, 20),
      pretrain_lengths={"inputs": 32, "targets": 32}, pretrain_steps=3, pretrain_batch_size=8,
      finetune_lengths={"inputs": 48, "targets": 48}, finetune_steps=4, finetune_batch_size=8,
      eval_period=2, eval_steps=1, max_input_bytes=40, max_target_bytes=40,
      num_train_examples=64, num_validation_examples=16, num_test_examples=8, beam_size=2,
      metrics=("em", "chrf"))
  # mtop has no raw data here: it is skipped with instructions, the rest still runs.
  summary = json.loads((tmp_path / "mini_summary.json").read_text())
  assert summary["tasks"] == ["retrosynthesis"]
  for method in ("from_scratch", "set", "natural"):
    run = tmp_path / "seed_0" / "finetune" / method / "retrosynthesis"
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    infer = [r for r in records if r["group"] == "inference_eval"]
    assert [r["step"] for r in infer] == [2, 4]
    assert all(0.0 <= r["chrf"] <= 100.0 and r["em"] in (0.0, 12.5, 25.0, 37.5, 50.0, 62.5, 75.0,
                                                          87.5, 100.0) for r in infer)
    assert (run / "inference_eval").is_dir()
  # Pre-trained checkpoints were transferred into the fine-tuning runs.
  assert os.path.isdir(tmp_path / "seed_0" / "pretrain" / "set" / "checkpoints" / "3")
  for metric in ("em", "chrf"):
    out = tmp_path / "results" / metric
    assert (out / "benefit.png").stat().st_size > 0
    markdown = (out / "results.md").read_text()
    assert "| set |" in markdown and "retrosynthesis" in markdown
  # The table's benefit for Set equals the formula applied to the runs' own metrics.jsonl:
  # score = chrf at the step of best validation accuracy (first on ties).
  def score(method):
    run = tmp_path / "seed_0" / "finetune" / method / "retrosynthesis"
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    acc = [(r["accuracy"], -r["step"]) for r in records if r["group"] == "training_eval"]
    best = -max(acc)[1]
    return next(r["chrf"] for r in records if r["group"] == "inference_eval" and r["step"] == best)
  s_set, s_nat, s_scr = score("set"), score("natural"), score("from_scratch")
  rows = list(csv.DictReader((tmp_path / "results" / "chrf" / "results.csv").open()))
  row = next(r for r in rows if r["method"] == "set" and r["task"] == "retrosynthesis")
  assert float(row["score_mean"]) == pytest.approx(s_set)
  if s_nat != s_scr:
    assert float(row["benefit_mean"]) == pytest.approx(100 * (s_set - s_scr) / (s_nat - s_scr))
  else:
    assert row["benefit_mean"] == ""
  assert set(tables) == {"em", "chrf"}
