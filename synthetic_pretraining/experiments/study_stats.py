"""Paired statistics of the mini-study: scores, % of benefit and bootstrap confidence intervals.

Inputs, per task: for every row (method) an array `loss[seed, example]` of summed target
cross-entropies and one `tokens[example]` of target-token counts (the same test examples, in the
same order, for every row and seed; seed s of every row shares its data order and dropout seed).

* Score of a row on a task: loss per target token, Σ_s Σ_i loss[s, i] / (S · Σ_i tokens[i])
  (lower is better). The gain of a row is S_scratch − S_row (positive when the row helps).
* % of benefit of a row on a task: 100 · (S_scratch − S_row) / (S_scratch − S_natural).
* Headline over the tasks that separate: 100 · Σ_t gain_row,t / Σ_t gain_natural,t (the ratio of
  summed gains; a per-task average of ratios is unstable when one denominator is small).
* Paired bootstrap over test examples and seeds: each replicate draws examples with replacement
  (per task) and seeds with replacement, and applies the SAME draw to every row, so differences
  between rows keep their pairing. Standard errors are the replicates' standard deviation;
  intervals are the 2.5/97.5 percentiles.
* Separation: a task enters the headline when natural's gain exceeds `z` (default 2) standard
  errors. The rule looks only at the natural and from-scratch rows, so it is decided before
  looking at the synthetic rows.

Decoded metrics (EM, F1, chrF) use the same machinery with per-example scores (higher is better)
through `paired_bootstrap_metric`.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

SCRATCH = "from_scratch"
NATURAL = "natural"


@dataclasses.dataclass
class TaskData:
  """Per-example results of one task: {row: loss[seed, example]} and tokens[example]."""
  loss: Mapping[str, np.ndarray]
  tokens: np.ndarray

  def __post_init__(self):
    self.tokens = np.asarray(self.tokens, np.float64)
    shapes = {row: np.shape(v) for row, v in self.loss.items()}
    seeds = {s[0] for s in shapes.values()}
    if any(len(s) != 2 or s[1] != len(self.tokens) for s in shapes.values()) or len(seeds) != 1:
      raise ValueError(f"every row needs loss[seed, example] with {len(self.tokens)} examples and "
                       f"one seed count; got shapes {shapes}")
    self.loss = {row: np.asarray(v, np.float64) for row, v in self.loss.items()}

  @property
  def num_seeds(self) -> int:
    return next(iter(self.loss.values())).shape[0]


def scores(data: TaskData, example_weights: np.ndarray | None = None,
           seed_weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Loss per target token of every row, for B weightings (counts) of examples and seeds.

  `example_weights` [B, N] and `seed_weights` [B, S] are resampling counts; None = all ones.
  Returns {row: [B]} (B = 1 without weights).
  """
  n, s = len(data.tokens), data.num_seeds
  w = np.ones((1, n)) if example_weights is None else np.asarray(example_weights, np.float64)
  c = np.ones((1, s)) if seed_weights is None else np.asarray(seed_weights, np.float64)
  denominator = c.sum(1) * (w @ data.tokens)
  return {row: (c * (w @ loss.T)).sum(1) / denominator for row, loss in data.loss.items()}


def resampling_counts(rng: np.random.Generator, num_replicates: int, size: int) -> np.ndarray:
  """[B, size] counts of a with-replacement draw of `size` items, B times."""
  return np.stack([np.bincount(rng.integers(0, size, size), minlength=size)
                   for _ in range(num_replicates)]).astype(np.float64)


@dataclasses.dataclass
class StudyStatistics:
  """Everything the tables print (see `analyse`)."""
  tasks: dict
  rows: dict
  headline_tasks: list
  excluded: dict
  num_replicates: int


def analyse(data: Mapping[str, TaskData], rows: Sequence[str], *, z: float = 2.0,
            num_replicates: int = 2000, seed: int = 0) -> StudyStatistics:
  """Scores, gaps, separation test, % of benefit per task and headline, with bootstrap CIs."""
  rng = np.random.default_rng(seed)
  num_seeds = {t.num_seeds for t in data.values()}
  if len(num_seeds) != 1:
    raise ValueError(f"every task needs the same seeds; got {sorted(num_seeds)}")
  seed_counts = resampling_counts(rng, num_replicates, num_seeds.pop())
  tasks, replicate_gains = {}, {}
  for name, task in data.items():
    for needed in (SCRATCH, NATURAL):
      if needed not in task.loss:
        raise ValueError(f"task {name}: row {needed!r} is missing (rows: {sorted(task.loss)})")
    point = {row: float(v[0]) for row, v in scores(task).items()}
    boot = scores(task, resampling_counts(rng, num_replicates, len(task.tokens)), seed_counts)
    gains = {row: boot[SCRATCH] - boot[row] for row in task.loss}
    replicate_gains[name] = gains
    gap = point[SCRATCH] - point[NATURAL]
    se = float(np.std(gains[NATURAL], ddof=1))
    per_row = {}
    for row in task.loss:
      gain = point[SCRATCH] - point[row]
      ratio = 100 * gains[row] / gains[NATURAL]
      low, high = np.percentile(ratio, [2.5, 97.5]) if gap != 0 else (np.nan, np.nan)
      per_row[row] = {"score": point[row],
                      "score_ci": [float(x) for x in np.percentile(boot[row], [2.5, 97.5])],
                      "gain": gain, "gain_se": float(np.std(gains[row], ddof=1)),
                      "benefit": 100 * gain / gap if gap != 0 else float("nan"),
                      "ci_low": float(low), "ci_high": float(high)}
    tasks[name] = {"natural_minus_scratch": gap, "se": se,
                   "in_headline": bool(gap > z * se and se >= 0 and gap > 0),
                   "num_examples": int(len(task.tokens)), "num_seeds": task.num_seeds,
                   "rows": per_row}
  headline = [t for t, v in tasks.items() if v["in_headline"]]
  excluded = {t: _exclusion_reason(v["natural_minus_scratch"], v["se"], z)
              for t, v in tasks.items() if not v["in_headline"]}
  summary_rows = {}
  for row in rows:
    per_task = {t: tasks[t]["rows"][row]["benefit"] for t in tasks if row in tasks[t]["rows"]}
    available = [t for t in headline if row in tasks[t]["rows"]]
    if not available or len(available) < len(headline):
      summary_rows[row] = {"benefit": float("nan"), "ci_low": float("nan"),
                           "ci_high": float("nan"), "per_task": per_task,
                           "headline_tasks": available}
      continue
    point_num = sum(tasks[t]["rows"][row]["gain"] for t in available)
    point_den = sum(tasks[t]["natural_minus_scratch"] for t in available)
    boot_ratio = 100 * (sum(replicate_gains[t][row] for t in available) /
                        sum(replicate_gains[t][NATURAL] for t in available))
    low, high = np.percentile(boot_ratio, [2.5, 97.5])
    summary_rows[row] = {"benefit": 100 * point_num / point_den, "ci_low": float(low),
                         "ci_high": float(high), "per_task": per_task,
                         "headline_tasks": available}
  return StudyStatistics(tasks=tasks, rows=summary_rows, headline_tasks=headline,
                         excluded=excluded, num_replicates=num_replicates)


def _exclusion_reason(gap: float, se: float, z: float) -> str:
  where = f"natural − scratch = {gap:+.4f} nats/token (SE {se:.4f})"
  if gap <= 0:
    return f"natural pre-training is not better than from-scratch: {where}"
  return f"{where} is within {z:g} standard errors"


def paired_bootstrap_metric(values: Mapping[str, np.ndarray], *, num_replicates: int = 2000,
                            seed: int = 0) -> dict[str, dict[str, float]]:
  """Mean and 95 % CI of per-example metric values {row: [seed, example]} (paired draws)."""
  rng = np.random.default_rng(seed)
  first = np.asarray(next(iter(values.values())))
  example_counts = resampling_counts(rng, num_replicates, first.shape[1])
  seed_counts = resampling_counts(rng, num_replicates, first.shape[0])
  out = {}
  for row, v in values.items():
    v = np.asarray(v, np.float64)
    boot = (seed_counts * (example_counts @ v.T)).sum(1) / (
        seed_counts.sum(1) * example_counts.sum(1))
    low, high = np.percentile(boot, [2.5, 97.5])
    out[row] = {"mean": float(v.mean()), "ci_low": float(low), "ci_high": float(high)}
  return out
