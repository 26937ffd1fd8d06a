"""Reads off-the-shelf T5X checkpoints into the project's parameter tree.

Two on-disk layouts are understood; both live in a step directory `checkpoint_<step>/`:

* Legacy T5X (`t5x.checkpoints.Checkpointer`): a msgpack file `checkpoint_<step>/checkpoint`
  written with `flax.serialization`, holding `{"version": 3, "optimizer": {"target": params,
  "state": optimizer_state}}` (version 0 files are a bare `{"target": …, "state": …}`). Each
  parameter leaf is either the array itself (inline, flax's msgpack array encoding) or the JSON of a
  TensorStore spec, e.g. `{"driver": "zarr", "dtype": "bfloat16", "kvstore": {"driver": "file",
  "path": "target.encoder.layers_0.attention.query.kernel"}, "metadata": {...}}`, whose path is
  relative to the step directory (`/` in the parameter name becomes `.`). Checkpoints written on
  GCS carry a `gcs` kvstore with a dummy bucket (and sometimes the path at the top level of the
  spec); the path is always re-anchored at the directory actually being read. Version-2 files stored
  bfloat16 as raw uint16 bits; those are reinterpreted.
* Orbax (T5X's `OrbaxCheckpointManagerInterface`): a PyTree checkpoint of the same
  `{"target", "state"}` dict in `checkpoint_<step>/state/`; restored with orbax-checkpoint, only the
  `target` subtree, as host numpy arrays (no device or sharding needed).

`load_t5x_params` returns the `target` tree (optimizer state ignored) as a nested dict of float32
numpy arrays with T5X's names (`token_embedder/embedding`,
`encoder/layers_0/attention/query/kernel`, …) and, given an expected tree (e.g. from `model.t5.init_params`), checks every name and shape.
Paths may be local or `gs://…` (read through `tf.io.gfile` and TensorStore's gcs driver).
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import numpy as np

from synthetic_pretraining import param_tree
from synthetic_pretraining import vocab_spec

Params = dict[str, Any]

LEGACY_INDEX_FILE = "checkpoint"
ORBAX_STATE_SUBDIR = "state"
_ORBAX_MARKERS = ("_METADATA", "_CHECKPOINT_METADATA", "manifest.ocdbt")
_STEP_DIR_RE = re.compile(r"^checkpoint_(\d+)$")


# ---------------------------------------------------------------------------------------------
# Parameter-tree helpers (shared with transfer.py and statistics tooling).


flatten_params = param_tree.flatten
unflatten_params = param_tree.unflatten


def leaf_shape(leaf: Any) -> tuple[int, ...]:
  """Shape of an array, ShapeDtypeStruct, flax boxed (`nn.Partitioned`) leaf or shape tuple."""
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  return checkpoints.shape_of(leaf)


def check_param_shapes(params: Mapping[str, Any], expected: Mapping[str, Any],
                       source: str = "checkpoint") -> None:
  """Raises ValueError naming every parameter missing, unexpected or of the wrong shape.

  The comparison is `checkpoints.shape_mismatches` (the project's one shape check).

  Args:
    params: the tree read from a checkpoint.
    expected: a tree with the model's names whose leaves are arrays, ShapeDtypeStructs, boxed
      leaves or shape tuples.
    source: what `params` came from, for the message (usually the checkpoint path).
  """
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  problems = checkpoints.shape_mismatches(expected, params)
  if problems:
    raise checkpoints.IncompatibleCheckpointError(
        f"{source}: parameters do not match the model ({len(problems)} problem(s)):\n" +
        "\n".join(f"  {p}" for p in problems))


# ---------------------------------------------------------------------------------------------
# File-system access: plain os for local paths, tf.io.gfile for URLs such as gs://.


def _is_url(path: str) -> bool:
  return "://" in path


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # only for gs:// and co.
  return tf.io.gfile


def _exists(path: str) -> bool:
  return _gfile().exists(path) if _is_url(path) else os.path.exists(path)


def _isdir(path: str) -> bool:
  return _gfile().isdir(path) if _is_url(path) else os.path.isdir(path)


def _listdir(path: str) -> list[str]:
  names = _gfile().listdir(path) if _is_url(path) else os.listdir(path)
  return [n.rstrip("/") for n in names]


def _join(base: str, *parts: str) -> str:
  return "/".join([base.rstrip("/"), *parts]) if _is_url(base) else os.path.join(base, *parts)


# ---------------------------------------------------------------------------------------------
# Locating the step directory and its layout.


def checkpoint_steps(model_dir: str) -> list[int]:
  """Steps of the `checkpoint_<step>` directories directly under `model_dir`, ascending."""
  if not _isdir(model_dir):
    return []
  steps = []
  for name in _listdir(model_dir):
    match = _STEP_DIR_RE.match(name)
    if match and _isdir(_join(model_dir, name)):
      steps.append(int(match.group(1)))
  return sorted(steps)


def resolve_checkpoint_dir(path: str, step: int | None = None) -> str:
  """The step directory to read, from a model dir (+ step, default latest), a step dir or a file.

  Raises:
    FileNotFoundError: nothing at `path`, or `step` is not among the model dir's checkpoints.
    ValueError: `path` is a `checkpoint_<n>` directory and `step` names a different step.
  """
  path = path.rstrip("/") if len(path) > 1 else path
  if not _exists(path):
    raise FileNotFoundError(f"no checkpoint at {path}")
  if not _isdir(path):  # the legacy msgpack index file itself
    return os.path.dirname(path) if not _is_url(path) else path.rsplit("/", 1)[0]
  match = _STEP_DIR_RE.match(os.path.basename(path))
  if match:
    if step is not None and int(match.group(1)) != step:
      raise ValueError(f"{path} is the checkpoint of step {match.group(1)}, not of step {step}")
    return path
  steps = checkpoint_steps(path)
  if step is not None:
    if step not in steps:
      raise FileNotFoundError(
          f"{path} has no checkpoint_{step}/ (steps present: {steps or 'none'})")
    return _join(path, f"checkpoint_{step}")
  if steps:
    return _join(path, f"checkpoint_{steps[-1]}")
  return path  # a bare orbax or legacy directory without the checkpoint_<step> wrapper


def detect_layout(checkpoint_dir: str) -> tuple[str, str]:
  """Returns ("orbax" | "legacy", directory to read) for a step directory."""
  state_dir = _join(checkpoint_dir, ORBAX_STATE_SUBDIR)
  if _isdir(state_dir):
    return "orbax", state_dir
  if any(_exists(_join(checkpoint_dir, marker)) for marker in _ORBAX_MARKERS):
    return "orbax", checkpoint_dir
  index = _join(checkpoint_dir, LEGACY_INDEX_FILE)
  if _exists(index) and not _isdir(index):
    return "legacy", checkpoint_dir
  raise FileNotFoundError(
      f"{checkpoint_dir}: not a T5X checkpoint: expected a legacy msgpack index "
      f"'{LEGACY_INDEX_FILE}' or an orbax '{ORBAX_STATE_SUBDIR}/' directory")


# ---------------------------------------------------------------------------------------------
# Legacy layout.


def _is_ts_spec(value: Any) -> bool:
  return isinstance(value, Mapping) and "driver" in value and "kvstore" in value


def _target_subtree(contents: Mapping[str, Any], source: str) -> Mapping[str, Any]:
  """Picks the parameters out of a checkpoint's state dict (T5X: `optimizer/target`)."""
  state = contents
  if "optimizer" in state and isinstance(state["optimizer"], Mapping):
    state = state["optimizer"]
  if "target" not in state:
    raise ValueError(f"{source}: no 'target' (parameters) in the checkpoint; top-level keys: "
                     f"{sorted(contents)}")
  target = state["target"]
  # Some trainers store {"params": …} as the target; T5X stores the parameters directly.
  if isinstance(target, Mapping) and set(target) == {"params"}:
    target = target["params"]
  return target


def _absolute_kvstore(spec: Mapping[str, Any], checkpoint_dir: str, name: str) -> dict[str, Any]:
  """The kvstore of a T5X TensorStore spec, re-anchored at the directory being read."""
  kvstore = spec.get("kvstore") or {}
  relative = kvstore.get("path", spec.get("path"))
  if not relative:
    raise ValueError(f"{checkpoint_dir}: TensorStore spec of {name} names no path: {dict(spec)}")
  gcs = re.fullmatch(r"gs://([^/]+)/?(.*)", checkpoint_dir, re.DOTALL)
  if gcs:
    return {"driver": "gcs", "bucket": gcs.group(1),
            "path": "/".join(p for p in (gcs.group(2).rstrip("/"), relative) if p)}
  if _is_url(checkpoint_dir):
    raise ValueError(f"{checkpoint_dir}: TensorStore arrays can be read from local or gs:// "
                     "paths only")
  return {"driver": "file", "path": os.path.join(os.path.abspath(checkpoint_dir), relative)}


def _read_tensorstore(spec: Mapping[str, Any], checkpoint_dir: str, name: str) -> np.ndarray:
  import tensorstore as ts  # pylint: disable=g-import-not-at-top
  open_spec = {"driver": spec.get("driver", "zarr"),
               "kvstore": _absolute_kvstore(spec, checkpoint_dir, name)}
  try:
    store = ts.open(open_spec, open=True, read=True).result()
    array = np.asarray(store.read().result())
  except Exception as e:  # TensorStore raises plain ValueError/RuntimeError with its own text.
    raise ValueError(f"{checkpoint_dir}: cannot read parameter {name} from "
                     f"{open_spec['kvstore'].get('path')}: {e}") from e
  metadata = spec.get("metadata") or {}
  if "shape" in metadata and tuple(int(d) for d in metadata["shape"]) != array.shape:
    raise ValueError(f"{checkpoint_dir}: parameter {name}: the index says shape "
                     f"{tuple(int(d) for d in metadata['shape'])}, the stored array has "
                     f"{array.shape}")
  if array.dtype == np.uint16:
    # Version-2 T5X checkpoints stored bfloat16 parameters as their raw 16 bits.
    array = (array.astype(np.uint32) << 16).view(np.float32)
  return array


def read_legacy_checkpoint(checkpoint_dir: str) -> Params:
  """Reads the `target` tree of a legacy T5X step directory (msgpack index + TensorStore arrays)."""
  from flax import serialization  # pylint: disable=g-import-not-at-top
  index_path = _join(checkpoint_dir, LEGACY_INDEX_FILE)
  raw = vocab_spec.read_bytes(index_path)
  if raw.startswith(b"model_checkpoint_path"):
    raise ValueError(f"{index_path}: this is a TensorFlow (Mesh TF / T5) checkpoint index, not a "
                     "T5X one; convert it with T5X's checkpoint importer first")
  try:
    contents = serialization.msgpack_restore(raw)
  except Exception as e:  # msgpack raises a zoo of exception types on corrupt input.
    raise ValueError(f"{index_path}: not a T5X msgpack checkpoint index ({e})") from e
  if not isinstance(contents, Mapping):
    raise ValueError(f"{index_path}: expected a msgpack map, got {type(contents).__name__}")
  flat = {}
  for name, leaf in _flatten_target(_target_subtree(contents, index_path)).items():
    if _is_ts_spec(leaf):
      flat[name] = _read_tensorstore(leaf, checkpoint_dir, name)
    elif isinstance(leaf, (np.ndarray, np.generic, int, float)):
      flat[name] = np.asarray(leaf)
    else:
      raise ValueError(f"{index_path}: parameter {name} is neither an array nor a TensorStore "
                       f"spec: {type(leaf).__name__}")
  return unflatten_params(flat)


def _flatten_target(target: Mapping[str, Any]) -> dict[str, Any]:
  """Like flatten_params, but a TensorStore spec dict is a leaf, not a subtree."""
  flat = {}

  def visit(node, prefix):
    for key, value in node.items():
      name = f"{prefix}/{key}" if prefix else str(key)
      if isinstance(value, Mapping) and not _is_ts_spec(value):
        visit(value, name)
      else:
        flat[name] = value

  visit(target, "")
  return flat


# ---------------------------------------------------------------------------------------------
# Orbax layout.


def read_orbax_checkpoint(state_dir: str) -> Params:
  """Restores only the `target` subtree of an orbax PyTree checkpoint as host numpy arrays."""
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  checkpointer = ocp.PyTreeCheckpointer()
  try:
    metadata = checkpointer.metadata(state_dir)
  except Exception as e:  # orbax wraps missing/corrupt metadata in several exception types.
    raise ValueError(f"{state_dir}: cannot read orbax checkpoint metadata ({e})") from e
  tree = getattr(getattr(metadata, "item_metadata", metadata), "tree", None)
  if tree is None:
    tree = getattr(metadata, "item_metadata", metadata)
  if not isinstance(tree, Mapping):
    raise ValueError(f"{state_dir}: orbax checkpoint does not hold a dict "
                     f"(got {type(tree).__name__})")
  if "target" in tree:
    wanted = {"target": tree["target"]}
  elif isinstance(tree.get("optimizer"), Mapping) and "target" in tree["optimizer"]:
    wanted = {"optimizer": {"target": tree["optimizer"]["target"]}}
  else:
    raise ValueError(f"{state_dir}: no 'target' (parameters) in the orbax checkpoint; top-level "
                     f"keys: {sorted(tree)}")
  restore_args = jax.tree_util.tree_map(
      lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
  restored = checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
      item=jax.tree_util.tree_map(lambda _: 0, wanted), restore_args=restore_args,
      partial_restore=True))
  return unflatten_params({name: np.asarray(value) for name, value in
                           flatten_params(_target_subtree(restored, state_dir)).items()})


# ---------------------------------------------------------------------------------------------
# Entry point.


def _to_float32(params: Params) -> Params:
  # bfloat16 (ml_dtypes) and float16/float64 parameters all become float32; T5 params are floats.
  return unflatten_params({name: np.asarray(value).astype(np.float32)
                           for name, value in flatten_params(params).items()})


def load_t5x_params(path: str, step: int | None = None,
                    expected: Mapping[str, Any] | None = None,
                    layout: str | None = None) -> Params:
  """Reads a T5X checkpoint's parameters (the `target` tree) as float32 numpy arrays.

  Args:
    path: a model dir (holding `checkpoint_<step>/` dirs), a step dir, or a legacy index file;
      local or gs://.
    step: which step to read from a model dir (default: the latest).
    expected: optional tree of the model's parameters (arrays, ShapeDtypeStructs or shape tuples);
      when given, every missing, unexpected or wrongly shaped parameter is reported in one error.
    layout: force "legacy" or "orbax" instead of detecting it.

  Returns:
    Nested dict with T5X's parameter names, leaves float32 `np.ndarray`.
  """
  checkpoint_dir = resolve_checkpoint_dir(path, step)
  detected, read_dir = detect_layout(checkpoint_dir)
  if layout is not None:
    if layout not in ("legacy", "orbax"):
      raise ValueError(f"layout must be 'legacy' or 'orbax', got {layout!r}")
    if layout == "orbax" and detected == "legacy":
      read_dir = checkpoint_dir
    detected = layout
  if detected == "legacy":
    params = read_legacy_checkpoint(read_dir)
  else:
    params = read_orbax_checkpoint(read_dir)
  params = _to_float32(params)
  if expected is not None:
    check_param_shapes(params, expected, source=checkpoint_dir)
  return params



# The name the trainer's checkpoint helpers use.
load_t5x_checkpoint = load_t5x_params
