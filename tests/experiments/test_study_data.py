"""Study data: SQuAD windows, subsets by byte limits, and the copy baseline by hand."""

import random

import pytest

from synthetic_pretraining.experiments import study_data
from synthetic_pretraining.experiments import study_report


def test_squad_window_holds_the_answer_and_fits_the_budget():
  context = ("The quick brown fox jumps over the lazy dog near the river bank while the farmer "
             "watches from the old wooden barn at the edge of the green field .")
  rng = random.Random(0)
  seen_starts = set()
  for _ in range(50):
    text = study_data.squad_window_example("Who watches ?", context, "the farmer", 80, rng)
    assert text is not None and text.startswith("question: Who watches ? context: ")
    window = text.split(" context: ", 1)[1]
    assert "the farmer" in window and len(text.encode()) <= 80
    assert window in context  # a contiguous piece of the paragraph
    assert context.startswith(window) or context[context.index(window) - 1] == " "  # whole words
    seen_starts.add(context.index(window))
  assert len(seen_starts) > 3  # the answer is not always at the same place


def test_squad_window_rejects_missing_answers_and_tiny_budgets():
  rng = random.Random(0)
  assert study_data.squad_window_example("q ?", "a b c", "zebra", 80, rng) is None
  assert study_data.squad_window_example("q ?", "a long answer here", "long answer", 30,
                                         rng) is None


def test_subsets_keep_only_examples_within_the_byte_limits(tmp_path):
  prepared = tmp_path / "prepared" / "retrosynthesis"
  prepared.mkdir(parents=True)
  lines = {"train": ["CC\tC.C", "C" * 40 + "\tC", "CO\tC.O", "é" * 10 + "\tC"],
           "validation": ["CN\tC.N"], "test": ["CCl\tC.Cl", "CBr\t" + "B" * 30]}
  for split, rows in lines.items():
    (prepared / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
  counts = study_data.write_study_splits(
      "retrosynthesis", str(tmp_path / "prepared"), str(tmp_path / "study"), max_input_bytes=16,
      max_target_bytes=16, num_examples={"train": 10, "validation": 10, "test": 10})
  assert counts == {"train": 2, "validation": 1, "test": 1}  # é is 2 bytes: 20 > 16
  assert study_data.read_split(str(tmp_path / "study"), "retrosynthesis", "train") == [
      ("CC", "C.C"), ("CO", "C.O")]


def test_malformed_prepared_line_names_file_and_line(tmp_path):
  prepared = tmp_path / "prepared" / "webqsp"
  prepared.mkdir(parents=True)
  (prepared / "train.tsv").write_text("q\t(JOIN a b)\nno tab here\n", encoding="utf-8")
  with pytest.raises(ValueError, match=r"train\.tsv:2: expected 2 TAB-separated fields"):
    study_data.write_study_splits("webqsp", str(tmp_path / "prepared"), str(tmp_path / "s"),
                                  max_input_bytes=50, max_target_bytes=50,
                                  num_examples={"train": 5, "validation": 5, "test": 5})


def test_copy_baseline_metrics_by_hand():
  # Prediction = input. EM: only the first pair is equal. Token F1 of "a b" vs "a c": 1 shared
  # token of 2 each -> P = R = 0.5 -> F1 = 0.5.
  scores = study_report.example_metrics("retrosynthesis", ["CCO", "a c"], ["CCO", "a b"])
  assert list(scores["em"]) == [100.0, 0.0]
  assert list(scores["f1"]) == [100.0, 50.0]
  assert scores["chrf"][0] == pytest.approx(100.0)
  assert 0.0 < scores["chrf"][1] < 100.0


def test_squad_window_metrics_use_squad_normalisation():
  scores = study_report.example_metrics("squad_window", ["the Denver Broncos"],
                                        ["Denver Broncos ."])
  assert list(scores["em"]) == [100.0]  # articles and punctuation are dropped
