"""The evaluation path from decoded ids to metrics.jsonl, with decoders whose answers are known.

A seqio task over a small TSV file is scored by InferenceEvaluator (the fine-tuning runs' path:
seqio Evaluator, our predict_fn, the project's metric functions, metrics.jsonl, the JSON example
logger) with the decoder replaced by an oracle (every answer right: EM 100), a wrong decoder (EM 0)
and a half-right one (EM 50). The logged predictions are then re-scored by hand.
"""

import collections
import json
import os

import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf

from synthetic_pretraining.data import metrics
from synthetic_pretraining.train import decoding
from synthetic_pretraining.train import evaluation
from synthetic_pretraining.train import metrics_io
from synthetic_pretraining.train import partitioning

VOCAB = seqio.ByteVocabulary()
TASK = "sp_test_oracle_eval"
EXAMPLES = [(f"question {i} {'x' * (i % 5)}", f"answer {i * 7} of {i}") for i in range(10)]


def _parse(line):
  fields = tf.strings.split(line, "\t")
  return {"inputs": fields[0], "targets": fields[1]}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  path = tmp_path_factory.mktemp("oracle") / "test.tsv"
  path.write_text("".join(f"{i}\t{t}\n" for i, t in EXAMPLES), encoding="utf-8")
  if TASK in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(TASK)
  features = {k: seqio.Feature(VOCAB, add_eos=True) for k in ("inputs", "targets")}
  seqio.TaskRegistry.add(
      TASK, source=seqio.TextLineDataSource({"test": str(path)}),
      preprocessors=[lambda ds: ds.map(_parse), seqio.preprocessors.tokenize,
                     seqio.preprocessors.append_eos_after_trim],
      output_features=features, metric_fns=[metrics.exact_match_f1])
  yield TASK
  seqio.TaskRegistry.remove(TASK)


ANSWERS = dict(EXAMPLES)


def _decoder(kind):
  def decode(model, params, tokens, max_len, beam_size, alpha):
    del model, params, beam_size, alpha
    out = []
    for row in np.asarray(tokens):
      question = VOCAB.decode([int(t) for t in row])
      if not question:  # Padding rows of the last batch.
        out.append([1])
        continue
      answer = ANSWERS[question]
      index = int(question.split()[1])
      if kind == "wrong" or (kind == "half" and index % 2):
        answer = answer.replace("answer", "reply")
      ids = VOCAB.encode(answer) + [1]
      assert len(ids) <= max_len
      out.append(ids)
    return out
  return decode


class _Trainer:
  model = None
  mesh = partitioning.create_mesh(1, jax.devices()[:1])


def _token_f1(target, prediction):
  t, p = target.split(), prediction.split()
  shared = sum((collections.Counter(t) & collections.Counter(p)).values())
  if not shared:
    return 0.0
  precision, recall = shared / len(p), shared / len(t)
  return 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("kind,em", [("oracle", 100.0), ("wrong", 0.0), ("half", 50.0)])
def test_decoded_ids_to_metrics_jsonl(task, tmp_path, monkeypatch, kind, em):
  monkeypatch.setattr(decoding, "decode_tokens", _decoder(kind))
  evaluator = evaluation.InferenceEvaluator(
      mixture_or_task_name=task, task_feature_lengths={"inputs": 32, "targets": 32},
      split="test", batch_size=4, beam_size=1, write_n_results=None)
  model_dir = str(tmp_path / "run")
  evaluator(trainer=_Trainer(), params=None, step=7, model_dir=model_dir)

  records = [r for r in metrics_io.read(model_dir) if r["group"] == "inference_eval"]
  assert len(records) == 1 and records[0]["task"] == task and records[0]["step"] == 7
  assert records[0]["em"] == pytest.approx(em)

  # Re-score the logged predictions by hand: every example, raw string equality and token F1.
  logged = [json.loads(line) for line in
            open(os.path.join(model_dir, "inference_eval", f"{task}-000007.jsonl"))]
  assert len(logged) == len(EXAMPLES)
  assert sorted(r["target"] for r in logged) == sorted(t for _, t in EXAMPLES)
  rescored_em = 100 * np.mean([r["prediction"] == r["target"] for r in logged])
  rescored_f1 = 100 * np.mean([_token_f1(r["target"], r["prediction"]) for r in logged])
  assert rescored_em == pytest.approx(em)
  assert records[0]["em"] == pytest.approx(rescored_em)
  assert records[0]["f1"] == pytest.approx(rescored_f1)
  if kind == "wrong":
    assert 0 < records[0]["f1"] < 100  # "reply N of i" still shares tokens with "answer N of i".
