"""`synthetic-pretraining results`: the paper's "% of the benefit of natural pre-training" tables.

    synthetic-pretraining results RUN_DIR_OR_ROOT... --out DIR
        [--layout layout.json] [--natural NAME] [--natural-for TASK=NAME] [--scratch NAME]
        [--metric TASK=KEY]

Run directories. Each fine-tuning run is a directory with `metrics.jsonl` (the format of
`train/metrics_io.py`) and the training loop's `run_info.json`, whose `labels` (gin RUN_LABELS)
name what it is:
    {"labels": {"method": "set", "task": "code_translation", "seed": 0}, "mixture_or_task_name": …}
A task missing from the labels is the run's `mixture_or_task_name`; other missing fields (or the
whole file) are read from the path `…/<method>/<task>[/seed_<k>]` (seed 0 when there is no
`seed_<k>` component). An argument that
is not itself a run directory is searched recursively for run directories.

Per run (SPEC §5.5): the step with the highest validation token accuracy (group `training_eval`,
key `accuracy`; the earliest step on ties; a step logged twice keeps its last record) selects the
test score: the task's metric (`TASK_METRICS`, e.g. rouge1 for cnndm_10k, em otherwise) in group
`inference_eval` at that step. The best test score over all steps is reported alongside.
Records whose `task` equals the run's task are used when there are any, else all of the group.

Per method and task (SPEC §7): S = mean over seeds of those scores and
    % of benefit = 100 · (S_method − S_scratch) / (S_natural − S_scratch),
with S_natural from the natural baseline (per task: `--natural-for cnndm_10k=t5_1_1_small`, the
paper's CNNDM baseline). The ± std of a benefit is the sample std (ddof 1) over the method's seeds
with both baselines at their means; the average over tasks is the mean of the per-task benefits
that exist (the table says over how many tasks), with a std over seeds when every task has the
same seeds. Missing runs are gaps ("–"/empty), never zeros; S_natural = S_scratch gives "undef."
and a note.

Layout file (all keys optional):
    {"natural": "off_the_shelf" | {"default": "off_the_shelf", "cnndm_10k": "t5_1_1_small"},
     "scratch": "from_scratch", "methods": ["lime", "set"], "tasks": ["mtop", "webqsp"],
     "metrics": {"squad": "f1"}}
`methods`/`tasks` fix the order and add expected-but-missing rows/columns (runs of unlisted methods
or tasks are appended, never dropped). Command-line flags override the layout.

Outputs in --out: results.md (tables), results.csv (one row per method × task, plus `average`
rows), runs.csv (one row per run) and benefit.png (bar chart); each written atomically.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import re
import statistics
import sys
from typing import Any, Iterable, Mapping, Sequence

from synthetic_pretraining.data import catalogue
from synthetic_pretraining.train import metrics_io

# Derived from the downstream catalogue (data/catalogue.py): the metric each task reports.
TASK_METRICS = catalogue.reported_metrics()
DEFAULT_METRIC = "em"
TASK_ORDER = tuple(sorted(TASK_METRICS))
DEFAULT_NATURAL = "off_the_shelf"
DEFAULT_SCRATCH = "from_scratch"
VALIDATION_GROUP, VALIDATION_KEY = "training_eval", "accuracy"
TEST_GROUP = "inference_eval"
RUN_FILE = "run_info.json"  # written by the training loop (train.checkpoints.RUN_INFO_FILE)
GAP, UNDEFINED = "–", "undef."
OUTPUT_FILES = ("results.md", "results.csv", "runs.csv", "benefit.png")
_SEED_DIR_RE = re.compile(r"seed[_-]?(\d+)")
_LAYOUT_KEYS = ("natural", "scratch", "methods", "tasks", "metrics")


# ---------------------------------------------------------------------------------------------
# Runs.


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """What a run directory holds: `method` fine-tuned on `task` with `seed`."""
  run_dir: str
  method: str
  task: str
  seed: int


@dataclasses.dataclass(frozen=True)
class RunResult:
  """One run's numbers (None where the metrics file lacks them) and why any are missing."""
  info: RunInfo
  metric: str
  best_step: int | None
  best_accuracy: float | None
  score: float | None
  max_score: float | None
  max_score_step: int | None
  note: str = ""


def find_run_dirs(paths: Iterable[str]) -> list[str]:
  """Run directories (with metrics.jsonl) among `paths`, searching directories recursively."""
  found = []
  for path in paths:
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path}: no such run directory")
    if os.path.isfile(os.path.join(path, metrics_io.METRICS_FILE)):
      found.append(path)
      continue
    below = []
    for root, dirs, files in os.walk(path):
      dirs.sort()
      if metrics_io.METRICS_FILE in files:
        below.append(root)
        dirs[:] = []  # a run directory's subfolders are not runs of their own
    if not below:
      raise ValueError(f"{path}: no run directories (folders with {metrics_io.METRICS_FILE}) "
                       "found")
    found += below
  return found


def infer_run_info(run_dir: str) -> RunInfo:
  """Method, task and seed from a path `…/<method>/<task>[/seed_<k>]`."""
  parts = [p for p in os.path.normpath(os.path.abspath(run_dir)).split(os.sep) if p]
  seed = 0
  match = _SEED_DIR_RE.fullmatch(parts[-1]) if parts else None
  if match:
    seed, parts = int(match.group(1)), parts[:-1]
  if len(parts) < 2:
    raise ValueError(f"{run_dir}: cannot infer method/task from the path (expected "
                     f"<method>/<task>[/seed_<k>]); write a {RUN_FILE}")
  return RunInfo(run_dir=run_dir, method=parts[-2], task=parts[-1], seed=seed)


def _read_json(path: str) -> Any:
  """The JSON value in `path`; a syntax error names the file and line."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def read_run_info(run_dir: str) -> RunInfo:
  """What a run is, from the loop's `run_info.json`: its `labels` (method, task, seed; gin
  RUN_LABELS), the task it trained on, then the path for whatever is still missing."""
  path = os.path.join(run_dir, RUN_FILE)
  if not os.path.exists(path):
    return infer_run_info(run_dir)
  data = _read_json(path)
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected a JSON object with 'labels', e.g. "
                     '{"labels": {"method": "set", "task": "code_translation", "seed": 0}}')
  labels = data.get("labels", {})
  if not isinstance(labels, dict):
    raise ValueError(f"{path}: 'labels' must be an object, got {labels!r}")
  unknown = sorted(set(labels) - {"method", "task", "seed"})
  if unknown:
    raise ValueError(f"{path}: unknown label(s) {unknown}; expected method, task, seed")
  for key in ("method", "task"):
    if key in labels and (not isinstance(labels[key], str) or not labels[key]):
      raise ValueError(f"{path}: label '{key}' must be a non-empty string, got {labels[key]!r}")
  if "seed" in labels and (not isinstance(labels["seed"], int) or isinstance(labels["seed"], bool)):
    raise ValueError(f"{path}: label 'seed' must be an integer, got {labels['seed']!r}")
  found = dict(labels)
  if "task" not in found and isinstance(data.get("mixture_or_task_name"), str):
    found["task"] = data["mixture_or_task_name"]
  if {"method", "task", "seed"} <= set(found):
    return RunInfo(run_dir, found["method"], found["task"], found["seed"])
  inferred = infer_run_info(run_dir)
  return RunInfo(run_dir, found.get("method", inferred.method), found.get("task", inferred.task),
                 found.get("seed", inferred.seed))


def metric_for_task(task: str, overrides: Mapping[str, str] | None = None) -> str:
  """The reported test metric of a task (ROUGE-1 for CNNDM-10K, EM otherwise)."""
  return (overrides or {}).get(task) or catalogue.reported_metrics().get(task, DEFAULT_METRIC)


def _series(records: Sequence[Mapping[str, Any]], group: str, key: str,
            task: str) -> dict[int, float]:
  """{step: value} of one metric; the last record of a step wins."""
  in_group = [r for r in records if r.get("group") == group]
  if any(r.get("task") == task for r in in_group):
    in_group = [r for r in in_group if r.get("task") == task]
  series = {}
  for record in in_group:
    value = record.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
      series[int(record["step"])] = float(value)
  return series


def _argmax_first(series: Mapping[int, float]) -> int | None:
  best = None
  for step in sorted(series):
    if best is None or series[step] > series[best]:
      best = step
  return best


def extract_run(run_dir: str, metrics: Mapping[str, str] | None = None,
                info: RunInfo | None = None) -> RunResult:
  """The step of best validation token accuracy and the test metric there (SPEC §5.5)."""
  info = info or read_run_info(run_dir)
  metric = metric_for_task(info.task, metrics)
  records = list(metrics_io.read(run_dir))
  accuracy = _series(records, VALIDATION_GROUP, VALIDATION_KEY, info.task)
  test = _series(records, TEST_GROUP, metric, info.task)
  notes = []
  best_step = _argmax_first(accuracy)
  if best_step is None:
    notes.append(f"no {VALIDATION_GROUP} '{VALIDATION_KEY}'")
  score = test.get(best_step) if best_step is not None else None
  if best_step is not None and score is None:
    notes.append(f"no {TEST_GROUP} '{metric}' at step {best_step}")
  max_step = _argmax_first(test)
  if max_step is None:
    notes.append(f"no {TEST_GROUP} '{metric}'")
  if info.task not in TASK_METRICS and not (metrics and info.task in metrics):
    notes.append(f"metric of task {info.task!r} unknown: used '{metric}'")
  return RunResult(info=info, metric=metric, best_step=best_step,
                   best_accuracy=accuracy.get(best_step) if best_step is not None else None,
                   score=score, max_score=test.get(max_step) if max_step is not None else None,
                   max_score_step=max_step, note="; ".join(notes))


def load_runs(paths: Iterable[str], metrics: Mapping[str, str] | None = None) -> list[RunResult]:
  """Finds the run directories under `paths` and extracts each one."""
  return [extract_run(d, metrics) for d in find_run_dirs(paths)]


# ---------------------------------------------------------------------------------------------
# Tables.


@dataclasses.dataclass(frozen=True)
class Stat:
  """Mean and sample std (None for one value) of per-seed values."""
  mean: float
  std: float | None
  n: int
  by_seed: Mapping[int, float]


def _stat(by_seed: Mapping[int, float]) -> Stat | None:
  values = [by_seed[s] for s in sorted(by_seed)]
  if not values:
    return None
  std = statistics.stdev(values) if len(values) > 1 else None
  return Stat(mean=statistics.fmean(values), std=std, n=len(values), by_seed=dict(by_seed))


@dataclasses.dataclass
class ResultsTable:
  """Everything the report shows; cells absent from a dict are gaps."""
  tasks: list[str]
  methods: list[str]  # all rows of the score tables: scratch, methods, natural baselines
  compared: list[str]  # rows of the benefit table: methods that are not baselines
  scratch: str
  natural_for: dict[str, str]  # task → natural baseline method
  metrics: dict[str, str]  # task → metric key
  scores: dict[tuple[str, str], Stat]
  max_scores: dict[tuple[str, str], Stat]
  benefits: dict[tuple[str, str], Stat]
  undefined: set[tuple[str, str]]  # (method, task) scored, but S_natural = S_scratch
  averages: dict[str, tuple[Stat, int]]  # method → (benefit averaged over tasks, #tasks)
  runs: list[RunResult]
  notes: list[str]


def _ordered(seen: Iterable[str], preferred: Sequence[str]) -> list[str]:
  seen = set(seen)
  return [x for x in preferred] + sorted(seen - set(preferred))


def build_table(runs: Sequence[RunResult], natural: str = DEFAULT_NATURAL,
                scratch: str = DEFAULT_SCRATCH, natural_for: Mapping[str, str] | None = None,
                methods: Sequence[str] = (), tasks: Sequence[str] = (),
                metrics: Mapping[str, str] | None = None) -> ResultsTable:
  """Aggregates runs over seeds and computes % of benefit per method and task and on average.

  Args:
    runs: per-run results (e.g. from `load_runs`).
    natural: the natural pre-training baseline's method name (default for every task).
    scratch: the from-scratch baseline's method name.
    natural_for: per-task natural baselines overriding `natural` (e.g. cnndm_10k → T5 v1.1).
    methods: row order (and rows expected even without runs); other methods are appended.
    tasks: column order (and columns expected even without runs); other tasks are appended.
    metrics: task → metric key, for the headers of tasks without runs (runs carry their own).

  Raises:
    ValueError: two run directories claim the same method, task and seed.
  """
  seen_at: dict[tuple[str, str, int], str] = {}
  for run in runs:
    key = (run.info.method, run.info.task, run.info.seed)
    if key in seen_at:
      raise ValueError(f"two runs of method {key[0]!r}, task {key[1]!r}, seed {key[2]}: "
                       f"{seen_at[key]} and {run.info.run_dir}")
    seen_at[key] = run.info.run_dir

  task_list = _ordered({r.info.task for r in runs},
                       list(tasks) or [t for t in TASK_ORDER if t in {r.info.task for r in runs}])
  natural_of = {t: (natural_for or {}).get(t, natural) for t in task_list}
  baselines = {scratch, *natural_of.values()}
  seen_methods = {r.info.method for r in runs}
  compared = _ordered(seen_methods - baselines, [m for m in methods if m not in baselines])
  naturals = [m for m in dict.fromkeys(natural_of[t] for t in task_list) if m != scratch]
  method_list = [scratch] + compared + naturals
  metrics = {t: next((r.metric for r in runs if r.info.task == t), metric_for_task(t, metrics))
             for t in task_list}

  scores, max_scores = {}, {}
  for method in method_list:
    for task in task_list:
      mine = [r for r in runs if r.info.method == method and r.info.task == task]
      score = _stat({r.info.seed: r.score for r in mine if r.score is not None})
      best = _stat({r.info.seed: r.max_score for r in mine if r.max_score is not None})
      if score:
        scores[(method, task)] = score
      if best:
        max_scores[(method, task)] = best

  notes = [f"{r.info.run_dir}: {r.note}" for r in runs if r.note]
  benefits, undefined = {}, set()
  for task in task_list:
    s_nat, s_scr = scores.get((natural_of[task], task)), scores.get((scratch, task))
    if s_nat is None or s_scr is None:
      missing = [m for m, s in ((scratch, s_scr), (natural_of[task], s_nat)) if s is None]
      notes.append(f"{task}: no score for baseline(s) {', '.join(missing)}: "
                   "% of benefit not computed")
      continue
    denominator = s_nat.mean - s_scr.mean
    if denominator == 0:
      notes.append(f"{task}: natural ({natural_of[task]}) and scratch ({scratch}) score the same "
                   f"({s_nat.mean:g}): % of benefit undefined")
      undefined.update((m, task) for m in compared if (m, task) in scores)
      continue
    for method in compared:
      score = scores.get((method, task))
      if score is not None:
        benefits[(method, task)] = _stat({seed: 100.0 * (s - s_scr.mean) / denominator
                                          for seed, s in score.by_seed.items()})

  averages = {}
  for method in compared:
    per_task = [benefits[(method, t)] for t in task_list if (method, t) in benefits]
    if not per_task:
      continue
    mean = statistics.fmean(b.mean for b in per_task)
    seed_sets = {tuple(sorted(b.by_seed)) for b in per_task}
    std, by_seed = None, {}
    if len(seed_sets) == 1:  # same seeds for every task: a per-seed average exists
      by_seed = {s: statistics.fmean(b.by_seed[s] for b in per_task)
                 for s in next(iter(seed_sets))}
      std = statistics.stdev(by_seed.values()) if len(by_seed) > 1 else None
    averages[method] = (Stat(mean=mean, std=std, n=len(by_seed), by_seed=by_seed),
                        len(per_task))
    if len(per_task) < len(task_list):
      notes.append(f"{method}: average over {len(per_task)} of {len(task_list)} tasks")

  return ResultsTable(tasks=task_list, methods=method_list, compared=compared, scratch=scratch,
                      natural_for=natural_of, metrics=metrics, scores=scores,
                      max_scores=max_scores, benefits=benefits, undefined=undefined,
                      averages=averages, runs=list(runs), notes=notes)


# ---------------------------------------------------------------------------------------------
# Formatting.


def _fmt(stat: Stat | None, digits: int) -> str:
  if stat is None:
    return GAP
  text = f"{stat.mean:.{digits}f}"
  return text + (f" ± {stat.std:.{digits}f}" if stat.std is not None else "")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


def benefit_cell(table: ResultsTable, method: str, task: str) -> str:
  """The benefit table's text for one cell: value ± std, "–" (missing) or "undef."."""
  if (method, task) in table.benefits:
    return _fmt(table.benefits[(method, task)], 1)
  if (method, task) in table.undefined:
    return UNDEFINED
  return GAP


def format_markdown(table: ResultsTable) -> str:
  """Markdown report: % of benefit, scores at the selected step, best scores, runs, notes."""
  task_heads = [f"{t} ({table.metrics[t]})" for t in table.tasks]
  parts = ["## % of the benefit of natural pre-training", "",
           "100·(S_method − S_scratch)/(S_natural − S_scratch) per task, S = test metric at the "
           "step of best validation token accuracy; mean ± std over seeds. Natural: "
           + ", ".join(f"{t}={m}" for t, m in table.natural_for.items()) + f"; scratch: "
           f"{table.scratch}.", ""]
  rows = []
  for method in table.compared:
    average = table.averages.get(method)
    avg_text = GAP
    if average is not None:
      avg_text = _fmt(average[0], 1)
      if average[1] < len(table.tasks):
        avg_text += f" ({average[1]}/{len(table.tasks)} tasks)"
    rows.append([method] + [benefit_cell(table, method, t) for t in table.tasks] + [avg_text])
  parts += [_md_table(["method"] + table.tasks + ["average"], rows), ""]
  for title, cells in (("Test metric at the best-validation-accuracy step", table.scores),
                       ("Best test metric over all steps", table.max_scores)):
    rows = [[m] + [_fmt(cells.get((m, t)), 2) for t in table.tasks] for m in table.methods]
    parts += [f"## {title}", "", _md_table(["method"] + task_heads, rows), ""]
  run_rows = [[r.info.run_dir, r.info.method, r.info.task, str(r.info.seed),
               GAP if r.best_step is None else str(r.best_step),
               GAP if r.best_accuracy is None else f"{r.best_accuracy:.4f}", r.metric,
               GAP if r.score is None else f"{r.score:.2f}",
               GAP if r.max_score is None else f"{r.max_score:.2f} (step {r.max_score_step})"]
              for r in table.runs]
  parts += ["## Runs", "", _md_table(["run", "method", "task", "seed", "best step",
                                      "val accuracy", "metric", "at best step", "max (step)"],
                                     run_rows), ""]
  if table.notes:
    parts += ["## Notes", ""] + [f"- {n}" for n in table.notes] + [""]
  return "\n".join(parts)


def _num(value: float | None) -> str:
  return "" if value is None else repr(float(value))


def results_rows(table: ResultsTable) -> list[dict[str, Any]]:
  """One dict per method × task (plus `average` rows), the columns of results.csv."""
  rows = []
  for method in table.methods:
    for task in table.tasks:
      score, best = table.scores.get((method, task)), table.max_scores.get((method, task))
      benefit = table.benefits.get((method, task))
      note = ""
      if benefit_cell(table, method, task) == UNDEFINED:
        note = "natural = scratch: benefit undefined"
      elif score is None:
        note = "missing"
      rows.append({
          "method": method, "task": task, "metric": table.metrics[task],
          "n_seeds": score.n if score else 0,
          "score_mean": _num(score and score.mean), "score_std": _num(score and score.std),
          "max_score_mean": _num(best and best.mean), "max_score_std": _num(best and best.std),
          "benefit_mean": _num(benefit and benefit.mean),
          "benefit_std": _num(benefit and benefit.std), "benefit_n_tasks": "", "note": note})
  for method in table.compared:
    average = table.averages.get(method)
    rows.append({
        "method": method, "task": "average", "metric": "", "n_seeds": "", "score_mean": "",
        "score_std": "", "max_score_mean": "", "max_score_std": "",
        "benefit_mean": _num(average and average[0].mean),
        "benefit_std": _num(average and average[0].std),
        "benefit_n_tasks": average[1] if average else 0, "note": "" if average else "missing"})
  return rows


RESULTS_COLUMNS = ("method", "task", "metric", "n_seeds", "score_mean", "score_std",
                   "max_score_mean", "max_score_std", "benefit_mean", "benefit_std",
                   "benefit_n_tasks", "note")
RUNS_COLUMNS = ("run_dir", "method", "task", "seed", "metric", "best_step", "best_accuracy",
                "score", "max_score", "max_score_step", "note")


def _csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  return out.getvalue()


def runs_rows(table: ResultsTable) -> list[dict[str, Any]]:
  """One dict per run, the columns of runs.csv."""
  return [{"run_dir": r.info.run_dir, "method": r.info.method, "task": r.info.task,
           "seed": r.info.seed, "metric": r.metric,
           "best_step": "" if r.best_step is None else r.best_step,
           "best_accuracy": _num(r.best_accuracy), "score": _num(r.score),
           "max_score": _num(r.max_score),
           "max_score_step": "" if r.max_score_step is None else r.max_score_step,
           "note": r.note} for r in table.runs]


def plot_benefit(table: ResultsTable):
  """Grouped bar chart of % of benefit (tasks + average; one bar per method; gaps left empty)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  groups = table.tasks + ["average"]
  figure = Figure(figsize=(max(6.0, 1.4 * len(groups) + 2), 4.2), dpi=100)
  FigureCanvasAgg(figure)
  axes = figure.add_subplot(1, 1, 1)
  width = 0.8 / max(1, len(table.compared))
  x = np.arange(len(groups))
  for i, method in enumerate(table.compared):
    stats = [table.benefits.get((method, t)) for t in table.tasks]
    stats.append(table.averages[method][0] if method in table.averages else None)
    heights = np.array([np.nan if s is None else s.mean for s in stats])
    errors = np.array([np.nan if s is None or s.std is None else s.std for s in stats])
    offsets = x - 0.4 + width * (i + 0.5)
    axes.bar(offsets, np.nan_to_num(heights), width, yerr=errors, label=method, capsize=2)
    for offset, height, task in zip(offsets, heights, groups):
      if np.isnan(height):
        text = UNDEFINED if (method, task) in table.undefined else GAP
        axes.annotate(text, (offset, 0), ha="center", va="bottom", fontsize=8)
  axes.axhline(0, color="black", linewidth=0.8)
  axes.axhline(100, color="gray", linewidth=0.8, linestyle="--")
  axes.set_xticks(x)
  axes.set_xticklabels(groups, rotation=20, ha="right")
  axes.set_ylabel("% of benefit of natural pre-training")
  axes.set_title("0 = from scratch, 100 = natural pre-training")
  if table.compared:
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  else:
    axes.text(0.5, 0.5, "no methods besides the baselines", ha="center",
              transform=axes.transAxes)
  figure.tight_layout()
  return figure


def plot_run_curves(runs: Sequence[RunResult]):
  """Validation token accuracy per step, one panel per task, one line per run; ● = chosen step."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  tasks = sorted({r.info.task for r in runs})
  figure = Figure(figsize=(4.0 * max(1, len(tasks)), 3.2), dpi=100)
  FigureCanvasAgg(figure)
  for i, task in enumerate(tasks):
    axes = figure.add_subplot(1, len(tasks), i + 1)
    for run in (r for r in runs if r.info.task == task):
      records = list(metrics_io.read(run.info.run_dir))
      series = _series(records, VALIDATION_GROUP, VALIDATION_KEY, task)
      steps = sorted(series)
      line, = axes.plot(steps, [series[s] for s in steps],
                        label=f"{run.info.method} s{run.info.seed}")
      if run.best_step is not None:
        axes.plot([run.best_step], [run.best_accuracy], "o", color=line.get_color())
    axes.set_title(task)
    axes.set_xlabel("step")
    if i == 0:
      axes.set_ylabel("validation token accuracy")
    axes.legend(fontsize=6)
  figure.tight_layout()
  return figure


def _atomic_write(path: str, write) -> None:
  """Writes through `write(binary file)` atomically (`train.checkpoints.atomic_output`)."""
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  with checkpoints.atomic_output(path, "wb") as f:
    write(f)


def write_report(table: ResultsTable, out_dir: str) -> dict[str, str]:
  """Writes results.md, results.csv, runs.csv and benefit.png to `out_dir`; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {name: os.path.join(out_dir, name) for name in OUTPUT_FILES}
  texts = {"results.md": format_markdown(table),
           "results.csv": _csv_text(RESULTS_COLUMNS, results_rows(table)),
           "runs.csv": _csv_text(RUNS_COLUMNS, runs_rows(table))}
  for name, text in texts.items():
    _atomic_write(paths[name], lambda f, text=text: f.write(text.encode("utf-8")))
  figure = plot_benefit(table)
  _atomic_write(paths["benefit.png"], lambda f: figure.savefig(f, format="png"))
  return paths


# ---------------------------------------------------------------------------------------------
# Layout file and command line.


def load_layout(path: str) -> dict[str, Any]:
  """Reads and validates a layout JSON file (see the module docstring)."""
  layout = _read_json(path)
  if not isinstance(layout, dict):
    raise ValueError(f"{path}: expected a JSON object with keys among {_LAYOUT_KEYS}")
  unknown = sorted(set(layout) - set(_LAYOUT_KEYS))
  if unknown:
    raise ValueError(f"{path}: unknown key(s) {unknown}; expected among {list(_LAYOUT_KEYS)}")
  natural = layout.get("natural", DEFAULT_NATURAL)
  if not (isinstance(natural, str) or (isinstance(natural, dict) and all(
      isinstance(k, str) and isinstance(v, str) for k, v in natural.items()))):
    raise ValueError(f"{path}: 'natural' must be a method name or an object task → method "
                     "(key 'default' for the other tasks)")
  if not isinstance(layout.get("scratch", ""), str):
    raise ValueError(f"{path}: 'scratch' must be a method name")
  for key in ("methods", "tasks"):
    value = layout.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
      raise ValueError(f"{path}: '{key}' must be a list of names")
  metrics = layout.get("metrics", {})
  if not isinstance(metrics, dict) or not all(isinstance(v, str) for v in metrics.values()):
    raise ValueError(f"{path}: 'metrics' must be an object task → metric key")
  return layout


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
  out = {}
  for value in values:
    key, sep, name = value.partition("=")
    if not sep or not key or not name:
      raise ValueError(f"{flag} expects TASK=NAME, got {value!r}")
    out[key] = name
  return out


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; returns the exit status."""
  parser = argparse.ArgumentParser(
      prog="synthetic-pretraining results",
      description="% of the benefit of natural pre-training, from fine-tuning run directories.")
  parser.add_argument("run_dirs", nargs="+", help="run directories, or folders holding them")
  parser.add_argument("--out", required=True, help="directory for results.md/.csv, runs.csv, "
                      "benefit.png")
  parser.add_argument("--layout", help="JSON file naming baselines, method/task order, metrics")
  parser.add_argument("--natural", help=f"natural baseline method (default {DEFAULT_NATURAL})")
  parser.add_argument("--natural-for", action="append", default=[], metavar="TASK=NAME",
                      help="natural baseline of one task, e.g. cnndm_10k=t5_1_1_small")
  parser.add_argument("--scratch", help=f"from-scratch baseline method (default "
                      f"{DEFAULT_SCRATCH})")
  parser.add_argument("--metric", action="append", default=[], metavar="TASK=KEY",
                      help="test metric of a task (default: rouge1 for cnndm_10k, else em)")
  args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
  try:
    layout = load_layout(args.layout) if args.layout else {}
    natural = layout.get("natural", DEFAULT_NATURAL)
    natural_for = {}
    if isinstance(natural, dict):
      natural_for = {k: v for k, v in natural.items() if k != "default"}
      natural = natural.get("default", DEFAULT_NATURAL)
    natural = args.natural or natural
    natural_for.update(_pairs(args.natural_for, "--natural-for"))
    metrics = {**layout.get("metrics", {}), **_pairs(args.metric, "--metric")}
    runs = load_runs(args.run_dirs, metrics)
    table = build_table(runs, natural=natural,
                        scratch=args.scratch or layout.get("scratch", DEFAULT_SCRATCH),
                        natural_for=natural_for, methods=layout.get("methods", ()),
                        tasks=layout.get("tasks", ()), metrics=metrics)
    paths = write_report(table, args.out)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(format_markdown(table))
  for path in paths.values():
    print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
