"""Autoregressive decoding for the Flax T5: greedy and beam search over a key/value cache.

Both decoders encode the inputs once, then feed one token per step to `Transformer.decode` in
`decode=True` mode, which reads and writes the self-attention keys/values of earlier steps in the
"cache" collection. Everything runs inside one `jax.lax.while_loop` under `jax.jit` (static: the
model config, the decode length, the beam size and the EOS id), so batches and parameters that are
sharded over a device mesh work as they are.

Beam search follows the semantics of T5X's `decoding.beam_search`:
  * each step extends every live beam by every token and keeps the 2·K best candidates by
    log-probability, so that K live beams remain even when K candidates end with EOS;
  * candidates ending in EOS are scored `log_prob / ((5 + length) / 6) ** alpha` (Wu et al. 2016;
    `length` counts the generated tokens including EOS) and merged into the K best finished ones;
  * the other candidates become the K live beams, and the cache rows are gathered from the parent
    beams;
  * the loop stops at the maximum length or when, in every row, all K finished slots are filled and
    the worst of them beats the best live log-probability divided by the largest possible penalty;
  * a row with no finished sequence returns its live beams with their raw log-probabilities.
Unlike T5X (which returns beams worst-first), results here are sorted best-first.

Tokens: 0 is padding and the decoder start token; after EOS the output holds padding.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from synthetic_pretraining.model import t5

Array = jax.Array
PyTree = Any

# Large negative log-probability marking impossible candidates (T5X uses the same magnitude).
NEG_INF = -1.0e7
PAD_ID = 0
EOS_ID = 1


def brevity_penalty(alpha: float | Array, length: int | Array) -> Array:
  """Wu et al.'s length normaliser ((5 + length) / 6) ** alpha, by which log-probs are divided."""
  return jnp.power((5.0 + jnp.asarray(length, jnp.float32)) / 6.0, alpha)


def init_cache(model: t5.Transformer, params: PyTree, encoded: Array, enc_tokens: Array,
               max_decode_length: int) -> PyTree:
  """A zeroed decoder cache for `encoded.shape[0]` rows and `max_decode_length` steps.

  Args:
    model: the `Transformer`.
    params: its parameters.
    encoded: [batch, input_length, emb_dim] encoder outputs (only the shape is used).
    enc_tokens: [batch, input_length] encoder input tokens (only the shape is used).
    max_decode_length: number of decoder positions the cache holds.

  Returns:
    The "cache" collection: per decoder layer `cached_key`/`cached_value`
    [batch, max_decode_length, heads, head_dim] and `cache_index`, plus `decoder_step`; all zero.
  """
  if max_decode_length <= 0:
    raise ValueError(f"max_decode_length must be positive, got {max_decode_length}")

  def make(p, enc, tokens):
    dummy = jnp.zeros((enc.shape[0], max_decode_length), jnp.int32)
    _, variables = model.apply({"params": p}, enc, tokens, dummy, decode=True,
                               max_decode_length=max_decode_length,
                               method=t5.Transformer.decode, mutable=["cache"])
    return variables["cache"]

  # Only the structure, shapes and dtypes are taken from the model: a plain `apply` also advances
  # the decoder's step counter, whereas a fresh cache must start with every counter at 0.
  shapes = jax.eval_shape(make, params, encoded, enc_tokens)
  return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _decode_step(model: t5.Transformer, params: PyTree, encoded: Array, enc_tokens: Array,
                 tokens: Array, cache: PyTree, max_decode_length: int) -> tuple[Array, PyTree]:
  """One cached decoder step: tokens [rows] → float32 logits [rows, vocab] and the new cache."""
  logits, variables = model.apply({"params": params, "cache": cache}, encoded, enc_tokens,
                                  tokens[:, None], decode=True,
                                  max_decode_length=max_decode_length,
                                  method=t5.Transformer.decode, mutable=["cache"])
  return logits[:, 0, :].astype(jnp.float32), variables["cache"]


def _check_inputs(encoder_input_tokens: Array, max_decode_length: int) -> None:
  if getattr(encoder_input_tokens, "ndim", None) != 2:
    raise ValueError("encoder_input_tokens must be a [batch, length] integer array, got shape "
                     f"{getattr(encoder_input_tokens, 'shape', None)}")
  if not isinstance(max_decode_length, (int, np.integer)) or max_decode_length <= 0:
    raise ValueError(f"max_decode_length must be a positive int, got {max_decode_length!r}")


# ------------------------------------------------------------------------------------------------
# Greedy decoding.
class _GreedyState(NamedTuple):
  index: Array  # scalar: number of tokens generated so far
  tokens: Array  # [batch, T]
  last: Array  # [batch] the token fed at the next step
  finished: Array  # [batch] bool
  log_probs: Array  # [batch] log-probability of the tokens up to and including EOS
  lengths: Array  # [batch] generated tokens up to and including EOS (T when unfinished)
  cache: PyTree


@functools.partial(jax.jit, static_argnames=("config", "max_decode_length", "eos_id"))
def _greedy(config: t5.T5Config, params: PyTree, encoder_input_tokens: Array,
            max_decode_length: int, eos_id: int) -> tuple[Array, Array, Array, Array, Array]:
  """(tokens, log-probs, lengths, finished flags, steps run) of greedy decoding."""
  model = t5.Transformer(config)
  enc_tokens = encoder_input_tokens.astype(jnp.int32)
  batch = enc_tokens.shape[0]
  encoded = model.apply({"params": params}, enc_tokens, method=t5.Transformer.encode)
  cache = init_cache(model, params, encoded, enc_tokens, max_decode_length)

  def cond(state: _GreedyState) -> Array:
    return (state.index < max_decode_length) & ~jnp.all(state.finished)

  def body(state: _GreedyState) -> _GreedyState:
    logits, new_cache = _decode_step(model, params, encoded, enc_tokens, state.last, state.cache,
                                     max_decode_length)
    log_softmax = jax.nn.log_softmax(logits)
    next_token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    next_token = jnp.where(state.finished, PAD_ID, next_token)
    token_log_prob = jnp.take_along_axis(log_softmax, next_token[:, None], axis=-1)[:, 0]
    log_probs = state.log_probs + jnp.where(state.finished, 0.0, token_log_prob)
    just_finished = ~state.finished & (next_token == eos_id)
    lengths = jnp.where(just_finished, state.index + 1, state.lengths)
    tokens = jax.lax.dynamic_update_slice(state.tokens, next_token[:, None], (0, state.index))
    return _GreedyState(state.index + 1, tokens, next_token,
                        state.finished | (next_token == eos_id), log_probs, lengths, new_cache)

  init = _GreedyState(
      index=jnp.array(0, jnp.int32),
      tokens=jnp.zeros((batch, max_decode_length), jnp.int32),
      last=jnp.full((batch,), PAD_ID, jnp.int32),
      finished=jnp.zeros((batch,), bool),
      log_probs=jnp.zeros((batch,), jnp.float32),
      lengths=jnp.full((batch,), max_decode_length, jnp.int32),
      cache=cache)
  final = jax.lax.while_loop(cond, body, init)
  return final.tokens, final.log_probs, final.lengths, final.finished, final.index


def greedy_decode(model: t5.Transformer, params: PyTree, encoder_input_tokens: Array,
                  max_decode_length: int, eos_id: int = EOS_ID) -> Array:
  """Greedy (argmax) decoding with the key/value cache.

  Args:
    model: the `Transformer` (only its config is used; it is a static jit argument).
    params: parameters (may be sharded).
    encoder_input_tokens: [batch, input_length] int tokens, 0-padded.
    max_decode_length: maximum number of generated tokens T.
    eos_id: end-of-sequence id.

  Returns:
    [batch, T] int32 tokens; positions after a row's EOS hold 0. The loop stops early once every
    row has produced EOS.
  """
  _check_inputs(encoder_input_tokens, max_decode_length)
  tokens, *_ = _greedy(model.config, params, encoder_input_tokens, int(max_decode_length),
                       int(eos_id))
  return tokens


# ------------------------------------------------------------------------------------------------
# Beam search.
class _BeamState(NamedTuple):
  index: Array  # scalar: tokens generated so far; the live token to feed is seqs[..., index]
  live_log_probs: Array  # [batch, beams], best first
  live_seqs: Array  # [batch, beams, T + 1]; position 0 is the start token
  finished_scores: Array  # [batch, beams], best first
  finished_seqs: Array  # [batch, beams, T + 1]
  finished_flags: Array  # [batch, beams] whether the slot holds a real finished sequence
  cache: PyTree  # leaves [batch * beams, ...] (scalar counters are shared by all rows)


def _take_beams(x: Array, indices: Array) -> Array:
  """x [batch, n, ...], indices [batch, k] → [batch, k, ...]."""
  return jax.vmap(lambda row, idx: jnp.take(row, idx, axis=0))(x, indices)


def _reorder_cache(cache: PyTree, parents: Array) -> PyTree:
  """Gathers each new beam's cache rows from its parent beam; parents [batch, beams]."""
  batch, beams = parents.shape
  flat_rows = (jnp.arange(batch, dtype=jnp.int32)[:, None] * beams + parents).reshape(-1)
  return jax.tree_util.tree_map(lambda x: x if x.ndim == 0 else jnp.take(x, flat_rows, axis=0),
                                cache)


@functools.partial(jax.jit, static_argnames=("config", "max_decode_length", "beam_size",
                                             "eos_id"))
def _beam_search(config: t5.T5Config, params: PyTree, encoder_input_tokens: Array,
                 max_decode_length: int, beam_size: int, alpha: Array,
                 eos_id: int) -> tuple[Array, Array, Array]:
  """(tokens [B, K, T], scores [B, K], steps run) of beam search."""
  model = t5.Transformer(config)
  enc_tokens = encoder_input_tokens.astype(jnp.int32)
  batch, beams, length = enc_tokens.shape[0], beam_size, max_decode_length
  alpha = jnp.asarray(alpha, jnp.float32)
  encoded = model.apply({"params": params}, enc_tokens, method=t5.Transformer.encode)
  # Encode once, then repeat each row's encoder outputs for its beams (row-major: b * K + k).
  encoded = jnp.repeat(encoded, beams, axis=0)
  enc_tokens = jnp.repeat(enc_tokens, beams, axis=0)
  cache = init_cache(model, params, encoded, enc_tokens, length)
  # Upper bound on the penalty any sequence can still receive (valid for either sign of alpha).
  max_penalty = jnp.maximum(brevity_penalty(alpha, length), brevity_penalty(alpha, 1))

  def cond(state: _BeamState) -> Array:
    best_live = state.live_log_probs[:, :1] / max_penalty
    worst_finished = jnp.min(state.finished_scores, axis=1, keepdims=True)
    worst_finished = jnp.where(state.finished_flags, worst_finished, NEG_INF)
    cannot_improve = jnp.all(worst_finished > best_live)
    return (state.index < length) & ~cannot_improve

  def body(state: _BeamState) -> _BeamState:
    index = state.index
    feed = jax.lax.dynamic_index_in_dim(state.live_seqs, index, axis=2, keepdims=False)
    logits, new_cache = _decode_step(model, params, encoded, enc_tokens, feed.reshape(-1),
                                     state.cache, length)
    vocab = logits.shape[-1]
    log_probs = (jax.nn.log_softmax(logits).reshape(batch, beams, vocab)
                 + state.live_log_probs[:, :, None])
    # 2K candidates so that K live beams remain even if K candidates end with EOS.
    cand_log_probs, flat_ids = jax.lax.top_k(log_probs.reshape(batch, beams * vocab), 2 * beams)
    cand_parents = flat_ids // vocab
    cand_tokens = (flat_ids % vocab).astype(jnp.int32)
    cand_seqs = _take_beams(state.live_seqs, cand_parents)
    cand_seqs = jax.lax.dynamic_update_slice(cand_seqs, cand_tokens[:, :, None], (0, 0, index + 1))
    cand_finished = cand_tokens == eos_id

    # Live set: the K best candidates that did not just end.
    alive_log_probs = cand_log_probs + cand_finished * NEG_INF
    live_log_probs, keep = jax.lax.top_k(alive_log_probs, beams)
    live_seqs = _take_beams(cand_seqs, keep)
    cache = _reorder_cache(new_cache, jnp.take_along_axis(cand_parents, keep, axis=1))

    # Finished set: merge the newly ended candidates (length-penalised) into the K best so far.
    cand_scores = cand_log_probs / brevity_penalty(alpha, index + 1)
    cand_scores = cand_scores + (~cand_finished) * NEG_INF
    all_scores = jnp.concatenate([state.finished_scores, cand_scores], axis=1)
    all_seqs = jnp.concatenate([state.finished_seqs, cand_seqs], axis=1)
    all_flags = jnp.concatenate([state.finished_flags, cand_finished], axis=1)
    finished_scores, best = jax.lax.top_k(all_scores, beams)
    return _BeamState(index + 1, live_log_probs, live_seqs, finished_scores,
                      _take_beams(all_seqs, best), jnp.take_along_axis(all_flags, best, axis=1),
                      cache)

  init = _BeamState(
      index=jnp.array(0, jnp.int32),
      # Only beam 0 is live at the start, so the first step does not pick K copies of one token.
      live_log_probs=jnp.tile(jnp.array([0.0] + [NEG_INF] * (beams - 1), jnp.float32),
                              (batch, 1)),
      live_seqs=jnp.zeros((batch, beams, length + 1), jnp.int32),
      finished_scores=jnp.full((batch, beams), NEG_INF, jnp.float32),
      finished_seqs=jnp.zeros((batch, beams, length + 1), jnp.int32),
      finished_flags=jnp.zeros((batch, beams), bool),
      cache=cache)
  final = jax.lax.while_loop(cond, body, init)

  any_finished = jnp.any(final.finished_flags, axis=1)
  seqs = jnp.where(any_finished[:, None, None], final.finished_seqs, final.live_seqs)
  scores = jnp.where(any_finished[:, None], final.finished_scores, final.live_log_probs)
  return seqs[:, :, 1:], scores, final.index


def beam_search(model: t5.Transformer, params: PyTree, encoder_input_tokens: Array,
                max_decode_length: int, beam_size: int = 4, alpha: float = 0.6,
                eos_id: int = EOS_ID) -> tuple[Array, Array]:
  """Beam search with a length penalty, T5X-style (see the module docstring).

  Args:
    model: the `Transformer` (only its config is used; it is a static jit argument).
    params: parameters (may be sharded).
    encoder_input_tokens: [batch, input_length] int tokens, 0-padded.
    max_decode_length: maximum number of generated tokens T.
    beam_size: number of beams K.
    alpha: length-penalty exponent (0 disables the penalty).
    eos_id: end-of-sequence id.

  Returns:
    (tokens [batch, K, T] int32, scores [batch, K] float32), sorted best-first. A finished beam's
    score is its log-probability (EOS included) divided by ((5 + length) / 6) ** alpha; positions
    after EOS hold 0. Rows where no beam finished return live beams scored by raw log-probability.
  """
  _check_inputs(encoder_input_tokens, max_decode_length)
  if not isinstance(beam_size, (int, np.integer)) or beam_size < 1:
    raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
  tokens, scores, _ = _beam_search(model.config, params, encoder_input_tokens,
                                   int(max_decode_length), int(beam_size), jnp.float32(alpha),
                                   int(eos_id))
  return tokens, scores


# ------------------------------------------------------------------------------------------------
# Batch-level entry points.
def decode_batch(model: t5.Transformer, params: PyTree, encoder_input_tokens: Array,
                 max_decode_length: int, beam_size: int = 4, alpha: float = 0.6,
                 eos_id: int = EOS_ID) -> tuple[Array, Array]:
  """The best sequence per row: (tokens [batch, T], scores [batch]).

  `beam_size == 1` runs greedy decoding, whose score is defined as beam search's: the
  length-penalised log-probability when the row produced EOS, the raw log-probability otherwise.
  """
  if beam_size == 1:
    _check_inputs(encoder_input_tokens, max_decode_length)
    tokens, log_probs, lengths, finished, _ = _greedy(
        model.config, params, encoder_input_tokens, int(max_decode_length), int(eos_id))
    scores = jnp.where(finished, log_probs / brevity_penalty(jnp.float32(alpha), lengths),
                       log_probs)
    return tokens, scores
  tokens, scores = beam_search(model, params, encoder_input_tokens, max_decode_length, beam_size,
                               alpha, eos_id)
  return tokens[:, 0], scores[:, 0]


def _encoder_tokens(batch_or_tokens: Mapping[str, Any] | Array | Sequence) -> Any:
  if isinstance(batch_or_tokens, Mapping):
    for key in ("encoder_input_tokens", "inputs"):
      if key in batch_or_tokens:
        return batch_or_tokens[key]
    raise KeyError("predict: the batch has no 'encoder_input_tokens' (or 'inputs') feature; "
                   f"its features are {sorted(batch_or_tokens)}")
  return batch_or_tokens


def _default_decode_length(batch_or_tokens: Any, tokens: Any) -> int:
  if isinstance(batch_or_tokens, Mapping):
    for key in ("decoder_target_tokens", "targets"):
      if key in batch_or_tokens:
        return int(np.shape(batch_or_tokens[key])[1])
  return int(np.shape(tokens)[1])


def strip_after_eos(ids: Sequence[int], eos_id: int = EOS_ID) -> list[int]:
  """Ids up to the first EOS (excluded); all ids when there is none."""
  ids = [int(i) for i in ids]
  return ids[:ids.index(eos_id)] if eos_id in ids else ids


def predict(model: t5.Transformer, params: PyTree,
            batch_or_tokens: Mapping[str, Any] | Array | Sequence,
            vocabulary: Any = None, beam_size: int = 4, alpha: float = 0.6,
            max_decode_length: int | None = None, eos_id: int = EOS_ID) -> dict[str, list]:
  """Decodes a batch into id lists (and text when a vocabulary is given).

  Args:
    model: the `Transformer`.
    params: parameters (may be sharded).
    batch_or_tokens: a [batch, input_length] token array, or a feature dict holding
      `encoder_input_tokens` (T5X feature-converter name) or `inputs` (SeqIO task name).
    vocabulary: optional object with `.decode(ids) -> str` (a SeqIO vocabulary).
    beam_size: beams; 1 means greedy decoding.
    alpha: length-penalty exponent.
    max_decode_length: maximum generated tokens; by default the length of the batch's
      `decoder_target_tokens`/`targets` feature, or else the input length.
    eos_id: end-of-sequence id.

  Returns:
    {"token_ids": [[int]] up to EOS (excluded), "scores": [float]} and, with a vocabulary,
    "text": [str].
  """
  tokens = _encoder_tokens(batch_or_tokens)
  if max_decode_length is None:
    max_decode_length = _default_decode_length(batch_or_tokens, tokens)
  decoded, scores = decode_batch(model, params, jnp.asarray(tokens, jnp.int32),
                                 int(max_decode_length), beam_size, alpha, eos_id)
  decoded, scores = jax.device_get((decoded, scores))
  token_ids = [strip_after_eos(row, eos_id) for row in np.asarray(decoded)]
  result = {"token_ids": token_ids, "scores": [float(s) for s in np.asarray(scores)]}
  if vocabulary is not None:
    result["text"] = [vocabulary.decode(ids) for ids in token_ids]
  return result


def decode_tokens(model: t5.Transformer, params: PyTree, encoder_input_tokens: Array,
                  max_decode_length: int, beam_size: int = 4, alpha: float = 0.6,
                  eos_id: int = EOS_ID) -> list[list[int]]:
  """The best output per row as id lists up to EOS (excluded): a SeqIO `predict_fn` payload."""
  return predict(model, params, encoder_input_tokens, beam_size=beam_size, alpha=alpha,
                 max_decode_length=max_decode_length, eos_id=eos_id)["token_ids"]
