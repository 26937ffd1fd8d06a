"""The Flax T5: T5X parameter names/shapes, parameter counts, logical axes, forward semantics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthetic_pretraining.model import t5


def t5x_expected_shapes(num_layers=6, d=512, heads=8, head_dim=64, mlp=2048, vocab=32128,
                        v1_1=False):
  """T5X's parameter tree for examples/t5/network.py, written out by hand from its layout."""
  kv = heads * head_dim
  wi = {"mlp/wi_0/kernel": (d, mlp), "mlp/wi_1/kernel": (d, mlp)} if v1_1 else {
      "mlp/wi/kernel": (d, mlp)}
  attention = lambda p: {f"{p}/query/kernel": (d, kv), f"{p}/key/kernel": (d, kv),
                         f"{p}/value/kernel": (d, kv), f"{p}/out/kernel": (kv, d)}
  shapes = {"token_embedder/embedding": (vocab, d),
            "encoder/relpos_bias/rel_embedding": (heads, 32),
            "decoder/relpos_bias/rel_embedding": (heads, 32),
            "encoder/encoder_norm/scale": (d,), "decoder/decoder_norm/scale": (d,)}
  for i in range(num_layers):
    enc = {**attention("attention"), **wi, "mlp/wo/kernel": (mlp, d),
           "pre_attention_layer_norm/scale": (d,), "pre_mlp_layer_norm/scale": (d,)}
    dec = {**attention("self_attention"), **attention("encoder_decoder_attention"), **wi,
           "mlp/wo/kernel": (mlp, d), "pre_self_attention_layer_norm/scale": (d,),
           "pre_cross_attention_layer_norm/scale": (d,), "pre_mlp_layer_norm/scale": (d,)}
    shapes.update({f"encoder/layers_{i}/{k}": v for k, v in enc.items()})
    shapes.update({f"decoder/layers_{i}/{k}": v for k, v in dec.items()})
  if v1_1:
    shapes["decoder/logits_dense/kernel"] = (d, vocab)
  return shapes


def flat_shapes(config):
  return {k: tuple(v.shape) for k, v in t5.flatten_names(t5.params_shapes(config)).items()}


def test_t5_small_matches_t5x_names_shapes_and_count():
  shapes = flat_shapes(t5.get_config("t5_small"))
  assert shapes == t5x_expected_shapes()
  assert len(shapes) == 131
  assert sum(int(np.prod(s)) for s in shapes.values()) == 60_506_624


def test_t5_1_1_small_matches_t5x():
  shapes = flat_shapes(t5.get_config("t5_1_1_small"))
  assert shapes == t5x_expected_shapes(num_layers=8, heads=6, mlp=1024, v1_1=True)
  assert t5.count_params(t5.params_shapes(t5.get_config("t5_1_1_small"))) == 76_961_152


def test_logical_axes_follow_t5x():
  axes = t5.flatten_names(t5.params_logical_axes(t5.get_config("tiny")))
  assert tuple(axes["token_embedder/embedding"]) == ("vocab", "embed")
  assert tuple(axes["encoder/layers_0/attention/query/kernel"]) == ("embed", "joined_kv")
  assert tuple(axes["decoder/layers_1/encoder_decoder_attention/out/kernel"]) == (
      "joined_kv", "embed")
  assert tuple(axes["encoder/layers_0/mlp/wi/kernel"]) == ("embed", "mlp")
  assert tuple(axes["decoder/layers_0/mlp/wo/kernel"]) == ("mlp", "embed")
  assert tuple(axes["encoder/relpos_bias/rel_embedding"]) == ("heads", "relpos_buckets")
  assert tuple(axes["decoder/decoder_norm/scale"]) == ("embed",)


def test_default_initialisers_have_t5x_statistics():
  config = t5.get_config("t5_small")
  params = t5.flatten_names(t5.init_params(config, 0))
  emb = np.asarray(params["token_embedder/embedding"])
  assert abs(emb.std() - 1.0) < 0.01  # N(0, 1)
  query = np.asarray(params["encoder/layers_0/attention/query/kernel"])
  key = np.asarray(params["encoder/layers_0/attention/key/kernel"])
  assert abs(key.std() - 512 ** -0.5) < 2e-3  # variance scaling, fan_in
  assert abs(query.std() - 512 ** -0.5 / 8) < 3e-4  # … divided by sqrt(head_dim)
  wi = np.asarray(params["encoder/layers_0/mlp/wi/kernel"])
  assert abs(wi.std() - 512 ** -0.5) < 2e-3
  assert np.all(np.asarray(params["encoder/layers_0/pre_mlp_layer_norm/scale"]) == 1.0)
  assert all(v.dtype == jnp.float32 for v in params.values())


def test_relative_position_buckets():
  rel = np.arange(-200, 201)[None, :]
  bi = t5.relative_position_bucket(rel, True, 32, 128)[0]
  causal = t5.relative_position_bucket(rel, False, 32, 128)[0]
  # Exact buckets for small distances; the two directions use separate halves when bidirectional.
  assert bi[200] == 0 and bi[201] == 17 and bi[199] == 1
  assert set(bi[rel[0] > 0]) <= set(range(16, 32)) and set(bi[rel[0] < 0]) <= set(range(1, 16))
  assert causal[rel[0] >= 0].max() == 0  # future keys all fall in bucket 0
  assert causal[0] == 31 and bi[0] == 15  # far distances saturate at the last bucket


def _batch(rng, b=2, length=7, vocab=300):
  enc = rng.integers(2, vocab, (b, length)).astype(np.int32)
  enc[1, 5:] = 0
  dec_t = rng.integers(2, vocab, (b, length)).astype(np.int32)
  dec_t[0, 4:] = 0
  dec_in = np.concatenate([np.zeros((b, 1), np.int32), dec_t[:, :-1]], 1)
  return enc, dec_in, dec_t


def test_decoder_is_causal_and_padding_is_ignored():
  config = t5.get_config("tiny")
  model = t5.Transformer(config)
  params = t5.init_params(config, 1)
  enc, dec_in, dec_t = _batch(np.random.default_rng(0))
  logits = model.apply({"params": params}, enc, dec_in, dec_t)
  assert logits.shape == (2, 7, config.vocab_size)
  # Changing a later decoder input does not change earlier (non-pad) positions' logits.
  real = dec_t > 0
  dec_in2 = dec_in.copy()
  dec_in2[:, 5] = 7
  logits2 = np.asarray(model.apply({"params": params}, enc, dec_in2, dec_t))
  np.testing.assert_allclose(logits[:, :5][real[:, :5]], logits2[:, :5][real[:, :5]], atol=1e-6)
  assert not np.allclose(logits[1, 5:], logits2[1, 5:])
  # What sits in the encoder's padded positions does not matter once it is masked: emulate by
  # comparing a padded row with the same row truncated to its real length.
  short = model.apply({"params": params}, enc[1:, :5], dec_in[1:], dec_t[1:])
  np.testing.assert_allclose(logits[1:], short, atol=2e-5)


def test_tied_logits_are_scaled_embedding_products():
  config = t5.get_config("tiny")
  model = t5.Transformer(config)
  params = t5.init_params(config, 2)
  enc, dec_in, dec_t = _batch(np.random.default_rng(1))
  logits, inter = model.apply({"params": params}, enc, dec_in, dec_t,
                              capture_intermediates=lambda mdl, _: isinstance(mdl, t5.LayerNorm))
  final_norm = inter["intermediates"]["decoder"]["decoder_norm"]["__call__"][0]
  expected = final_norm @ params["token_embedder"]["embedding"].T / np.sqrt(config.emb_dim)
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_dropout_changes_outputs_only_when_not_deterministic():
  config = t5.get_config("tiny", dropout_rate=0.3)
  model = t5.Transformer(config)
  params = t5.init_params(config, 3)
  enc, dec_in, dec_t = _batch(np.random.default_rng(2))
  det = model.apply({"params": params}, enc, dec_in, dec_t)
  np.testing.assert_array_equal(det, model.apply({"params": params}, enc, dec_in, dec_t))
  rngs = lambda s: {"dropout": jax.random.PRNGKey(s)}
  a = model.apply({"params": params}, enc, dec_in, dec_t, deterministic=False, rngs=rngs(0))
  b = model.apply({"params": params}, enc, dec_in, dec_t, deterministic=False, rngs=rngs(0))
  c = model.apply({"params": params}, enc, dec_in, dec_t, deterministic=False, rngs=rngs(1))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, det) and not np.allclose(a, c)


# bfloat16 activations: tests/model/test_precision.py (tests that fail if the dtype is ignored).


def test_bad_config_is_rejected():
  with pytest.raises(ValueError, match="unknown model preset 'small'"):
    t5.get_config("small")
  with pytest.raises(ValueError, match="dropout_rate"):
    t5.get_config("tiny", dropout_rate=1.5)
