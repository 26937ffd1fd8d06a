"""bfloat16 activations with float32 parameters: tests that fail if the dtype setting is ignored.

Reference: the same model in float32. With `dtype='bfloat16'` the lowered train step must compute
most of its matmuls in bfloat16 (their dot_general results are bf16; the float32 ones are the
attention logits, the relative-position one-hot contractions and the output logits), the float32
model none; one bf16 step must differ from the float32 step (else the setting did nothing) while
staying within the stated tolerances; parameters and Adafactor state stay float32.
"""

import jax
import numpy as np
import pytest

from synthetic_pretraining import gpu_check
from synthetic_pretraining.model import t5
from synthetic_pretraining.train import optim
from synthetic_pretraining.train import partitioning
from synthetic_pretraining.train import trainer as trainer_lib

# Stated tolerances of one bf16 step against float32 (tiny model, random tokens).
LOSS_RTOL = 2e-3
LOGITS_ATOL = 0.1
PARAMS_RTOL = 2e-2


def _trainer(dtype, impl="einsum"):
  config = t5.get_config("tiny", dtype=dtype, attention_impl=impl)
  mesh = partitioning.create_mesh(1, jax.devices()[:1])
  return trainer_lib.Trainer(config, optim.adafactor(optim.learning_rate_schedule("constant", 0.01)),
                             mesh)


def _batch(vocab, b=4, length=16):
  t = np.random.default_rng(0).integers(2, vocab, (b, length)).astype(np.int32)
  return {"encoder_input_tokens": t, "decoder_input_tokens": np.roll(t, 1, 1),
          "decoder_target_tokens": t}


@pytest.mark.parametrize("impl", ["einsum", "xla"])
def test_lowered_train_step_matmuls_follow_the_dtype(impl):
  counts = {}
  for dtype in ("bfloat16", "float32"):
    trainer = _trainer(dtype, impl)
    state = trainer.create_state()
    batch = trainer.shard_batch(_batch(trainer.config.vocab_size))
    with jax.set_mesh(trainer.mesh):
      text = trainer._train_step.lower(state, batch).as_text()  # pylint: disable=protected-access
    counts[dtype] = gpu_check.dot_general_dtypes(text)
  bf16, fp32 = counts["bfloat16"], counts["float32"]
  total = sum(fp32.values())
  assert sum(bf16.values()) == total > 100
  assert fp32 == {"f32": total}  # no bf16 matmul in the float32 model
  # 2 + 2·2 attention layers × (QKᵀ forward + 2 gradients) = 18 float32 attention-logit matmuls,
  # 2 one-hot relpos contractions × (forward + gradient) = 4, output logits × 3 = 3.
  assert bf16.get("f32") == 25, bf16
  assert bf16.get("bf16") == total - 25 and bf16["bf16"] / total > 0.8


def test_bfloat16_step_differs_from_float32_within_tolerance():
  out = {}
  for dtype in ("float32", "bfloat16"):
    trainer = _trainer(dtype)
    state = trainer.create_state()
    batch = trainer.shard_batch(_batch(trainer.config.vocab_size))
    logits = np.asarray(trainer.logits(state.params, batch))
    new_state, metrics = trainer.train_step(state, batch)
    out[dtype] = (float(metrics["loss"]), logits, t5.flatten_names(jax.device_get(new_state.params)),
                  jax.tree.leaves(jax.device_get(new_state.opt_state)))
  (loss32, logits32, params32, _), (loss16, logits16, params16, opt16) = (
      out["float32"], out["bfloat16"])
  assert logits16.dtype == np.float32
  # The dtype setting is honoured: the bf16 computation is not the float32 one …
  assert loss16 != loss32
  assert np.abs(logits16 - logits32).max() > 1e-3
  # … and stays close to it.
  assert abs(loss16 - loss32) <= LOSS_RTOL * abs(loss32)
  np.testing.assert_allclose(logits16, logits32, atol=LOGITS_ATOL)
  for name, p32 in params32.items():
    assert params16[name].dtype == np.float32, name
    assert np.linalg.norm(params16[name] - p32) <= PARAMS_RTOL * np.linalg.norm(p32), name
  assert all(x.dtype in (np.float32, np.int32) for x in opt16)  # Adafactor state: float32


def test_embedding_gradient_accumulates_in_float32():
  """The token embedding's gradient (a scatter-add over every token) is summed in float32."""
  trainer = _trainer("bfloat16")
  params = trainer.init_params()
  batch = _batch(trainer.config.vocab_size)

  def loss(p):
    return trainer._model_loss(p, batch, deterministic=True)[0]  # pylint: disable=protected-access

  text = str(jax.make_jaxpr(jax.grad(loss))(params))
  table = f"[{trainer.config.vocab_size},{trainer.config.emb_dim}]"
  adds = [line.strip() for line in text.splitlines() if "scatter-add" in line and table in line]
  assert adds and all(f"f32{table}" in line for line in adds), adds
  assert not any(f"bf16{table}" in line for line in adds), adds
