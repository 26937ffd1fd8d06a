"""A short fine-tune of the tiny model on each available real downstream task: training, decoding,
postprocessing, the task's metrics, and the metrics file (the evaluation hook-up of fine-tuning)."""

import json
import os

import pytest

from tests.conftest import shared_data_path

TASKS = {  # task → (metrics its inference eval must report)
    "code_translation": ("em", "f1", "chrf"),
    "retrosynthesis": ("em", "f1", "chrf"),
    "squad": ("em", "f1"),
    "webqsp": ("em", "f1", "chrf"),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  shared = shared_data_path()
  from synthetic_pretraining.data import prepare
  out = tmp_path_factory.mktemp("finetune_data")
  for task in TASKS:
    prepare.prepare_task(task, data_dir=out, from_dir=shared, log=lambda _: None)
  return out


@pytest.mark.parametrize("task", sorted(TASKS))
def test_short_finetune_writes_task_metrics(task, prepared, tmp_path):
  import gin
  import seqio
  import synthetic_pretraining.tasks as registry
  from synthetic_pretraining.model import t5
  from synthetic_pretraining.train import evaluation, loop, metrics_io, optim
  registry.register_all(seqio.ByteVocabulary(extra_ids=100))
  gin.clear_config()
  gin.bind_parameter("downstream_data_dir.data_dir", str(prepared))
  lengths = {"inputs": 64, "targets": 32}
  evaluator = evaluation.InferenceEvaluator(
      mixture_or_task_name=task, task_feature_lengths=lengths,
      split="validation" if task == "squad" else "test", num_examples=6, batch_size=6,
      beam_size=2, write_n_results=2)
  loop.train(model_dir=str(tmp_path), model_config=t5.get_config("tiny"),
             dataset=loop.DatasetConfig(task, lengths, 8), train_steps=2,
             learning_rate_fn=optim.learning_rate_schedule("constant", 1e-3),
             evaluation=loop.EvalConfig(period=2, steps=1),
             checkpointing=loop.CheckpointConfig(period=2), log_period=1,
             inference_evaluator=evaluator)
  gin.clear_config()
  records = list(metrics_io.read(str(tmp_path)))
  infer = [r for r in records if r["group"] == "inference_eval"]
  assert len(infer) == 1 and infer[0]["step"] == 2 and infer[0]["task"] == task
  for metric in TASKS[task]:
    assert 0.0 <= infer[0][metric] <= 100.0
  assert any(r["group"] == "training_eval" and 0.0 <= r["accuracy"] <= 1.0 for r in records)
  # seqio's JSON logger wrote the step's predictions with a few examples.
  logged = os.listdir(tmp_path / "inference_eval")
  assert f"{task}-metrics.jsonl" in logged
  assert f"{task}-000002.jsonl" in logged, logged
  lines = (tmp_path / "inference_eval" / f"{task}-000002.jsonl").read_text().splitlines()
  assert len(lines) == 2 and "prediction" in json.loads(lines[0])
