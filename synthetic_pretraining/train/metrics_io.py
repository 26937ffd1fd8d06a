"""The run directory's metrics file: `MODEL_DIR/metrics.jsonl`, one JSON object per line.

Every record has `step` (int), `group` and `task`; the remaining keys are metric values:
  group "train":           loss, accuracy, learning_rate, steps_per_sec, tokens_per_sec, …
  group "training_eval":   teacher-forced `accuracy` (token accuracy) and `loss` on validation
  group "inference_eval":  the task's metrics on decoded predictions (em, f1, rouge1, …)
The results tooling (experiments/results.py) reads only this file, so any trainer that writes it
— ours, or a converted T5X run — can feed the paper's tables.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterator

METRICS_FILE = "metrics.jsonl"
GROUPS = ("train", "training_eval", "inference_eval", "test_eval")


def append(model_dir: str, step: int, group: str, task: str, values: dict[str, Any]) -> None:
  """Appends one record (flushed at once, so a killed run keeps everything written so far)."""
  if group not in GROUPS:
    raise ValueError(f"unknown metrics group {group!r}; expected one of {GROUPS}")
  record = {"step": int(step), "group": group, "task": task}
  for key, value in values.items():
    value = float(value) if not isinstance(value, (str, int)) else value
    record[key] = None if isinstance(value, float) and math.isnan(value) else value
  os.makedirs(model_dir, exist_ok=True)
  with open(os.path.join(model_dir, METRICS_FILE), "a", encoding="utf-8") as f:
    f.write(json.dumps(record, sort_keys=True) + "\n")


def read(model_dir: str) -> Iterator[dict[str, Any]]:
  """Yields the records of `model_dir`'s metrics file; a corrupt line raises naming file and line."""
  path = os.path.join(model_dir, METRICS_FILE)
  with open(path, encoding="utf-8") as f:
    for line_number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{line_number}: not a JSON object ({e.msg})") from None
      if not isinstance(record, dict) or "step" not in record or "group" not in record:
        raise ValueError(f"{path}:{line_number}: a metrics record needs 'step' and 'group'")
      yield record
