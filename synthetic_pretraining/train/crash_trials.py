"""`synthetic-pretraining crash-trials`: kill-and-resume trials of a tiny training run.

    synthetic-pretraining crash-trials --trials 10 [--steps 12] [--period 2] [--seed 0]
        [--max_kills 2] [--work_dir DIR] [--keep]

Trains a tiny T5 (gin `models/tiny.gin`, `runs/pretrain.gin`) on a small built-in copy task once
without interruption, then runs N trials of the same command in fresh model directories: each
attempt is SIGKILLed at a random moment — while a checkpoint is being written (a temporary
checkpoint folder exists), a random delay after a checkpoint was finalised, or a random time after
the start — 1 to --max_kills times, and restarted (the run resumes from its newest checkpoint)
until it finishes by itself. The final train state (step, parameters and Adafactor state) of every trial is compared
bit for bit with the uninterrupted run's. Prints one line per trial and a summary, e.g.

    trial 1: 3 kills (2 during a checkpoint write, 1 after a checkpoint), 4 starts, final step 12:
      identical (172 arrays)
    10/10 trials bit-identical to the uninterrupted run

Exit status 0 when every trial is bit-identical, 1 otherwise (2 for bad arguments). The run is
tiny (seconds per attempt after start-up); most of the time is process start-up (imports,
compilation). A benchmark-style tool, not a test; `tests/train/test_crash_trials.py` runs one trial.

The copy task is registered by `crash_trial_task` (the runs' `MIXTURE_OR_TASK_MODULE`), so the
tool needs no data, vocabulary file or network.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Sequence

from synthetic_pretraining import environment

TASK_NAME = "crash_trial_copy"
MODULE = "synthetic_pretraining.train.crash_trial_task"  # Registers TASK_NAME when imported.
FEATURE_LENGTHS = {"inputs": 12, "targets": 12}
KILL_KINDS = ("during a checkpoint write", "after a checkpoint", "at a random time")


def train_command(model_dir: str, steps: int, period: int) -> list[str]:
  """The training command line of one attempt (the same for the reference and every restart)."""
  return [sys.executable, "-m", "synthetic_pretraining", "train",
          "--gin_file=models/tiny.gin", "--gin_file=runs/pretrain.gin",
          f"--gin.MIXTURE_OR_TASK_NAME='{TASK_NAME}'", f"--gin.MIXTURE_OR_TASK_MODULE='{MODULE}'",
          f"--gin.TASK_FEATURE_LENGTHS={FEATURE_LENGTHS}", "--gin.BATCH_SIZE=8",
          "--gin.EVAL_STEPS=0", f"--gin.TRAIN_STEPS={steps}", f"--gin.PERIOD={period}",
          f"--gin.LOG_PERIOD={period}", f"--gin.MODEL_DIR='{model_dir}'"]


def _environment() -> dict[str, str]:
  env = environment.for_subprocess()
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  return env


def _checkpoint_entries(model_dir: str) -> tuple[list[int], bool]:
  """(finalised checkpoint steps, whether a temporary checkpoint folder is being written)."""
  folder = os.path.join(model_dir, "checkpoints")
  try:
    names = os.listdir(folder)
  except FileNotFoundError:
    return [], False
  steps = sorted(int(n) for n in names if n.isdigit())
  return steps, any(not n.isdigit() for n in names)


@dataclasses.dataclass
class Attempt:
  kill: str | None  # None: finished by itself.
  started_at_step: int | None
  seconds: float


@dataclasses.dataclass
class TrialResult:
  attempts: list[Attempt]
  final_step: int | None
  identical: bool
  num_arrays: int
  differing: list[str]

  @property
  def kills(self) -> list[str]:
    return [a.kill for a in self.attempts if a.kill]


def _one_attempt(model_dir: str, steps: int, period: int, rng: random.Random, log_path: str,
                 kill: bool, reference_seconds: float, poll_s: float = 0.002,
                 kinds: Sequence[str] = KILL_KINDS) -> Attempt:
  """Starts the run; SIGKILLs it at a random trigger (if `kill`), else waits for it to finish.
  A run that finishes before its trigger fires counts as not killed."""
  before, _ = _checkpoint_entries(model_dir)
  kind = rng.choice(list(kinds)) if kill else None
  writes_to_skip = rng.randrange(2)  # Kill during the first or the second write of this attempt.
  delay = rng.uniform(0.0, 0.5)
  deadline = rng.uniform(0.2, 0.8) * reference_seconds
  start = time.monotonic()
  with open(log_path, "w", encoding="utf-8") as log:
    proc = subprocess.Popen(train_command(model_dir, steps, period), stdout=log,
                            stderr=subprocess.STDOUT, env=_environment())
    try:
      writing_seen, was_writing, finalised_at = 0, False, None
      while proc.poll() is None:
        now = time.monotonic() - start
        finalised, writing = _checkpoint_entries(model_dir)
        if kind == KILL_KINDS[0]:
          if writing and not was_writing:
            writing_seen += 1
          was_writing = writing
          fire = writing and writing_seen > writes_to_skip
        elif kind == KILL_KINDS[1]:
          if finalised_at is None and len(finalised) > len(before):
            finalised_at = now
          fire = finalised_at is not None and now - finalised_at >= delay
        elif kind == KILL_KINDS[2]:
          fire = now >= deadline
        else:
          fire = False
        if fire:
          proc.send_signal(signal.SIGKILL)
          proc.wait()
          return Attempt(kind, before[-1] if before else None, time.monotonic() - start)
        time.sleep(poll_s)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  if proc.returncode != 0:
    with open(log_path, encoding="utf-8", errors="replace") as f:
      tail = "".join(f.readlines()[-15:])
    raise RuntimeError(f"training exited with status {proc.returncode} (not killed by the "
                       f"trial); log {log_path}:\n{tail}")
  return Attempt(None, before[-1] if before else None, time.monotonic() - start)


def load_state(model_dir: str, step: int) -> dict[str, "np.ndarray"]:
  """Every array of the saved train state (step, params, optimiser state) by its tree path."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.ERROR)  # orbax warns about optional metadata files.
  item = os.path.join(os.path.abspath(model_dir), "checkpoints", str(step), "default")
  checkpointer = ocp.PyTreeCheckpointer()
  metadata = checkpointer.metadata(item)
  tree = metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  restored = checkpointer.restore(item, restore_args=restore_args)
  leaves = jax.tree_util.tree_flatten_with_path(restored)[0]
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def differing_arrays(a: dict, b: dict) -> list[str]:
  """Names whose arrays differ in shape, dtype or any bit (or exist on one side only)."""
  names = sorted(set(a) | set(b))
  return [n for n in names if n not in a or n not in b or a[n].shape != b[n].shape
          or a[n].dtype != b[n].dtype or a[n].tobytes() != b[n].tobytes()]


def run_trial(model_dir: str, reference: dict | Callable[[], dict], steps: int, period: int,
              rng: random.Random,
              reference_seconds: float, max_kills: int = 2,
              kinds: Sequence[str] = KILL_KINDS) -> TrialResult:
  """k ~ U{1..max_kills} SIGKILLs (each of a random kind among `kinds`; fewer if the run finishes
  before a trigger, at least one), then restarts until the run finishes by itself; compares the
  final state with `reference`."""
  kills = rng.randint(1, max_kills)
  for _ in range(5):  # A run that outpaced every trigger had no kill: start the trial afresh.
    shutil.rmtree(model_dir, ignore_errors=True)
    os.makedirs(model_dir)
    attempts: list[Attempt] = []
    while True:
      attempt = _one_attempt(os.path.join(model_dir, "run"), steps, period, rng,
                             os.path.join(model_dir, f"attempt_{len(attempts)}.log"),
                             len(attempts) < kills, reference_seconds, kinds=kinds)
      attempts.append(attempt)
      if attempt.kill is None:
        break
    if len(attempts) > 1:
      break
  finalised, _ = _checkpoint_entries(os.path.join(model_dir, "run"))
  final = finalised[-1] if finalised else None
  state = load_state(os.path.join(model_dir, "run"), final) if final is not None else {}
  differing = differing_arrays(reference() if callable(reference) else reference, state)
  return TrialResult(attempts, final, not differing and final == steps, len(state), differing)


def _capture(fn: Callable[[], Any], errors: list) -> Callable[[], None]:
  def run():
    try:
      fn()
    except BaseException as e:  # pylint: disable=broad-except
      errors.append(e)
  return run


def _describe(i: int, result: TrialResult) -> str:
  kills = result.kills
  counts = ", ".join(f"{kills.count(k)} {k}" for k in KILL_KINDS if kills.count(k))
  resumed = ["scratch" if a.started_at_step is None else a.started_at_step
             for a in result.attempts[1:]]  # scratch: killed before its first checkpoint.
  verdict = (f"identical ({result.num_arrays} arrays)" if result.identical else
             f"DIFFERENT: {len(result.differing)} arrays, e.g. {result.differing[:3]}")
  return (f"trial {i}: {len(kills)} kills ({counts or 'none'}), {len(result.attempts)} starts, "
          f"resumed from steps {resumed}, final step {result.final_step}: {verdict}")


def crash_trials(trials: int, steps: int = 12, period: int = 2, seed: int = 0,
                 work_dir: str | None = None, keep: bool = False, max_kills: int = 2,
                 kinds: Sequence[str] = KILL_KINDS,
                 log: Callable[[str], None] = print) -> list[TrialResult]:
  """Runs the reference and `trials` kill-and-resume trials; returns their results."""
  root = work_dir or tempfile.mkdtemp(prefix="sp_crash_trials_")
  os.makedirs(root, exist_ok=True)
  rng = random.Random(seed)
  try:
    start = time.monotonic()
    ref_dir = os.path.join(root, "reference")
    os.makedirs(ref_dir, exist_ok=True)
    run_reference = functools.partial(
        _one_attempt, os.path.join(ref_dir, "run"), steps, period, random.Random(seed),
        os.path.join(ref_dir, "attempt_0.log"), kill=False, reference_seconds=0.0)
    if KILL_KINDS[2] in kinds:  # Random kill times are scaled by the reference's duration.
      run_reference()
      reference_seconds = time.monotonic() - start
      state = load_state(os.path.join(ref_dir, "run"), steps)
      reference = lambda: state
      log(f"reference: uninterrupted run of {steps} steps (checkpoint every {period}) in "
          f"{reference_seconds:.1f} s, {len(state)} arrays")
    else:  # No timing needed: the reference runs beside the trials.
      reference_seconds = 0.0
      errors: list[BaseException] = []
      thread = threading.Thread(target=_capture(run_reference, errors), daemon=True)
      thread.start()

      def reference():
        thread.join()
        if errors:
          raise errors[0]
        return load_state(os.path.join(ref_dir, "run"), steps)
    results = []
    for i in range(1, trials + 1):
      result = run_trial(os.path.join(root, f"trial_{i}"), reference, steps, period, rng,
                         reference_seconds, max_kills, kinds)
      results.append(result)
      log(_describe(i, result))
    same = sum(r.identical for r in results)
    total_kills = sum(len(r.kills) for r in results)
    log(f"{same}/{trials} trials bit-identical to the uninterrupted run ({total_kills} SIGKILLs: "
        + ", ".join(f"{sum(r.kills.count(k) for r in results)} {k}" for k in KILL_KINDS)
        + f"); {time.monotonic() - start:.0f} s")
    return results
  finally:
    if keep or work_dir:
      log(f"trial folders kept in {root}")
    else:
      shutil.rmtree(root, ignore_errors=True)


def _positive(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
  return value


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="synthetic-pretraining crash-trials",
      description="SIGKILL-and-resume trials of a tiny training run, compared bit for bit with "
                  "an uninterrupted run.")
  parser.add_argument("--trials", type=_positive, default=10)
  parser.add_argument("--steps", type=_positive, default=12, help="training steps per run")
  parser.add_argument("--period", type=_positive, default=2, help="checkpoint period")
  parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
  parser.add_argument("--max_kills", type=_positive, default=2,
                      help="SIGKILLs per trial: uniform in 1..MAX_KILLS (default 2)")
  parser.add_argument("--work_dir", default=None,
                      help="folder for the runs (kept); default a temporary folder, removed")
  parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
  args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
  if args.period > args.steps:
    parser.error(f"--period {args.period} must be <= --steps {args.steps}")
  results = crash_trials(args.trials, args.steps, args.period, args.seed, args.work_dir,
                         args.keep, args.max_kills)
  return 0 if all(r.identical for r in results) else 1


if __name__ == "__main__":
  sys.exit(main())
