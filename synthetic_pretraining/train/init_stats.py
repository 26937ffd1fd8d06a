"""Initialisation from parameter statistics (Table 2) and constant pre-attention LNs (Table 3).

Table 2 re-initialises a default-initialised T5 from the *statistics* of a trained checkpoint: the
flattened parameter names ('/'-joined, exactly T5X's) are split into groups by a "grouping"; for
each group the mean μ and population standard deviation σ (ddof 0, float64) of the concatenation
of the checkpoint's tensors in that group are computed, and every tensor of the group is re-drawn:

  `init_mean_std`: every tensor ← iid N(μ, σ²) (layer norms too).
  `init_scale`:    if the group's first name contains "norm", every tensor ← the constant μ;
                   otherwise (kernels, relative-position tables) every tensor ← iid N(0, σ²).

An `init_id` is `"<grouping>___<stat>"`; the nine used in the paper are in `INIT_IDS`. Tensors that
no group selects keep their given (default-init) values bit for bit. `token_embedder/embedding` is
never grouped (as in the release); neither is the untied `decoder/logits_dense/kernel` of T5 v1.1 —
the release had no such tensor in its T5 v1.0 experiments, and it plays the embedding's role, so it
keeps its default init too. v1.1's gated MLP kernels (`mlp/wi_0`, `mlp/wi_1`) count as MLP kernels.

Differences from the release, on purpose: sampling is seeded (a per-tensor numpy stream derived from
`seed` and the parameter's name, so results do not depend on dict order), results are cast to each
parameter's dtype (and placed with its sharding when it is a jax array), and the per-layer grouping
follows the model's actual number of layers instead of a hard-coded 6. Call it outside `jit` on
host-addressable arrays (the statistics checkpoint is read to host memory as float64 per tensor).

Table 3 sets every encoder `pre_attention_layer_norm`, decoder `pre_self_attention_layer_norm` and
`pre_cross_attention_layer_norm` scale to a constant V ≥ 0 (`set_pre_attention_layer_norm`); the
release's `init_with_custom_value` string ("pre_self_attn_ln-V---pre_cross_attn_ln-V") is parsed by
`parse_custom_value_string`.

The trainer calls the gin-configurable `apply_initialisation` once on freshly initialised params.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import hashlib
import logging
import math
import os
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

import gin
import numpy as np

from synthetic_pretraining import param_tree

PyTree = Any
FlatParams = dict[str, Any]

EMBEDDING_NAME = "token_embedder/embedding"
# Names never selected by any grouping: the input embedding (release) and the untied output layer.
_NEVER_GROUPED = re.compile(r"(.*/)?(token_embedder|logits_dense)/")

STATS = ("init_mean_std", "init_scale")
INIT_IDS = (
    "per_param_grouping___init_mean_std",
    "per_param_grouping___init_scale",
    "across_ALL_layer_AND_per_layer_grouping___init_scale",
    "preattnln_per_param_grouping___init_scale",
    "across_ALL_layer_grouping___init_scale",
    "per_layer_grouping___init_scale",
    "premlpln_per_param_grouping___init_scale",
    "qkvo_per_param_grouping___init_scale",
    "mlp_per_param_grouping___init_scale",
)
# The paper's row names for the nine schemes (Table 2).
PAPER_NAMES = {
    "per_param_grouping___init_mean_std": "Per Param Mean/SD",
    "per_param_grouping___init_scale": "Per Param Scale",
    "across_ALL_layer_AND_per_layer_grouping___init_scale": "Whole Model Scale",
    "preattnln_per_param_grouping___init_scale": "Pre-attn LN Per Param Scale",
    "across_ALL_layer_grouping___init_scale": "Across Layers Scale",
    "per_layer_grouping___init_scale": "Per Layer Scale",
    "premlpln_per_param_grouping___init_scale": "Pre-MLP LN Per Param Scale",
    "qkvo_per_param_grouping___init_scale": "Attention Per Param Scale",
    "mlp_per_param_grouping___init_scale": "MLP Per Param Scale",
}

# The release's keys of `init_with_custom_value` and the parameters each one selects.
CUSTOM_VALUE_TARGETS = {
    "pre_self_attn_ln": r"(encoder/(.*/)?pre_attention_layer_norm/|"
                        r"decoder/(.*/)?pre_self_attention_layer_norm/)",
    "pre_cross_attn_ln": r"decoder/(.*/)?pre_cross_attention_layer_norm/",
    "pre_mlp_ln": r".*pre_mlp_layer_norm/",
    "after_enc_ln": r"encoder/encoder_norm/",
    "after_dec_ln": r"decoder/decoder_norm/",
}


# ----------------------------------------------------------------------------------------------
# Parameter trees.


flatten_params = param_tree.flatten
unflatten_params = param_tree.unflatten


def _unbox(leaf: Any) -> Any:
  """The array inside a flax metadata box (`nn.LogicallyPartitioned`, …), or the leaf itself."""
  return leaf.unbox() if hasattr(leaf, "unbox") and hasattr(leaf, "replace_boxed") else leaf


def _rebox(original: Any, value: Any) -> Any:
  return original.replace_boxed(value) if hasattr(original, "replace_boxed") else value


def _shape(leaf: Any) -> tuple[int, ...]:
  return tuple(np.shape(_unbox(leaf)))


def _as_float64(leaf: Any) -> np.ndarray:
  return np.asarray(_unbox(leaf)).astype(np.float64, copy=False)


def natural_key(name: str) -> list[Any]:
  """Sort key that orders `layers_2` before `layers_10` (`checkpoints.natural_key`)."""
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  return checkpoints.natural_key(name)


# ----------------------------------------------------------------------------------------------
# Groupings (SPEC §6). Each maps the flattened parameter names to a list of groups; regexes are
# anchored at the start of the name (`re.match`), as in the release.


def _groupable(names: Iterable[str]) -> list[str]:
  return sorted((n for n in names if not _NEVER_GROUPED.match(n)), key=natural_key)


def _matching(pattern: str, names: Sequence[str]) -> list[str]:
  regex = re.compile(pattern)
  return [n for n in names if regex.match(n)]


def _singletons(pattern: str, names: Sequence[str]) -> list[list[str]]:
  return [[n] for n in _matching(pattern, names)]


def _per_param(names):
  return [[n] for n in names]


def _whole_model(names):
  return [_matching(r".*attention/", names) + _matching(r".*mlp/", names),
          _matching(r".*norm", names),
          _matching(r".*relpos", names)]


def _across_all_layers(names):
  return [_matching(r".*query", names),
          _matching(r".*key", names),
          _matching(r".*value", names),
          _matching(r".*attention.*out", names),
          _matching(r".*mlp/", names),
          _matching(r".*pre_mlp_layer_norm", names),
          _matching(r".*attention_layer_norm", names),
          _matching(r"(encoder/encoder_norm|decoder/decoder_norm)/", names),
          _matching(r".*relpos_bias/", names)]


def _per_layer(names):
  layer_ids = sorted({int(m.group(1)) for n in names if (m := re.match(r"\w+/layers_(\d+)/", n))})
  groups = []
  for i in layer_ids:
    for stack in ("encoder", "decoder"):
      prefix = f"{stack}/layers_{i}/"
      groups.append(_matching(prefix + r".*attention/", names)
                    + _matching(prefix + r".*mlp/", names))
      groups.append(_matching(prefix + r".*pre_mlp_layer_norm", names)
                    + _matching(prefix + r".*attention_layer_norm", names))
  groups += [[n] for n in names if "layers" not in n]
  return groups


GROUPINGS: dict[str, Callable[[list[str]], list[list[str]]]] = {
    "per_param_grouping": _per_param,
    "across_ALL_layer_AND_per_layer_grouping": _whole_model,
    "preattnln_per_param_grouping": lambda names: _singletons(r".*attention.*norm", names),
    "across_ALL_layer_grouping": _across_all_layers,
    "per_layer_grouping": _per_layer,
    "premlpln_per_param_grouping": lambda names: _singletons(r".*mlp.*norm", names),
    "qkvo_per_param_grouping": lambda names: _singletons(r".*attention/", names),
    "mlp_per_param_grouping": lambda names: _singletons(r".*mlp/", names),
}


def parse_init_id(init_id: str) -> tuple[str, str]:
  """Splits `"<grouping>___<stat>"`; raises naming the valid ids on anything else."""
  grouping, sep, stat = init_id.rpartition("___")
  if not sep or grouping not in GROUPINGS or stat not in STATS:
    raise ValueError(f"unknown init_id {init_id!r}: expected '<grouping>___<stat>' with grouping "
                     f"in {sorted(GROUPINGS)} and stat in {list(STATS)} (the paper's nine: "
                     f"{list(INIT_IDS)})")
  return grouping, stat


def groups_for(init_id: str, names: Iterable[str]) -> list[list[str]]:
  """The groups `init_id` (or a bare grouping name) forms over `names`; empty groups dropped.

  The embedding and `logits_dense` are never in a group. Names are in natural order inside a group.
  """
  grouping = init_id if init_id in GROUPINGS else parse_init_id(init_id)[0]
  groups = GROUPINGS[grouping](_groupable(names))
  return [group for group in groups if group]


# ----------------------------------------------------------------------------------------------
# Statistics and the initialisation plan.


def group_statistics(arrays: Iterable[Any]) -> tuple[float, float, int]:
  """(mean, population std, count) of the concatenation of `arrays`, in float64.

  Two passes over the tensors instead of one concatenated copy, so a whole-model group of T5-small
  needs no 500 MB temporary.
  """
  arrays = [_as_float64(a) for a in arrays]
  count = sum(a.size for a in arrays)
  if count == 0:
    raise ValueError("cannot compute statistics of an empty group")
  mean = sum(float(np.sum(a)) for a in arrays) / count
  variance = sum(float(np.sum(np.square(a - mean))) for a in arrays) / count
  return mean, math.sqrt(variance), count


@dataclasses.dataclass(frozen=True)
class GroupInit:
  """How one group is re-initialised.

  Attributes:
    names: the group's parameter names.
    mean: μ of the statistics checkpoint's tensors in the group.
    std: σ (population) of the same.
    count: number of scalars the statistics were computed over.
    rule: "constant" (every tensor ← μ), "normal" (N(μ, σ²)) or "zero_mean_normal" (N(0, σ²)).
  """
  names: tuple[str, ...]
  mean: float
  std: float
  count: int
  rule: str

  def describe(self) -> str:
    head = self.names[0] + (f" (+{len(self.names) - 1} more)" if len(self.names) > 1 else "")
    value = {"constant": f"= {self.mean:.6g}", "normal": f"~ N({self.mean:.6g}, {self.std:.6g}²)",
             "zero_mean_normal": f"~ N(0, {self.std:.6g}²)"}[self.rule]
    return f"{head} {value}"


def _rule(stat: str, group: Sequence[str]) -> str:
  if stat == "init_mean_std":
    return "normal"
  # The release decides by the group's first name; every grouping here is homogeneous anyway.
  return "constant" if "norm" in group[0] else "zero_mean_normal"


def _check_compatible(target: FlatParams, source: FlatParams, init_id: str) -> list[list[str]]:
  """Groups of `init_id` over the target; raises if the source lacks or reshapes a grouped name."""
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  groups = groups_for(init_id, target)
  grouped = {n for g in groups for n in g}
  source_grouped = {n for g in groups_for(init_id, source) for n in g}
  problems = checkpoints.shape_mismatches(
      {n: target[n] for n in grouped},
      {n: source[n] for n in source_grouped | (grouped & set(source))},
      found_name="statistics checkpoint")
  if problems:
    shown = "\n  ".join(problems[:20])
    more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise ValueError(f"init_id {init_id!r}: the statistics checkpoint does not match the model "
                     f"({len(problems)} parameter(s)):\n  {shown}{more}")
  if not groups:
    raise ValueError(f"init_id {init_id!r} selects no parameter of this model (names such as "
                     f"{sorted(target, key=natural_key)[:3]})")
  return groups


def plan_initialisation(params: PyTree, source_params: PyTree, init_id: str) -> list[GroupInit]:
  """The groups of `init_id` with the statistics `source_params` gives them (nothing sampled)."""
  _, stat = parse_init_id(init_id)
  target = flatten_params(params)
  source = flatten_params(source_params)
  plan = []
  for group in _check_compatible(target, source, init_id):
    mean, std, count = group_statistics(source[n] for n in group)
    if not (math.isfinite(mean) and math.isfinite(std)):
      raise ValueError(f"init_id {init_id!r}: non-finite statistics (mean {mean}, std {std}) in "
                       f"the statistics checkpoint's group {group}")
    plan.append(GroupInit(tuple(group), mean, std, count, _rule(stat, group)))
  return plan


# ----------------------------------------------------------------------------------------------
# Sampling and placing new values.


def tensor_rng(seed: int, name: str) -> np.random.Generator:
  """A numpy Generator for one tensor, derived from (seed, name) only."""
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
  digest = hashlib.sha256(name.encode("utf-8")).digest()
  name_words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
  return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *name_words])))


def _like(original: Any, values: np.ndarray) -> Any:
  """`values` with `original`'s dtype, array type (numpy / jax, with its sharding) and box."""
  array = _unbox(original)
  new = np.asarray(values).astype(np.dtype(array.dtype))
  if type(array).__module__.startswith(("jax", "jaxlib")):
    import jax  # pylint: disable=g-import-not-at-top
    sharding = getattr(array, "sharding", None)
    if sharding is None:
      new = jax.numpy.asarray(new)
    else:
      new = jax.make_array_from_callback(new.shape, sharding, lambda index: new[index])
  return _rebox(original, new)


def _sample(group: GroupInit, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
  if group.rule == "constant":
    return np.full(shape, group.mean, dtype=np.float64)
  loc = group.mean if group.rule == "normal" else 0.0
  return rng.normal(loc=loc, scale=group.std, size=shape)


def init_from_statistics(params: PyTree, source_params: PyTree, init_id: str,
                         seed: int = 0) -> dict[str, Any]:
  """Re-initialises `params` from the statistics of `source_params` (SPEC §6, Table 2).

  Args:
    params: the default-initialised model parameters (nested dict of numpy or jax arrays, T5X names;
      flax metadata boxes are kept).
    source_params: the trained checkpoint's parameters the statistics come from (same names and
      shapes for every grouped parameter).
    init_id: one of `INIT_IDS` (any `<grouping>___<stat>` of `GROUPINGS` × `STATS`).
    seed: sampling seed; each tensor gets its own stream derived from (seed, name).

  Returns:
    A new nested dict (plain dicts); grouped tensors are new arrays of the original dtype, every
    other leaf is the very object given.

  Raises:
    ValueError: unknown init_id, mismatching trees, or non-finite statistics.
  """
  plan = plan_initialisation(params, source_params, init_id)
  flat = flatten_params(params)
  for group in plan:
    logging.info("init %s: %s", init_id, group.describe())
    for name in group.names:
      values = _sample(group, _shape(flat[name]), tensor_rng(seed, name))
      flat[name] = _like(flat[name], values)
  return unflatten_params(flat)


# ----------------------------------------------------------------------------------------------
# Table 3: constant layer-norm scales.


def _check_value(value: float, what: str) -> float:
  try:
    value = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{what}: expected a number, got {value!r}") from None
  if not math.isfinite(value) or value < 0:
    raise ValueError(f"{what}: expected a finite value >= 0 (the release's "
                     f"'<key>-V' syntax cannot express negatives), got {value!r}")
  return value


def apply_custom_values(params: PyTree, values: Mapping[str, float]) -> dict[str, Any]:
  """Sets every layer-norm scale selected by each key of `values` to that constant.

  Keys are the release's `init_with_custom_value` names (`CUSTOM_VALUE_TARGETS`): `pre_self_attn_ln`
  (encoder pre_attention + decoder pre_self_attention LNs), `pre_cross_attn_ln`, `pre_mlp_ln`,
  `after_enc_ln`, `after_dec_ln`. All other leaves are returned as given.
  """
  flat = flatten_params(params)
  for key, value in values.items():
    if key not in CUSTOM_VALUE_TARGETS:
      raise ValueError(f"unknown custom-value key {key!r}; expected one of "
                       f"{list(CUSTOM_VALUE_TARGETS)}")
    value = _check_value(value, f"custom value for {key!r}")
    names = _matching(CUSTOM_VALUE_TARGETS[key], list(flat))
    if not names:
      raise ValueError(f"custom-value key {key!r} selects no parameter of this model")
    for name in names:
      flat[name] = _like(flat[name], np.full(_shape(flat[name]), value, dtype=np.float64))
  return unflatten_params(flat)


def set_pre_attention_layer_norm(params: PyTree, value: float,
                                 include_pre_mlp: bool = False) -> dict[str, Any]:
  """Table 3: every pre-attention layer-norm scale ← `value` (≥ 0); optionally pre-MLP ones too.

  Encoder `pre_attention_layer_norm`, decoder `pre_self_attention_layer_norm` and
  `pre_cross_attention_layer_norm`; nothing else changes.
  """
  keys = ["pre_self_attn_ln", "pre_cross_attn_ln"] + (["pre_mlp_ln"] if include_pre_mlp else [])
  value = _check_value(value, "pre-attention layer-norm value")
  return apply_custom_values(params, {key: value for key in keys})


def parse_custom_value_string(spec: str) -> dict[str, float]:
  """Parses the release's `init_with_custom_value` string into {key: value}.

  Example: "pre_self_attn_ln-0.4---pre_cross_attn_ln-0.4".

  Items are separated by "---", key and value by "-" (hence values cannot be negative).
  """
  result: dict[str, float] = {}
  for item in spec.split("---"):
    parts = item.split("-")
    if len(parts) != 2 or not parts[0]:
      raise ValueError(f"bad init_with_custom_value item {item!r} in {spec!r}: expected "
                       f"'<key>-<value>' items joined by '---', e.g. "
                       f"'pre_self_attn_ln-0.4---pre_cross_attn_ln-0.4'")
    key, value = parts
    if key not in CUSTOM_VALUE_TARGETS:
      raise ValueError(f"unknown key {key!r} in init_with_custom_value {spec!r}; expected one of "
                       f"{list(CUSTOM_VALUE_TARGETS)}")
    if key in result:
      raise ValueError(f"key {key!r} given twice in init_with_custom_value {spec!r}")
    result[key] = _check_value(value, f"value of {key!r} in init_with_custom_value {spec!r}")
  return result


# ----------------------------------------------------------------------------------------------
# Loading parameter trees and the trainer's entry point.


def _strip_wrappers(tree: Mapping[str, Any]) -> Mapping[str, Any]:
  """Descends through a lone top-level 'target' (T5X checkpoint) or 'params' (flax) key."""
  while isinstance(tree, collections.abc.Mapping) and len(tree) == 1 and (
      next(iter(tree)) in ("target", "params")):
    tree = next(iter(tree.values()))
  return tree


def load_npz_params(path: str) -> dict[str, Any]:
  """Loads an `.npz` whose keys are '/'-joined parameter names into a nested dict."""
  try:
    with np.load(path, allow_pickle=False) as data:
      flat = {name: data[name] for name in data.files}
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: cannot read as an .npz of '/'-named parameter arrays: {e}") from e
  if not flat:
    raise ValueError(f"{path}: the .npz holds no arrays")
  return unflatten_params(flat)


def save_npz_params(path: str, params: PyTree) -> None:
  """Writes `params` as an `.npz` of '/'-named arrays (atomically; bfloat16 stored as float32)."""
  flat = {}
  for name, leaf in flatten_params(params).items():
    array = np.asarray(_unbox(leaf))
    if array.dtype.kind not in "biuf" or (array.dtype.kind == "f" and array.dtype.itemsize < 4):
      array = array.astype(np.float32)  # bfloat16 (kind 'V') has no portable .npy dtype
    flat[name] = array
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  with checkpoints.atomic_output(path, "wb") as f:
    np.savez(f, **flat)


def load_param_tree(source: Any, load_params_fn: Callable[[str], PyTree] | None = None) -> PyTree:
  """Parameters from a tree, a zero-argument callable, an `.npz` path or a checkpoint path.

  Checkpoint paths go to `load_params_fn` when given, else to
  `synthetic_pretraining.train.checkpoints.load_params` (imported only then). A lone top-level
  'target' or 'params' key is stripped.
  """
  if isinstance(source, collections.abc.Mapping):
    tree = source
  elif callable(source):
    tree = source()
  elif isinstance(source, (str, os.PathLike)):
    path = os.fspath(source)
    if load_params_fn is not None:
      tree = load_params_fn(path)
    elif path.endswith(".npz"):
      tree = load_npz_params(path)
    else:
      if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
      try:
        from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
      except ImportError as e:
        raise ImportError(f"cannot load checkpoint {path}: synthetic_pretraining.train.checkpoints "
                          f"is unavailable ({e}); pass an .npz of '/'-named arrays instead") from e
      tree = checkpoints.load_params(path)
  else:
    raise TypeError(f"expected a parameter tree, a callable or a path, got {type(source).__name__}")
  if not isinstance(tree, collections.abc.Mapping):
    raise TypeError(f"loading {source!r} gave {type(tree).__name__}, expected a nested mapping")
  return _strip_wrappers(tree)


@gin.configurable
def apply_initialisation(params: PyTree, *, init_id: str | None = None,
                         statistics_checkpoint: Any = None,
                         pre_attn_ln_value: float | None = None, include_pre_mlp: bool = False,
                         custom_value: str | None = None, seed: int = 0,
                         load_params_fn: Callable[[str], PyTree] | None = None) -> PyTree:
  """The trainer's hook after default initialisation; with no option set, returns `params` as is.

  Args:
    params: default-initialised parameters.
    init_id: Table 2 scheme (`INIT_IDS`); needs `statistics_checkpoint`.
    statistics_checkpoint: checkpoint (path, tree or callable) read only for its statistics.
    pre_attn_ln_value: Table 3 constant V for every pre-attention LN scale.
    include_pre_mlp: also set the pre-MLP LN scales to V.
    custom_value: the release's `init_with_custom_value` string (alternative to the above).
    seed: sampling seed for `init_id`.
    load_params_fn: checkpoint loader `path -> params` (default: the project's checkpoint loader,
      or `.npz` files).

  Statistics initialisation is applied first, then the constants.
  """
  if init_id is not None:
    if statistics_checkpoint is None:
      raise ValueError(f"init_id {init_id!r} needs statistics_checkpoint (the checkpoint whose "
                       "parameter statistics initialise the model)")
    parse_init_id(init_id)
    source = load_param_tree(statistics_checkpoint, load_params_fn)
    params = init_from_statistics(params, source, init_id, seed=seed)
  elif statistics_checkpoint is not None:
    raise ValueError("statistics_checkpoint given without init_id; expected one of "
                     f"{list(INIT_IDS)}")
  if pre_attn_ln_value is not None:
    params = set_pre_attention_layer_norm(params, pre_attn_ln_value,
                                          include_pre_mlp=include_pre_mlp)
  elif include_pre_mlp:
    raise ValueError("include_pre_mlp=True needs pre_attn_ln_value")
  if custom_value is not None:
    params = apply_custom_values(params, parse_custom_value_string(custom_value))
  return params
