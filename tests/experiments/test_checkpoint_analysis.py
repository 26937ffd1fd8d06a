"""checkpoint_analysis: names, config inference, per-layer statistics vs numpy, files."""

import csv
import re

import numpy as np
import pytest

from synthetic_pretraining.experiments import checkpoint_analysis as ca
from synthetic_pretraining.model import t5
from synthetic_pretraining.train import init_stats

TINY = t5.get_config("tiny")
# Gated MLP, untied logits and unequal stacks: the shapes a T5 v1.1 checkpoint has.
GATED = t5.get_config("t5_1_1_small", vocab_size=50, emb_dim=16, num_heads=2, head_dim=4,
                      mlp_dim=24, num_encoder_layers=3, num_decoder_layers=2)


@pytest.fixture(scope="module")
def tiny_random():
  return ca.random_init(TINY, 0)


@pytest.fixture(scope="module")
def trained_like(tiny_random):
  """A tiny tree with per-layer LN scales and kernels scaled per layer (like a trained model)."""
  rng = np.random.default_rng(0)
  flat = {}
  for name, value in tiny_random.items():
    info = ca.describe_param(name)
    if info.family == "layer_norm":
      value = rng.normal(0.3 + 0.1 * (info.layer or 0), 0.05, value.shape)
    elif info.family in ("attention", "mlp"):
      value = value * (1.5 + info.layer) + 0.01
    flat[name] = value.astype(np.float32)
  return flat


def _concat(flat, names):
  return np.concatenate([np.ravel(flat[n]).astype(np.float64) for n in names])


# ---- inputs ------------------------------------------------------------------------------------


def test_parse_checkpoint_list_keeps_order_and_names_bare_paths():
  assert list(ca.parse_checkpoint_list(" set = /r/set , /ckpt/t5_small/ ,copy=/r/c=1")
              .items()) == [("set", "/r/set"), ("t5_small", "/ckpt/t5_small/"),
                            ("copy", "/r/c=1")]


@pytest.mark.parametrize("spec, message", [
    ("", "no checkpoints given"),
    ("a=/x,,b=/y", "item 2 is empty"),
    ("=/x", "non-empty name and path"),
    ("a=", "non-empty name and path"),
    ("a=/x,a=/y", "'a' is given twice"),
    ("random_init=/x", "reserved"),
])
def test_parse_checkpoint_list_rejects(spec, message):
  with pytest.raises(ValueError, match=message):
    ca.parse_checkpoint_list(spec)


def test_load_checkpoints_reads_npz_and_names_the_bad_one(tmp_path, trained_like):
  path = tmp_path / "a.npz"
  init_stats.save_npz_params(str(path), init_stats.unflatten_params(trained_like))
  loaded = ca.load_checkpoints({"a": str(path)})
  assert loaded["a"].keys() == trained_like.keys()
  for name, value in trained_like.items():
    np.testing.assert_array_equal(loaded["a"][name], value)
  with pytest.raises(FileNotFoundError, match=r"checkpoint 'b' \(.*missing\)"):
    ca.load_checkpoints({"a": str(path), "b": str(tmp_path / "missing")})


def test_describe_param_unifies_encoder_and_decoder_spellings(tiny_random):
  infos = {n: ca.describe_param(n) for n in tiny_random}
  assert not [i for i in infos.values() if i.family == "other"]
  assert infos["encoder/layers_1/pre_attention_layer_norm/scale"] == ca.ParamInfo(
      "encoder/layers_1/pre_attention_layer_norm/scale", "encoder", 1, "layer_norm",
      "pre_self_attn_ln")
  assert infos["decoder/layers_0/pre_self_attention_layer_norm/scale"].role == "pre_self_attn_ln"
  assert infos["decoder/layers_0/encoder_decoder_attention/out/kernel"].role == "cross_attn/out"
  assert infos["encoder/layers_0/attention/key/kernel"].role == "self_attn/key"
  assert infos["decoder/layers_1/self_attention/key/kernel"].role == "self_attn/key"
  assert infos["decoder/decoder_norm/scale"] == ca.ParamInfo(
      "decoder/decoder_norm/scale", "decoder", None, "layer_norm", "final_ln")
  assert infos["encoder/relpos_bias/rel_embedding"].family == "relpos"
  assert infos["token_embedder/embedding"].stack is None
  assert ca.describe_param("decoder/logits_dense/kernel").family == "logits"
  assert ca.describe_param("encoder/layers_0/mlp/wi_1/kernel").role == "mlp/wi_1"
  assert ca.describe_param("encoder/layers_3/adapter/kernel") == ca.ParamInfo(
      "encoder/layers_3/adapter/kernel", "encoder", 3, "other", "adapter/kernel")


@pytest.mark.parametrize("config", [TINY, GATED], ids=["tiny", "gated"])
def test_infer_config_reproduces_every_shape(config):
  shapes = {n: s.shape for n, s in t5.flatten_names(t5.params_shapes(config)).items()}
  params = {n: np.zeros(shape, np.float32) for n, shape in shapes.items()}
  inferred = ca.infer_config(init_stats.unflatten_params(params))
  assert (inferred.num_encoder_layers, inferred.num_decoder_layers) == (
      config.num_encoder_layers, config.num_decoder_layers)
  assert {n: s.shape for n, s in t5.flatten_names(t5.params_shapes(inferred)).items()} == shapes


def test_infer_config_names_what_is_missing():
  with pytest.raises(ValueError, match="token_embedder/embedding"):
    ca.infer_config({"encoder": {"x": np.zeros(2)}})


def test_resolve_config_prefers_the_preset(tiny_random):
  assert ca.resolve_config("t5_small", tiny_random) == t5.get_config("t5_small")
  assert ca.resolve_config("", tiny_random).emb_dim == TINY.emb_dim
  with pytest.raises(ValueError, match="unknown model preset"):
    ca.resolve_config("t5_huge", tiny_random)


def test_random_init_is_the_model_default_init(tiny_random):
  import jax  # pylint: disable=g-import-not-at-top
  expected = init_stats.flatten_params(jax.device_get(t5.init_params(TINY, 0)))
  assert tiny_random.keys() == expected.keys()
  for name in expected:
    np.testing.assert_array_equal(tiny_random[name], np.asarray(expected[name]))
  assert not np.array_equal(ca.random_init(TINY, 1)["encoder/layers_0/mlp/wo/kernel"],
                            tiny_random["encoder/layers_0/mlp/wo/kernel"])


# ---- tables ------------------------------------------------------------------------------------


def test_parameter_table_matches_numpy(trained_like, tiny_random):
  rows = ca.parameter_table({"a": trained_like, "r": tiny_random})
  assert len(rows) == 2 * len(trained_like)
  by_key = {(r["checkpoint"], r["name"]): r for r in rows}
  for name, value in trained_like.items():
    row = by_key[("a", name)]
    data = value.astype(np.float64)
    assert row["mean"] == pytest.approx(np.mean(data), rel=1e-12, abs=1e-15)
    assert row["std"] == pytest.approx(np.std(data), rel=1e-12, abs=1e-15)
    assert row["size"] == value.size and row["shape"] == "x".join(map(str, value.shape))
  assert by_key[("r", "encoder/encoder_norm/scale")]["mean"] == 1.0
  assert by_key[("r", "encoder/encoder_norm/scale")]["std"] == 0.0


def test_layer_table_concatenates_the_layers_tensors(trained_like):
  rows = ca.layer_table({"a": trained_like}, ["pre_attention_ln", "kernels", "query"])
  assert len(rows) == 3 * 4  # 3 selections × (2 encoder + 2 decoder layers)
  by_key = {(r["selection"], r["stack"], r["layer"]): r for r in rows}
  expected_ln = {
      ("encoder", 0): ["encoder/layers_0/pre_attention_layer_norm/scale"],
      ("decoder", 1): ["decoder/layers_1/pre_cross_attention_layer_norm/scale",
                       "decoder/layers_1/pre_self_attention_layer_norm/scale"]}
  for (stack, layer), names in expected_ln.items():
    row = by_key[("pre_attention_ln", stack, layer)]
    data = _concat(trained_like, names)
    assert row["names"] == len(names) and row["size"] == data.size
    assert row["mean"] == pytest.approx(np.mean(data), rel=1e-12)
    assert row["std"] == pytest.approx(np.std(data), rel=1e-12)
  kernels = [n for n in trained_like if n.startswith("decoder/layers_0/") and "kernel" in n]
  assert len(kernels) == 10  # self q/k/v/o, cross q/k/v/o, wi, wo
  row = by_key[("kernels", "decoder", 0)]
  assert row["names"] == 10
  assert row["std"] == pytest.approx(np.std(_concat(trained_like, kernels)), rel=1e-12)
  queries = ["decoder/layers_0/encoder_decoder_attention/query/kernel",
             "decoder/layers_0/self_attention/query/kernel"]
  assert by_key[("query", "decoder", 0)]["mean"] == pytest.approx(
      np.mean(_concat(trained_like, queries)), rel=1e-12)


def test_per_layer_kernels_are_the_per_layer_grouping_of_init_stats(trained_like):
  """The notebook's per-layer kernel statistic is the σ the Per Layer Scale init would draw from."""
  groups = init_stats.groups_for("per_layer_grouping___init_scale", trained_like)
  for (stack, layer), names in ca.layer_groups(trained_like, "kernels").items():
    assert sorted(names) in [sorted(g) for g in groups], (stack, layer)
  for (stack, layer), names in ca.layer_groups(trained_like, "layer_norms").items():
    assert sorted(names) in [sorted(g) for g in groups], (stack, layer)


def test_layer_table_rejects_unknown_selection(trained_like):
  with pytest.raises(ValueError, match="unknown layer selections.*'wq'"):
    ca.layer_table({"a": trained_like}, ["wq"])


def test_group_table_uses_the_init_id_grouping(trained_like):
  rows = ca.group_table({"a": trained_like}, "across_ALL_layer_grouping___init_scale")
  groups = init_stats.groups_for("across_ALL_layer_grouping___init_scale", trained_like)
  assert [r["group"] for r in rows] == list(range(len(groups)))
  for row, names in zip(rows, groups):
    assert row["first_name"] == names[0] and row["names"] == len(names)
    assert row["mean"] == pytest.approx(np.mean(_concat(trained_like, names)), rel=1e-12)
    assert row["std"] == pytest.approx(np.std(_concat(trained_like, names)), rel=1e-12)
  ln_row = next(r for r in rows if "pre_mlp_layer_norm" in r["first_name"])
  assert ln_row["init"].startswith("constant ")


def test_differences_to_the_reference_match_numpy(trained_like, tiny_random):
  other = dict(trained_like)
  other["encoder/layers_0/mlp/wi/kernel"] = np.zeros((3, 3), np.float32)  # shape differs: skipped
  rows = ca.difference_table({"r": tiny_random, "a": other}, reference="r")
  assert {r["checkpoint"] for r in rows} == {"a"}
  names = [r["name"] for r in rows]
  assert "encoder/layers_0/mlp/wi/kernel" not in names and len(names) == len(tiny_random) - 1
  row = next(r for r in rows if r["name"] == "decoder/layers_1/mlp/wo/kernel")
  a = tiny_random["decoder/layers_1/mlp/wo/kernel"].astype(np.float64)
  d = other["decoder/layers_1/mlp/wo/kernel"].astype(np.float64) - a
  assert row["mean"] == pytest.approx(np.mean(d), rel=1e-12)
  assert row["std"] == pytest.approx(np.std(d), rel=1e-12)
  assert row["rel_l2"] == pytest.approx(np.linalg.norm(d) / np.linalg.norm(a), rel=1e-12)

  layer_rows = ca.layer_difference_table({"r": tiny_random, "a": other}, reference="r")
  assert len(layer_rows) == 4
  enc0 = next(r for r in layer_rows if (r["stack"], r["layer"]) == ("encoder", 0))
  names = [n for n in tiny_random if n.startswith("encoder/layers_0/") and "kernel" in n
           and n != "encoder/layers_0/mlp/wi/kernel"]
  ref = _concat(tiny_random, names)
  assert enc0["rel_l2"] == pytest.approx(
      np.linalg.norm(_concat(other, names) - ref) / np.linalg.norm(ref), rel=1e-12)
  with pytest.raises(ValueError, match="reference 'zz'"):
    ca.difference_table({"a": other}, reference="zz")


def test_relpos_tables_and_markdown(trained_like, tiny_random):
  tables = ca.relpos_tables(trained_like)
  assert sorted(tables) == ["decoder", "encoder"] and tables["encoder"].shape == (4, 32)
  rows = ca.layer_table({"a": trained_like, "random_init": tiny_random}, ["pre_mlp_ln"])
  text = ca.format_layer_markdown(rows, "pre_mlp_ln", "mean")
  lines = text.splitlines()
  assert lines[0] == "| pre_mlp_ln mean | a | random_init |"
  enc1 = float(np.mean(trained_like["encoder/layers_1/pre_mlp_layer_norm/scale"]
                       .astype(np.float64)))
  assert lines[3] == f"| encoder 1 | {enc1:.4g} | 1 |"
  assert [line.split(" |")[0] for line in lines[2:]] == [
      "| encoder 0", "| encoder 1", "| decoder 0", "| decoder 1"]
  assert ca.format_rows_markdown([{"x": 0.123456, "y": "a|b"}], ["x", "y"]).splitlines()[2] == (
      "| 0.1235 | a\\|b |")


# ---- figures and files -------------------------------------------------------------------------


def test_plot_modes_need_a_reference(trained_like):
  rows = ca.layer_table({"a": trained_like}, ["query"])
  with pytest.raises(ValueError, match="needs a reference"):
    ca.plot_layer_statistic(rows, ["query"], "std", mode="ratio")
  with pytest.raises(ValueError, match="mode must be"):
    ca.plot_layer_statistic(rows, ["query"], "std", reference="a", mode="log")


def test_write_outputs_writes_tables_and_figures(tmp_path, trained_like, tiny_random):
  analysis = ca.analyse({"a": trained_like, ca.RANDOM_INIT: tiny_random},
                        init_id="per_param_grouping___init_scale")
  paths = ca.write_outputs(analysis, str(tmp_path / "out"))
  pngs = sorted(n for n in paths if n.endswith(".png"))
  assert pngs == sorted(["ln_scale_mean_per_layer.png", "kernel_std_per_layer.png",
                         "relpos_bias.png", "ln_scale_mean_minus_random.png",
                         "kernel_std_ratio_to_random.png", "kernel_rel_l2_to_random.png"])
  for name in pngs:
    assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  with open(paths["layer_stats.csv"], newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == len(analysis.layers)
  for written, row in zip(rows, analysis.layers):
    assert float(written["mean"]) == row["mean"] and float(written["std"]) == row["std"]
  with open(paths["difference_to_reference.csv"], newline="") as f:
    diffs = list(csv.DictReader(f))
  assert len(diffs) == len(trained_like) and {d["checkpoint"] for d in diffs} == {"a"}
  with open(paths["group_stats.csv"], newline="") as f:
    assert len(list(csv.DictReader(f))) == 2 * len(
        init_stats.groups_for("per_param_grouping___init_scale", trained_like))
  assert not [p for p in (tmp_path / "out").iterdir() if re.search(r"\.tmp$", p.name)]


def test_analyse_without_a_reference_skips_differences(trained_like):
  analysis = ca.analyse({"a": trained_like}, reference=None)
  assert analysis.differences == [] and analysis.layer_differences == []
  assert sorted(ca.figures(analysis)) == ["kernel_std_per_layer.png",
                                          "ln_scale_mean_per_layer.png", "relpos_bias.png"]
  with pytest.raises(ValueError, match="unknown init_id"):
    ca.analyse({"a": trained_like}, reference=None, init_id="per_thing")
