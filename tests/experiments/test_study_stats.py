"""The mini-study's statistics on hand-built inputs with known answers."""

import math

import numpy as np
import pytest

from synthetic_pretraining.experiments import study_stats


def _task(rng, shifts, seeds=3, n=400, noise=0.0):
  """Rows whose loss is scratch's minus shift·tokens (+ zero-mean noise per seed and example)."""
  tokens = rng.integers(3, 30, n).astype(float)
  base = rng.gamma(2.0, 1.0, (seeds, n)) * tokens
  loss = {"from_scratch": base}
  for row, shift in shifts.items():
    loss[row] = base - shift * tokens + noise * rng.standard_normal((seeds, n)) * np.sqrt(tokens)
  return study_stats.TaskData(loss, tokens)


def test_score_is_loss_per_token_over_all_seeds_and_examples():
  loss = {"from_scratch": np.array([[2.0, 4.0], [6.0, 8.0]]),
          "natural": np.array([[1.0, 1.0], [1.0, 1.0]])}
  data = study_stats.TaskData(loss, np.array([1.0, 3.0]))
  scores = study_stats.scores(data)
  assert scores["from_scratch"][0] == pytest.approx(20.0 / 8.0)  # (2+4+6+8) / (2 seeds · 4)
  assert scores["natural"][0] == pytest.approx(4.0 / 8.0)
  # Resampling counts: example 1 twice, seed 0 only -> (4+4) / (3+3).
  weighted = study_stats.scores(data, np.array([[0.0, 2.0]]), np.array([[1.0, 0.0]]))
  assert weighted["from_scratch"][0] == pytest.approx(8.0 / 6.0)


def test_zero_gap_is_left_out_of_the_headline():
  rng = np.random.default_rng(0)
  separated = _task(rng, {"natural": 0.5, "set": 0.25}, noise=0.2)
  flat = _task(rng, {"natural": 0.0, "set": 0.25}, noise=0.2)
  stats = study_stats.analyse({"a": separated, "b": flat}, ["natural", "set"],
                              num_replicates=500)
  assert stats.tasks["a"]["in_headline"] and not stats.tasks["b"]["in_headline"]
  assert stats.headline_tasks == ["a"]
  assert "b" in stats.excluded and "natural − scratch" in stats.excluded["b"]
  # The headline uses task a only: Set's gain is half of natural's.
  assert stats.rows["set"]["headline_tasks"] == ["a"]
  assert stats.rows["set"]["benefit"] == pytest.approx(50.0, abs=3.0)


def test_constant_shift_gives_the_expected_percentage_and_a_ci_that_contains_it():
  rng = np.random.default_rng(1)
  task = _task(rng, {"natural": 0.4, "set": 0.1, "worse": -0.2}, noise=0.3)
  stats = study_stats.analyse({"t": task}, ["natural", "set", "worse"], num_replicates=1000)
  set_row = stats.tasks["t"]["rows"]["set"]
  assert set_row["benefit"] == pytest.approx(25.0, abs=4.0)
  assert set_row["ci_low"] < 25.0 < set_row["ci_high"]
  assert set_row["ci_high"] - set_row["ci_low"] < 30  # informative, not degenerate
  worse = stats.tasks["t"]["rows"]["worse"]
  assert worse["ci_low"] < -50.0 < worse["ci_high"] and worse["ci_high"] < 0
  natural = stats.rows["natural"]
  assert natural["benefit"] == pytest.approx(100.0)
  assert natural["ci_low"] == pytest.approx(100.0) and natural["ci_high"] == pytest.approx(100.0)


def test_exact_shift_without_noise_has_a_point_interval():
  rng = np.random.default_rng(2)
  task = _task(rng, {"natural": 0.5, "set": 0.2})  # gains proportional to tokens: ratio fixed
  stats = study_stats.analyse({"t": task}, ["natural", "set"], num_replicates=200)
  row = stats.tasks["t"]["rows"]["set"]
  assert row["benefit"] == pytest.approx(40.0)
  assert row["ci_low"] == pytest.approx(40.0) and row["ci_high"] == pytest.approx(40.0)


def test_headline_is_the_ratio_of_summed_gains():
  rng = np.random.default_rng(3)
  # Task a: natural gains 1.0/token, set 0.9; task b: natural 0.1, set 0.0. Same token totals
  # would give (0.9 + 0) / (1.0 + 0.1); compute the expectation from the scores themselves.
  a = _task(rng, {"natural": 1.0, "set": 0.9})
  b = _task(rng, {"natural": 0.1, "set": 0.0})
  stats = study_stats.analyse({"a": a, "b": b}, ["natural", "set"], num_replicates=200)
  gains = {t: stats.tasks[t]["rows"]["set"]["gain"] for t in "ab"}
  gaps = {t: stats.tasks[t]["natural_minus_scratch"] for t in "ab"}
  assert gaps["a"] == pytest.approx(1.0 * a.tokens.sum() / a.tokens.sum())
  expected = 100 * (gains["a"] + gains["b"]) / (gaps["a"] + gaps["b"])
  assert stats.rows["set"]["benefit"] == pytest.approx(expected)
  assert expected == pytest.approx(100 * 0.9 / 1.1)
  # The mean of per-task ratios would be (90 + 0) / 2 = 45 %: not what the headline reports.
  assert not math.isclose(stats.rows["set"]["benefit"], 45.0, abs_tol=1.0)


def test_pairing_makes_a_small_consistent_gain_significant():
  """A gain far below the between-example spread is still separated thanks to pairing."""
  rng = np.random.default_rng(4)
  task = _task(rng, {"natural": 0.02}, noise=0.01, n=1000)
  stats = study_stats.analyse({"t": task}, ["natural"], num_replicates=500)
  assert stats.tasks["t"]["in_headline"]
  spread = np.std(task.loss["from_scratch"] / task.tokens)
  assert 0.02 < 0.05 * spread  # unpaired, this gap would be lost in the spread


def test_bad_shapes_are_rejected():
  with pytest.raises(ValueError, match="examples"):
    study_stats.TaskData({"from_scratch": np.zeros((2, 3)), "natural": np.zeros((2, 4))},
                         np.ones(3))
  with pytest.raises(ValueError, match="natural"):
    study_stats.analyse({"t": study_stats.TaskData({"from_scratch": np.zeros((1, 3))},
                                                   np.ones(3))}, ["from_scratch"])


def test_metric_bootstrap_mean_and_interval():
  values = {"a": np.array([[0.0, 100.0, 100.0, 0.0]] * 2), "b": np.full((2, 4), 50.0)}
  out = study_stats.paired_bootstrap_metric(values, num_replicates=300)
  assert out["a"]["mean"] == pytest.approx(50.0)
  assert out["b"]["ci_low"] == pytest.approx(50.0) and out["b"]["ci_high"] == pytest.approx(50.0)
  assert out["a"]["ci_low"] < 50.0 < out["a"]["ci_high"]


def test_exclusion_reason_says_whether_natural_is_worse_or_within_noise():
  rng = np.random.default_rng(5)
  worse = _task(rng, {"natural": -0.5}, noise=0.1)
  noisy = _task(rng, {"natural": 0.001}, noise=0.5, n=50)
  stats = study_stats.analyse({"worse": worse, "noisy": noisy}, ["natural"], num_replicates=300)
  assert "not better than from-scratch" in stats.excluded["worse"]
  assert "within 2 standard errors" in stats.excluded["noisy"]
  assert stats.headline_tasks == []
  assert math.isnan(stats.rows["natural"]["benefit"])
