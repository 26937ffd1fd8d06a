"""A Flax (linen) T5 encoder-decoder whose parameter tree is exactly T5X's.

Parameter names, shapes and logical axis names follow T5X's `examples/t5/network.py`, so T5X
checkpoints load by name and the statistics-based initialisations (SPEC §6) select groups by name:

  token_embedder/embedding                                 [vocab, embed]
  {encoder,decoder}/relpos_bias/rel_embedding              [heads, relpos_buckets]
  encoder/layers_i/attention/{query,key,value}/kernel      [embed, joined_kv]
  encoder/layers_i/attention/out/kernel                    [joined_kv, embed]
  …/mlp/wi/kernel (v1.0) or mlp/wi_0, mlp/wi_1 (v1.1)      [embed, mlp]
  …/mlp/wo/kernel                                          [mlp, embed]
  encoder/layers_i/{pre_attention,pre_mlp}_layer_norm/scale
  decoder/layers_i/{self_attention,encoder_decoder_attention}/…
  decoder/layers_i/{pre_self_attention,pre_cross_attention,pre_mlp}_layer_norm/scale
  {encoder/encoder_norm, decoder/decoder_norm}/scale       [embed]
  decoder/logits_dense/kernel (v1.1 only)                  [embed, vocab]

T5 v1.0 ties the output layer to the embedding (logits = h·Eᵀ/√d); v1.1 has `logits_dense`.
Parameters are float32; `dtype` sets the activation dtype (bfloat16 on accelerators). Attention
logits, softmax, layer norms and the output logits are float32 (the logits matmul takes
activation-dtype operands and accumulates into a float32 result).

Attention (`T5Config.attention_impl`, settable by gin):
  'einsum'  the reference: explicit einsums with T5's relative position bias and the padding /
            segment / causal mask added as one [batch, heads, q, k] bias (T5X's own layer).
  'xla'     `jax.nn.dot_product_attention(implementation='xla')`: the relative position bias as
            the additive bias of shape (1, heads, q, k), the mask as its boolean `mask`.
  'cudnn'   the same call with cuDNN's fused (flash) attention: the (1, heads, q, k) bias, padding
            as sequence lengths, the decoder's causality as `is_causal`. Nothing per-example goes
            into the bias, because cuDNN returns the bias gradient only for a bias of batch 1
            (a per-example mask folded into the bias would silently zero `relpos_bias`'s gradient).
            Padding must therefore be a suffix of each row (what the feature converters produce).
            jax.nn.dot_product_attention takes no segment ids, so PACKED batches (segment ids
            given) run the 'xla' call instead; cuDNN needs bfloat16/float16 activations.
No path scales the logits by 1/√head_dim (T5 folds it into the query initialisation): the
fused paths pass scale=1.0. `jax.nn.dot_product_attention` cannot drop attention probabilities,
so 'xla' and 'cudnn' need `attention_dropout_rate=0.0` (residual and MLP dropout still apply);
incremental decoding always uses the einsum path.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from synthetic_pretraining import param_tree

Array = jax.Array
_NEG_INF = -1e10


@gin.configurable
@dataclasses.dataclass(frozen=True)
class T5Config:
  """Hyper-parameters of the encoder-decoder (T5X's `T5Config`)."""

  vocab_size: int = 32128
  emb_dim: int = 512
  num_heads: int = 8
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  head_dim: int = 64
  mlp_dim: int = 2048
  mlp_activations: tuple[str, ...] = ("relu",)
  dropout_rate: float = 0.1
  logits_via_embedding: bool = True
  dtype: str = "float32"
  float32_attention_logits: bool = True
  relpos_num_buckets: int = 32
  relpos_max_distance: int = 128
  attention_impl: str = "einsum"
  # Dropout on the attention probabilities; None: `dropout_rate` (T5X applies one rate to all).
  attention_dropout_rate: float | None = None

  def __post_init__(self):
    for name in ("vocab_size", "emb_dim", "num_heads", "num_encoder_layers", "num_decoder_layers",
                 "head_dim", "mlp_dim"):
      if getattr(self, name) <= 0:
        raise ValueError(f"T5Config.{name} must be positive, got {getattr(self, name)}")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"T5Config.dropout_rate must be in [0, 1), got {self.dropout_rate}")
    object.__setattr__(self, "mlp_activations", tuple(self.mlp_activations))
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ValueError(f"T5Config.attention_impl must be one of {ATTENTION_IMPLS}, got "
                       f"{self.attention_impl!r}")
    if self.attention_dropout_rate is not None and not 0.0 <= self.attention_dropout_rate < 1.0:
      raise ValueError("T5Config.attention_dropout_rate must be None or in [0, 1), got "
                       f"{self.attention_dropout_rate}")
    if self.attention_impl != "einsum" and self.attention_dropout > 0:
      raise ValueError(
          f"T5Config.attention_impl={self.attention_impl!r} cannot drop attention probabilities "
          "(jax.nn.dot_product_attention has no dropout), but the attention dropout rate is "
          f"{self.attention_dropout} (dropout_rate={self.dropout_rate}, attention_dropout_rate="
          f"{self.attention_dropout_rate}); set attention_dropout_rate=0.0 or use "
          "attention_impl='einsum'")
    if self.attention_impl == "cudnn" and self.dtype not in ("bfloat16", "float16"):
      raise ValueError(f"T5Config.attention_impl='cudnn' needs dtype 'bfloat16' or 'float16' "
                       f"(cuDNN's fused attention), got dtype={self.dtype!r}")

  @property
  def activation_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def attention_dropout(self) -> float:
    """The dropout rate of the attention probabilities."""
    return self.dropout_rate if self.attention_dropout_rate is None else self.attention_dropout_rate


ATTENTION_IMPLS = ("einsum", "xla", "cudnn")


PRESETS = {
    # T5 v1.0 small: the paper's model (60,506,624 parameters).
    "t5_small": T5Config(),
    # T5 v1.1 small: gated-GELU, untied logits; the CNNDM natural baseline.
    "t5_1_1_small": T5Config(emb_dim=512, num_heads=6, num_encoder_layers=8, num_decoder_layers=8,
                             head_dim=64, mlp_dim=1024, mlp_activations=("gelu", "linear"),
                             logits_via_embedding=False, dtype="bfloat16"),
    # A tiny model for CPU tests and the laptop-scale experiment.
    "tiny": T5Config(vocab_size=384, emb_dim=64, num_heads=4, num_encoder_layers=2,
                     num_decoder_layers=2, head_dim=16, mlp_dim=256, dropout_rate=0.0),
}


def get_config(name: str, **overrides) -> T5Config:
  """A preset (`t5_small`, `t5_1_1_small`, `tiny`) with optional field overrides."""
  if name not in PRESETS:
    raise ValueError(f"unknown model preset {name!r}; valid presets: {sorted(PRESETS)}")
  return dataclasses.replace(PRESETS[name], **overrides)


# ------------------------------------------------------------------------------------------------
# Initialisers (as T5X's defaults).
_ATTENTION_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
_MLP_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
_RELPOS_INIT = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
_EMBED_INIT = nn.initializers.normal(stddev=1.0)


def _param(module: nn.Module, name: str, init: Callable, shape: Sequence[int],
           axes: tuple[str, ...]) -> Array:
  return module.param(name, nn.with_logical_partitioning(init, axes), tuple(shape), jnp.float32)


def _activation(name: str) -> Callable[[Array], Array]:
  if name == "linear":
    return lambda x: x
  if name == "gelu":
    return functools.partial(nn.gelu, approximate=True)
  if hasattr(nn, name):
    return getattr(nn, name)
  raise ValueError(f"unknown MLP activation {name!r}")


class LayerNorm(nn.Module):
  """T5's RMS layer norm: scale only, no bias, no mean subtraction; computed in float32."""

  dtype: Any = jnp.float32
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = jnp.asarray(x, jnp.float32)
    scale = _param(self, "scale", nn.initializers.ones, (x.shape[-1],), ("embed",))
    variance = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    y = x * jax.lax.rsqrt(variance + self.epsilon)
    return jnp.asarray(y * scale, self.dtype)


class Dense(nn.Module):
  """A bias-free dense layer whose kernel is stored 2-D, as T5X's DenseGeneral stores it."""

  features: int
  kernel_axes: tuple[str, str]
  kernel_init: Callable = _MLP_INIT
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = _param(self, "kernel", self.kernel_init, (x.shape[-1], self.features),
                    self.kernel_axes)
    return jnp.dot(jnp.asarray(x, self.dtype), jnp.asarray(kernel, self.dtype))


class OutputKernel(nn.Module):
  """T5 v1.1's untied output layer `logits_dense/kernel` [embed, vocab] (applied by `output_logits`)."""

  features: int

  @nn.compact
  def __call__(self, embed_dim: int) -> Array:
    return _param(self, "kernel", _MLP_INIT, (embed_dim, self.features), ("embed", "vocab"))


def output_kernel(params: dict, config: "T5Config") -> Array:
  """The output layer's float32 kernel: the embedding [vocab, embed] (tied) or [embed, vocab]."""
  if config.logits_via_embedding:
    return params["token_embedder"]["embedding"]
  return params["decoder"]["logits_dense"]["kernel"]


def output_logits(hidden: Array, kernel: Array, config: "T5Config",
                  dtype: Any = jnp.float32) -> Array:
  """Logits [..., vocab] (float32 by default) of the final decoder states `hidden`.

  The matmul takes activation-dtype operands and accumulates into float32; with the default
  dtype its result is float32 (no activation-dtype copy of the logits). The tied layer divides
  by √embed as T5 v1.0 does.
  """
  kernel = jnp.asarray(kernel, hidden.dtype)
  contract = 1 if config.logits_via_embedding else 0
  logits = jax.lax.dot_general(hidden, kernel, (((hidden.ndim - 1,), (contract,)), ((), ())),
                               preferred_element_type=dtype)
  if config.logits_via_embedding:
    logits = logits / np.asarray(np.sqrt(hidden.shape[-1]), logits.dtype)
  return logits


class Embed(nn.Module):
  """Token embedding; `attend` gives the tied output projection."""

  num_embeddings: int
  features: int
  dtype: Any = jnp.float32

  def setup(self):
    self.embedding = _param(self, "embedding", _EMBED_INIT, (self.num_embeddings, self.features),
                            ("vocab", "embed"))

  def __call__(self, ids: Array) -> Array:
    # Gather float32 rows, then cast: the gradient (a scatter-add over all tokens of the batch)
    # then accumulates in float32, not in the activation dtype.
    return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

  def attend(self, x: Array) -> Array:
    return jnp.dot(x, jnp.asarray(self.embedding, x.dtype).T)


def relative_position_bucket(relative_position: Array, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> Array:
  """T5's log-spaced bucketing of (key − query) positions."""
  ret = 0
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    ret += (n < 0).astype(np.int32) * num_buckets
    n = np.abs(n)
  else:
    n = np.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  val_if_large = max_exact + (
      np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps) /
      np.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(np.int32)
  val_if_large = np.minimum(val_if_large, num_buckets - 1)
  return ret + np.where(is_small, n, val_if_large)


class RelativePositionBiases(nn.Module):
  """One [heads, buckets] table per stack; returns a [1, heads, q, k] attention bias."""

  num_heads: int
  num_buckets: int
  max_distance: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, q_len: int, k_len: int, bidirectional: bool) -> Array:
    context = np.arange(q_len, dtype=np.int32)[:, None]
    memory = np.arange(k_len, dtype=np.int32)[None, :]
    buckets = relative_position_bucket(memory - context, bidirectional, self.num_buckets,
                                       self.max_distance)
    table = _param(self, "rel_embedding", _RELPOS_INIT, (self.num_heads, self.num_buckets),
                   ("heads", "relpos_buckets"))
    # One-hot contraction instead of a gather: partitions cleanly and is cheap at these sizes.
    one_hot = jax.nn.one_hot(buckets, self.num_buckets, dtype=jnp.float32)
    values = jnp.einsum("hb,qkb->hqk", table, one_hot)
    return jnp.asarray(values[None], self.dtype)


class Masking(NamedTuple):
  """Which query/key pairs attend, for the fused ('xla', 'cudnn') attention paths.

  `impl` is the jax.nn.dot_product_attention implementation to call; 'xla' gets the boolean
  `mask` ([batch, 1, q, k]: padding, segments, causality), 'cudnn' gets `q_lengths` /
  `kv_lengths` ([batch] int32 counts of real tokens) and `causal` instead.
  """

  impl: str
  mask: Array | None = None
  q_lengths: Array | None = None
  kv_lengths: Array | None = None
  causal: bool = False


class MultiHeadAttention(nn.Module):
  """Dot-product attention without biases or logit scaling (folded into the query init).

  With `masking` None this is the einsum path: `bias` holds everything added to the logits
  (relative positions and the mask as −1e10). With a `Masking` it is the fused path: `bias` is
  the relative position bias alone (1, heads, q, k) or None, and the mask comes from `masking`.
  In `decode` mode the keys/values of previous steps live in the "cache" collection
  (`cached_key`, `cached_value`: [batch, max_length, heads, head_dim]; `cache_index`).
  """

  num_heads: int
  head_dim: int
  dropout_rate: float
  dtype: Any = jnp.float32
  float32_logits: bool = True

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array, bias: Array | None,
               deterministic: bool, decode: bool = False,
               masking: Masking | None = None) -> Array:
    features = self.num_heads * self.head_dim
    depth_scaling = np.sqrt(self.head_dim).astype(np.float32)
    query_init = lambda *args: _ATTENTION_INIT(*args) / depth_scaling
    dense = functools.partial(Dense, features=features, kernel_axes=("embed", "joined_kv"),
                              dtype=self.dtype)
    split = lambda x: x.reshape(x.shape[:2] + (self.num_heads, self.head_dim))
    query = split(dense(kernel_init=query_init, name="query")(inputs_q))
    key = split(dense(kernel_init=_ATTENTION_INIT, name="key")(inputs_kv))
    value = split(dense(kernel_init=_ATTENTION_INIT, name="value")(inputs_kv))
    query = nn.with_logical_constraint(query, ("batch", "length", "heads", "kv"))
    key = nn.with_logical_constraint(key, ("batch", "length", "heads", "kv"))
    value = nn.with_logical_constraint(value, ("batch", "length", "heads", "kv"))

    if decode:
      if masking is not None:
        raise ValueError("decode mode uses the einsum attention path (masking must be None)")
      is_initialized = self.has_variable("cache", "cached_key")
      cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
      cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
      if is_initialized:
        if query.shape[1] != 1:
          raise ValueError(f"decode mode feeds one token per step, got length {query.shape[1]}")
        index = cache_index.value
        key = jax.lax.dynamic_update_slice(cached_key.value, key, (0, index, 0, 0))
        value = jax.lax.dynamic_update_slice(cached_value.value, value, (0, index, 0, 0))
        cached_key.value, cached_value.value = key, value
        cache_index.value = index + 1
        # Attend only to positions already written; `bias` holds row `index` of the full bias.
        valid = jnp.arange(key.shape[1]) <= index
        step_mask = jnp.where(valid, 0.0, _NEG_INF).astype(jnp.float32)[None, None, None, :]
        bias = step_mask if bias is None else bias + step_mask

    if masking is None:
      logits_dtype = jnp.float32 if self.float32_logits else self.dtype
      logits = jnp.einsum("bqhd,bkhd->bhqk", query.astype(logits_dtype),
                          key.astype(logits_dtype))
      if bias is not None:
        logits = logits + bias.astype(logits_dtype)
      weights = jax.nn.softmax(logits.astype(jnp.float32)).astype(self.dtype)
      if not deterministic and self.dropout_rate > 0:
        weights = nn.Dropout(self.dropout_rate)(weights, deterministic=False)
      out = jnp.einsum("bhqk,bkhd->bqhd", weights, value)
    else:
      out = fused_attention(query, key, value, bias, masking)
    out = out.reshape(out.shape[:2] + (features,))
    out = nn.with_logical_constraint(out, ("batch", "length", "joined_kv"))
    return Dense(features=inputs_q.shape[-1], kernel_axes=("joined_kv", "embed"),
                 kernel_init=_ATTENTION_INIT, dtype=self.dtype, name="out")(out)


def fused_attention(query: Array, key: Array, value: Array, bias: Array | None,
                    masking: Masking) -> Array:
  """`jax.nn.dot_product_attention` with T5's conventions ([batch, length, heads, head_dim]).

  No 1/√d scaling (scale=1.0); the (1, heads, q, k) relative position bias stays a batch-1
  bias so that cuDNN returns its gradient; the logits and softmax are float32 (XLA: float32
  accumulation of the activation-dtype operands; cuDNN: float32 inside the kernel).
  """
  if bias is not None:
    if bias.ndim != 4 or bias.shape[0] != 1:
      raise ValueError(f"fused attention takes a (1, heads, q, k) bias, got {bias.shape}")
    bias = bias.astype(query.dtype)
  if masking.impl == "cudnn":
    return jax.nn.dot_product_attention(
        query, key, value, bias, None, scale=1.0, is_causal=masking.causal,
        query_seq_lengths=masking.q_lengths, key_value_seq_lengths=masking.kv_lengths,
        implementation="cudnn")
  if masking.impl != "xla":
    raise ValueError(f"Masking.impl must be 'xla' or 'cudnn', got {masking.impl!r}")
  return jax.nn.dot_product_attention(query, key, value, bias, masking.mask, scale=1.0,
                                      implementation="xla")


class MlpBlock(nn.Module):
  """ReLU (v1.0) or gated-GELU (v1.1) feed-forward block; dropout on the hidden activations."""

  mlp_dim: int
  activations: tuple[str, ...]
  dropout_rate: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    hidden = None
    for i, name in enumerate(self.activations):
      layer_name = "wi" if len(self.activations) == 1 else f"wi_{i}"
      h = Dense(self.mlp_dim, ("embed", "mlp"), _MLP_INIT, self.dtype, name=layer_name)(x)
      h = _activation(name)(h)
      hidden = h if hidden is None else hidden * h
    hidden = nn.with_logical_constraint(hidden, ("batch", "length", "mlp"))
    hidden = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(hidden, deterministic)
    return Dense(x.shape[-1], ("mlp", "embed"), _MLP_INIT, self.dtype, name="wo")(hidden)


def _residual_dropout(config: T5Config, x: Array, deterministic: bool) -> Array:
  return nn.Dropout(config.dropout_rate, broadcast_dims=(-2,))(x, deterministic)


class EncoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x: Array, bias: Array, deterministic: bool,
               masking: Masking | None = None) -> Array:
    cfg, dtype = self.config, self.config.activation_dtype
    h = LayerNorm(dtype, name="pre_attention_layer_norm")(x)
    h = MultiHeadAttention(cfg.num_heads, cfg.head_dim, cfg.attention_dropout, dtype,
                           cfg.float32_attention_logits, name="attention")(
                               h, h, bias, deterministic, masking=masking)
    x = x + _residual_dropout(cfg, h, deterministic)
    h = LayerNorm(dtype, name="pre_mlp_layer_norm")(x)
    h = MlpBlock(cfg.mlp_dim, cfg.mlp_activations, cfg.dropout_rate, dtype, name="mlp")(
        h, deterministic)
    x = x + _residual_dropout(cfg, h, deterministic)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class DecoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, y: Array, encoded: Array, self_bias: Array, cross_bias: Array | None,
               deterministic: bool, decode: bool, self_masking: Masking | None = None,
               cross_masking: Masking | None = None) -> Array:
    cfg, dtype = self.config, self.config.activation_dtype
    attention = functools.partial(MultiHeadAttention, cfg.num_heads, cfg.head_dim,
                                  cfg.attention_dropout, dtype, cfg.float32_attention_logits)
    h = LayerNorm(dtype, name="pre_self_attention_layer_norm")(y)
    h = attention(name="self_attention")(h, h, self_bias, deterministic, decode,
                                         masking=self_masking)
    y = y + _residual_dropout(cfg, h, deterministic)
    h = LayerNorm(dtype, name="pre_cross_attention_layer_norm")(y)
    h = attention(name="encoder_decoder_attention")(h, encoded, cross_bias, deterministic,
                                                    masking=cross_masking)
    y = y + _residual_dropout(cfg, h, deterministic)
    h = LayerNorm(dtype, name="pre_mlp_layer_norm")(y)
    h = MlpBlock(cfg.mlp_dim, cfg.mlp_activations, cfg.dropout_rate, dtype, name="mlp")(
        h, deterministic)
    y = y + _residual_dropout(cfg, h, deterministic)
    return nn.with_logical_constraint(y, ("batch", "length", "embed"))


def _mask_to_bias(mask: Array) -> Array:
  return jnp.where(mask, 0.0, _NEG_INF).astype(jnp.float32)


def attention_mask(query_ok: Array, key_ok: Array, query_segments: Array | None = None,
                   key_segments: Array | None = None) -> Array:
  """[batch, 1, q, k] boolean mask: both positions are real tokens (and in the same segment)."""
  mask = query_ok[:, None, :, None] & key_ok[:, None, None, :]
  if query_segments is not None:
    mask &= query_segments[:, None, :, None] == key_segments[:, None, None, :]
  return mask


def _fused_impl(config: T5Config, *segment_ids: Array | None) -> str | None:
  """The jax.nn.dot_product_attention implementation for this call, or None for einsum.

  cuDNN takes no segment ids (and a per-example mask in its bias loses the bias gradient), so
  packed batches fall back to the XLA implementation.
  """
  if config.attention_impl == "einsum":
    return None
  if config.attention_impl == "cudnn" and any(s is not None for s in segment_ids):
    return "xla"
  return config.attention_impl


def _lengths(ok_or_tokens: Array) -> Array:
  """[batch] int32 count of real (non-pad) positions; padding must be a suffix of each row.

  At least 1: a row of padding only (as in a padded last eval batch) attends to its first
  position instead of to nothing; its outputs carry no loss weight either way.
  """
  return jnp.maximum(jnp.sum(ok_or_tokens > 0, axis=-1, dtype=jnp.int32), 1)


class Encoder(nn.Module):
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, tokens: Array, segment_ids: Array | None, deterministic: bool) -> Array:
    cfg = self.config
    relpos = RelativePositionBiases(cfg.num_heads, cfg.relpos_num_buckets,
                                    cfg.relpos_max_distance, cfg.activation_dtype,
                                    name="relpos_bias")
    length = tokens.shape[1]
    mask = attention_mask(tokens > 0, tokens > 0, segment_ids, segment_ids)
    impl = _fused_impl(cfg, segment_ids)
    if impl is None:
      bias, masking = relpos(length, length, True) + _mask_to_bias(mask), None
    else:
      lengths = _lengths(tokens)
      bias = relpos(length, length, True)
      masking = Masking(impl, mask if impl == "xla" else None, lengths, lengths)
    x = self.shared_embedding(tokens.astype(jnp.int32))
    x = _residual_dropout(cfg, x, deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    for i in range(cfg.num_encoder_layers):
      x = EncoderLayer(cfg, name=f"layers_{i}")(x, bias, deterministic, masking)
    x = LayerNorm(cfg.activation_dtype, name="encoder_norm")(x)
    return _residual_dropout(cfg, x, deterministic)


class Decoder(nn.Module):
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoded: Array, encoder_ok: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Array | None, encoder_segment_ids: Array | None,
               decoder_segment_ids: Array | None, deterministic: bool, decode: bool,
               max_decode_length: int | None, return_hidden: bool = False) -> Array:
    cfg = self.config
    relpos = RelativePositionBiases(cfg.num_heads, cfg.relpos_num_buckets,
                                    cfg.relpos_max_distance, cfg.activation_dtype,
                                    name="relpos_bias")
    length = decoder_input_tokens.shape[1]
    self_masking = cross_masking = None
    if decode:
      # One step: bias row `cache_index` of the [max_len, max_len] causal table.
      full = relpos(max_decode_length, max_decode_length, False)
      had_cache = self.has_variable("cache", "decoder_step")
      index = self.variable("cache", "decoder_step", lambda: jnp.array(0, jnp.int32))
      self_bias = jax.lax.dynamic_slice_in_dim(full, index.value, 1, axis=2)
      if had_cache:  # The first call only creates the cache (as the attention layers do).
        index.value = index.value + 1
      cross_bias = _mask_to_bias(attention_mask(jnp.ones_like(decoder_input_tokens, bool),
                                                encoder_ok))
    else:
      target = decoder_input_tokens if decoder_target_tokens is None else decoder_target_tokens
      causal = jnp.tril(jnp.ones((length, length), bool))[None, None]
      mask = attention_mask(target > 0, target > 0, decoder_segment_ids, decoder_segment_ids)
      cross_mask = attention_mask(target > 0, encoder_ok, decoder_segment_ids,
                                  encoder_segment_ids)
      impl = _fused_impl(cfg, decoder_segment_ids, encoder_segment_ids)
      if impl is None:
        self_bias = relpos(length, length, False) + _mask_to_bias(mask & causal)
        cross_bias = _mask_to_bias(cross_mask)
      else:
        self_bias, cross_bias = relpos(length, length, False), None
        q_lengths, kv_lengths = _lengths(target), _lengths(encoder_ok)
        if impl == "xla":
          self_masking = Masking(impl, mask & causal)
          cross_masking = Masking(impl, cross_mask)
        else:
          self_masking = Masking(impl, None, q_lengths, q_lengths, causal=True)
          cross_masking = Masking(impl, None, q_lengths, kv_lengths)
    y = self.shared_embedding(decoder_input_tokens.astype(jnp.int32))
    y = _residual_dropout(cfg, y, deterministic)
    y = nn.with_logical_constraint(y, ("batch", "length", "embed"))
    for i in range(cfg.num_decoder_layers):
      y = DecoderLayer(cfg, name=f"layers_{i}")(y, encoded, self_bias, cross_bias, deterministic,
                                                decode, self_masking, cross_masking)
    y = LayerNorm(cfg.activation_dtype, name="decoder_norm")(y)
    y = _residual_dropout(cfg, y, deterministic)
    if cfg.logits_via_embedding:
      kernel = self.shared_embedding.embedding
    else:
      kernel = OutputKernel(cfg.vocab_size, name="logits_dense")(y.shape[-1])
    if return_hidden:
      return y
    logits = output_logits(y, kernel, cfg)
    return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))


class Transformer(nn.Module):
  """T5 encoder-decoder. `__call__` gives teacher-forced logits [batch, target_len, vocab]."""

  config: T5Config

  def setup(self):
    cfg = self.config
    self.token_embedder = Embed(cfg.vocab_size, cfg.emb_dim, cfg.activation_dtype)
    self.encoder = Encoder(cfg, self.token_embedder)
    self.decoder = Decoder(cfg, self.token_embedder)

  def encode(self, encoder_input_tokens: Array, encoder_segment_ids: Array | None = None,
             deterministic: bool = True) -> Array:
    return self.encoder(encoder_input_tokens, encoder_segment_ids, deterministic)

  def decode(self, encoded: Array, encoder_input_tokens: Array, decoder_input_tokens: Array,
             decoder_target_tokens: Array | None = None, encoder_segment_ids: Array | None = None,
             decoder_segment_ids: Array | None = None, deterministic: bool = True,
             decode: bool = False, max_decode_length: int | None = None,
             return_hidden: bool = False) -> Array:
    return self.decoder(encoded, encoder_input_tokens > 0, decoder_input_tokens,
                        decoder_target_tokens, encoder_segment_ids, decoder_segment_ids,
                        deterministic, decode, max_decode_length, return_hidden)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Array | None = None,
               encoder_segment_ids: Array | None = None,
               decoder_segment_ids: Array | None = None, deterministic: bool = True,
               return_hidden: bool = False) -> Array:
    """Float32 logits; with `return_hidden`, the final decoder states (activation dtype) that
    `output_logits(hidden, output_kernel(params, config), config)` turns into those logits."""
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids, deterministic)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                       encoder_segment_ids, decoder_segment_ids, deterministic,
                       return_hidden=return_hidden)


# ------------------------------------------------------------------------------------------------
def _dummy_inputs(batch: int = 1, length: int = 1):
  ones = jnp.ones((batch, length), jnp.int32)
  return ones, ones


def init_variables(config: T5Config, seed: int | Array = 0):
  """Boxed variables (params carry their logical axis names as `nn.LogicallyPartitioned`)."""
  rng = jax.random.PRNGKey(seed) if isinstance(seed, int) else seed
  model = Transformer(config)
  return model.init({"params": rng, "dropout": rng}, *_dummy_inputs())


def init_params(config: T5Config, seed: int | Array = 0) -> dict:
  """The float32 parameter tree (plain nested dict of arrays, T5X names)."""
  return nn.unbox(init_variables(config, seed))["params"]


def params_shapes(config: T5Config) -> dict:
  """Parameter shapes without computing them (`jax.ShapeDtypeStruct` leaves)."""
  return jax.eval_shape(lambda: init_params(config, 0))


def params_logical_axes(config: T5Config) -> dict:
  """The logical axis names of each parameter, as a tree of `jax.sharding.PartitionSpec`."""
  boxed = jax.eval_shape(lambda: init_variables(config, 0))
  return nn.get_partition_spec(boxed)["params"]


def count_params(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def flatten_names(params) -> dict[str, Any]:
  """{'encoder/layers_0/attention/query/kernel': leaf, …}."""
  return param_tree.flatten(params)


unflatten_names = param_tree.unflatten
