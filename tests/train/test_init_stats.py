"""Tests of initialisation from parameter statistics (SPEC §6, Tables 2 and 3)."""

import os

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthetic_pretraining.train import init_stats

# ------------------------------------------------------------------------------------------------
# A numpy parameter tree with T5X's exact names and shapes.

QKVO = ("query", "key", "value", "out")


def t5_shapes(*, d=16, ff=32, heads=2, vocab=64, enc_layers=2, dec_layers=2, v11=False,
              inner=None):
  """{name: shape} of a T5 v1.0 (or v1.1 with `v11`) parameter tree, T5X names.

  `inner` = heads x head_dim (default d): q/k/v kernels are [d, inner], out is [inner, d].
  """
  inner = d if inner is None else inner
  shapes = {"token_embedder/embedding": (vocab, d),
            "encoder/relpos_bias/rel_embedding": (heads, 32),
            "decoder/relpos_bias/rel_embedding": (heads, 32),
            "encoder/encoder_norm/scale": (d,),
            "decoder/decoder_norm/scale": (d,)}
  wis = ("wi_0", "wi_1") if v11 else ("wi",)

  def mlp(prefix):
    for wi in wis:
      shapes[f"{prefix}/mlp/{wi}/kernel"] = (d, ff)
    shapes[f"{prefix}/mlp/wo/kernel"] = (ff, d)

  for i in range(enc_layers):
    prefix = f"encoder/layers_{i}"
    for p in QKVO:
      shapes[f"{prefix}/attention/{p}/kernel"] = (inner, d) if p == "out" else (d, inner)
    mlp(prefix)
    shapes[f"{prefix}/pre_attention_layer_norm/scale"] = (d,)
    shapes[f"{prefix}/pre_mlp_layer_norm/scale"] = (d,)
  for i in range(dec_layers):
    prefix = f"decoder/layers_{i}"
    for attention in ("self_attention", "encoder_decoder_attention"):
      for p in QKVO:
        shapes[f"{prefix}/{attention}/{p}/kernel"] = (inner, d) if p == "out" else (d, inner)
    mlp(prefix)
    for ln in ("pre_self_attention_layer_norm", "pre_cross_attention_layer_norm",
               "pre_mlp_layer_norm"):
      shapes[f"{prefix}/{ln}/scale"] = (d,)
  if v11:
    shapes["decoder/logits_dense/kernel"] = (d, vocab)
  return shapes


def build_tree(shapes, kind="default", seed=0, dtype=np.float32, names_order=None):
  """Nested numpy tree. kind="default": T5-like default init (LN 1, kernels N(0, 1/fan_in));
  kind="trained": every tensor gets its own distinct mean/std so wrong groupings show."""
  rng = np.random.default_rng(seed)
  flat = {}
  for index, name in enumerate(sorted(shapes)):
    shape = shapes[name]
    if kind == "default":
      if "norm" in name:
        value = np.ones(shape)
      elif "embedding" in name and "token" in name:
        value = rng.normal(0.0, 1.0, shape)
      else:
        value = rng.normal(0.0, 1.0 / np.sqrt(shape[0]), shape)
    else:
      if "norm" in name:
        value = rng.normal(0.2 + 0.05 * (index % 9), 0.03 + 0.01 * (index % 4), shape)
      else:
        value = rng.normal(0.01 * (index % 5), 0.02 * (1 + index % 7), shape)
    flat[name] = value.astype(dtype)
  order = names_order if names_order is not None else list(shapes)
  return init_stats.unflatten_params({name: flat[name] for name in order})


SMALL = t5_shapes()
# Big enough tensors for sampling-tolerance checks (4096-element kernels, 256-element relpos).
BIG = t5_shapes(d=64, ff=128, heads=8, vocab=32)

# ------------------------------------------------------------------------------------------------
# Hand-written expected groups for the 2 + 2 layer tree.


def enc_attn(i):
  return [f"encoder/layers_{i}/attention/{p}/kernel" for p in ("query", "key", "value", "out")]


def dec_attn(i):
  return [f"decoder/layers_{i}/{a}/{p}/kernel"
          for a in ("self_attention", "encoder_decoder_attention")
          for p in ("query", "key", "value", "out")]


def mlp(stack, i):
  return [f"{stack}/layers_{i}/mlp/wi/kernel", f"{stack}/layers_{i}/mlp/wo/kernel"]


def enc_lns(i):
  return [f"encoder/layers_{i}/pre_attention_layer_norm/scale",
          f"encoder/layers_{i}/pre_mlp_layer_norm/scale"]


def dec_lns(i):
  return [f"decoder/layers_{i}/pre_self_attention_layer_norm/scale",
          f"decoder/layers_{i}/pre_cross_attention_layer_norm/scale",
          f"decoder/layers_{i}/pre_mlp_layer_norm/scale"]


RELPOS = ["encoder/relpos_bias/rel_embedding", "decoder/relpos_bias/rel_embedding"]
FINAL_NORMS = ["encoder/encoder_norm/scale", "decoder/decoder_norm/scale"]
ALL_KERNELS = (enc_attn(0) + enc_attn(1) + dec_attn(0) + dec_attn(1) + mlp("encoder", 0)
               + mlp("encoder", 1) + mlp("decoder", 0) + mlp("decoder", 1))
LAYER_LNS = enc_lns(0) + enc_lns(1) + dec_lns(0) + dec_lns(1)
ALL_BUT_EMBEDDING = ALL_KERNELS + LAYER_LNS + FINAL_NORMS + RELPOS
PRE_ATTN_LNS = [n for n in LAYER_LNS if "mlp" not in n]
PRE_MLP_LNS = [n for n in LAYER_LNS if "mlp" in n]

EXPECTED_GROUPS = {
    "per_param_grouping___init_mean_std": [[n] for n in ALL_BUT_EMBEDDING],
    "per_param_grouping___init_scale": [[n] for n in ALL_BUT_EMBEDDING],
    "across_ALL_layer_AND_per_layer_grouping___init_scale": [
        ALL_KERNELS, LAYER_LNS + FINAL_NORMS, RELPOS],
    "preattnln_per_param_grouping___init_scale": [[n] for n in PRE_ATTN_LNS],
    "across_ALL_layer_grouping___init_scale": [
        [n for n in ALL_KERNELS if "/query/" in n],
        [n for n in ALL_KERNELS if "/key/" in n],
        [n for n in ALL_KERNELS if "/value/" in n],
        [n for n in ALL_KERNELS if "/out/" in n],
        mlp("encoder", 0) + mlp("encoder", 1) + mlp("decoder", 0) + mlp("decoder", 1),
        PRE_MLP_LNS, PRE_ATTN_LNS, FINAL_NORMS, RELPOS],
    "per_layer_grouping___init_scale": [
        enc_attn(0) + mlp("encoder", 0), enc_lns(0),
        enc_attn(1) + mlp("encoder", 1), enc_lns(1),
        dec_attn(0) + mlp("decoder", 0), dec_lns(0),
        dec_attn(1) + mlp("decoder", 1), dec_lns(1),
        ["encoder/encoder_norm/scale"], ["decoder/decoder_norm/scale"],
        ["encoder/relpos_bias/rel_embedding"], ["decoder/relpos_bias/rel_embedding"]],
    "premlpln_per_param_grouping___init_scale": [[n] for n in PRE_MLP_LNS],
    "qkvo_per_param_grouping___init_scale": [
        [n] for n in enc_attn(0) + enc_attn(1) + dec_attn(0) + dec_attn(1)],
    "mlp_per_param_grouping___init_scale": [
        [n] for n in mlp("encoder", 0) + mlp("encoder", 1) + mlp("decoder", 0) + mlp("decoder", 1)],
}


def as_set(groups):
  return {frozenset(g) for g in groups}


def test_tree_builder_matches_spec_count():
  # SPEC §5.1: T5 v1.0 small has 131 tensors.
  assert len(t5_shapes(d=4, ff=4, enc_layers=6, dec_layers=6)) == 131
  assert len(SMALL) == 47


def test_expectations_cover_the_paper_nine():
  assert set(EXPECTED_GROUPS) == set(init_stats.INIT_IDS) and len(init_stats.INIT_IDS) == 9


@pytest.mark.parametrize("init_id", init_stats.INIT_IDS)
def test_groups_are_exactly_spec(init_id):
  groups = init_stats.groups_for(init_id, list(SMALL))
  expected = EXPECTED_GROUPS[init_id]
  assert as_set(groups) == as_set(expected)
  assert len(groups) == len(expected)  # no group twice
  grouped = [n for g in groups for n in g]
  assert len(grouped) == len(set(grouped))  # no name in two groups
  assert "token_embedder/embedding" not in grouped
  # Groups are homogeneous: all layer norms or none, so the "first name" rule is unambiguous.
  for g in groups:
    assert len({"norm" in n for n in g}) == 1, g


def test_groups_do_not_depend_on_name_order():
  names = list(SMALL)
  for init_id in init_stats.INIT_IDS:
    assert init_stats.groups_for(init_id, names) == init_stats.groups_for(init_id, names[::-1])


def test_per_layer_grouping_follows_layer_count():
  shapes = t5_shapes(d=4, ff=4, enc_layers=12, dec_layers=3)
  groups = init_stats.groups_for("per_layer_grouping___init_scale", list(shapes))
  # 12 encoder layers and 3 decoder layers, each a kernel group and an LN group, + 4 non-layer.
  assert len(groups) == 2 * 12 + 2 * 3 + 4
  assert ["encoder/layers_1/pre_attention_layer_norm/scale",
          "encoder/layers_1/pre_mlp_layer_norm/scale"] in [sorted(g) for g in groups]
  # layers_1 must not swallow layers_10/11.
  layer1 = [g for g in groups if "encoder/layers_1/attention/query/kernel" in g][0]
  assert all(n.startswith("encoder/layers_1/") for n in layer1)


def test_v11_names():
  shapes = t5_shapes(v11=True)
  mlp_groups = init_stats.groups_for("mlp_per_param_grouping___init_scale", list(shapes))
  assert as_set(mlp_groups) == {frozenset([f"{s}/layers_{i}/mlp/{w}/kernel"])
                                for s in ("encoder", "decoder") for i in (0, 1)
                                for w in ("wi_0", "wi_1", "wo")}
  for init_id in init_stats.INIT_IDS:
    grouped = {n for g in init_stats.groups_for(init_id, list(shapes)) for n in g}
    assert "decoder/logits_dense/kernel" not in grouped
    assert "token_embedder/embedding" not in grouped
  whole = init_stats.groups_for("across_ALL_layer_AND_per_layer_grouping___init_scale",
                                list(shapes))
  assert "decoder/layers_1/mlp/wi_1/kernel" in whole[0]


def test_unknown_init_id():
  with pytest.raises(ValueError,
                     match="unknown init_id 'per_param___init_scale'.*per_layer_grouping"):
    init_stats.groups_for("per_param___init_scale", list(SMALL))
  with pytest.raises(ValueError, match="unknown init_id"):
    init_stats.init_from_statistics(build_tree(SMALL), build_tree(SMALL),
                                    "per_param_grouping___foo")


def test_group_statistics_equal_numpy_on_concatenation():
  tree = init_stats.flatten_params(build_tree(BIG, "trained", seed=3))
  names = ALL_KERNELS[:7] + RELPOS
  mean, std, count = init_stats.group_statistics(tree[n] for n in names)
  concat = np.concatenate([tree[n].astype(np.float64).ravel() for n in names])
  assert count == concat.size
  np.testing.assert_allclose(mean, np.mean(concat), rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(std, np.std(concat), rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# The schemes' values.


@pytest.fixture(scope="module")
def big_trees():
  return build_tree(BIG, "default", seed=1), build_tree(BIG, "trained", seed=2)


@pytest.fixture(scope="module")
def big_results(big_trees):
  target, source = big_trees
  return {init_id: init_stats.init_from_statistics(target, source, init_id, seed=0)
          for init_id in init_stats.INIT_IDS}


@pytest.mark.parametrize("init_id", init_stats.INIT_IDS)
def test_group_values_follow_source_statistics(init_id, big_trees, big_results):
  target, source = (init_stats.flatten_params(t) for t in big_trees)
  result = init_stats.flatten_params(big_results[init_id])
  mean_std = init_id.endswith("init_mean_std")
  for group in EXPECTED_GROUPS[init_id]:
    concat = np.concatenate([source[n].astype(np.float64).ravel() for n in group])
    mu, sigma = np.mean(concat), np.std(concat)
    if not mean_std and "norm" in group[0]:
      for name in group:  # layer norms under init_scale: exactly the constant μ
        assert result[name].dtype == np.float32
        np.testing.assert_array_equal(result[name], np.full(BIG[name], np.float32(mu)))
      continue
    expected_mean = mu if mean_std else 0.0
    pooled = np.concatenate([result[n].astype(np.float64).ravel() for n in group])
    n = pooled.size
    assert abs(pooled.mean() - expected_mean) < 6 * sigma / np.sqrt(n), group
    assert abs(pooled.std() - sigma) < 6 * sigma / np.sqrt(2 * n), group
    for name in group:  # each tensor drawn with the group's σ (not its own)
      values = result[name].astype(np.float64)
      assert abs(values.std() - sigma) < 6 * sigma / np.sqrt(2 * values.size), name
      assert not np.array_equal(values, target[name])


@pytest.mark.parametrize("init_id", init_stats.INIT_IDS)
def test_ungrouped_parameters_untouched(init_id, big_trees, big_results):
  target = init_stats.flatten_params(big_trees[0])
  result = init_stats.flatten_params(big_results[init_id])
  assert list(result) == list(target)  # same names, same order
  grouped = {n for g in EXPECTED_GROUPS[init_id] for n in g}
  untouched = [n for n in target if n not in grouped]
  assert "token_embedder/embedding" in untouched
  for name in untouched:
    assert result[name] is target[name]
    np.testing.assert_array_equal(result[name], target[name])
  for name in grouped:
    assert result[name].shape == target[name].shape and result[name].dtype == target[name].dtype


def test_inputs_are_not_modified(big_trees):
  target, source = big_trees
  before = {n: v.copy() for n, v in init_stats.flatten_params(target).items()}
  source_before = {n: v.copy() for n, v in init_stats.flatten_params(source).items()}
  init_stats.init_from_statistics(target, source, "per_param_grouping___init_mean_std", seed=0)
  for tree, saved in ((target, before), (source, source_before)):
    for name, value in init_stats.flatten_params(tree).items():
      np.testing.assert_array_equal(value, saved[name])


def test_seed_determinism_and_order_independence():
  source = build_tree(SMALL, "trained", seed=5)
  target = build_tree(SMALL, "default", seed=6)
  reordered = build_tree(SMALL, "default", seed=6, names_order=sorted(SMALL, reverse=True))
  init_id = "per_layer_grouping___init_scale"
  a = init_stats.flatten_params(init_stats.init_from_statistics(target, source, init_id, seed=7))
  b = init_stats.flatten_params(init_stats.init_from_statistics(target, source, init_id, seed=7))
  c = init_stats.flatten_params(init_stats.init_from_statistics(reordered, source, init_id, seed=7))
  d = init_stats.flatten_params(init_stats.init_from_statistics(target, source, init_id, seed=8))
  for name in SMALL:
    np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_array_equal(a[name], c[name])
  kernel = "encoder/layers_0/attention/query/kernel"
  assert not np.array_equal(a[kernel], d[kernel])
  # Layer norms are constants: the seed does not matter for them.
  np.testing.assert_array_equal(a["encoder/layers_0/pre_mlp_layer_norm/scale"],
                                d["encoder/layers_0/pre_mlp_layer_norm/scale"])
  # Different tensors get different streams.
  assert not np.array_equal(a[kernel], a["encoder/layers_0/attention/key/kernel"])


def test_bfloat16_jax_arrays_keep_dtype_and_type():
  source = build_tree(SMALL, "trained", seed=1)
  target = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.bfloat16),
                                  build_tree(SMALL, "default", seed=2))
  for init_id in ("per_param_grouping___init_scale", "per_param_grouping___init_mean_std"):
    result = init_stats.flatten_params(
        init_stats.init_from_statistics(target, source, init_id, seed=0))
    flat_source = init_stats.flatten_params(source)
    for name, value in result.items():
      assert isinstance(value, jax.Array) and value.dtype == jnp.bfloat16, name
    ln = "decoder/layers_1/pre_cross_attention_layer_norm/scale"
    mu = np.mean(flat_source[ln].astype(np.float64))
    if init_id.endswith("init_scale"):
      np.testing.assert_array_equal(np.asarray(result[ln]),
                                    np.full(SMALL[ln], mu).astype(jnp.bfloat16))
    else:
      assert not np.all(np.asarray(result[ln]) == np.asarray(result[ln])[0])


def test_sharding_is_kept():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("model",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "model"))
  name = "encoder/layers_0/mlp/wi/kernel"
  flat = init_stats.flatten_params(build_tree(SMALL, "default"))
  flat[name] = jax.device_put(flat[name], sharding)
  result = init_stats.flatten_params(init_stats.init_from_statistics(
      init_stats.unflatten_params(flat), build_tree(SMALL, "trained"),
      "mlp_per_param_grouping___init_scale", seed=0))
  assert result[name].sharding == sharding
  assert not np.array_equal(np.asarray(result[name]), np.asarray(flat[name]))


def test_flax_boxed_leaves_are_rebox():
  flax_linen = pytest.importorskip("flax.linen")
  flat = init_stats.flatten_params(build_tree(SMALL, "default"))
  name = "encoder/layers_0/attention/query/kernel"
  flat[name] = flax_linen.LogicallyPartitioned(flat[name], names=("embed", "joined_kv"))
  result = init_stats.flatten_params(init_stats.init_from_statistics(
      init_stats.unflatten_params(flat), build_tree(SMALL, "trained"),
      "qkvo_per_param_grouping___init_scale", seed=0))
  assert isinstance(result[name], flax_linen.LogicallyPartitioned)
  assert result[name].names == ("embed", "joined_kv")
  assert result[name].value.shape == SMALL[name]
  assert not np.array_equal(result[name].value, flat[name].value)


def test_mismatching_trees_name_the_parameters():
  target = build_tree(SMALL)
  source = init_stats.flatten_params(build_tree(SMALL, "trained"))
  del source["decoder/layers_1/mlp/wo/kernel"]
  source["encoder/layers_0/attention/key/kernel"] = np.zeros((3, 5), np.float32)
  with pytest.raises(ValueError) as err:
    init_stats.init_from_statistics(target, init_stats.unflatten_params(source),
                                    "per_param_grouping___init_scale")
  message = str(err.value)
  assert ("missing from statistics checkpoint: decoder/layers_1/mlp/wo/kernel (model shape "
          in message)
  assert ("shape differs: encoder/layers_0/attention/key/kernel: statistics checkpoint (3, 5) vs "
          "model (16, 16)" in message)
  assert "2 parameter(s)" in message
  # A deeper statistics checkpoint (3 encoder layers) does not silently pool extra layers.
  deeper = build_tree(t5_shapes(enc_layers=3), "trained")
  with pytest.raises(ValueError, match="unexpected in statistics checkpoint: encoder/layers_2/"):
    init_stats.init_from_statistics(target, deeper, "across_ALL_layer_grouping___init_scale")
  # Only grouped parameters must match: a different embedding is fine.
  source_ok = init_stats.flatten_params(build_tree(SMALL, "trained"))
  source_ok["token_embedder/embedding"] = np.zeros((5, 16), np.float32)
  init_stats.init_from_statistics(target, init_stats.unflatten_params(source_ok),
                                  "per_param_grouping___init_scale")


def test_non_finite_statistics_rejected():
  source = init_stats.flatten_params(build_tree(SMALL, "trained"))
  source["encoder/layers_0/mlp/wi/kernel"][0, 0] = np.nan
  with pytest.raises(ValueError, match="non-finite statistics.*encoder/layers_0/mlp/wi/kernel"):
    init_stats.init_from_statistics(build_tree(SMALL), init_stats.unflatten_params(source),
                                    "mlp_per_param_grouping___init_scale")


def test_bad_seed():
  with pytest.raises(ValueError, match="seed must be a non-negative integer"):
    init_stats.init_from_statistics(build_tree(SMALL), build_tree(SMALL, "trained"),
                                    "mlp_per_param_grouping___init_scale", seed=-1)


# ------------------------------------------------------------------------------------------------
# Table 3.


@pytest.mark.parametrize("include_pre_mlp", [False, True])
def test_set_pre_attention_layer_norm(include_pre_mlp):
  target = build_tree(SMALL, "trained", seed=4)
  flat = init_stats.flatten_params(target)
  result = init_stats.flatten_params(
      init_stats.set_pre_attention_layer_norm(target, 0.4, include_pre_mlp=include_pre_mlp))
  changed = PRE_ATTN_LNS + (PRE_MLP_LNS if include_pre_mlp else [])
  assert len(PRE_ATTN_LNS) == 6
  for name in flat:
    if name in changed:
      assert result[name].dtype == np.float32
      np.testing.assert_array_equal(result[name], np.full(SMALL[name], np.float32(0.4)))
    else:
      assert result[name] is flat[name], name


def test_set_pre_attention_layer_norm_rejects_negative_and_nan():
  for bad in (-0.1, float("nan"), float("inf"), "abc"):
    with pytest.raises(ValueError, match="pre-attention layer-norm value"):
      init_stats.set_pre_attention_layer_norm(build_tree(SMALL), bad)
  zero = init_stats.flatten_params(init_stats.set_pre_attention_layer_norm(build_tree(SMALL), 0))
  np.testing.assert_array_equal(zero[PRE_ATTN_LNS[0]], np.zeros(16, np.float32))


def test_parse_custom_value_string():
  assert init_stats.parse_custom_value_string("pre_self_attn_ln-0.4---pre_cross_attn_ln-0.05") == {
      "pre_self_attn_ln": 0.4, "pre_cross_attn_ln": 0.05}
  assert init_stats.parse_custom_value_string("pre_mlp_ln-1") == {"pre_mlp_ln": 1.0}
  for bad, message in [("pre_self_attn_ln--0.4", "bad init_with_custom_value item"),
                       ("pre_self_attn_ln0.4", "bad init_with_custom_value item"),
                       ("pre_self_ln-0.4", "unknown key 'pre_self_ln'"),
                       ("pre_self_attn_ln-x", "expected a number"),
                       ("pre_self_attn_ln-1---pre_self_attn_ln-2", "given twice")]:
    with pytest.raises(ValueError, match=message):
      init_stats.parse_custom_value_string(bad)


def test_custom_value_string_matches_table3_function():
  tree = build_tree(SMALL, "default", seed=9)
  via_string = init_stats.apply_custom_values(
      tree, init_stats.parse_custom_value_string("pre_self_attn_ln-0.2---pre_cross_attn_ln-0.2"))
  direct = init_stats.set_pre_attention_layer_norm(tree, 0.2)
  a, b = init_stats.flatten_params(via_string), init_stats.flatten_params(direct)
  for name in a:
    np.testing.assert_array_equal(a[name], b[name])


# ------------------------------------------------------------------------------------------------
# The trainer's entry point.


def test_apply_initialisation_without_options_is_identity():
  tree = build_tree(SMALL)
  assert init_stats.apply_initialisation(tree) is tree


def test_apply_initialisation_from_npz_and_callable(tmp_path):
  target = build_tree(SMALL, "default", seed=1)
  source = build_tree(SMALL, "trained", seed=2)
  path = os.fspath(tmp_path / "stats.npz")
  init_stats.save_npz_params(path, source)
  init_id = "across_ALL_layer_grouping___init_scale"
  expected = init_stats.flatten_params(init_stats.init_from_statistics(target, source, init_id, 3))
  from_npz = init_stats.apply_initialisation(target, init_id=init_id, statistics_checkpoint=path,
                                             seed=3)
  calls = []
  from_fn = init_stats.apply_initialisation(
      target, init_id=init_id, statistics_checkpoint="some/ckpt", seed=3,
      load_params_fn=lambda p: calls.append(p) or {"target": source})
  assert calls == ["some/ckpt"]
  for result in (from_npz, from_fn):
    flat = init_stats.flatten_params(result)
    for name in expected:
      np.testing.assert_array_equal(flat[name], expected[name])


def test_apply_initialisation_combines_stats_then_constant():
  target, source = build_tree(SMALL, seed=1), build_tree(SMALL, "trained", seed=2)
  result = init_stats.flatten_params(init_stats.apply_initialisation(
      target, init_id="per_param_grouping___init_scale", statistics_checkpoint=source,
      pre_attn_ln_value=0.1))
  np.testing.assert_array_equal(result[PRE_ATTN_LNS[2]], np.full(16, np.float32(0.1)))
  pre_mlp = PRE_MLP_LNS[0]
  mu = np.mean(init_stats.flatten_params(source)[pre_mlp], dtype=np.float64)
  np.testing.assert_array_equal(result[pre_mlp], np.full(16, np.float32(mu)))


def test_apply_initialisation_errors():
  tree = build_tree(SMALL)
  with pytest.raises(ValueError, match="needs statistics_checkpoint"):
    init_stats.apply_initialisation(tree, init_id="per_param_grouping___init_scale")
  with pytest.raises(ValueError, match="without init_id"):
    init_stats.apply_initialisation(tree, statistics_checkpoint=tree)
  with pytest.raises(ValueError, match="include_pre_mlp=True needs pre_attn_ln_value"):
    init_stats.apply_initialisation(tree, include_pre_mlp=True)
  with pytest.raises(ValueError, match="unknown init_id"):
    init_stats.apply_initialisation(tree, init_id="nope", statistics_checkpoint=tree)


def test_apply_initialisation_is_gin_configurable():
  tree = build_tree(SMALL)
  gin.clear_config()
  try:
    gin.parse_config("apply_initialisation.pre_attn_ln_value = 0.6\n"
                     "apply_initialisation.include_pre_mlp = True")
    result = init_stats.flatten_params(init_stats.apply_initialisation(tree))
  finally:
    gin.clear_config()
  for name in PRE_ATTN_LNS + PRE_MLP_LNS:
    np.testing.assert_array_equal(result[name], np.full(16, np.float32(0.6)))
  np.testing.assert_array_equal(result["encoder/encoder_norm/scale"], np.ones(16, np.float32))


def test_npz_round_trip_and_errors(tmp_path):
  tree = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.bfloat16),
                                build_tree(SMALL, "trained"))
  path = os.fspath(tmp_path / "p.npz")
  init_stats.save_npz_params(path, tree)
  assert sorted(os.listdir(tmp_path)) == ["p.npz"]  # no temp file left
  loaded = init_stats.flatten_params(init_stats.load_param_tree(path))
  for name, value in init_stats.flatten_params(tree).items():
    assert loaded[name].dtype == np.float32
    np.testing.assert_array_equal(loaded[name], np.asarray(value).astype(np.float32))
  bad = tmp_path / "bad.npz"
  bad.write_text("not a zip")
  with pytest.raises(ValueError, match="bad.npz: cannot read"):
    init_stats.load_param_tree(os.fspath(bad))
  with pytest.raises(TypeError, match="expected a parameter tree, a callable or a path"):
    init_stats.load_param_tree(3)


# ------------------------------------------------------------------------------------------------
# On the real Flax model's parameter tree (skipped until synthetic_pretraining.model.t5 exists).


def test_real_tiny_model_tree():
  t5 = pytest.importorskip("synthetic_pretraining.model.t5")
  config = t5.get_config("tiny")
  params = t5.init_params(config, 0)
  source = t5.init_params(config, 1)
  flat = init_stats.flatten_params(params)
  # The builder above mirrors the real model's names and shapes.
  expected_shapes = t5_shapes(d=config.emb_dim, ff=config.mlp_dim, heads=config.num_heads,
                              vocab=config.vocab_size, inner=config.num_heads * config.head_dim)
  assert {n: tuple(v.shape) for n, v in flat.items()} == expected_shapes
  for init_id in init_stats.INIT_IDS:
    assert as_set(init_stats.groups_for(init_id, list(flat))) == as_set(EXPECTED_GROUPS[init_id])
  result = init_stats.flatten_params(init_stats.init_from_statistics(
      params, source, "per_layer_grouping___init_scale", seed=0))
  flat_source = init_stats.flatten_params(source)
  for name in flat:
    assert result[name].shape == flat[name].shape and result[name].dtype == flat[name].dtype
  assert result["token_embedder/embedding"] is flat["token_embedder/embedding"]
  ln_group = enc_lns(1)
  mu = np.mean(np.concatenate([np.asarray(flat_source[n], np.float64) for n in ln_group]))
  for name in ln_group:
    np.testing.assert_array_equal(np.asarray(result[name]),
                                  np.full(flat[name].shape, np.float32(mu)))


def test_real_model_boxed_variables_and_v11_names():
  t5 = pytest.importorskip("synthetic_pretraining.model.t5")
  flax_linen = pytest.importorskip("flax.linen")
  config = t5.get_config("tiny")
  boxed = t5.init_variables(config, 0)["params"]
  result = init_stats.init_from_statistics(boxed, t5.init_params(config, 1),
                                           "qkvo_per_param_grouping___init_scale", seed=0)
  flat_boxed, flat_result = init_stats.flatten_params(boxed), init_stats.flatten_params(result)
  name = "decoder/layers_1/encoder_decoder_attention/value/kernel"
  assert isinstance(flat_result[name], flax_linen.LogicallyPartitioned)
  assert flat_result[name].names == flat_boxed[name].names
  wo = "decoder/layers_1/mlp/wo/kernel"
  assert flat_result[wo] is flat_boxed[wo]
  # T5 v1.1 small: names and shapes only (no parameters computed).
  v11 = t5.get_config("t5_1_1_small")
  shapes = {n: tuple(v.shape) for n, v in init_stats.flatten_params(t5.params_shapes(v11)).items()}
  assert shapes == t5_shapes(d=v11.emb_dim, ff=v11.mlp_dim, heads=v11.num_heads,
                             vocab=v11.vocab_size, enc_layers=8, dec_layers=8, v11=True,
                             inner=v11.num_heads * v11.head_dim)
  groups = init_stats.groups_for("per_layer_grouping___init_scale", list(shapes))
  assert len(groups) == 2 * 8 + 2 * 8 + 4
  assert {n for g in groups for n in g} == set(shapes) - {"token_embedder/embedding",
                                                          "decoder/logits_dense/kernel"}


def test_apply_initialisation_from_project_checkpoint(tmp_path):
  t5 = pytest.importorskip("synthetic_pretraining.model.t5")
  checkpoints = pytest.importorskip("synthetic_pretraining.train.checkpoints")
  config = t5.get_config("tiny")
  source = t5.init_params(config, 1)
  checkpointer = checkpoints.Checkpointer(os.fspath(tmp_path / "run"), period=1)
  checkpointer.save(5, {"step": np.int32(5), "params": source})
  checkpointer.close()
  target = t5.init_params(config, 0)
  init_id = "across_ALL_layer_AND_per_layer_grouping___init_scale"
  # The default loader (the project's checkpoint reader) is used for a checkpoint directory.
  from_dir = init_stats.flatten_params(init_stats.apply_initialisation(
      target, init_id=init_id, statistics_checkpoint=os.fspath(tmp_path / "run"), seed=4))
  expected = init_stats.flatten_params(init_stats.init_from_statistics(target, source, init_id, 4))
  for name, value in expected.items():
    np.testing.assert_array_equal(np.asarray(from_dir[name]), np.asarray(value))
