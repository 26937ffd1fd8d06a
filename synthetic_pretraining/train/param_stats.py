"""`synthetic-pretraining stats`: parameter statistics of a checkpoint, or the difference of two.

    synthetic-pretraining stats CKPT [--compare CKPT2] [--init_id ID] [--out FILE.json|FILE.csv]

Prints (and optionally saves) for CKPT:
  * per parameter: shape, size, dtype, mean and population std (float64);
  * per group of `--init_id`'s grouping (default `per_layer_grouping___init_scale`, SPEC §6): the
    group's names, size, mean and std over the concatenation, and what that init_id would draw
    (constant μ, N(0, σ²) or N(μ, σ²));
  * with `--compare CKPT2`, per parameter present in both with the same shape: mean and std of the
    difference D = CKPT2 − CKPT and the relative L2 distance ‖D‖₂ / ‖CKPT‖₂ (relative to the first
    checkpoint), plus the total over all compared parameters and the names found in only one.

CKPT may be a checkpoint directory (read with `synthetic_pretraining.train.checkpoints.load_params`,
imported only then) or an `.npz` whose keys are '/'-joined parameter names
(`init_stats.save_npz_params` writes one). The Python API (`build_report`) also takes parameter
trees or zero-argument callables.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from typing import Any, Callable, Sequence

import numpy as np

from synthetic_pretraining.train import checkpoints
from synthetic_pretraining.train import init_stats

DEFAULT_INIT_ID = "per_layer_grouping___init_scale"
CSV_COLUMNS = ("section", "name", "shape", "size", "dtype", "mean", "std", "init", "rel_l2")


def _array(leaf: Any) -> np.ndarray:
  return np.asarray(init_stats._unbox(leaf))  # pylint: disable=protected-access


def parameter_stats(params: Any) -> list[dict[str, Any]]:
  """One row per parameter (natural name order): name, shape, size, dtype, mean, std."""
  flat = init_stats.flatten_params(params)
  rows = []
  for name in sorted(flat, key=init_stats.natural_key):
    array = _array(flat[name])
    mean, std, size = init_stats.group_statistics([array])
    rows.append({"name": name, "shape": list(array.shape), "size": size, "dtype": str(array.dtype),
                 "mean": mean, "std": std})
  return rows


def group_stats(params: Any, init_id: str = DEFAULT_INIT_ID) -> list[dict[str, Any]]:
  """One row per group of `init_id`'s grouping: names, size, mean, std and the init it implies."""
  init_stats.parse_init_id(init_id)
  # The statistics of a tree against itself: exactly the plan `init_id` would apply.
  plan = init_stats.plan_initialisation(params, params, init_id)
  rows = []
  for group in plan:
    init = {"constant": f"constant {group.mean:.6g}",
            "normal": f"N({group.mean:.6g}, {group.std:.6g}^2)",
            "zero_mean_normal": f"N(0, {group.std:.6g}^2)"}[group.rule]
    rows.append({"names": list(group.names), "size": group.count, "mean": group.mean,
                 "std": group.std, "rule": group.rule, "init": init})
  return rows


def _relative(numerator_sq: float, denominator_sq: float) -> float:
  if denominator_sq == 0:
    return 0.0 if numerator_sq == 0 else math.inf
  return math.sqrt(numerator_sq / denominator_sq)


def difference_stats(first: Any, second: Any) -> dict[str, Any]:
  """Per-parameter difference D = second − first for names in both trees with equal shapes.

  Returns a dict with `parameters` (rows: name, shape, size, mean and std of D, rel_l2 =
  ‖D‖₂/‖first‖₂), `total_rel_l2` over all compared parameters, and the names `only_in_first`,
  `only_in_second` and `shape_mismatch`.
  """
  flat_a = init_stats.flatten_params(first)
  flat_b = init_stats.flatten_params(second)
  key = init_stats.natural_key
  rows, mismatch = [], []
  total_diff_sq = total_ref_sq = 0.0
  for name in sorted(set(flat_a) & set(flat_b), key=key):
    a = _array(flat_a[name]).astype(np.float64)
    b = _array(flat_b[name]).astype(np.float64)
    if a.shape != b.shape:
      mismatch.append({"name": name, "first_shape": list(a.shape), "second_shape": list(b.shape)})
      continue
    diff = b - a
    mean, std, size = init_stats.group_statistics([diff])
    diff_sq, ref_sq = float(np.sum(diff * diff)), float(np.sum(a * a))
    total_diff_sq += diff_sq
    total_ref_sq += ref_sq
    rows.append({"name": name, "shape": list(a.shape), "size": size, "mean": mean, "std": std,
                 "rel_l2": _relative(diff_sq, ref_sq)})
  return {"parameters": rows,
          "total_rel_l2": _relative(total_diff_sq, total_ref_sq) if rows else None,
          "only_in_first": sorted(set(flat_a) - set(flat_b), key=key),
          "only_in_second": sorted(set(flat_b) - set(flat_a), key=key),
          "shape_mismatch": mismatch}


def build_report(checkpoint: Any, compare: Any = None, init_id: str = DEFAULT_INIT_ID,
                 load_params_fn: Callable[[str], Any] | None = None) -> dict[str, Any]:
  """The full report for a checkpoint (path, tree or callable), optionally against a second one."""
  params = init_stats.load_param_tree(checkpoint, load_params_fn)
  report = {"checkpoint": _describe_source(checkpoint), "init_id": init_id,
            "parameters": parameter_stats(params), "groups": group_stats(params, init_id)}
  if compare is not None:
    report["compare"] = _describe_source(compare)
    report["difference"] = difference_stats(params,
                                            init_stats.load_param_tree(compare, load_params_fn))
  return report


def _describe_source(source: Any) -> str:
  if isinstance(source, (str, os.PathLike)):
    return os.fspath(source)
  return f"<{type(source).__name__}>"


def _fmt(value: Any) -> str:
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:.6g}"
  return str(value)


def format_report(report: dict[str, Any]) -> str:
  """Human-readable tables of `build_report`'s output."""
  out = io.StringIO()
  width = max([len(r["name"]) for r in report["parameters"]] + [20])
  out.write(f"checkpoint: {report['checkpoint']}\n\nper parameter:\n")
  out.write(f"  {'name':<{width}} {'shape':<16} {'size':>10} {'mean':>13} {'std':>13}\n")
  for r in report["parameters"]:
    shape = "x".join(map(str, r["shape"])) or "scalar"
    out.write(f"  {r['name']:<{width}} {shape:<16} {r['size']:>10} {_fmt(r['mean']):>13} "
              f"{_fmt(r['std']):>13}\n")
  out.write(f"\nper group of {report['init_id']}:\n")
  for i, g in enumerate(report["groups"]):
    head = g["names"][0] + (f" (+{len(g['names']) - 1} more)" if len(g["names"]) > 1 else "")
    out.write(f"  [{i}] {head}: size {g['size']}, mean {_fmt(g['mean'])}, std {_fmt(g['std'])} "
              f"-> {g['init']}\n")
  diff = report.get("difference")
  if diff is not None:
    out.write(f"\ndifference {report['compare']} - {report['checkpoint']} "
              f"(rel_l2 = |D| / |first|):\n")
    out.write(f"  {'name':<{width}} {'mean(D)':>13} {'std(D)':>13} {'rel_l2':>13}\n")
    for r in diff["parameters"]:
      out.write(f"  {r['name']:<{width}} {_fmt(r['mean']):>13} {_fmt(r['std']):>13} "
                f"{_fmt(r['rel_l2']):>13}\n")
    out.write(f"  total rel_l2: {_fmt(diff['total_rel_l2'])}\n")
    for key in ("only_in_first", "only_in_second"):
      if diff[key]:
        out.write(f"  {key}: {', '.join(diff[key])}\n")
    for m in diff["shape_mismatch"]:
      out.write(f"  shape mismatch: {m['name']} {m['first_shape']} vs {m['second_shape']}\n")
  return out.getvalue()


def _json_safe(value: Any) -> Any:
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _json_safe(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_json_safe(v) for v in value]
  return value


def csv_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
  """Flat rows (columns `CSV_COLUMNS`) with a `section`: parameter, group, difference, …."""
  rows = [{"section": "parameter", "name": r["name"], "shape": "x".join(map(str, r["shape"])),
           "size": r["size"], "dtype": r["dtype"], "mean": r["mean"], "std": r["std"]}
          for r in report["parameters"]]
  rows += [{"section": "group", "name": ";".join(g["names"]), "size": g["size"], "mean": g["mean"],
            "std": g["std"], "init": g["init"]} for g in report["groups"]]
  diff = report.get("difference")
  if diff is not None:
    rows += [{"section": "difference", "name": r["name"], "shape": "x".join(map(str, r["shape"])),
              "size": r["size"], "mean": r["mean"], "std": r["std"], "rel_l2": r["rel_l2"]}
             for r in diff["parameters"]]
    rows.append({"section": "difference_total", "name": "*", "rel_l2": diff["total_rel_l2"]})
    rows += [{"section": key, "name": name}
             for key in ("only_in_first", "only_in_second") for name in diff[key]]
    rows += [{"section": "shape_mismatch", "name": m["name"]} for m in diff["shape_mismatch"]]
  return rows


def write_report(report: dict[str, Any], path: str) -> None:
  """Saves `report` as JSON or CSV (by suffix), atomically (temp file, then rename)."""
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in (".json", ".csv"):
    raise ValueError(f"--out {path}: expected a .json or .csv file name")
  with checkpoints.atomic_output(path, "w", newline="") as f:
    if suffix == ".json":
      json.dump(_json_safe(report), f, indent=1)
      f.write("\n")
    else:
      writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, restval="")
      writer.writeheader()
      writer.writerows(csv_rows(report))


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="synthetic-pretraining stats",
      description="Per-parameter and per-group mean/std of a checkpoint (directory or .npz of "
                  "'/'-named arrays), or the per-parameter difference of two.")
  parser.add_argument("checkpoint", help="checkpoint directory or .npz")
  parser.add_argument("--compare", help="second checkpoint: report CKPT2 - CKPT per parameter")
  parser.add_argument("--init_id", default=DEFAULT_INIT_ID,
                      help=f"grouping for the per-group statistics (default {DEFAULT_INIT_ID}); "
                           f"one of {', '.join(init_stats.INIT_IDS)}")
  parser.add_argument("--out", help="also save the report to FILE.json or FILE.csv")
  return parser


def load_checked(path: str) -> Any:
  """A checkpoint directory's or .npz's parameters; an unreadable one (truncated metadata, a
  half-written step, a damaged .npz) is a ValueError naming the path instead of the reader's
  internal error (e.g. AttributeError: 'NoneType' object has no attribute 'tree')."""
  try:
    return init_stats.load_param_tree(path)
  except FileNotFoundError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    first_line = str(e).splitlines()[0] if str(e) else ""
    raise ValueError(
        f"{path}: cannot read this checkpoint ({type(e).__name__}: {first_line}); "
        "it is incomplete or corrupted. Expected a checkpoint written by training (a model "
        "directory or one of its checkpoints/<step> folders) or an .npz of '/'-named arrays"
    ) from e


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
  try:
    init_stats.parse_init_id(args.init_id)
    if args.out and os.path.splitext(args.out)[1].lower() not in (".json", ".csv"):
      raise ValueError(f"--out {args.out}: expected a .json or .csv file name")
    report = build_report(args.checkpoint, compare=args.compare, init_id=args.init_id,
                          load_params_fn=load_checked)
  except (ValueError, TypeError, OSError, ImportError) as e:
    print(f"synthetic-pretraining stats: error: {e}", file=sys.stderr)
    return 2
  print(format_report(report), end="")
  if args.out:
    write_report(report, args.out)
    print(f"\nwrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
