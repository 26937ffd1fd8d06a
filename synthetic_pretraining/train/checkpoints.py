"""Checkpoints with orbax: save every period, keep N or all, resume from the newest, re-shard.

Layout: `MODEL_DIR/checkpoints/<step>/default/…` holding the pytree
`{"step", "params", "opt_state"}` (orbax `StandardSave`). Restoring passes abstract arrays that
carry the *current* mesh's shardings, so a checkpoint written on one mesh shape restores onto
another. Before restoring, the stored parameter shapes are compared with the model's and any
mismatch fails with the names of the parameters that differ.
"""

from __future__ import annotations

import os
from typing import Any

import gin
import jax
import numpy as np
import orbax.checkpoint as ocp

from synthetic_pretraining.model import t5

CHECKPOINT_SUBDIR = "checkpoints"


class IncompatibleCheckpointError(ValueError):
  """The checkpoint's parameters do not match the model's names or shapes."""


def shape_mismatches(expected: dict, found: dict) -> list[str]:
  """Human-readable differences between two name→shape mappings (flattened '/' names)."""
  problems = []
  for name in sorted(set(expected) | set(found)):
    if name not in found:
      problems.append(f"{name}: missing from the checkpoint (model expects {tuple(expected[name])})")
    elif name not in expected:
      problems.append(f"{name}: in the checkpoint {tuple(found[name])} but not in the model")
    elif tuple(expected[name]) != tuple(found[name]):
      problems.append(f"{name}: checkpoint {tuple(found[name])} vs model {tuple(expected[name])}")
  return problems


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  return {k: tuple(v.shape) for k, v in t5.flatten_names(tree).items()}


def check_compatible(expected_params: Any, found_params: Any, where: str) -> None:
  problems = shape_mismatches(_flat_shapes(expected_params), _flat_shapes(found_params))
  if problems:
    listing = "\n  ".join(problems[:40]) + ("\n  …" if len(problems) > 40 else "")
    raise IncompatibleCheckpointError(
        f"checkpoint {where} is incompatible with the model ({len(problems)} parameters differ):"
        f"\n  {listing}")


@gin.configurable
class Checkpointer:
  """Wraps an orbax `CheckpointManager` for the train state of one model directory."""

  def __init__(self, model_dir: str, period: int = 1000, keep: int | None = None):
    self.directory = os.path.abspath(os.path.join(model_dir, CHECKPOINT_SUBDIR))
    self.period = period
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_handlers=ocp.StandardCheckpointHandler())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state: dict, force: bool = False) -> bool:
    if step in self.manager.all_steps():
      return False
    if not force and (self.period <= 0 or step % self.period):
      return False
    self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
    return True

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def restore(self, step: int, target_state: dict) -> dict:
    """Restores `step` onto the shardings/structure of `target_state` (arrays or abstract)."""
    metadata = self.manager.item_metadata(step)
    check_compatible(target_state["params"], metadata["params"], f"{self.directory}/{step}")
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target_state)
    restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
    # orbax may return plain tuples for optax's NamedTuples: rebuild the target's structure.
    return jax.tree.unflatten(jax.tree.structure(target_state), jax.tree.leaves(restored))

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


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


def load_params(path: str) -> dict:
  """Parameters (nested dict of float32 numpy arrays) of a project checkpoint.

  `path` is a model directory (newest step), a step directory, a T5X checkpoint directory
  (`checkpoint_<step>`, imported with `t5x_import`) or a Hugging Face T5 folder (`config.json`
  beside the weights, imported with `interop.hf`).
  """
  from synthetic_pretraining.interop import hf  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining.train import t5x_import  # pylint: disable=g-import-not-at-top
  if hf.is_hf_checkpoint(path):
    return hf.load_hf_params(path)
  if (os.path.basename(os.path.normpath(path)).startswith("checkpoint_") or
      os.path.exists(os.path.join(path, "checkpoint")) or t5x_import.checkpoint_steps(path)):
    return t5x_import.load_t5x_params(path)
  item_dir = _resolve_step_dir(path)
  checkpointer = ocp.PyTreeCheckpointer()
  metadata = checkpointer.metadata(item_dir)
  tree = metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata
  if "params" not in tree:
    raise ValueError(f"checkpoint {item_dir} has no 'params' entry (found {sorted(tree)})")
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  restored = checkpointer.restore(item_dir, restore_args=restore_args)
  return jax.tree.map(lambda x: np.asarray(x, np.float32), restored["params"])
