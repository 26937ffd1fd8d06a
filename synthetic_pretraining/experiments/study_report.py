"""The mini-study's tables: results.md, results.csv, benefit.png and summary.json.

Reads every fine-tuning run's `test_eval.npz` (see `train.evaluation.TestSetEvaluator`), computes
the paired statistics of `study_stats` on the primary metric (loss per target byte, EOS included),
and reports decoded metrics beside it: exact match (SQuAD-normalised for squad_window), token F1
and sentence chrF, each a mean over test examples and seeds with a paired-bootstrap 95 % interval,
plus the copy baseline (prediction = input) where it applies.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from synthetic_pretraining.experiments import study_data
from synthetic_pretraining.experiments import study_stats
from synthetic_pretraining.train import checkpoints

COPY = "copy"
PAPER = {"lime": 67, "set": 65, "set_statistics": 39}  # % of benefit, the paper's headline


def example_metrics(task: str, targets: Sequence[str],
                    predictions: Sequence[str]) -> dict[str, np.ndarray]:
  """Per-example exact match, token F1 and sentence chrF (each ×100)."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining.data import metrics  # pylint: disable=g-import-not-at-top
  if len(targets) != len(predictions):
    raise ValueError(f"{task}: {len(targets)} targets but {len(predictions)} predictions")
  if task == "squad_window":
    norm = metrics.normalize_squad
    em = [100.0 * (norm(p) == norm(t)) for t, p in zip(targets, predictions)]
    f1 = [100.0 * metrics.token_f1(norm(t), norm(p)) for t, p in zip(targets, predictions)]
  else:
    em = [100.0 * (p == t) for t, p in zip(targets, predictions)]
    f1 = [100.0 * metrics.token_f1(t, p) for t, p in zip(targets, predictions)]
  chrf = [sacrebleu.sentence_chrf(p, [t]).score for t, p in zip(targets, predictions)]
  return {"em": np.asarray(em), "f1": np.asarray(f1), "chrf": np.asarray(chrf)}


def load_task(out_dir: str, task: str, rows: Sequence[str], seeds: int) -> dict[str, Any]:
  """{"loss": {row: [seed, example]}, "tokens": [example], "predictions": {row: [[str]]}}."""
  loss, predictions, tokens = {}, {}, None
  for row in rows:
    per_seed, texts = [], []
    for seed in range(seeds):
      path = os.path.join(out_dir, "finetune", row, task, f"seed_{seed}", "test_eval.npz")
      if not os.path.exists(path):
        raise FileNotFoundError(f"{path} missing: the run {row}/{task}/seed_{seed} did not finish")
      with np.load(path) as f:
        per_seed.append(f["loss_sum"])
        if tokens is None:
          tokens = f["num_tokens"]
        elif not np.array_equal(tokens, f["num_tokens"]):
          raise ValueError(f"{path}: its test examples differ from the other runs' of {task}")
        if "predictions" in f:
          texts.append([str(p) for p in f["predictions"]])
    loss[row] = np.stack(per_seed)
    if texts:
      predictions[row] = texts
  return {"loss": loss, "tokens": tokens, "predictions": predictions}


def _fmt(value: float, digits: int = 1) -> str:
  return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _interval(low: float, high: float, digits: int = 0) -> str:
  if not (math.isfinite(low) and math.isfinite(high)):
    return ""
  return f" [{low:.{digits}f}, {high:.{digits}f}]"


def report(cfg, out_dir: str, data_dir: str, phases: Mapping[str, float] | None = None) -> dict:
  """Writes results/{results.md, results.csv, benefit.png} and returns the summary dict."""
  results_dir = os.path.join(out_dir, "results")
  os.makedirs(results_dir, exist_ok=True)
  rows = list(cfg.rows)
  data, decoded, copy_scores = {}, {}, {}
  for task in cfg.tasks:
    loaded = load_task(out_dir, task, rows, cfg.seeds)
    data[task] = study_stats.TaskData(loaded["loss"], loaded["tokens"])
    test = study_data.read_split(data_dir, task, "test")
    targets = [t for _, t in test]
    if loaded["predictions"]:
      per_row = {}
      for row, texts in loaded["predictions"].items():
        per_seed = [example_metrics(task, targets, seed_texts) for seed_texts in texts]
        per_row[row] = {m: np.stack([s[m] for s in per_seed]) for m in ("em", "f1", "chrf")}
      decoded[task] = {m: study_stats.paired_bootstrap_metric(
          {row: v[m] for row, v in per_row.items()}, num_replicates=cfg.bootstrap_replicates)
                       for m in ("em", "f1", "chrf")}
    if task in study_data.COPY_BASELINE_TASKS:
      copy_scores[task] = {m: float(v.mean()) for m, v in example_metrics(
          task, targets, [i for i, _ in test]).items()}
  stats = study_stats.analyse(data, rows, z=cfg.separation_z,
                              num_replicates=cfg.bootstrap_replicates)
  summary = _summary(cfg, stats, decoded, copy_scores)
  summary["sentences"] = sentences(stats, summary)
  markdown = format_markdown(cfg, stats, decoded, copy_scores, summary)
  checkpoints.atomic_write_text(os.path.join(results_dir, "results.md"), markdown)
  _write_csv(os.path.join(results_dir, "results.csv"), stats, decoded, copy_scores)
  _plot(os.path.join(results_dir, "benefit.png"), stats, rows)
  print("\n" + markdown, flush=True)
  return summary


def _summary(cfg, stats: study_stats.StudyStatistics, decoded, copy_scores) -> dict:
  tasks = {}
  for task, v in stats.tasks.items():
    tasks[task] = {"natural_minus_scratch": v["natural_minus_scratch"], "se": v["se"],
                   "in_headline": v["in_headline"], "num_test_examples": v["num_examples"],
                   "num_seeds": v["num_seeds"], "metric": "loss per target byte (nats)",
                   "excluded_reason": stats.excluded.get(task),
                   "scores": {row: r["score"] for row, r in v["rows"].items()},
                   "decoded": decoded.get(task, {}), "copy": copy_scores.get(task)}
  rows = {}
  for row, v in stats.rows.items():
    rows[row] = {"benefit": v["benefit"], "ci_low": v["ci_low"], "ci_high": v["ci_high"],
                 "per_task": v["per_task"], "headline_tasks": v["headline_tasks"],
                 "paper": PAPER.get(row)}
  copy_tasks = {t: s for t, s in copy_scores.items() if t in decoded}
  copy_benefit = {}
  for task, s in copy_tasks.items():
    scratch = decoded[task]["chrf"][study_stats.SCRATCH]["mean"]
    natural = decoded[task]["chrf"][study_stats.NATURAL]["mean"]
    copy_benefit[task] = (100 * (s["chrf"] - scratch) / (natural - scratch)
                          if natural != scratch else float("nan"))
  rows[COPY] = {"benefit": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "per_task": copy_benefit, "headline_tasks": [],
                "note": ("prediction = input; it has no loss, so it is not in the headline; "
                         "per_task holds % of benefit on chrF where it applies")}
  return {"tasks": tasks, "rows": rows, "headline_tasks": stats.headline_tasks,
          "bootstrap_replicates": stats.num_replicates, "seeds": cfg.seeds,
          "separation_z": cfg.separation_z, "paper": PAPER,
          "headline": headline_line(stats)}


def headline_line(stats: study_stats.StudyStatistics) -> str:
  parts = []
  for row, label in (("lime", "LIME"), ("set", "Set"), ("set_statistics", "Set statistics")):
    v = stats.rows.get(row)
    if v is None:
      parts.append(f"{label} not run")
    else:
      parts.append(f"{label} {_fmt(v['benefit'], 0)} %{_interval(v['ci_low'], v['ci_high'])}")
  return " · ".join(parts) + " — paper: 67 / 65 / 39"


def sentences(stats: study_stats.StudyStatistics, summary: Mapping[str, Any]) -> list[str]:
  """A few sentences read off the numbers."""
  out = []
  n, total = len(stats.headline_tasks), len(stats.tasks)
  if n:
    out.append(f"Natural pre-training beats from-scratch by more than "
               f"{summary['separation_z']:g} standard errors on {n} of {total} tasks "
               f"({', '.join(stats.headline_tasks)}); the headline averages over those.")
  else:
    out.append(f"Natural pre-training does not beat from-scratch by more than "
               f"{summary['separation_z']:g} standard errors on any of the {total} tasks, so "
               "there is no benefit to take a percentage of at this scale.")
  for task, reason in stats.excluded.items():
    out.append(f"{task} is left out of the headline: {reason}.")
  if n:
    ranked = sorted(((v["benefit"], row) for row, v in stats.rows.items()
                     if row not in (study_stats.SCRATCH, study_stats.NATURAL) and
                     math.isfinite(v["benefit"])), reverse=True)
    if ranked:
      out.append("Order by % of benefit: " + ", ".join(
          f"{row} {b:.0f} %" for b, row in ranked) + ".")
    for row, v in stats.rows.items():
      if row in (study_stats.SCRATCH, study_stats.NATURAL) or not math.isfinite(v["ci_low"]):
        continue
      if v["ci_low"] > 0:
        out.append(f"{row} helps: its interval [{v['ci_low']:.0f}, {v['ci_high']:.0f}] % lies "
                   "above zero.")
      elif v["ci_high"] < 0:
        out.append(f"{row} hurts: its interval [{v['ci_low']:.0f}, {v['ci_high']:.0f}] % lies "
                   "below zero.")
      else:
        out.append(f"{row} is not distinguishable from scratch (interval "
                   f"[{v['ci_low']:.0f}, {v['ci_high']:.0f}] % contains zero).")
  return out


def format_markdown(cfg, stats, decoded, copy_scores, summary) -> str:
  lines = ["# Mini-study: % of the benefit of natural pre-training", "",
           f"**{summary['headline']}**", "",
           f"Primary metric: test loss per target byte (nats, teacher-forced, lower is better), "
           f"{cfg.seeds} fine-tuning seeds per row (paired), scored at the last step; 95 % "
           f"intervals by a paired bootstrap over test examples and seeds "
           f"({stats.num_replicates} replicates). Headline tasks: "
           f"{', '.join(stats.headline_tasks) or 'none'}.", ""]
  lines += ["| row | headline % of benefit | " +
            " | ".join(f"{t} %" for t in stats.tasks) + " |",
            "|---|---|" + "---|" * len(stats.tasks)]
  for row, v in stats.rows.items():
    cells = [f"{_fmt(stats.tasks[t]['rows'][row]['benefit'], 0)}"
             f"{_interval(stats.tasks[t]['rows'][row]['ci_low'], stats.tasks[t]['rows'][row]['ci_high'])}"
             for t in stats.tasks]
    lines.append(f"| {row} | {_fmt(v['benefit'], 0)}{_interval(v['ci_low'], v['ci_high'])} | "
                 + " | ".join(cells) + " |")
  for task, v in stats.tasks.items():
    lines += ["", f"## {task} ({v['num_examples']} test examples × {v['num_seeds']} seeds)", "",
              f"natural − scratch = {v['natural_minus_scratch']:+.4f} nats/byte "
              f"(SE {v['se']:.4f}) → "
              f"{'in the headline' if v['in_headline'] else 'left out: ' + stats.excluded[task]}",
              "", "| row | loss/byte [95 % CI] | % of benefit [95 % CI] | EM | F1 | chrF |",
              "|---|---|---|---|---|---|"]
    for row, r in v["rows"].items():
      dec = decoded.get(task, {})
      metric = lambda m: (f"{dec[m][row]['mean']:.1f}" if m in dec and row in dec[m] else "")
      lines.append(f"| {row} | {r['score']:.4f}{_interval(*r['score_ci'], digits=4)} | "
                   f"{_fmt(r['benefit'], 0)}{_interval(r['ci_low'], r['ci_high'])} | "
                   f"{metric('em')} | {metric('f1')} | {metric('chrf')} |")
    if task in copy_scores:
      c = copy_scores[task]
      lines.append(f"| copy (prediction = input) | – | – | {c['em']:.1f} | {c['f1']:.1f} | "
                   f"{c['chrf']:.1f} |")
  lines += [""] + [f"- {s}" for s in summary["sentences"]] + [""]
  return "\n".join(lines)


def _write_csv(path: str, stats, decoded, copy_scores) -> None:
  with checkpoints.atomic_output(path, newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["task", "row", "loss_per_byte", "loss_ci_low", "loss_ci_high",
                     "benefit_pct", "benefit_ci_low", "benefit_ci_high", "em", "f1", "chrf",
                     "in_headline"])
    for task, v in stats.tasks.items():
      dec = decoded.get(task, {})
      for row, r in v["rows"].items():
        writer.writerow([task, row, r["score"], *r["score_ci"], r["benefit"], r["ci_low"],
                         r["ci_high"], *[dec[m][row]["mean"] if m in dec else "" for m in
                                         ("em", "f1", "chrf")], v["in_headline"]])
      if task in copy_scores:
        c = copy_scores[task]
        writer.writerow([task, COPY, "", "", "", "", "", "", c["em"], c["f1"], c["chrf"],
                         v["in_headline"]])
    for row, r in stats.rows.items():
      writer.writerow(["headline", row, "", "", "", r["benefit"], r["ci_low"], r["ci_high"], "",
                       "", "", ""])


def _plot(path: str, stats, rows: Sequence[str]) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  shown = [r for r in rows if r != study_stats.SCRATCH]
  groups = ["headline"] + list(stats.tasks)
  fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(shown) * len(groups) / 2), 4))
  width = 0.8 / len(groups)
  for g, group in enumerate(groups):
    values, lows, highs = [], [], []
    for row in shown:
      v = stats.rows[row] if group == "headline" else stats.tasks[group]["rows"][row]
      b = v["benefit"]
      values.append(b if math.isfinite(b) else 0.0)
      lows.append(max(b - v["ci_low"], 0) if math.isfinite(v["ci_low"]) else 0.0)
      highs.append(max(v["ci_high"] - b, 0) if math.isfinite(v["ci_high"]) else 0.0)
    x = np.arange(len(shown)) + (g - (len(groups) - 1) / 2) * width
    ax.bar(x, values, width, yerr=[lows, highs], capsize=2, label=group)
  for row, paper in PAPER.items():
    if row in shown:
      ax.plot(shown.index(row), paper, "k*", markersize=9)
  ax.axhline(0, color="black", linewidth=0.8)
  ax.axhline(100, color="grey", linewidth=0.8, linestyle="--")
  ax.set_xticks(np.arange(len(shown)))
  ax.set_xticklabels(shown, rotation=20)
  ax.set_ylabel("% of the benefit of natural pre-training\n(test loss per byte; 95 % CI)")
  ax.set_title("Mini-study (★ = paper's headline)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  with checkpoints.atomic_output(path, "wb") as f:
    fig.savefig(f, format="png", dpi=110)
  plt.close(fig)



def write_summary(out_dir: str, summary: Mapping[str, Any]) -> str:
  path = os.path.join(out_dir, "results", "summary.json")

  def clean(value):
    if isinstance(value, float) and not math.isfinite(value):
      return None
    if isinstance(value, dict):
      return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
      return [clean(v) for v in value]
    if isinstance(value, np.generic):
      return clean(value.item())
    return value

  checkpoints.atomic_write_text(path, json.dumps(clean(dict(summary)), indent=1))
  return path
