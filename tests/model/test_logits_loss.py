"""The fused output layer + cross-entropy (`model.logits_loss`) against plain autodiff.

Reference: `optim.cross_entropy_loss` on `t5.output_logits` (the unfused path) differentiated by
jax. The fused version must give the same total, z-loss, correct count and gradients (float32,
1e-5), chunked or not, tied or untied, with label smoothing; the train step with it must match the
unfused step; and its compiled step must hold at most one float32 [batch × length × vocab] array's
worth of memory where the unfused step holds several (measured by XLA's memory analysis as the
growth of the step's temporary memory with the vocabulary size).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthetic_pretraining.model import logits_loss
from synthetic_pretraining.model import t5
from synthetic_pretraining.train import optim
from synthetic_pretraining.train import partitioning
from synthetic_pretraining.train import trainer as trainer_lib

TOL = 1e-5


def inputs(config, b=3, length=10, seed=0):
  rng = np.random.default_rng(seed)
  hidden = jnp.asarray(rng.normal(size=(b, length, config.emb_dim)), jnp.float32)
  kernel_shape = ((config.vocab_size, config.emb_dim) if config.logits_via_embedding
                  else (config.emb_dim, config.vocab_size))
  kernel = jnp.asarray(rng.normal(size=kernel_shape) * 0.3, jnp.float32)
  targets = rng.integers(2, config.vocab_size, (b, length)).astype(np.int32)
  targets[0, 6:] = 0
  weights = (targets > 0).astype(np.float32)
  weights[1, 3] = 0.5  # non-binary weights too
  return hidden, kernel, jnp.asarray(targets), jnp.asarray(weights)


def reference(hidden, kernel, targets, weights, config, z_loss, label_smoothing):
  def total(h, k):
    logits = t5.output_logits(h, k, config)
    loss, z, _ = optim.cross_entropy_loss(logits, targets, weights, z_loss=z_loss,
                                          label_smoothing=label_smoothing)
    correct = jnp.sum((jnp.argmax(logits, -1) == targets) * weights)
    return loss, (z, correct)

  (loss, (z, correct)), grads = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
      hidden, kernel)
  return loss, z, correct, grads


CONFIGS = {"tied": t5.get_config("tiny"),
           "untied": t5.get_config("tiny", logits_via_embedding=False,
                                   mlp_activations=("gelu", "linear"))}


@pytest.mark.parametrize("name,chunk_length,label_smoothing", [
    ("tied", None, 0.0), ("tied", 4, 0.1),  # 4: the 10 positions padded to 12
    ("untied", 5, 0.1), ("untied", 64, 0.0)])
def test_fused_loss_and_gradients_match_autodiff(name, chunk_length, label_smoothing):
  config = CONFIGS[name]
  hidden, kernel, targets, weights = inputs(config)
  want = reference(hidden, kernel, targets, weights, config, 1e-4, label_smoothing)

  def fused(h, k):
    loss, z, correct = logits_loss.output_cross_entropy(
        h, k, targets, weights, config, z_loss=1e-4, label_smoothing=label_smoothing,
        chunk_length=chunk_length)
    return loss, (z, correct)

  (loss, (z, correct)), grads = jax.jit(
      jax.value_and_grad(fused, argnums=(0, 1), has_aux=True))(hidden, kernel)
  assert float(loss) == pytest.approx(float(want[0]), rel=TOL)
  assert float(z) == pytest.approx(float(want[1]), rel=TOL)
  assert float(correct) == float(want[2])
  for got, ref in zip(grads, want[3]):
    np.testing.assert_allclose(got, ref, rtol=TOL, atol=TOL)
  # Without differentiation (the eval step) the same values come out.
  plain = logits_loss.output_cross_entropy(hidden, kernel, targets, weights, config, z_loss=1e-4,
                                           label_smoothing=label_smoothing,
                                           chunk_length=chunk_length)
  np.testing.assert_allclose([float(x) for x in plain], [float(loss), float(z), float(correct)],
                             rtol=TOL)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_chunk_length_is_rejected(bad):
  config = CONFIGS["tied"]
  with pytest.raises(ValueError, match="LossConfig.chunk_length must be a positive integer"):
    logits_loss.output_cross_entropy(*inputs(config), config, chunk_length=bad)


def _trainer(config, **loss):
  mesh = partitioning.create_mesh(1, jax.devices()[:1])
  return trainer_lib.Trainer(config, optim.adafactor(optim.learning_rate_schedule("constant", 0.01)),
                             mesh, seed=0, loss_config=trainer_lib.LossConfig(**loss))


def _batch(vocab, b=4, length=16, seed=0):
  rng = np.random.default_rng(seed)
  enc = rng.integers(2, vocab, (b, length)).astype(np.int32)
  tgt = rng.integers(2, vocab, (b, length)).astype(np.int32)
  tgt[1, 11:] = 0
  din = np.concatenate([np.zeros((b, 1), np.int32), tgt[:, :-1]], 1)
  return {"encoder_input_tokens": enc, "decoder_input_tokens": din, "decoder_target_tokens": tgt}


def test_train_step_fused_equals_unfused():
  config = t5.get_config("tiny", dropout_rate=0.1,  # dropout: the same masks in both
                         num_encoder_layers=1, num_decoder_layers=1)
  batch = _batch(config.vocab_size)
  out = {}
  for fused in (False, True):
    trainer = _trainer(config, fused_output=fused, chunk_length=8, label_smoothing=0.1)
    state, metrics = trainer.train_step(trainer.create_state(), trainer.shard_batch(batch))
    out[fused] = (jax.device_get(metrics), t5.flatten_names(jax.device_get(state.params)))
    eval_metrics = jax.device_get(trainer.eval_step(state.params, trainer.shard_batch(batch)))
    out[fused] += (eval_metrics,)
  for key in ("loss", "z_loss", "correct", "num_tokens"):
    assert float(out[True][0][key]) == pytest.approx(float(out[False][0][key]), rel=TOL)
    assert float(out[True][2][key]) == pytest.approx(float(out[False][2][key]), rel=TOL)
  for name, value in out[False][1].items():
    np.testing.assert_allclose(out[True][1][name], value, rtol=TOL, atol=TOL, err_msg=name)


def _temp_bytes(config, batch_size, length, **loss):
  trainer = _trainer(config, **loss)
  state = trainer.create_state()
  batch = trainer.shard_batch(_batch(config.vocab_size, batch_size, length))
  with jax.set_mesh(trainer.mesh):
    compiled = trainer._train_step.lower(state, batch).compile()  # pylint: disable=protected-access
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_step_memory_holds_at_most_one_float32_logits_array(dtype):
  """Temporary memory grows with the vocabulary by ≤ 1 float32 [B×L×V] (fused, 4 chunks).

  The slope d(temp)/d(vocab) in units of B × L × 4 bytes counts the logits-sized float32 arrays
  alive at the step's peak (vocab-sized parameter buffers add only embed/(B·L) per array).
  The unfused step (plain autodiff of the logits and the loss) shows more than two.
  """
  b, length, v1, v2 = 8, 128, 4096, 8192
  unit = b * length * 4 * (v2 - v1)

  def slope(**loss):
    config = t5.get_config("tiny", dtype=dtype, num_encoder_layers=1, num_decoder_layers=1)
    small = _temp_bytes(dataclasses.replace(config, vocab_size=v1), b, length, **loss)
    large = _temp_bytes(dataclasses.replace(config, vocab_size=v2), b, length, **loss)
    return (large - small) / unit

  fused = slope(fused_output=True, chunk_length=length // 4)
  unfused = slope(fused_output=False)
  assert fused <= 1.0, fused
  assert unfused > 2.0, unfused


def test_bfloat16_output_logits_option():
  """float32_logits=False: the logits matmul returns bf16 (T5X's tied layer), the loss is f32."""
  config = t5.get_config("tiny", dtype="bfloat16")
  hidden, kernel, targets, weights = inputs(config)
  hidden = hidden.astype(jnp.bfloat16)

  def reference_loss(h, k):
    logits = t5.output_logits(h, k, config, jnp.bfloat16).astype(jnp.float32)
    return optim.cross_entropy_loss(logits, targets, weights, z_loss=1e-4)[0]

  def fused(h, k, f32):
    return logits_loss.output_cross_entropy(h, k, targets, weights, config, z_loss=1e-4,
                                            chunk_length=4, float32_logits=f32)[0]

  want, want_grads = jax.value_and_grad(reference_loss, argnums=(0, 1))(hidden, kernel)
  got, grads = jax.value_and_grad(fused, argnums=(0, 1))(hidden, kernel, False)
  assert float(got) == pytest.approx(float(want), rel=TOL)
  for g, w in zip(grads, want_grads):
    np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), rtol=2e-2,
                               atol=2e-2)
  assert float(fused(hidden, kernel, True)) != float(got)  # the option changes the logits
