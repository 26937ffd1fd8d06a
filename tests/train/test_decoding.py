"""Tests for greedy and beam-search decoding with the key/value cache."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthetic_pretraining.model import t5
from synthetic_pretraining.train import decoding
from synthetic_pretraining.train import partitioning

EOS = 1
MAX_LEN = 10
BEAMS = 4
ALPHA = 0.6


def _decisive_model():
  """A tiny random model whose outputs depend on the input and sometimes end with EOS.

  Untied, sharpened output logits give input-dependent, non-uniform next-token distributions;
  a louder EOS column makes sequences end at varied lengths (a plain random T5 repeats one token).
  """
  config = t5.get_config("tiny", vocab_size=32, logits_via_embedding=False)
  params = t5.init_params(config, 0)
  kernel = params["decoder"]["logits_dense"]["kernel"] * 3.0
  params["decoder"]["logits_dense"]["kernel"] = kernel.at[:, EOS].multiply(4.0)
  return t5.Transformer(config), params


@functools.lru_cache(maxsize=None)
def _fixture():
  model, params = _decisive_model()
  rng = np.random.default_rng(0)
  inputs = rng.integers(2, model.config.vocab_size, size=(4, 9)).astype(np.int32)
  inputs[1, 5:] = 0  # rows of different lengths, right-padded
  inputs[2, 3:] = 0
  return model, params, inputs


@functools.partial(jax.jit, static_argnames="config")
def _full_log_probs(config, params, enc_tokens, dec_inputs):
  """Teacher-forced log-softmax [B, T, V], recomputed from scratch (no cache).

  The decoder-target mask is all-real, so a generated pad id (0) is treated as an ordinary token,
  as it is by cached decoding.
  """
  logits = t5.Transformer(config).apply({"params": params}, enc_tokens, dec_inputs,
                                        decoder_target_tokens=jnp.ones_like(dec_inputs))
  return jax.nn.log_softmax(logits.astype(jnp.float32))


def _shift_right(tokens):
  tokens = np.asarray(tokens)
  return np.concatenate([np.zeros(tokens.shape[:-1] + (1,), tokens.dtype), tokens[..., :-1]], -1)


def _sequence_score(model, params, enc_row, seq, alpha):
  """(log-prob up to and including EOS, generated length, finished) of one output sequence."""
  seq = np.asarray(seq)
  log_probs = _full_log_probs(model.config, params, np.asarray(enc_row)[None],
                              _shift_right(seq)[None])[0]
  token_lp = np.take_along_axis(np.asarray(log_probs), seq[:, None], axis=-1)[:, 0]
  finished = EOS in seq.tolist()
  length = seq.tolist().index(EOS) + 1 if finished else len(seq)
  total = float(token_lp[:length].sum())
  return total, length, finished


def _penalised(log_prob, length, alpha):
  return log_prob / ((5.0 + length) / 6.0) ** alpha


# ------------------------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames="config")
def _encode_jit(config, params, tokens):
  return t5.Transformer(config).apply({"params": params}, tokens, method=t5.Transformer.encode)


def _encode(model, params, tokens):
  return _encode_jit(model.config, params, tokens)


def test_cached_steps_match_full_recomputation():
  config = t5.get_config("tiny")
  model, params = t5.Transformer(config), t5.init_params(config, 1)
  rng = np.random.default_rng(1)
  enc = rng.integers(2, config.vocab_size, size=(3, 7)).astype(np.int32)
  enc[0, 4:] = 0
  targets = rng.integers(0, config.vocab_size, size=(3, 6)).astype(np.int32)
  dec_inputs = _shift_right(targets)

  full = np.asarray(_full_log_probs(config, params, enc, dec_inputs))
  encoded = _encode(model, params, enc)
  cache = decoding.init_cache(model, params, encoded, enc, targets.shape[1])
  step = jax.jit(functools.partial(decoding._decode_step, model,
                                   max_decode_length=targets.shape[1]))
  for t in range(targets.shape[1]):
    logits, cache = step(params, encoded, enc, jnp.asarray(dec_inputs[:, t]), cache)
    np.testing.assert_allclose(np.asarray(jax.nn.log_softmax(logits)), full[:, t], atol=1e-5,
                               rtol=0, err_msg=f"step {t}")


def test_init_cache_is_zero_with_expected_shapes():
  model, params, inputs = _fixture()
  encoded = _encode(model, params, inputs)
  cache = decoding.init_cache(model, params, encoded, inputs, MAX_LEN)
  flat = t5.flatten_names(cache)
  cfg = model.config
  assert flat["decoder/decoder_step"].shape == ()
  for i in range(cfg.num_decoder_layers):
    prefix = f"decoder/layers_{i}/self_attention"
    for name in ("cached_key", "cached_value"):
      assert flat[f"{prefix}/{name}"].shape == (4, MAX_LEN, cfg.num_heads, cfg.head_dim)
    assert flat[f"{prefix}/cache_index"].shape == ()
  assert all(not np.any(np.asarray(v)) for v in flat.values())


def test_init_cache_rejects_nonpositive_length():
  model, params, inputs = _fixture()
  encoded = np.zeros(inputs.shape + (model.config.emb_dim,), np.float32)
  with pytest.raises(ValueError, match="max_decode_length must be positive"):
    decoding.init_cache(model, params, encoded, inputs, 0)


def test_greedy_equals_argmax_of_full_recomputation():
  model, params, inputs = _fixture()
  got = np.asarray(decoding.greedy_decode(model, params, inputs, MAX_LEN))

  expected = np.zeros((len(inputs), MAX_LEN), np.int32)
  done = np.zeros(len(inputs), bool)
  for t in range(MAX_LEN):
    log_probs = np.asarray(_full_log_probs(model.config, params, inputs, _shift_right(expected)))
    expected[:, t] = np.where(done, 0, log_probs[:, t].argmax(-1))
    done |= expected[:, t] == EOS
  np.testing.assert_array_equal(got, expected)
  # The fixture exercises both finished rows (padding after EOS) and rows that hit the limit.
  assert done.any() and not done.all()


def test_greedy_stops_early_and_pads_after_eos():
  model, params, inputs = _fixture()
  got = np.asarray(decoding.greedy_decode(model, params, inputs, MAX_LEN))
  for row in got:
    if EOS in row.tolist():
      end = row.tolist().index(EOS)
      assert not row[end + 1:].any()


def test_predict_beam_one_is_greedy_and_strips_eos():
  model, params, inputs = _fixture()
  greedy = np.asarray(decoding.greedy_decode(model, params, inputs, MAX_LEN))

  class Vocab:
    def decode(self, ids):
      return " ".join(map(str, ids))

  out = decoding.predict(model, params, {"encoder_input_tokens": inputs,
                                         "decoder_target_tokens": np.ones((4, MAX_LEN))},
                         vocabulary=Vocab(), beam_size=1)
  expected = [decoding.strip_after_eos(row) for row in greedy]
  assert out["token_ids"] == expected
  assert any(len(ids) < MAX_LEN for ids in expected)  # some row was cut at its EOS
  assert all(EOS not in ids for ids in out["token_ids"])
  assert out["text"] == [" ".join(map(str, ids)) for ids in expected]
  for row, ids, score in zip(inputs, greedy, out["scores"]):
    log_prob, length, finished = _sequence_score(model, params, row, ids, ALPHA)
    want = _penalised(log_prob, length, ALPHA) if finished else log_prob
    assert score == pytest.approx(want, abs=1e-4)


def test_predict_errors_and_decode_tokens():
  model, params, inputs = _fixture()
  with pytest.raises(KeyError, match="encoder_input_tokens"):
    decoding.predict(model, params, {"targets": inputs})
  with pytest.raises(ValueError, match="beam_size"):
    decoding.beam_search(model, params, inputs, MAX_LEN, beam_size=0)
  with pytest.raises(ValueError, match=r"\[batch, length\]"):
    decoding.greedy_decode(model, params, inputs[0], MAX_LEN)
  ids = decoding.decode_tokens(model, params, inputs, MAX_LEN, beam_size=1)
  greedy = np.asarray(decoding.greedy_decode(model, params, inputs, MAX_LEN))
  assert ids == [decoding.strip_after_eos(r) for r in greedy]


def test_beam_one_scores_at_least_greedy():
  # With one beam the greedy path stays live until it ends, so the result can only be better.
  model, params, inputs = _fixture()
  _, greedy_scores = decoding.decode_batch(model, params, inputs, MAX_LEN, beam_size=1,
                                           alpha=ALPHA)
  greedy = np.asarray(decoding.greedy_decode(model, params, inputs, MAX_LEN))
  tokens, scores = decoding.beam_search(model, params, inputs, MAX_LEN, beam_size=1, alpha=ALPHA)
  assert tokens.shape == (4, 1, MAX_LEN)
  for b in range(len(inputs)):
    if EOS in greedy[b].tolist():
      assert float(scores[b, 0]) >= float(greedy_scores[b]) - 1e-5


def _reference_beam_search(model, params, enc_row, beams, alpha, max_len):
  """Plain-Python beam search (T5X semantics, no early exit) scoring prefixes from scratch."""
  live = [((), 0.0)]
  finished = []
  for step in range(max_len):
    prefixes = np.zeros((beams, max_len), np.int32)
    for i, (seq, _) in enumerate(live):
      prefixes[i, :len(seq)] = seq
    log_probs = np.asarray(_full_log_probs(model.config, params,
                                           np.repeat(enc_row[None], beams, 0),
                                           _shift_right(prefixes)))[:, step]
    candidates = [(seq + (tok,), lp + float(log_probs[i, tok]))
                  for i, (seq, lp) in enumerate(live) for tok in range(log_probs.shape[-1])]
    candidates.sort(key=lambda c: -c[1])
    candidates = candidates[:2 * beams]
    finished += [(seq, _penalised(lp, step + 1, alpha)) for seq, lp in candidates
                 if seq[-1] == EOS]
    finished = sorted(finished, key=lambda c: -c[1])[:beams]
    live = [c for c in candidates if c[0][-1] != EOS][:beams]
  return finished, live


def test_beam_search_matches_reference_and_recomputed_scores():
  model, params, inputs = _fixture()
  tokens, scores = decoding.beam_search(model, params, inputs, MAX_LEN, BEAMS, ALPHA)
  tokens, scores = np.asarray(tokens), np.asarray(scores)
  assert tokens.shape == (4, BEAMS, MAX_LEN) and scores.shape == (4, BEAMS)
  greedy = np.asarray(decoding.greedy_decode(model, params, inputs, MAX_LEN))
  rows_finished = 0
  compared_with_greedy = 0
  for b in range(len(inputs)):
    # Sorted best-first.
    assert np.all(np.diff(scores[b]) <= 1e-6), scores[b]
    finished, live = _reference_beam_search(model, params, inputs[b], BEAMS, ALPHA, MAX_LEN)
    if finished:
      rows_finished += 1
      for k, (seq, score) in enumerate(finished):
        want = np.zeros(MAX_LEN, np.int32)
        want[:len(seq)] = seq
        np.testing.assert_array_equal(tokens[b, k], want, err_msg=f"row {b} beam {k}")
        assert scores[b, k] == pytest.approx(score, abs=1e-4)
      # Unfilled finished slots carry the "impossible" score.
      assert np.all(scores[b, len(finished):] <= decoding.NEG_INF / 2)
      # The best sequence's score is its length-penalised log-prob under the full model.
      log_prob, length, done = _sequence_score(model, params, inputs[b], tokens[b, 0], ALPHA)
      assert done
      assert scores[b, 0] == pytest.approx(_penalised(log_prob, length, ALPHA), abs=1e-4)
    else:
      # No beam ended: the live beams come back with raw log-probabilities.
      for k, (seq, lp) in enumerate(live):
        np.testing.assert_array_equal(tokens[b, k], seq, err_msg=f"row {b} beam {k}")
        assert scores[b, k] == pytest.approx(lp, abs=1e-4)
      log_prob, _, _ = _sequence_score(model, params, inputs[b], tokens[b, 0], ALPHA)
      assert scores[b, 0] == pytest.approx(log_prob, abs=1e-4)
    g_lp, g_len, g_done = _sequence_score(model, params, inputs[b], greedy[b], ALPHA)
    if g_done:
      compared_with_greedy += 1
      assert scores[b, 0] >= _penalised(g_lp, g_len, ALPHA) - 1e-5
  assert rows_finished >= 2 and rows_finished < len(inputs)
  assert compared_with_greedy >= 1


def test_beam_search_ignores_padding_and_batch_neighbours():
  model, params, inputs = _fixture()
  tokens, scores = decoding.beam_search(model, params, inputs, MAX_LEN, BEAMS, ALPHA)
  # Each row alone, padded to a different width, gives the same beams.
  wider = np.zeros((1, inputs.shape[1] + 3), np.int32)
  for b in range(len(inputs)):
    wider[0, :inputs.shape[1]] = inputs[b]
    alone_tokens, alone_scores = decoding.beam_search(model, params, wider, MAX_LEN, BEAMS, ALPHA)
    np.testing.assert_array_equal(np.asarray(alone_tokens[0]), np.asarray(tokens[b]))
    np.testing.assert_allclose(np.asarray(alone_scores[0]), np.asarray(scores[b]), atol=1e-4)


def test_decoding_with_sharded_params_and_batch():
  model, params, inputs = _fixture()
  want_tokens, want_scores = decoding.beam_search(model, params, inputs, MAX_LEN, BEAMS, ALPHA)
  want_greedy = decoding.greedy_decode(model, params, inputs, MAX_LEN)
  order = np.array([0, 1, 2, 3, 3, 2, 1, 0])
  batch = inputs[order]  # 8 rows: 2 per data shard

  mesh = partitioning.create_mesh(num_partitions=2)
  shardings = partitioning.logical_to_sharding(t5.params_logical_axes(model.config), mesh)
  sharded_params = jax.device_put(params, shardings)
  sharded_batch = jax.device_put(batch, partitioning.batch_sharding(mesh))
  with jax.set_mesh(mesh):
    got_tokens, got_scores = decoding.beam_search(model, sharded_params, sharded_batch, MAX_LEN,
                                                  BEAMS, ALPHA)
    got_greedy = decoding.greedy_decode(model, sharded_params, sharded_batch, MAX_LEN)
  np.testing.assert_array_equal(np.asarray(got_tokens), np.asarray(want_tokens)[order])
  np.testing.assert_allclose(np.asarray(got_scores), np.asarray(want_scores)[order], atol=1e-4)
  np.testing.assert_array_equal(np.asarray(got_greedy), np.asarray(want_greedy)[order])


def test_loops_exit_early_without_changing_results():
  model, params, inputs = _fixture()
  short_tokens, short_scores = decoding.beam_search(model, params, inputs, MAX_LEN, BEAMS, ALPHA)
  short_greedy = np.asarray(decoding.greedy_decode(model, params, inputs, MAX_LEN))
  # Rows whose K finished beams are settled within MAX_LEN steps: a longer limit must stop early
  # (no live beam can beat them any more) and return the same beams.
  settled = [b for b in range(len(inputs))
             if all(EOS in beam.tolist() for beam in np.asarray(short_tokens[b]))]
  assert settled
  long_len = 4 * MAX_LEN
  tokens, scores, steps = decoding._beam_search(model.config, params, inputs[settled], long_len,
                                                BEAMS, jnp.float32(ALPHA), EOS)
  assert int(steps) < long_len
  np.testing.assert_array_equal(np.asarray(tokens)[:, :, :MAX_LEN],
                                np.asarray(short_tokens)[settled])
  assert not np.asarray(tokens)[:, :, MAX_LEN:].any()
  np.testing.assert_allclose(np.asarray(scores), np.asarray(short_scores)[settled], atol=1e-5)

  # Greedy stops once every row has produced EOS.
  ended = [b for b in range(len(inputs)) if EOS in short_greedy[b].tolist()]
  assert ended
  greedy_tokens, *_, greedy_steps = decoding._greedy(model.config, params, inputs[ended],
                                                     long_len, EOS)
  last_eos = max(short_greedy[b].tolist().index(EOS) + 1 for b in ended)
  assert int(greedy_steps) == last_eos
  np.testing.assert_array_equal(np.asarray(greedy_tokens)[:, :MAX_LEN], short_greedy[ended])
