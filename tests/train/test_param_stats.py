"""Tests of the `synthetic-pretraining stats` command and its functions."""

import csv
import json
import math
import os

import numpy as np
import pytest

from synthetic_pretraining import cli
from synthetic_pretraining.train import init_stats
from synthetic_pretraining.train import param_stats
from tests.train.test_init_stats import EXPECTED_GROUPS, SMALL, build_tree, t5_shapes


@pytest.fixture
def two_checkpoints(tmp_path):
  first = build_tree(SMALL, "trained", seed=11)
  second = build_tree(SMALL, "default", seed=12)
  paths = os.fspath(tmp_path / "a.npz"), os.fspath(tmp_path / "b.npz")
  init_stats.save_npz_params(paths[0], first)
  init_stats.save_npz_params(paths[1], second)
  return (init_stats.flatten_params(first), init_stats.flatten_params(second)) + paths


def f64(x):
  return np.asarray(x, dtype=np.float64)


def test_parameter_stats_match_numpy():
  flat = init_stats.flatten_params(build_tree(SMALL, "trained", seed=1))
  rows = param_stats.parameter_stats(init_stats.unflatten_params(flat))
  assert sorted(r["name"] for r in rows) == sorted(SMALL)
  assert rows[0]["name"] == "decoder/decoder_norm/scale"  # natural name order
  for row in rows:
    value = f64(flat[row["name"]])
    assert row["shape"] == list(SMALL[row["name"]]) and row["size"] == value.size
    assert row["dtype"] == "float32"
    np.testing.assert_allclose(row["mean"], value.mean(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(row["std"], value.std(), rtol=1e-12)


def test_group_stats_match_numpy_on_concatenation():
  flat = init_stats.flatten_params(build_tree(SMALL, "trained", seed=2))
  init_id = "across_ALL_layer_grouping___init_scale"
  rows = param_stats.group_stats(init_stats.unflatten_params(flat), init_id)
  assert {frozenset(r["names"]) for r in rows} == {frozenset(g) for g in EXPECTED_GROUPS[init_id]}
  for row in rows:
    concat = np.concatenate([f64(flat[n]).ravel() for n in row["names"]])
    assert row["size"] == concat.size
    np.testing.assert_allclose(row["mean"], concat.mean(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(row["std"], concat.std(), rtol=1e-12)
    if "norm" in row["names"][0]:
      assert row["rule"] == "constant" and row["init"] == f"constant {row['mean']:.6g}"
    else:
      assert row["rule"] == "zero_mean_normal" and row["init"] == f"N(0, {row['std']:.6g}^2)"
  mean_std = param_stats.group_stats(init_stats.unflatten_params(flat),
                                     "per_param_grouping___init_mean_std")
  assert {r["rule"] for r in mean_std} == {"normal"}


def test_difference_stats_match_numpy():
  a = init_stats.flatten_params(build_tree(SMALL, "trained", seed=3))
  b = init_stats.flatten_params(build_tree(SMALL, "trained", seed=4))
  del b["encoder/encoder_norm/scale"]
  b["decoder/extra/scale"] = np.ones(3, np.float32)
  b["encoder/layers_0/mlp/wo/kernel"] = np.ones((2, 2), np.float32)
  result = param_stats.difference_stats(init_stats.unflatten_params(a),
                                        init_stats.unflatten_params(b))
  assert result["only_in_first"] == ["encoder/encoder_norm/scale"]
  assert result["only_in_second"] == ["decoder/extra/scale"]
  assert result["shape_mismatch"] == [{"name": "encoder/layers_0/mlp/wo/kernel",
                                       "first_shape": [32, 16], "second_shape": [2, 2]}]
  compared = sorted(set(a) & set(b) - {"encoder/layers_0/mlp/wo/kernel"})
  assert sorted(r["name"] for r in result["parameters"]) == compared
  for row in result["parameters"]:
    diff = f64(b[row["name"]]) - f64(a[row["name"]])
    np.testing.assert_allclose(row["mean"], diff.mean(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(row["std"], diff.std(), rtol=1e-12)
    expected_rel = np.linalg.norm(diff) / np.linalg.norm(f64(a[row["name"]]))
    np.testing.assert_allclose(row["rel_l2"], expected_rel, rtol=1e-12)
  total_diff = np.sqrt(sum(np.sum((f64(b[n]) - f64(a[n])) ** 2) for n in compared))
  total_ref = np.sqrt(sum(np.sum(f64(a[n]) ** 2) for n in compared))
  np.testing.assert_allclose(result["total_rel_l2"], total_diff / total_ref, rtol=1e-12)


def test_difference_of_identical_and_zero_reference():
  tree = build_tree(SMALL, "trained", seed=5)
  same = param_stats.difference_stats(tree, tree)
  assert all(r["mean"] == 0 and r["std"] == 0 and r["rel_l2"] == 0 for r in same["parameters"])
  zero = {"w": np.zeros(4, np.float32)}
  assert param_stats.difference_stats(zero, {"w": np.ones(4, np.float32)})["parameters"][0][
      "rel_l2"] == math.inf


def test_main_prints_and_writes_json(two_checkpoints, tmp_path, capsys):
  first, second, path_a, path_b = two_checkpoints
  out = os.fspath(tmp_path / "report" / "stats.json")
  assert param_stats.main([path_a, "--compare", path_b, "--out", out]) == 0
  printed = capsys.readouterr().out
  assert f"checkpoint: {path_a}" in printed
  assert "per group of per_layer_grouping___init_scale" in printed
  assert f"wrote {out}" in printed
  row = [line for line in printed.splitlines()
         if line.strip().startswith("encoder/layers_1/mlp/wi/kernel")][0]
  value = f64(first["encoder/layers_1/mlp/wi/kernel"])
  assert f"{value.mean():.6g}" in row.split() and f"{value.std():.6g}" in row.split()
  assert os.listdir(tmp_path / "report") == ["stats.json"]
  report = json.load(open(out, encoding="utf-8"))
  assert report["checkpoint"] == path_a and report["compare"] == path_b
  by_name = {r["name"]: r for r in report["parameters"]}
  assert set(by_name) == set(SMALL)
  for name, value in first.items():
    np.testing.assert_allclose(by_name[name]["mean"], f64(value).mean(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(by_name[name]["std"], f64(value).std(), rtol=1e-12)
  assert len(report["groups"]) == len(EXPECTED_GROUPS["per_layer_grouping___init_scale"])
  diffs = {r["name"]: r for r in report["difference"]["parameters"]}
  name = "decoder/layers_0/self_attention/out/kernel"
  diff = f64(second[name]) - f64(first[name])
  np.testing.assert_allclose(diffs[name]["mean"], diff.mean(), rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(diffs[name]["rel_l2"],
                             np.linalg.norm(diff) / np.linalg.norm(f64(first[name])), rtol=1e-12)


def test_cli_writes_csv_with_chosen_grouping(two_checkpoints, tmp_path, capsys):
  first, _, path_a, _ = two_checkpoints
  out = os.fspath(tmp_path / "stats.csv")
  init_id = "across_ALL_layer_AND_per_layer_grouping___init_scale"
  assert cli.main(["stats", path_a, "--init_id", init_id, "--out", out]) == 0
  capsys.readouterr()
  with open(out, encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))
  assert tuple(rows[0]) == param_stats.CSV_COLUMNS
  params = [r for r in rows if r["section"] == "parameter"]
  groups = [r for r in rows if r["section"] == "group"]
  assert len(params) == len(SMALL) and len(groups) == 3
  assert not [r for r in rows if r["section"].startswith("difference")]
  for row in params:
    value = f64(first[row["name"]])
    assert row["shape"] == "x".join(map(str, SMALL[row["name"]]))
    np.testing.assert_allclose(float(row["mean"]), value.mean(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(float(row["std"]), value.std(), rtol=1e-12)
  for row in groups:
    names = row["name"].split(";")
    concat = np.concatenate([f64(first[n]).ravel() for n in names])
    np.testing.assert_allclose(float(row["std"]), concat.std(), rtol=1e-12)
    assert int(row["size"]) == concat.size


def test_stats_of_v11_tree_leave_out_logits_dense(tmp_path, capsys):
  path = os.fspath(tmp_path / "v11.npz")
  init_stats.save_npz_params(path, build_tree(t5_shapes(v11=True), "trained"))
  out = os.fspath(tmp_path / "v11.json")
  assert param_stats.main([path, "--init_id", "per_param_grouping___init_scale", "--out", out]) == 0
  capsys.readouterr()
  report = json.load(open(out, encoding="utf-8"))
  assert "decoder/logits_dense/kernel" in {r["name"] for r in report["parameters"]}
  grouped = {n for g in report["groups"] for n in g["names"]}
  assert "decoder/logits_dense/kernel" not in grouped and "token_embedder/embedding" not in grouped


def test_json_writes_null_for_infinite(tmp_path):
  zero = os.fspath(tmp_path / "zero.npz")
  one = os.fspath(tmp_path / "one.npz")
  relpos = lambda value: {"encoder": {"relpos_bias": {"rel_embedding": value}}}
  init_stats.save_npz_params(zero, relpos(np.zeros((2, 3))))
  init_stats.save_npz_params(one, relpos(np.ones((2, 3))))
  out = os.fspath(tmp_path / "r.json")
  report = param_stats.build_report(zero, compare=one, init_id="per_param_grouping___init_scale")
  param_stats.write_report(report, out)
  loaded = json.load(open(out, encoding="utf-8"))
  assert loaded["difference"]["parameters"][0]["rel_l2"] is None
  assert loaded["difference"]["parameters"][0]["mean"] == 1.0


def test_build_report_accepts_trees_and_callables():
  tree = build_tree(SMALL, "trained", seed=8)
  from_tree = param_stats.build_report(tree)
  from_callable = param_stats.build_report(lambda: {"target": tree})
  assert from_tree["parameters"] == from_callable["parameters"]
  assert from_tree["checkpoint"] == "<dict>"


def test_errors(two_checkpoints, tmp_path, capsys):
  _, _, path_a, _ = two_checkpoints
  assert param_stats.main([path_a, "--out", os.fspath(tmp_path / "x.txt")]) == 2
  assert "expected a .json or .csv file name" in capsys.readouterr().err
  assert param_stats.main([path_a, "--init_id", "bogus"]) == 2
  assert "unknown init_id 'bogus'" in capsys.readouterr().err
  missing = os.fspath(tmp_path / "missing_ckpt")
  assert param_stats.main([missing]) == 2
  assert f"checkpoint not found: {missing}" in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "x.txt")
  with pytest.raises(ValueError, match="expected a .json or .csv"):
    param_stats.write_report({}, os.fspath(tmp_path / "y.yaml"))


def test_main_reads_project_checkpoint_directory(tmp_path, capsys):
  t5 = pytest.importorskip("synthetic_pretraining.model.t5")
  checkpoints = pytest.importorskip("synthetic_pretraining.train.checkpoints")
  params = t5.init_params(t5.get_config("tiny"), 3)
  checkpointer = checkpoints.Checkpointer(os.fspath(tmp_path / "run"), period=1)
  checkpointer.save(2, {"step": np.int32(2), "params": params})
  checkpointer.close()
  npz = os.fspath(tmp_path / "same.npz")
  init_stats.save_npz_params(npz, params)
  out = os.fspath(tmp_path / "r.json")
  assert param_stats.main([os.fspath(tmp_path / "run"), "--compare", npz, "--out", out]) == 0
  capsys.readouterr()
  report = json.load(open(out, encoding="utf-8"))
  flat = init_stats.flatten_params(params)
  by_name = {r["name"]: r for r in report["parameters"]}
  assert set(by_name) == set(flat)
  name = "encoder/layers_1/mlp/wo/kernel"
  np.testing.assert_allclose(by_name[name]["std"], f64(flat[name]).std(), rtol=1e-12)
  assert report["difference"]["total_rel_l2"] == 0.0
  assert not report["difference"]["only_in_first"] and not report["difference"]["only_in_second"]
