"""The output layer and the token cross-entropy as one step, without a [batch, length, vocab] residual.

`output_cross_entropy(hidden, kernel, targets, weights, config)` gives what
`optim.cross_entropy_loss(t5.output_logits(hidden, kernel, config), …)` gives (the summed loss
with z-loss and label smoothing, the z-loss part) plus the count of correctly predicted weighted
tokens, with float32 logits, log-sum-exp and loss. Its gradient is computed in the forward pass:
the loss is a sum, so d loss / d logits does not depend on the cotangent except by a factor, and
the two gradient matmuls (to the hidden states and to the kernel) run right after the logits of
each chunk. The backward pass then only scales those results; no logits-sized array lives from the
forward to the backward pass. The float32 logits of one chunk of positions (`chunk_length`, all
by default) are the only float32 [batch × length × vocab]-sized array in the step; their gradient
is cast to the activation dtype for the two matmuls, as autodiff of an activation-dtype layer does.

Only `total` is differentiable: the z-loss part and the correct count are metrics (their
cotangents are ignored).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from synthetic_pretraining.model import t5

Array = jax.Array


def token_terms(logits: Array, targets: Array, z_loss: float,
                label_smoothing: float) -> tuple[Array, Array]:
  """(token loss, token z-loss) of float32 logits, as `optim.cross_entropy_loss` defines them.

  The target logit is picked by comparing against an iota (no gather, so its gradient is an
  elementwise select that fuses, not a scatter into a zero logits-sized array).
  """
  vocab = logits.shape[-1]
  log_z = jax.nn.logsumexp(logits, axis=-1)
  is_target = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1) == (
      targets[..., None].astype(jnp.int32))
  target_logit = jnp.sum(jnp.where(is_target, logits, 0.0), axis=-1)
  token_loss = log_z - target_logit
  if label_smoothing:
    confidence = 1.0 - label_smoothing
    low = label_smoothing / (vocab - 1)
    normalizing = -(confidence * np.log(confidence) + (vocab - 1) * low * np.log(low + 1e-20))
    mean_log_prob = jnp.mean(logits, axis=-1) - log_z
    token_loss = ((confidence - low) * token_loss - low * vocab * mean_log_prob) - normalizing
  return token_loss, z_loss * jnp.square(log_z)


def _logits(hidden, kernel, config, float32_logits):
  dtype = jnp.float32 if float32_logits else hidden.dtype
  return t5.output_logits(hidden, kernel, config, dtype).astype(jnp.float32)


def _chunk_sums(hidden, kernel, targets, weights, config, z_loss, label_smoothing,
                float32_logits):
  """(loss sum, z-loss sum, correct count) of one chunk of positions."""
  logits = _logits(hidden, kernel, config, float32_logits)
  token_loss, token_z = token_terms(logits, targets, z_loss, label_smoothing)
  correct = jnp.sum((jnp.argmax(logits, -1) == targets) * weights)
  return jnp.sum((token_loss + token_z) * weights), jnp.sum(token_z * weights), correct


def _chunk_sums_and_grads(hidden, kernel, targets, weights, config, z_loss, label_smoothing,
                          float32_logits):
  """Sums of one chunk and d(loss sum)/d hidden (hidden's dtype), d/d kernel (float32)."""

  def loss_of_logits(logits):
    token_loss, token_z = token_terms(logits, targets, z_loss, label_smoothing)
    return jnp.sum((token_loss + token_z) * weights), (jnp.sum(token_z * weights), logits)

  logits = _logits(hidden, kernel, config, float32_logits)
  (total, (z_total, _)), d_logits = jax.value_and_grad(loss_of_logits, has_aux=True)(logits)
  correct = jnp.sum((jnp.argmax(logits, -1) == targets) * weights)
  # The cotangent reaches the matmul in the activation dtype, as autodiff of the bf16 layer
  # would deliver it; the kernel gradient accumulates in float32.
  d_hidden, d_kernel = _matmul_grads(d_logits, hidden, kernel, config)
  return (total, z_total, correct), (d_hidden, d_kernel)


def _matmul_grads(d_logits, hidden, kernel, config):
  """Gradients of `output_logits` by hand: activation-dtype operands, float32 accumulation."""
  if config.logits_via_embedding:
    d_logits = d_logits / np.float32(np.sqrt(hidden.shape[-1]))
  d_logits = d_logits.astype(hidden.dtype)
  k = jnp.asarray(kernel, hidden.dtype)
  batch_dims = tuple(range(hidden.ndim - 1))
  if config.logits_via_embedding:  # kernel [vocab, embed]
    d_hidden = jax.lax.dot_general(d_logits, k, (((hidden.ndim - 1,), (0,)), ((), ())),
                                   preferred_element_type=jnp.float32)
    d_kernel = jax.lax.dot_general(d_logits, hidden, ((batch_dims, batch_dims), ((), ())),
                                   preferred_element_type=jnp.float32)
  else:  # kernel [embed, vocab]
    d_hidden = jax.lax.dot_general(d_logits, k, (((hidden.ndim - 1,), (1,)), ((), ())),
                                   preferred_element_type=jnp.float32)
    d_kernel = jax.lax.dot_general(hidden, d_logits, ((batch_dims, batch_dims), ((), ())),
                                   preferred_element_type=jnp.float32)
  return d_hidden.astype(hidden.dtype), d_kernel


def _chunks(x: Array, chunk_length: int) -> Array:
  """[batch, length, …] → [length / chunk_length, batch, chunk_length, …]."""
  b, length = x.shape[:2]
  x = x.reshape((b, length // chunk_length, chunk_length) + x.shape[2:])
  return jnp.moveaxis(x, 1, 0)


def _unchunk(x: Array) -> Array:
  x = jnp.moveaxis(x, 0, 1)
  return x.reshape((x.shape[0], x.shape[1] * x.shape[2]) + x.shape[3:])


@functools.lru_cache(maxsize=None)
def _build(config: t5.T5Config, z_loss: float, label_smoothing: float, chunk_length: int,
           float32_logits: bool):
  """The custom-VJP function for these static settings (chunk_length 0: one chunk)."""
  statics = dict(config=config, z_loss=z_loss, label_smoothing=label_smoothing,
                 float32_logits=float32_logits)
  sums = functools.partial(_chunk_sums, **statics)
  sums_and_grads = functools.partial(_chunk_sums_and_grads, **statics)

  def forward(hidden, kernel, targets, weights, with_grads):
    if not chunk_length:
      return (sums_and_grads if with_grads else sums)(hidden, kernel, targets, weights)
    xs = (_chunks(hidden, chunk_length), _chunks(targets, chunk_length),
          _chunks(weights, chunk_length))
    zero = jnp.zeros((), jnp.float32)
    if not with_grads:
      def body(carry, x):
        out = sums(x[0], kernel, x[1], x[2])
        return tuple(c + o for c, o in zip(carry, out)), None
      return jax.lax.scan(body, (zero, zero, zero), xs)[0]

    def body_g(carry, x):
      totals, d_kernel = carry
      out, (d_hidden, d_k) = sums_and_grads(x[0], kernel, x[1], x[2])
      return (tuple(c + o for c, o in zip(totals, out)), d_kernel + d_k), d_hidden

    init = ((zero, zero, zero), jnp.zeros(kernel.shape, jnp.float32))
    (totals, d_kernel), d_hidden = jax.lax.scan(body_g, init, xs)
    return totals, (_unchunk(d_hidden), d_kernel)

  @jax.custom_vjp
  def loss(hidden, kernel, targets, weights):
    return forward(hidden, kernel, targets, weights, with_grads=False)

  def loss_fwd(hidden, kernel, targets, weights):
    totals, (d_hidden, d_kernel) = forward(hidden, kernel, targets, weights, with_grads=True)
    return totals, (d_hidden, d_kernel.astype(kernel.dtype))

  def loss_bwd(residual, cotangents):
    d_hidden, d_kernel = residual
    g = cotangents[0]  # Only the total loss is differentiable.
    return ((g * d_hidden).astype(d_hidden.dtype), (g * d_kernel).astype(d_kernel.dtype), None,
            None)

  loss.defvjp(loss_fwd, loss_bwd)
  return loss


def output_cross_entropy(hidden: Array, kernel: Array, targets: Array, weights: Array,
                         config: t5.T5Config, z_loss: float = 0.0, label_smoothing: float = 0.0,
                         chunk_length: int | None = None,
                         float32_logits: bool = True) -> tuple[Array, Array, Array]:
  """(total loss, z-loss part, correct count) of the decoder states `hidden` [batch, length, embed].

  kernel: `t5.output_kernel(params, config)` (float32). targets [batch, length] int;
  weights [batch, length] (0 for padding). chunk_length: target positions per chunk of logits
  (None, or ≥ length: one chunk); a length that is not a multiple is padded with weight-0
  positions up to one. float32_logits=False: the logits matmul returns the activation dtype (as
  T5X's tied `attend` does) and the loss converts them to float32 elementwise (half the bytes).
  """
  length = hidden.shape[1]
  if chunk_length is not None and (isinstance(chunk_length, bool) or
                                   not isinstance(chunk_length, (int, np.integer)) or
                                   chunk_length <= 0):
    raise ValueError(f"LossConfig.chunk_length must be a positive integer or None, got "
                     f"{chunk_length!r}")
  chunk = 0 if chunk_length is None or chunk_length >= length else int(chunk_length)
  targets = jnp.asarray(targets)
  weights = jnp.asarray(weights, jnp.float32)
  if chunk and length % chunk:
    pad = chunk - length % chunk
    hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
    targets = jnp.pad(targets, ((0, 0), (0, pad)))
    weights = jnp.pad(weights, ((0, 0), (0, pad)))
  fn = _build(config, float(z_loss), float(label_smoothing), chunk, bool(float32_logits))
  return fn(hidden, kernel, targets, weights)
