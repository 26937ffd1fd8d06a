"""Per-layer parameter statistics of several checkpoints side by side (the checkpoint notebook).

`notebooks/checkpoint_statistics.ipynb` calls these functions; they are plain functions so the
tests can check their values against numpy. The questions they answer are those of the paper's
§5 (why does a statistics-only initialisation recover much of the benefit of synthetic
pre-training?): how do layer-norm scales and kernel scales of e.g. a Set- or Identity-pre-trained
model differ from a natural (T5) one and from a random initialisation, per layer?

Inputs are named checkpoints (`parse_checkpoint_list("set=/runs/set,t5=/ckpt/t5_small")`: model
dirs, step dirs, T5X checkpoint dirs or `.npz` files of '/'-named arrays, all read with
`init_stats.load_param_tree`) plus a random initialisation made from a model config
(`random_init`, config from a preset name or inferred from a checkpoint's shapes by `infer_config`).

Tables (lists of dict rows, written as CSV):
  * `parameter_table`: per checkpoint and parameter: mean and population std (float64);
  * `layer_table`: per checkpoint, selection (`LAYER_SELECTIONS`: pre-attention LNs, query kernels,
    all kernels, …), stack and layer index: mean/std of the concatenation of the layer's selected
    tensors (as init_stats computes group statistics);
  * `group_table`: per checkpoint, the groups of a Table-2 `init_id` with their statistics;
  * `difference_table` / `layer_difference_table`: the difference to a reference (the random init):
    per parameter and per layer, mean/std of D = θ − θ_ref and ‖D‖₂/‖θ_ref‖₂.
Figures (matplotlib `Figure` objects drawn with the Agg canvas; no pyplot state):
  `plot_layer_statistic` (a statistic per layer, one line per checkpoint; optionally as a ratio
  to or difference from the reference), `plot_layer_difference` and `plot_relpos`.
`write_outputs` writes every table and figure atomically to a folder.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from synthetic_pretraining.train import init_stats
from synthetic_pretraining.train import param_stats

FlatParams = dict[str, np.ndarray]

RANDOM_INIT = "random_init"
DEFAULT_INIT_ID = param_stats.DEFAULT_INIT_ID
STACKS = ("encoder", "decoder")

# ----------------------------------------------------------------------------------------------
# Parameter names.


@dataclasses.dataclass(frozen=True)
class ParamInfo:
  """Where a parameter sits in the T5 tree.

  Attributes:
    name: the '/'-joined T5X name.
    stack: "encoder", "decoder", or None (embedding).
    layer: the layer index for `…/layers_<i>/…`, else None.
    family: "layer_norm", "attention", "mlp", "relpos", "embedding", "logits" or "other".
    role: the parameter's job with encoder/decoder spellings unified: "pre_self_attn_ln"
      (encoder pre_attention / decoder pre_self_attention LN), "pre_cross_attn_ln", "pre_mlp_ln",
      "final_ln", "self_attn/query" … "cross_attn/out", "mlp/wi" ("mlp/wi_0", …), "mlp/wo",
      "relpos", "embedding", "logits"; for anything unknown, the name below the layer.
  """
  name: str
  stack: str | None
  layer: int | None
  family: str
  role: str


_LAYER = re.compile(r"^(encoder|decoder)/layers_(\d+)/(.+)$")
_LN_ROLES = {"pre_attention_layer_norm": "pre_self_attn_ln",
             "pre_self_attention_layer_norm": "pre_self_attn_ln",
             "pre_cross_attention_layer_norm": "pre_cross_attn_ln",
             "pre_mlp_layer_norm": "pre_mlp_ln"}
_ATTENTION_ROLES = {"attention": "self_attn", "self_attention": "self_attn",
                    "encoder_decoder_attention": "cross_attn"}


def describe_param(name: str) -> ParamInfo:
  """Classifies a T5X parameter name (see `ParamInfo`)."""
  if re.match(r"^(.*/)?token_embedder/", name):
    return ParamInfo(name, None, None, "embedding", "embedding")
  match = _LAYER.match(name)
  if match:
    stack, layer, rest = match.group(1), int(match.group(2)), match.group(3)
    module = rest.split("/")[0]
    if module in _LN_ROLES:
      return ParamInfo(name, stack, layer, "layer_norm", _LN_ROLES[module])
    if module in _ATTENTION_ROLES and rest.count("/") >= 1:
      projection = rest.split("/")[1]
      return ParamInfo(name, stack, layer, "attention",
                       f"{_ATTENTION_ROLES[module]}/{projection}")
    if module == "mlp" and rest.count("/") >= 1:
      return ParamInfo(name, stack, layer, "mlp", f"mlp/{rest.split('/')[1]}")
    return ParamInfo(name, stack, layer, "other", rest)
  stack = name.split("/")[0] if name.split("/")[0] in STACKS else None
  if re.match(r"^(encoder/encoder_norm|decoder/decoder_norm)/", name):
    return ParamInfo(name, stack, None, "layer_norm", "final_ln")
  if "/relpos_bias/" in name:
    return ParamInfo(name, stack, None, "relpos", "relpos")
  if "/logits_dense/" in name:
    return ParamInfo(name, stack, None, "logits", "logits")
  return ParamInfo(name, stack, None, "other", name)


Selection = Callable[[ParamInfo], bool]


def _roles(*roles: str) -> Selection:
  return lambda info: info.role in roles


def _role_suffix(suffix: str) -> Selection:
  return lambda info: info.family == "attention" and info.role.endswith("/" + suffix)


# Per-layer selections: the concatenation of a layer's tensors that a selection picks is one
# statistic per (stack, layer), like the groups of init_stats' per-layer grouping.
LAYER_SELECTIONS: dict[str, Selection] = {
    "pre_attention_ln": _roles("pre_self_attn_ln", "pre_cross_attn_ln"),
    "pre_self_attn_ln": _roles("pre_self_attn_ln"),
    "pre_cross_attn_ln": _roles("pre_cross_attn_ln"),
    "pre_mlp_ln": _roles("pre_mlp_ln"),
    "layer_norms": lambda info: info.family == "layer_norm",
    "query": _role_suffix("query"),
    "key": _role_suffix("key"),
    "value": _role_suffix("value"),
    "attention_out": _role_suffix("out"),
    "attention_kernels": lambda info: info.family == "attention",
    "mlp_kernels": lambda info: info.family == "mlp",
    "kernels": lambda info: info.family in ("attention", "mlp"),
}
LN_SELECTIONS = ("pre_self_attn_ln", "pre_cross_attn_ln", "pre_mlp_ln")
KERNEL_SELECTIONS = ("query", "key", "value", "attention_out", "mlp_kernels")

# ----------------------------------------------------------------------------------------------
# Inputs: named checkpoints and a random initialisation.


def parse_checkpoint_list(spec: str) -> dict[str, str]:
  """Parses "name=path,name=path" (order kept); an item without "name=" is named by its folder.

  Raises:
    ValueError: empty spec or item, empty name or path, a repeated name, or the reserved name
      `RANDOM_INIT`.
  """
  if not spec or not spec.strip():
    raise ValueError("no checkpoints given: expected 'name=path,name=path' (e.g. "
                     "'set=/runs/set_pretrain,natural=/ckpt/t5_small')")
  result: dict[str, str] = {}
  for position, item in enumerate(spec.split(","), 1):
    item = item.strip()
    if not item:
      raise ValueError(f"checkpoint list {spec!r}: item {position} is empty")
    if "=" in item:
      name, path = (part.strip() for part in item.split("=", 1))
    else:
      path = item
      name = os.path.basename(os.path.normpath(path))
    if not name or not path:
      raise ValueError(f"checkpoint list {spec!r}: item {position} {item!r} must be 'name=path' "
                       "with a non-empty name and path")
    if name == RANDOM_INIT:
      raise ValueError(f"checkpoint list {spec!r}: the name {RANDOM_INIT!r} is reserved for the "
                       "random initialisation the analysis adds itself")
    if name in result:
      raise ValueError(f"checkpoint list {spec!r}: the name {name!r} is given twice")
    result[name] = path
  return result


def to_flat_numpy(params: Any) -> FlatParams:
  """'/'-named host numpy arrays of a parameter tree (flax boxes and 'target'/'params' removed)."""
  tree = init_stats.load_param_tree(params)
  return {name: np.asarray(init_stats._unbox(leaf))  # pylint: disable=protected-access
          for name, leaf in init_stats.flatten_params(tree).items()}


def load_checkpoints(sources: Mapping[str, Any],
                     load_params_fn: Callable[[str], Any] | None = None) -> dict[str, FlatParams]:
  """Loads each named source (path, parameter tree or callable) as flat numpy parameters."""
  loaded = {}
  for name, source in sources.items():
    try:
      loaded[name] = to_flat_numpy(init_stats.load_param_tree(source, load_params_fn))
    except (OSError, ValueError, TypeError) as e:
      raise type(e)(f"checkpoint {name!r} ({source if isinstance(source, str) else '<tree>'}): "
                    f"{e}") from e
  return loaded


def infer_config(params: Any):
  """The `t5.T5Config` whose initialisation has exactly the shapes of `params` (T5X names).

  Everything that decides parameter shapes is read from them: vocabulary and model width (the
  embedding), layer counts, heads and relative-position buckets (the relpos tables), head width
  (query kernel), MLP width and gating (`mlp/wi` vs `mlp/wi_0`, `mlp/wi_1`), untied logits. Fields
  that shape nothing keep their defaults (a gated MLP is taken as v1.1's gelu/linear).
  """
  from synthetic_pretraining.model import t5  # pylint: disable=g-import-not-at-top
  flat = to_flat_numpy(params) if not _is_flat(params) else params
  required = ("token_embedder/embedding", "encoder/relpos_bias/rel_embedding",
              "encoder/layers_0/attention/query/kernel", "encoder/layers_0/mlp/wo/kernel")
  missing = [n for n in required if n not in flat]
  if missing:
    raise ValueError(f"cannot infer a T5 config: parameters {missing} are missing (expected T5X "
                     f"names, found e.g. {sorted(flat, key=init_stats.natural_key)[:4]})")

  def layers(stack):
    return len({int(m.group(1)) for n in flat if (m := re.match(rf"{stack}/layers_(\d+)/", n))})

  vocab, emb = np.shape(flat["token_embedder/embedding"])
  heads, buckets = np.shape(flat["encoder/relpos_bias/rel_embedding"])
  joined_kv = np.shape(flat["encoder/layers_0/attention/query/kernel"])[1]
  mlp_dim = np.shape(flat["encoder/layers_0/mlp/wo/kernel"])[0]
  gates = sorted(n for n in flat if re.match(r"encoder/layers_0/mlp/wi_\d+/kernel$", n))
  activations = ("relu",) if not gates else (("gelu", "linear") if len(gates) == 2
                                             else ("gelu",) + ("linear",) * (len(gates) - 1))
  if joined_kv % heads:
    raise ValueError(f"cannot infer a T5 config: query width {joined_kv} is not a multiple of "
                     f"the {heads} heads of the relpos table")
  return t5.T5Config(vocab_size=int(vocab), emb_dim=int(emb), num_heads=int(heads),
                     num_encoder_layers=layers("encoder"), num_decoder_layers=layers("decoder"),
                     head_dim=int(joined_kv // heads), mlp_dim=int(mlp_dim),
                     mlp_activations=activations, relpos_num_buckets=int(buckets),
                     logits_via_embedding="decoder/logits_dense/kernel" not in flat)


def _is_flat(params: Any) -> bool:
  return isinstance(params, Mapping) and all(not isinstance(v, Mapping) for v in params.values())


def resolve_config(model: str | None, params: Any):
  """A preset by name (`t5_small`, `t5_1_1_small`, `tiny`), or `infer_config(params)` if None."""
  from synthetic_pretraining.model import t5  # pylint: disable=g-import-not-at-top
  if model:
    return t5.get_config(model)
  return infer_config(params)


def random_init(config, seed: int = 0) -> FlatParams:
  """Default (T5X-style) initialisation of `config` with `seed`, as flat float32 numpy arrays."""
  import jax  # pylint: disable=g-import-not-at-top
  from synthetic_pretraining.model import t5  # pylint: disable=g-import-not-at-top
  return to_flat_numpy(jax.device_get(t5.init_params(config, seed)))


def shape_mismatches(reference: FlatParams, other: FlatParams) -> list[str]:
  """Names whose presence or shape differs between two flat trees (for a warning)."""
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  return checkpoints.shape_mismatches(reference, other, found_name="the second",
                                      expected_name="the first")


# ----------------------------------------------------------------------------------------------
# Tables.


def _stats(arrays: Sequence[np.ndarray]) -> tuple[float, float, int]:
  return init_stats.group_statistics(arrays)


def parameter_table(checkpoints: Mapping[str, FlatParams]) -> list[dict[str, Any]]:
  """One row per checkpoint × parameter: checkpoint, name, stack, layer, family, role, shape,
  size, mean, std (population, float64)."""
  rows = []
  for checkpoint, flat in checkpoints.items():
    for name in sorted(flat, key=init_stats.natural_key):
      info = describe_param(name)
      mean, std, size = _stats([flat[name]])
      rows.append({"checkpoint": checkpoint, "name": name, "stack": info.stack,
                   "layer": info.layer, "family": info.family, "role": info.role,
                   "shape": "x".join(map(str, np.shape(flat[name]))), "size": size,
                   "mean": mean, "std": std})
  return rows


def layer_groups(flat: Mapping[str, Any], selection: str | Selection
                 ) -> dict[tuple[str, int], list[str]]:
  """{(stack, layer): names} of the in-layer parameters `selection` picks, in natural order."""
  select = LAYER_SELECTIONS[selection] if isinstance(selection, str) else selection
  groups: dict[tuple[str, int], list[str]] = {}
  for name in sorted(flat, key=init_stats.natural_key):
    info = describe_param(name)
    if info.layer is not None and select(info):
      groups.setdefault((info.stack, info.layer), []).append(name)
  return dict(sorted(groups.items(), key=lambda kv: (STACKS.index(kv[0][0]), kv[0][1])))


def layer_table(checkpoints: Mapping[str, FlatParams],
                selections: Iterable[str] = tuple(LAYER_SELECTIONS)) -> list[dict[str, Any]]:
  """One row per checkpoint × selection × (stack, layer): mean, std and size of the concatenation
  of that layer's selected tensors; `names` counts them. Layers a selection misses are left out."""
  rows = []
  selections = list(selections)
  unknown = [s for s in selections if s not in LAYER_SELECTIONS]
  if unknown:
    raise ValueError(f"unknown layer selections {unknown}; expected some of "
                     f"{list(LAYER_SELECTIONS)}")
  for checkpoint, flat in checkpoints.items():
    for selection in selections:
      for (stack, layer), names in layer_groups(flat, selection).items():
        mean, std, size = _stats([flat[n] for n in names])
        rows.append({"checkpoint": checkpoint, "selection": selection, "stack": stack,
                     "layer": layer, "names": len(names), "size": size, "mean": mean,
                     "std": std})
  return rows


def group_table(checkpoints: Mapping[str, FlatParams],
                init_id: str = DEFAULT_INIT_ID) -> list[dict[str, Any]]:
  """Per checkpoint, the groups of a Table-2 `init_id` with their statistics and implied init."""
  rows = []
  for checkpoint, flat in checkpoints.items():
    for index, group in enumerate(param_stats.group_stats(init_stats.unflatten_params(flat),
                                                          init_id)):
      rows.append({"checkpoint": checkpoint, "group": index, "first_name": group["names"][0],
                   "names": len(group["names"]), "size": group["size"], "mean": group["mean"],
                   "std": group["std"], "init": group["init"]})
  return rows


def _comparable(reference: FlatParams, flat: FlatParams) -> list[str]:
  return [n for n in sorted(set(reference) & set(flat), key=init_stats.natural_key)
          if np.shape(reference[n]) == np.shape(flat[n])]


def difference_table(checkpoints: Mapping[str, FlatParams],
                     reference: str = RANDOM_INIT) -> list[dict[str, Any]]:
  """Per checkpoint (other than `reference`) and common parameter of equal shape: mean and std of
  D = θ − θ_ref and rel_l2 = ‖D‖₂ / ‖θ_ref‖₂ (inf when θ_ref = 0 ≠ D)."""
  if reference not in checkpoints:
    raise ValueError(f"reference {reference!r} is not among the checkpoints {list(checkpoints)}")
  ref = checkpoints[reference]
  rows = []
  for checkpoint, flat in checkpoints.items():
    if checkpoint == reference:
      continue
    diff = param_stats.difference_stats(init_stats.unflatten_params(ref),
                                        init_stats.unflatten_params(flat))
    for row in diff["parameters"]:
      info = describe_param(row["name"])
      rows.append({"checkpoint": checkpoint, "reference": reference, "name": row["name"],
                   "stack": info.stack, "layer": info.layer, "role": info.role,
                   "mean": row["mean"], "std": row["std"], "rel_l2": row["rel_l2"]})
  return rows


def layer_difference_table(checkpoints: Mapping[str, FlatParams], reference: str = RANDOM_INIT,
                           selection: str = "kernels") -> list[dict[str, Any]]:
  """Per checkpoint and (stack, layer): rel_l2 = sqrt(Σ‖θ − θ_ref‖² / Σ‖θ_ref‖²) over the layer's
  `selection` tensors present in both with equal shapes."""
  if reference not in checkpoints:
    raise ValueError(f"reference {reference!r} is not among the checkpoints {list(checkpoints)}")
  ref = checkpoints[reference]
  rows = []
  for checkpoint, flat in checkpoints.items():
    if checkpoint == reference:
      continue
    common = {n: flat[n] for n in _comparable(ref, flat)}
    for (stack, layer), names in layer_groups(common, selection).items():
      diff_sq = ref_sq = 0.0
      for name in names:
        a = np.asarray(ref[name], np.float64)
        d = np.asarray(flat[name], np.float64) - a
        diff_sq += float(np.sum(d * d))
        ref_sq += float(np.sum(a * a))
      rel = math.sqrt(diff_sq / ref_sq) if ref_sq else (0.0 if diff_sq == 0 else math.inf)
      rows.append({"checkpoint": checkpoint, "reference": reference, "selection": selection,
                   "stack": stack, "layer": layer, "rel_l2": rel})
  return rows


def relpos_tables(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """{stack: relative-position bias table [heads, buckets]} of one checkpoint."""
  return {info.stack: np.asarray(flat[name]) for name in flat
          if (info := describe_param(name)).family == "relpos" and info.stack}


def series(rows: Iterable[Mapping[str, Any]], selection: str, stat: str
           ) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
  """{checkpoint: {stack: (layers, values)}} of `stat` for one selection of `layer_table` rows."""
  out: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
  for row in rows:
    if row.get("selection") != selection:
      continue
    layers, values = out.setdefault(row["checkpoint"], {}).setdefault(row["stack"], ([], []))
    layers.append(row["layer"])
    values.append(row[stat])
  return out


def format_layer_markdown(rows: Sequence[Mapping[str, Any]], selection: str,
                          stat: str = "mean", digits: int = 4) -> str:
  """A markdown table: one row per (stack, layer), one column per checkpoint, of `stat`."""
  data = series(rows, selection, stat)
  checkpoints = list(data)
  keys = sorted({(stack, layer) for per in data.values() for stack, (layers, _) in per.items()
                 for layer in layers}, key=lambda k: (STACKS.index(k[0]), k[1]))
  lookup = {(c, s, l): v for c, per in data.items() for s, (ls, vs) in per.items()
            for l, v in zip(ls, vs)}
  lines = [f"| {selection} {stat} | " + " | ".join(checkpoints) + " |",
           "|---|" + "---|" * len(checkpoints)]
  for stack, layer in keys:
    cells = [f"{lookup[(c, stack, layer)]:.{digits}g}" if (c, stack, layer) in lookup else "–"
             for c in checkpoints]
    lines.append(f"| {stack} {layer} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def format_rows_markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                         digits: int = 4) -> str:
  """A markdown table of `rows` restricted to `columns` (floats with `digits` significant)."""

  def cell(value: Any) -> str:
    if value is None:
      return ""
    if isinstance(value, float):
      return f"{value:.{digits}g}"
    return str(value).replace("|", "\\|")

  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
  return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Figures.


def _figure(width: float, height: float):
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(width, height), dpi=100)
  FigureCanvasAgg(figure)
  return figure


_STACK_STYLE = {"encoder": "-", "decoder": "--"}


def _integer_ticks(axes) -> None:
  from matplotlib.ticker import MaxNLocator  # pylint: disable=g-import-not-at-top
  axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend(figure, checkpoints: Sequence[str], colours: Mapping[str, str]) -> None:
  """One entry per checkpoint (its colour) and one per stack (its line style)."""
  from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top
  if not checkpoints:
    return
  handles = [Line2D([], [], color=colours[c], marker="o", markersize=3, label=c)
             for c in checkpoints]
  handles += [Line2D([], [], color="gray", linestyle=style, label=stack)
              for stack, style in _STACK_STYLE.items()]
  figure.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.95))


def plot_layer_statistic(rows: Sequence[Mapping[str, Any]], selections: Sequence[str],
                         stat: str = "mean", reference: str | None = None,
                         mode: str = "value", title: str | None = None):
  """One panel per selection: `stat` per layer index, one colour per checkpoint, encoder solid and
  decoder dashed. mode "ratio" / "difference" plots stat / stat_ref or stat − stat_ref instead
  (the reference itself is then left out)."""
  if mode not in ("value", "ratio", "difference"):
    raise ValueError(f"mode must be 'value', 'ratio' or 'difference', got {mode!r}")
  if mode != "value" and reference is None:
    raise ValueError(f"mode {mode!r} needs a reference checkpoint")
  figure = _figure(3.2 * max(1, len(selections)), 3.2)
  checkpoints = list(dict.fromkeys(r["checkpoint"] for r in rows))
  colours = {c: f"C{i % 10}" for i, c in enumerate(checkpoints)}
  for i, selection in enumerate(selections):
    axes = figure.add_subplot(1, len(selections), i + 1)
    data = series(rows, selection, stat)
    ref = {stack: dict(zip(*lv)) for stack, lv in data.get(reference, {}).items()}
    for checkpoint, per_stack in data.items():
      if mode != "value" and checkpoint == reference:
        continue
      for stack, (layers, values) in per_stack.items():
        if mode != "value":
          pairs = [(l, v, ref.get(stack, {}).get(l)) for l, v in zip(layers, values)]
          pairs = [(l, v, r) for l, v, r in pairs if r is not None]
          layers = [l for l, _, _ in pairs]
          values = [(v / r if r else math.nan) if mode == "ratio" else v - r
                    for _, v, r in pairs]
        axes.plot(layers, values, _STACK_STYLE.get(stack, ":"), marker="o", markersize=3,
                  color=colours[checkpoint])
    if mode == "ratio":
      axes.axhline(1.0, color="gray", linewidth=0.8)
    elif mode == "difference":
      axes.axhline(0.0, color="gray", linewidth=0.8)
    axes.set_title(selection, fontsize=9)
    axes.set_xlabel("layer")
    if i == 0:
      label = stat if mode == "value" else (f"{stat} / {stat}[{reference}]" if mode == "ratio"
                                            else f"{stat} − {stat}[{reference}]")
      axes.set_ylabel(label)
    if not data:
      axes.text(0.5, 0.5, "no such parameters", ha="center", transform=axes.transAxes)
    _integer_ticks(axes)
  shown = [c for c in checkpoints if mode == "value" or c != reference]
  _legend(figure, shown, colours)
  if title:
    figure.suptitle(title, fontsize=10)
  figure.tight_layout()
  return figure


def plot_layer_difference(rows: Sequence[Mapping[str, Any]], title: str | None = None):
  """rel_l2 to the reference per layer (`layer_difference_table` rows), one line per checkpoint."""
  figure = _figure(5.5, 3.4)
  axes = figure.add_subplot(1, 1, 1)
  checkpoints = list(dict.fromkeys(r["checkpoint"] for r in rows))
  for i, checkpoint in enumerate(checkpoints):
    for stack in STACKS:
      points = sorted((r["layer"], r["rel_l2"]) for r in rows
                      if r["checkpoint"] == checkpoint and r["stack"] == stack)
      if points:
        axes.plot([p[0] for p in points], [p[1] for p in points], _STACK_STYLE[stack],
                  marker="o", markersize=3, color=f"C{i % 10}")
  axes.set_xlabel("layer")
  _integer_ticks(axes)
  reference = rows[0]["reference"] if rows else "reference"
  axes.set_ylabel(f"‖θ − θ[{reference}]‖ / ‖θ[{reference}]‖")
  if rows:
    _legend(figure, checkpoints, {c: f"C{i % 10}" for i, c in enumerate(checkpoints)})
  else:
    axes.text(0.5, 0.5, "nothing to compare", ha="center", transform=axes.transAxes)
  if title:
    axes.set_title(title, fontsize=10)
  figure.tight_layout()
  return figure


def plot_relpos(checkpoints: Mapping[str, FlatParams]):
  """Heat maps of the relative-position bias tables: one row per checkpoint, encoder | decoder."""
  names = list(checkpoints)
  figure = _figure(9.0, 1.0 + 2.0 * max(1, len(names)))
  for row, name in enumerate(names):
    tables = relpos_tables(checkpoints[name])
    for col, stack in enumerate(STACKS):
      axes = figure.add_subplot(max(1, len(names)), 2, 2 * row + col + 1)
      if stack in tables:
        image = axes.imshow(tables[stack], aspect="auto", cmap="coolwarm", interpolation="nearest")
        figure.colorbar(image, ax=axes, fraction=0.04)
      else:
        axes.text(0.5, 0.5, "no table", ha="center", transform=axes.transAxes)
      axes.set_title(f"{name}: {stack}", fontsize=8)
      axes.set_ylabel("head", fontsize=7)
      axes.set_xlabel("bucket", fontsize=7)
  figure.tight_layout()
  return figure


# ----------------------------------------------------------------------------------------------
# The whole analysis and its files.


@dataclasses.dataclass
class Analysis:
  """Every table of one comparison (see the module docstring)."""
  checkpoints: dict[str, FlatParams]
  reference: str | None
  init_id: str
  parameters: list[dict[str, Any]]
  layers: list[dict[str, Any]]
  groups: list[dict[str, Any]]
  differences: list[dict[str, Any]]
  layer_differences: list[dict[str, Any]]


def analyse(checkpoints: Mapping[str, FlatParams], reference: str | None = RANDOM_INIT,
            init_id: str = DEFAULT_INIT_ID) -> Analysis:
  """All tables for `checkpoints` (flat numpy trees); differences only when `reference` is set."""
  if not checkpoints:
    raise ValueError("no checkpoints to analyse")
  init_stats.parse_init_id(init_id)
  checkpoints = dict(checkpoints)
  with_reference = reference is not None and len(checkpoints) > 1
  if reference is not None and reference not in checkpoints:
    raise ValueError(f"reference {reference!r} is not among the checkpoints {list(checkpoints)}")
  return Analysis(
      checkpoints=checkpoints, reference=reference, init_id=init_id,
      parameters=parameter_table(checkpoints), layers=layer_table(checkpoints),
      groups=group_table(checkpoints, init_id),
      differences=difference_table(checkpoints, reference) if with_reference else [],
      layer_differences=(layer_difference_table(checkpoints, reference) if with_reference
                         else []))


def figures(analysis: Analysis) -> dict[str, Any]:
  """{file name: Figure} of the standard plots."""
  out = {
      "ln_scale_mean_per_layer.png": plot_layer_statistic(
          analysis.layers, LN_SELECTIONS, "mean",
          title="layer-norm scale mean per layer"),
      "kernel_std_per_layer.png": plot_layer_statistic(
          analysis.layers, KERNEL_SELECTIONS, "std", title="kernel std per layer"),
      "relpos_bias.png": plot_relpos(analysis.checkpoints),
  }
  if analysis.layer_differences:
    ref = analysis.reference
    out["ln_scale_mean_minus_random.png"] = plot_layer_statistic(
        analysis.layers, LN_SELECTIONS, "mean", reference=ref, mode="difference",
        title=f"layer-norm scale mean − {ref}")
    out["kernel_std_ratio_to_random.png"] = plot_layer_statistic(
        analysis.layers, KERNEL_SELECTIONS, "std", reference=ref, mode="ratio",
        title=f"kernel std / {ref}")
    out["kernel_rel_l2_to_random.png"] = plot_layer_difference(
        analysis.layer_differences, title=f"relative distance of the kernels to {ref}")
  return out


TABLE_COLUMNS = {
    "parameter_stats.csv": ("checkpoint", "name", "stack", "layer", "family", "role", "shape",
                            "size", "mean", "std"),
    "layer_stats.csv": ("checkpoint", "selection", "stack", "layer", "names", "size", "mean",
                        "std"),
    "group_stats.csv": ("checkpoint", "group", "first_name", "names", "size", "mean", "std",
                        "init"),
    "difference_to_reference.csv": ("checkpoint", "reference", "name", "stack", "layer", "role",
                                    "mean", "std", "rel_l2"),
    "layer_difference_to_reference.csv": ("checkpoint", "reference", "selection", "stack",
                                          "layer", "rel_l2"),
}


def _csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="", extrasaction="ignore",
                          lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else v))
                     for k, v in row.items()})
  return buffer.getvalue()


def _atomic_write(path: str, write: Callable[[Any], None]) -> None:
  """Writes through `write(binary file)` atomically (`train.checkpoints.atomic_output`)."""
  from synthetic_pretraining.train import checkpoints  # pylint: disable=g-import-not-at-top
  with checkpoints.atomic_output(path, "wb") as f:
    write(f)


def write_outputs(analysis: Analysis, out_dir: str) -> dict[str, str]:
  """Writes the CSV tables and PNG figures to `out_dir` (each atomically); {file name: path}."""
  os.makedirs(out_dir, exist_ok=True)
  tables = {"parameter_stats.csv": analysis.parameters, "layer_stats.csv": analysis.layers,
            "group_stats.csv": analysis.groups,
            "difference_to_reference.csv": analysis.differences,
            "layer_difference_to_reference.csv": analysis.layer_differences}
  paths = {}
  for name, rows in tables.items():
    text = _csv_text(TABLE_COLUMNS[name], rows)
    paths[name] = os.path.join(out_dir, name)
    _atomic_write(paths[name], lambda f, text=text: f.write(text.encode("utf-8")))
  for name, figure in figures(analysis).items():
    paths[name] = os.path.join(out_dir, name)
    _atomic_write(paths[name], lambda f, figure=figure: figure.savefig(f, format="png",
                                                                       bbox_inches="tight"))
  return paths
