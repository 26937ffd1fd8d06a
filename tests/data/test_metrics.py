"""Downstream metrics: equal to t5.evaluation.metrics on real data, and by hand on small cases."""

import csv
import json
import random

import numpy as np
import pytest

from synthetic_pretraining.data import metrics
from tests.conftest import require_module
from tests.conftest import shared_data_path

# t5 is a required dependency: a failed import skips these parity tests locally, fails them in CI.
t5_metrics = require_module("t5.evaluation.metrics")
qa_utils = require_module("t5.evaluation.qa_utils")


def perturb(text: str, rng: random.Random) -> str:
  """A prediction that is close to, equal to or far from `text`."""
  words = text.split()
  kind = rng.randrange(6)
  if kind == 0 or not words:
    return text
  if kind == 1:
    return text.upper() + "."
  if kind == 2:
    return " ".join(words[:-1])
  if kind == 3:
    return "the " + " ".join(reversed(words))
  if kind == 4:
    return " ".join(w for w in words if rng.random() < 0.6) + " extra words"
  return ""


@pytest.fixture(scope="module")
def squad_dev():
  path = shared_data_path("squad", "dev-v1.1.json")
  data = json.loads(path.read_text(encoding="utf-8"))["data"]
  answers = [[a["text"] for a in qa["answers"]]
             for article in data for p in article["paragraphs"] for qa in p["qas"]]
  return answers[:400]


def test_squad_equals_t5(squad_dev):
  rng = random.Random(0)
  predictions = [perturb(rng.choice(answers), rng) for answers in squad_dev]
  predictions[5] = squad_dev[77][0]  # a wrong but well-formed answer
  ours = metrics.squad(squad_dev, predictions)
  theirs = t5_metrics.squad(squad_dev, predictions)
  assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)
  assert 5 < ours["em"] < 95 and ours["em"] <= ours["f1"]


def test_squad_normalisation_equals_t5(squad_dev):
  rng = random.Random(1)
  texts = [perturb(a, rng) for answers in squad_dev for a in answers]
  texts += ["The  Eiffel-Tower!", "an apple a day", "Théâtre « national »", "A.B.C."]
  assert [metrics.normalize_squad(t) for t in texts] == [qa_utils.normalize_squad(t) for t in texts]


def test_squad_uses_max_over_answers():
  result = metrics.squad([["Denver Broncos", "the Broncos"], ["Paris"]], ["Broncos", "paris!"])
  # "broncos" vs "denver broncos": F1 2/3; vs "broncos" (article dropped): EM 1.
  assert result == {"em": 100.0, "f1": 100.0}
  result = metrics.squad([["Denver Broncos"]], ["Broncos"])
  assert result["em"] == 0.0 and result["f1"] == pytest.approx(200 / 3)


def test_rouge_equals_t5_on_cnndm_highlights():
  path = shared_data_path("cnn_dailymail", "train_sample_100.csv")
  with open(path, encoding="utf-8", newline="") as f:
    targets = [row["highlights"].replace("\n", " ") for row in csv.DictReader(f)]
  rng = random.Random(2)
  predictions = [perturb(t, rng) for t in targets]
  np.random.seed(0)
  ours = metrics.rouge(targets, predictions)
  np.random.seed(0)
  theirs = t5_metrics.rouge(targets, predictions)
  assert set(ours) == {"rouge1", "rouge2", "rougeLsum"}
  assert ours == theirs
  assert 10 < ours["rouge2"] < ours["rouge1"] < 100


def test_rouge_identical_and_disjoint():
  assert metrics.rouge(["the cat sat ."], ["the cat sat ."]) == pytest.approx(
      {"rouge1": 100.0, "rouge2": 100.0, "rougeLsum": 100.0})
  assert metrics.rouge(["the cat sat ."], ["dogs run fast"]) == pytest.approx(
      {"rouge1": 0.0, "rouge2": 0.0, "rougeLsum": 0.0})


def test_exact_match_f1_identical_disjoint_and_raw():
  code = ["public int Get(){return x;}", "(JOIN (R a.b) m.0)", "C1=CC=CC=C1"]
  assert metrics.exact_match_f1(code, list(code)) == {"em": 100.0, "f1": 100.0}
  assert metrics.exact_match_f1(["a b", "c"], ["x y", "z"]) == {"em": 0.0, "f1": 0.0}
  # Raw strings: no lowercasing or punctuation stripping.
  assert metrics.exact_match_f1(["Hello world"], ["hello world"]) == {"em": 0.0, "f1": 50.0}
  assert metrics.exact_match_f1(["x ."], ["x"])["em"] == 0.0


def test_token_f1_by_hand():
  # shared {a, b}: precision 2/3, recall 2/4 -> F1 = 2 * (1/3) / (7/6) = 4/7.
  assert metrics.token_f1("a b c d", "a b x") == pytest.approx(4 / 7)
  # multiset overlap: a×1 + b×1 = 2 of 3 on both sides.
  assert metrics.token_f1("a a b", "a b b") == pytest.approx(2 / 3)
  assert metrics.exact_match_f1(["a b c d", "a a b"], ["a b x", "a b b"]) == pytest.approx(
      {"em": 0.0, "f1": 100 * (4 / 7 + 2 / 3) / 2})
  # As in the release (t5's token F1): no shared token -> 0, even for two empty strings.
  assert metrics.exact_match_f1([""], [""]) == {"em": 100.0, "f1": 0.0}


def test_token_f1_equals_t5_on_real_lines():
  path = shared_data_path("code_translation", "valid.java-cs.txt.cs")
  targets = path.read_text(encoding="utf-8").split("\n")[:200]
  rng = random.Random(3)
  predictions = [perturb(t, rng) for t in targets]
  t5_f1 = qa_utils._f1_score  # pylint: disable=protected-access
  expected_f1 = 100 * np.mean([t5_f1(t, p) for t, p in zip(targets, predictions)])
  expected_em = 100 * np.mean([t == p for t, p in zip(targets, predictions)])
  result = metrics.exact_match_f1(targets, predictions)
  assert result == pytest.approx({"em": expected_em, "f1": expected_f1}, rel=1e-12)


def test_length_mismatch_and_empty_input_raise():
  with pytest.raises(ValueError, match="2 targets but 1 predictions"):
    metrics.exact_match_f1(["a", "b"], ["a"])
  with pytest.raises(ValueError, match="no examples"):
    metrics.rouge([], [])
  with pytest.raises(ValueError, match="non-empty list of answers"):
    metrics.squad(["Paris"], ["Paris"])


def test_chrf_is_graded_and_bounded():
  from synthetic_pretraining.data import metrics as m
  targets = ["CC(=O)Oc1ccccc1C(=O)O", "public void f ( ) { }"]
  assert m.chrf(targets, targets)["chrf"] == 100.0
  partial = m.chrf(targets, ["CC(=O)Oc1ccccc1", "public void g ( ) { }"])["chrf"]
  assert 30.0 < partial < 100.0
  assert m.chrf(targets, ["xyz", "qqq"])["chrf"] < 5.0
