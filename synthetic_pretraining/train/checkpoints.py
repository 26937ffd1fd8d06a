"""Checkpoint and parameter I/O of a run directory, in one place.

* Checkpoints with orbax: save every period, keep N or all, resume from the newest intact one,
  re-shard. Layout: `MODEL_DIR/checkpoints/<step>/default/…` holding the pytree
  `{"step", "params", "opt_state"}` (orbax `StandardSave`). Restoring passes abstract arrays that
  carry the *current* mesh's shardings, so a checkpoint written on one mesh shape restores onto
  another. Before restoring, the stored parameter shapes are compared with the model's and any
  mismatch fails with the names of the parameters that differ. A step whose files cannot be read
  (e.g. a truncated `_METADATA`) is moved to `MODEL_DIR/checkpoints_corrupted/<step>` with a
  warning naming it, and the next older step is used (`Checkpointer.restore_latest`).
* Shape checks: `shape_mismatches`, `check_compatible` (the one comparison of two parameter trees).
* Atomic writes: `atomic_write_text`, `atomic_write_json` (temporary file in the same folder,
  fsync, rename), so a killed process never leaves a half-written file.
* Run metadata: `RUN_INFO_FILE` (`run_info.json`), written by the training loop only; it records
  what the run is (task, feature lengths, batch size, model) and keeps the history of every start.
* The run-directory lock `ModelDirLock` (`MODEL_DIR/.lock`, an advisory `flock` that the operating
  system releases when the holding process dies, even by SIGKILL).
* `load_params(path)`: parameters of a project checkpoint, a T5X checkpoint (`t5x_import`) or a
  Hugging Face folder (`interop.hf`); `resolve_checkpoint(path)` says which one a folder is.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
import re
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from synthetic_pretraining import param_tree

# jax, orbax and the model are imported where they are needed: the atomic writes, run metadata
# and shape checks of this module stay cheap to import (the results tooling uses them).

CHECKPOINT_SUBDIR = "checkpoints"
CORRUPTED_SUBDIR = "checkpoints_corrupted"
RUN_INFO_FILE = "run_info.json"
CONFIG_FILE = "config.gin"
LOCK_FILE = ".lock"


class IncompatibleCheckpointError(ValueError):
  """The checkpoint's parameters do not match the model's names or shapes."""


class CorruptCheckpointError(ValueError):
  """A checkpoint's files cannot be read (truncated, half-written or damaged)."""


class ModelDirInUseError(ValueError):
  """Another live process holds the run directory's lock."""


# ---------------------------------------------------------------------------------------------
# Atomic writes.


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_output(path: str, mode: str = "w", newline: str | None = None) -> Iterator[Any]:
  """Yields a file object; on success the data replace `path` atomically, on error nothing.

  The data go to a temporary file in the same folder (same file system), flushed and fsynced,
  then renamed over `path` (with the permissions a plain `open` would give). An exception, or a
  kill, leaves `path` untouched.
  """
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
  try:
    os.chmod(tmp, 0o666 & ~_umask())
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": newline}
    with os.fdopen(fd, mode, **text) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str, text: str) -> None:
  with atomic_output(path) as f:
    f.write(text)


def atomic_write_bytes(path: str, data: bytes) -> None:
  with atomic_output(path, "wb") as f:
    f.write(data)


def atomic_write_json(path: str, value: Any) -> None:
  atomic_write_text(path, json.dumps(value, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------
# Parameter shapes.


def shape_of(leaf: Any) -> tuple[int, ...]:
  """Shape of an array, ShapeDtypeStruct, orbax metadata, flax boxed leaf or shape tuple."""
  if hasattr(leaf, "unbox") and not hasattr(leaf, "shape"):
    leaf = leaf.unbox()
  if isinstance(leaf, (tuple, list)):
    return tuple(int(d) for d in leaf)
  if hasattr(leaf, "shape"):
    return tuple(int(d) for d in leaf.shape)
  return tuple(int(d) for d in np.shape(leaf))


def flat_shapes(tree: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
  """'/'-joined parameter name -> shape, for a nested tree or an already flat mapping."""
  return {name: shape_of(leaf) for name, leaf in param_tree.flatten(tree).items()}


def natural_key(name: str) -> list[Any]:
  """Sort key that orders `layers_2` before `layers_10`."""
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def shape_differences(expected: Mapping[str, Any], found: Mapping[str, Any]
                      ) -> list[tuple[str, str, tuple[int, ...] | None, tuple[int, ...] | None]]:
  """(kind, name, expected shape, found shape) for every parameter that differs, in natural name
  order; kind is 'missing', 'unexpected' or 'shape'. Trees may be nested or flat ('/' names)."""
  want, got = flat_shapes(expected), flat_shapes(found)
  differences = []
  for name in sorted(set(want) | set(got), key=natural_key):
    if name not in got:
      differences.append(("missing", name, want[name], None))
    elif name not in want:
      differences.append(("unexpected", name, None, got[name]))
    elif want[name] != got[name]:
      differences.append(("shape", name, want[name], got[name]))
  return differences


def describe_difference(kind: str, name: str, want: Any, got: Any, *,
                        found_name: str = "checkpoint", expected_name: str = "model") -> str:
  """The one wording of a parameter difference (see `shape_mismatches`)."""
  if kind == "missing":
    return f"missing from {found_name}: {name} ({expected_name} shape {want})"
  if kind == "unexpected":
    return f"unexpected in {found_name}: {name} (shape {got})"
  return f"shape differs: {name}: {found_name} {got} vs {expected_name} {want}"


def shape_mismatches(expected: Mapping[str, Any], found: Mapping[str, Any], *,
                     found_name: str = "checkpoint", expected_name: str = "model") -> list[str]:
  """Every parameter missing, unexpected or of another shape — the one comparison of two trees.

  Args:
    expected: what the model needs: a nested tree or a flat name->leaf/shape mapping.
    found: what was read, same forms.
    found_name, expected_name: how the two sides are called in the messages.

  Returns:
    One line per problem, in natural name order: `shape differs: NAME: checkpoint (a,) vs model
    (b,)`, `missing from checkpoint: NAME (model shape (b,))`, `unexpected in checkpoint: NAME
    (shape (a,))`.
  """
  return [describe_difference(*d, found_name=found_name, expected_name=expected_name)
          for d in shape_differences(expected, found)]


def check_compatible(expected_params: Any, found_params: Any, where: str,
                     error: type[ValueError] = None) -> None:
  """Raises (IncompatibleCheckpointError by default) listing every parameter that differs."""
  problems = shape_mismatches(expected_params, found_params)
  if problems:
    listing = "\n  ".join(problems[:40]) + ("\n  …" if len(problems) > 40 else "")
    raise (error or IncompatibleCheckpointError)(
        f"checkpoint {where} is incompatible with the model ({len(problems)} parameters differ):"
        f"\n  {listing}")


# ---------------------------------------------------------------------------------------------
# The run directory: lock and metadata.


class ModelDirLock:
  """Exclusive use of a run directory by one live process (`MODEL_DIR/.lock`, `flock`).

  The operating system drops the lock when the holder exits, however it exits, so a killed run
  never blocks the next one. The file names the holder (host, pid, start time) for the message.
  `flock` is per host: on a shared file system across hosts it may not exclude (document-level
  guarantee only).
  """

  def __init__(self, model_dir: str):
    self.path = os.path.join(model_dir, LOCK_FILE)
    self._fd: int | None = None

  def acquire(self) -> "ModelDirLock":
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EAGAIN, errno.EACCES):
          raise
        raise ModelDirInUseError(
            f"model dir {os.path.dirname(self.path)} is in use by another live run "
            f"({self._holder()}); wait for it to finish, or use another MODEL_DIR") from None
      try:  # The file may have been removed by its previous holder after we opened it.
        same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
      except FileNotFoundError:
        same = False
      if same:
        break
      os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                             "since": _now()}).encode())
    self._fd = fd
    return self

  def _holder(self) -> str:
    try:
      with open(self.path, encoding="utf-8") as f:
        info = json.load(f)
      return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
      return "holder unknown"

  def release(self) -> None:
    if self._fd is None:
      return
    with contextlib.suppress(OSError):
      os.unlink(self.path)
    os.close(self._fd)  # Closing drops the flock.
    self._fd = None

  def __enter__(self) -> "ModelDirLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_run_info(model_dir: str) -> dict | None:
  """The run metadata (`run_info.json`) of `model_dir`, None if there is none."""
  path = os.path.join(model_dir, RUN_INFO_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
  if not isinstance(info, dict):
    raise ValueError(f"{path}: expected a JSON object")
  return info


def record_run_start(model_dir: str, description: Mapping[str, Any], start_step: int,
                     changed: Mapping[str, Any] | None = None) -> dict:
  """Writes `run_info.json`: `description` at top level, plus this start appended to `history`.

  Args:
    model_dir: the run directory.
    description: what the run is (task, feature lengths, batch size, model config, …).
    start_step: the step this start begins at (0, or the resumed checkpoint's step).
    changed: for a resume allowed to change the configuration, field -> (recorded, now).

  Returns:
    The metadata written.
  """
  previous = read_run_info(model_dir) or {}
  history = list(previous.get("history", []))
  entry = {"started": _now(), "start_step": int(start_step), "host": socket.gethostname(),
           "pid": os.getpid(), **description}
  if changed:
    entry["changed"] = {k: {"recorded": v[0], "now": v[1]} for k, v in changed.items()}
  history.append(entry)
  info = {**dict(description), "history": history}
  atomic_write_json(os.path.join(model_dir, RUN_INFO_FILE), info)
  return info


# ---------------------------------------------------------------------------------------------
# Orbax checkpoints of the train state.


class Checkpointer:
  """Wraps an orbax `CheckpointManager` for the train state of one model directory.

  Not a gin configurable: the loop builds it from `loop.CheckpointConfig`.
  """

  def __init__(self, model_dir: str, period: int = 1000, keep: int | None = None):
    self.model_dir = os.path.abspath(model_dir)
    self.directory = os.path.join(self.model_dir, CHECKPOINT_SUBDIR)
    self.period = period
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    self._ocp = ocp
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_handlers=ocp.StandardCheckpointHandler())
    self.saved: list[int] = []

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state: dict, force: bool = False) -> bool:
    if step in self.manager.all_steps():
      return False
    if not force and (self.period <= 0 or step % self.period):
      return False
    self.manager.save(step, args=self._ocp.args.StandardSave(state), force=True)
    self.saved.append(step)
    return True

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def restore(self, step: int, target_state: dict) -> dict:
    """Restores `step` onto the shardings/structure of `target_state` (arrays or abstract).

    Raises:
      IncompatibleCheckpointError: parameter names or shapes differ from the model's.
      CorruptCheckpointError: the step's files cannot be read.
    """
    where = f"{self.directory}/{step}"
    try:
      metadata = self.manager.item_metadata(step)
    except Exception as e:  # pylint: disable=broad-except  (JSON/ocdbt/tensorstore errors)
      raise CorruptCheckpointError(f"checkpoint {where} cannot be read ({_short(e)})") from None
    if metadata is None or "params" not in metadata:
      raise CorruptCheckpointError(f"checkpoint {where} is incomplete: no parameter metadata")
    check_compatible(target_state["params"], metadata["params"], where)
    import jax  # pylint: disable=g-import-not-at-top
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target_state)
    try:
      restored = self.manager.restore(step, args=self._ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-except
      raise CorruptCheckpointError(f"checkpoint {where} cannot be read ({_short(e)})") from None
    # orbax may return plain tuples for optax's NamedTuples: rebuild the target's structure.
    return jax.tree.unflatten(jax.tree.structure(target_state), jax.tree.leaves(restored))

  def restore_latest(self, target_state: dict, warn: Callable[[str], None] = print
                     ) -> tuple[int, dict] | None:
    """(step, state) of the newest step that reads back; None when there is no checkpoint.

    A step that cannot be read is moved aside to `MODEL_DIR/checkpoints_corrupted/<step>` (so
    that it is not chosen again and its step number can be saved anew) with a warning naming it.
    Incompatible parameters are not corruption: they raise.
    """
    for step in sorted(self.all_steps(), reverse=True):
      try:
        return step, self.restore(step, target_state)
      except CorruptCheckpointError as e:
        moved = self._move_aside(step)
        warn(f"warning: {e}; moved it to {moved} and falling back to the previous checkpoint")
    return None

  def _move_aside(self, step: int) -> str:
    import jax  # pylint: disable=g-import-not-at-top
    target = os.path.join(self.model_dir, CORRUPTED_SUBDIR, str(step))
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(target), exist_ok=True)
      if os.path.exists(target):
        target += f".{int(time.time())}"
      os.replace(os.path.join(self.directory, str(step)), target)
    self.manager.reload()
    return target

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _short(error: BaseException) -> str:
  text = (str(error).strip().splitlines() or [""])[0][:200]
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def saved_steps(model_dir: str) -> list[int]:
  """Steps with a checkpoint folder in `model_dir/checkpoints/` (no orbax needed), ascending."""
  directory = os.path.join(model_dir, CHECKPOINT_SUBDIR)
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory)
                if d.isdigit() and os.path.isdir(os.path.join(directory, d)))


# ---------------------------------------------------------------------------------------------
# Reading parameters from any supported checkpoint folder.


def _resolve_step_dir(path: str) -> str:
  """Accepts a model dir, its `checkpoints/` dir, a step dir or the step's item dir."""
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint path {path} does not exist")
  candidates = [path, os.path.join(path, CHECKPOINT_SUBDIR)]
  for candidate in candidates:
    if os.path.isdir(os.path.join(candidate, "default")):
      return os.path.join(candidate, "default")
    if os.path.exists(os.path.join(candidate, "_METADATA")) or os.path.exists(
        os.path.join(candidate, "manifest.ocdbt")):
      return candidate
    steps = sorted(int(d) for d in os.listdir(candidate)
                   if d.isdigit() and os.path.isdir(os.path.join(candidate, d))) if os.path.isdir(
                       candidate) else []
    if steps:
      return os.path.join(candidate, str(steps[-1]), "default")
  raise FileNotFoundError(f"no orbax checkpoint found under {path} (expected <model_dir>/"
                          f"{CHECKPOINT_SUBDIR}/<step>/default)")


def resolve_checkpoint(path: str) -> tuple[str, str]:
  """(kind, path) of a checkpoint folder: kind is 'hf', 't5x' or 'project'.

  'hf': a Hugging Face T5 folder (`interop.hf`); 't5x': a T5X checkpoint (legacy msgpack or orbax,
  a `checkpoint_<step>` folder or a model dir holding them; `t5x_import`); 'project': this
  project's orbax layout, `path` resolved to the item folder of a step
  (`<model_dir>/checkpoints/<step>/default`; a model dir gives its newest step).
  """
  from synthetic_pretraining.interop import hf  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining.train import t5x_import  # pylint: disable=g-import-not-at-top
  if hf.is_hf_checkpoint(path):
    return "hf", path
  if (os.path.basename(os.path.normpath(path)).startswith("checkpoint_") or
      os.path.exists(os.path.join(path, "checkpoint")) or t5x_import.checkpoint_steps(path)):
    return "t5x", path
  return "project", _resolve_step_dir(path)


def load_params(path: str) -> dict:
  """Parameters (nested dict of float32 numpy arrays) of a checkpoint.

  `path` is a model directory (newest step), a step directory, a T5X checkpoint directory
  (`checkpoint_<step>`, imported with `t5x_import`) or a Hugging Face T5 folder (`config.json`
  beside the weights, imported with `interop.hf`).

  Raises:
    FileNotFoundError: nothing checkpoint-like at `path`.
    CorruptCheckpointError: the project checkpoint's files cannot be read.
  """
  kind, resolved = resolve_checkpoint(path)
  if kind == "hf":
    from synthetic_pretraining.interop import hf  # pylint: disable=g-import-not-at-top
    return hf.load_hf_params(resolved)
  if kind == "t5x":
    from synthetic_pretraining.train import t5x_import  # pylint: disable=g-import-not-at-top
    return t5x_import.load_t5x_params(resolved)
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  item_dir = resolved
  checkpointer = ocp.PyTreeCheckpointer()
  try:
    metadata = checkpointer.metadata(item_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise CorruptCheckpointError(
        f"checkpoint {item_dir} cannot be read: it is incomplete or corrupted ({_short(e)})"
    ) from None
  tree = metadata.item_metadata if hasattr(metadata, "item_metadata") else metadata
  tree = getattr(tree, "tree", tree)
  if tree is None:
    raise CorruptCheckpointError(
        f"checkpoint {item_dir} cannot be read: it is incomplete or corrupted (no metadata)")
  if "params" not in tree:
    raise ValueError(f"checkpoint {item_dir} has no 'params' entry (found {sorted(tree)})")
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  try:
    restored = checkpointer.restore(item_dir, restore_args=restore_args)
  except Exception as e:  # pylint: disable=broad-except
    raise CorruptCheckpointError(
        f"checkpoint {item_dir} cannot be read: it is incomplete or corrupted ({_short(e)})"
    ) from None
  return jax.tree.map(lambda x: np.asarray(x, np.float32), restored["params"])


def remove_tree(path: str) -> None:
  """Removes a folder this process created (no error if it is already gone)."""
  shutil.rmtree(path, ignore_errors=True)
