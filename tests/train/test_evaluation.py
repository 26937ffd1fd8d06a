"""InferenceEvaluator's predict_fn: seqio-ready (index, ids) pairs of one length."""

import numpy as np
import seqio
import tensorflow as tf

from synthetic_pretraining.train import decoding
from synthetic_pretraining.train import evaluation


class _FakeTrainer:
  model = None


def test_predictions_are_padded_to_one_length_and_decode_unchanged(monkeypatch):
  ragged = [[5, 6, 7], [8], [], [9, 10, 11, 12, 13]]

  def fake_decode(model, params, tokens, max_len, beam_size, alpha):
    del model, params, beam_size, alpha
    assert tokens.shape == (3, 4) and max_len == 6  # the last batch is padded to batch_size
    return [list(r) for r in ragged[int(tokens[0, 0]):int(tokens[0, 0]) + 3]]

  monkeypatch.setattr(decoding, "decode_tokens", fake_decode)
  ev = evaluation.InferenceEvaluator(mixture_or_task_name="unused",
                                     task_feature_lengths={"inputs": 4, "targets": 6},
                                     batch_size=3, beam_size=2)
  features = {"encoder_input_tokens": np.array([[0] * 4, [0] * 4, [0] * 4, [3] * 4], np.int32)}
  ds = tf.data.Dataset.from_tensor_slices(features).enumerate()
  outputs = ev.predict_fn(_FakeTrainer(), params=None)(ds)
  assert [i for i, _ in outputs] == [0, 1, 2, 3]
  stacked = np.array([ids for _, ids in outputs])  # what seqio does with them
  assert stacked.shape == (4, 6)
  vocab = seqio.ByteVocabulary()
  expected = [[5, 6, 7], [8], [], [9, 10, 11, 12, 13]]
  assert [vocab.decode(list(row)) for row in stacked] == [vocab.decode(e) for e in expected]
