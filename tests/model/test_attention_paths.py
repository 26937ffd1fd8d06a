"""The fused attention paths (jax.nn.dot_product_attention) against the einsum path (float32, CPU).

Reference: today's einsum attention (T5X's layer: relative position bias and the mask added as one
bias). The 'xla' path must give the same logits, loss and gradient of every parameter (incl.
`relpos_bias`) to 1e-5, on unpacked (padded) and packed (segment ids) batches. The 'cudnn' path
cannot run on CPU; its call is checked by recording what it passes to jax.nn.dot_product_attention
(a batch-1 bias, no mask, sequence lengths, is_causal, scale 1.0) and by running exactly those
arguments through the XLA implementation, which must again match the einsum path.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthetic_pretraining.model import t5
from synthetic_pretraining.train import optim

TOL = 1e-5


def unpacked_batch(rng, vocab, b=3, length=12):
  enc = rng.integers(2, vocab, (b, length)).astype(np.int32)
  enc[1, 7:] = 0  # suffix padding, as the feature converters produce
  dec_t = rng.integers(2, vocab, (b, length)).astype(np.int32)
  dec_t[0, 5:] = 0
  dec_t[2, 9:] = 0
  dec_in = np.concatenate([np.zeros((b, 1), np.int32), dec_t[:, :-1]], 1)
  return {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in,
          "decoder_target_tokens": dec_t}


def packed_batch(rng, vocab, b=2, length=12):
  """Two or three examples per row (segment ids 1, 2, …; 0 on the padding)."""
  out = {k: np.zeros((b, length), np.int32) for k in (
      "encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
      "encoder_segment_ids", "decoder_segment_ids")}
  for row, (enc_lens, dec_lens) in enumerate([((4, 5), (3, 6)), ((3, 3, 4), (5, 2, 2))]):
    for prefix, lens in (("encoder", enc_lens), ("decoder", dec_lens)):
      start = 0
      for seg, n in enumerate(lens, 1):
        tokens = rng.integers(2, vocab, n).astype(np.int32)
        out[f"{prefix}_segment_ids"][row, start:start + n] = seg
        if prefix == "encoder":
          out["encoder_input_tokens"][row, start:start + n] = tokens
        else:
          out["decoder_target_tokens"][row, start:start + n] = tokens
          out["decoder_input_tokens"][row, start + 1:start + n] = tokens[:-1]  # 0 starts each
        start += n
  return out


def logits_loss_grads(config, params, batch):
  model = t5.Transformer(config)
  weights = (batch["decoder_target_tokens"] > 0).astype(np.float32)

  def loss_fn(p):
    logits = model.apply({"params": p}, batch["encoder_input_tokens"],
                         batch["decoder_input_tokens"], batch["decoder_target_tokens"],
                         batch.get("encoder_segment_ids"), batch.get("decoder_segment_ids"))
    loss = optim.cross_entropy_loss(logits, batch["decoder_target_tokens"], weights,
                                    z_loss=1e-4)[0]
    return loss, logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  return np.asarray(logits), float(loss), t5.flatten_names(grads)


def assert_same(got, want, real):
  logits, loss, grads = got
  ref_logits, ref_loss, ref_grads = want
  np.testing.assert_allclose(logits[real], ref_logits[real], atol=TOL, rtol=TOL)
  assert loss == pytest.approx(ref_loss, rel=TOL)
  assert set(grads) == set(ref_grads)
  for name in ref_grads:
    np.testing.assert_allclose(grads[name], ref_grads[name], atol=TOL, rtol=TOL, err_msg=name)
  # The relative position tables get a real gradient (the check above is not 0 == 0).
  for stack in ("encoder", "decoder"):
    assert np.abs(ref_grads[f"{stack}/relpos_bias/rel_embedding"]).max() > 1e-3


@pytest.fixture(scope="module")
def tiny():
  config = t5.get_config("tiny")
  return config, t5.init_params(config, 0)


@pytest.mark.parametrize("make_batch", [unpacked_batch, packed_batch])
def test_xla_path_matches_einsum(tiny, make_batch):
  config, params = tiny
  batch = make_batch(np.random.default_rng(0), config.vocab_size)
  want = logits_loss_grads(config, params, batch)
  got = logits_loss_grads(dataclasses.replace(config, attention_impl="xla"), params, batch)
  real = batch["decoder_target_tokens"] > 0
  # All positions, padding too: the XLA path gets the very same mask.
  np.testing.assert_allclose(got[0], want[0], atol=TOL, rtol=TOL)
  assert_same(got, want, real)


def test_cudnn_call_arguments_give_the_einsum_result(tiny, monkeypatch):
  """The cuDNN path's arguments (recorded on CPU) mean the same attention as the einsum mask."""
  config, params = tiny
  calls = []
  original = jax.nn.dot_product_attention

  def recording(query, key, value, bias=None, mask=None, *, scale=None, is_causal=False,
                query_seq_lengths=None, key_value_seq_lengths=None, implementation=None,
                **kwargs):
    calls.append(dict(bias_shape=None if bias is None else bias.shape, mask=mask, scale=scale,
                      is_causal=is_causal, implementation=implementation,
                      heads=query.shape[2], q=query.shape[1], k=key.shape[1],
                      bias_dtype=None if bias is None else bias.dtype, q_dtype=query.dtype))
    return original(query, key, value, bias, mask, scale=scale, is_causal=is_causal,
                    query_seq_lengths=query_seq_lengths,
                    key_value_seq_lengths=key_value_seq_lengths, implementation="xla", **kwargs)

  monkeypatch.setattr(jax.nn, "dot_product_attention", recording)
  batch = unpacked_batch(np.random.default_rng(1), config.vocab_size)
  # cuDNN needs bf16/fp16 activations; the dtype check is the config's, so bypass it here to
  # compare in float32 (the recorded call is what cuDNN would get).
  cudnn = dataclasses.replace(config, dtype="bfloat16", attention_impl="cudnn")
  object.__setattr__(cudnn, "dtype", "float32")
  got = logits_loss_grads(cudnn, params, batch)
  heads = config.num_heads
  layers = config.num_encoder_layers + 2 * config.num_decoder_layers
  assert len(calls) == layers
  for call in calls:
    assert call["implementation"] == "cudnn" and call["scale"] == 1.0 and call["mask"] is None
  enc_calls = calls[:config.num_encoder_layers]
  dec_calls = calls[config.num_encoder_layers:]
  self_calls, cross_calls = dec_calls[0::2], dec_calls[1::2]
  for call in enc_calls + self_calls:  # relative position bias: batch 1, all heads
    assert call["bias_shape"] == (1, heads, call["q"], call["k"])
    assert call["bias_dtype"] == call["q_dtype"]
  assert all(c["is_causal"] for c in self_calls)
  assert not any(c["is_causal"] for c in enc_calls + cross_calls)
  assert all(c["bias_shape"] is None for c in cross_calls)
  want = logits_loss_grads(config, params, batch)
  assert_same(got, want, batch["decoder_target_tokens"] > 0)


def test_cudnn_path_sends_packed_batches_to_xla(tiny, monkeypatch):
  config, params = tiny
  seen = []
  original = jax.nn.dot_product_attention

  def recording(*args, implementation=None, **kwargs):
    seen.append(implementation)
    return original(*args, implementation="xla", **kwargs)

  monkeypatch.setattr(jax.nn, "dot_product_attention", recording)
  cudnn = dataclasses.replace(config, dtype="bfloat16", attention_impl="cudnn")
  batch = packed_batch(np.random.default_rng(2), config.vocab_size)
  t5.Transformer(cudnn).apply({"params": params}, batch["encoder_input_tokens"],
                              batch["decoder_input_tokens"], batch["decoder_target_tokens"],
                              batch["encoder_segment_ids"], batch["decoder_segment_ids"])
  assert seen and set(seen) == {"xla"}


def test_fused_paths_keep_decoding_on_einsum(tiny):
  """Incremental decoding (cache) gives the teacher-forced logits of the 'xla' model."""
  from synthetic_pretraining.train import decoding  # pylint: disable=import-outside-toplevel
  config, params = tiny
  xla = dataclasses.replace(config, attention_impl="xla")
  enc = np.random.default_rng(3).integers(2, config.vocab_size, (2, 6)).astype(np.int32)
  tokens = np.asarray(decoding.greedy_decode(t5.Transformer(xla), params, enc,
                                             max_decode_length=5))
  dec_in = np.concatenate([np.zeros((2, 1), np.int32), tokens[:, :-1]], 1)
  logits = t5.Transformer(config).apply({"params": params}, enc, dec_in, tokens)
  # Greedy: every decoded token is the argmax of the einsum model's teacher-forced logits.
  real = tokens > 0
  np.testing.assert_array_equal(np.asarray(jnp.argmax(logits, -1))[real], tokens[real])


@pytest.mark.parametrize("overrides,message", [
    (dict(attention_impl="flash"), "attention_impl must be one of"),
    (dict(attention_impl="xla", dropout_rate=0.1), "set attention_dropout_rate=0.0"),
    (dict(attention_impl="cudnn", dropout_rate=0.0), "needs dtype 'bfloat16' or 'float16'"),
    (dict(attention_dropout_rate=1.0), "attention_dropout_rate must be None or in"),
])
def test_bad_attention_settings_are_rejected(overrides, message):
  with pytest.raises(ValueError, match=message):
    t5.get_config("tiny", **overrides)


def test_attention_dropout_rate_overrides_dropout_rate():
  config = t5.get_config("tiny", dropout_rate=0.1, attention_dropout_rate=0.0,
                         attention_impl="xla", dtype="bfloat16")
  assert config.attention_dropout == 0.0 and config.dropout_rate == 0.1
  assert t5.get_config("tiny", dropout_rate=0.2).attention_dropout == 0.2
