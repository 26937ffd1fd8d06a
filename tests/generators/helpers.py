"""Shared test helpers: a T5-like VocabSpec that needs no SentencePiece model."""

from synthetic_pretraining.vocab_spec import VocabSpec

# Task-name prefixes observed in the release's lines (SPEC §1.1).
T5_CODE_NAME_IDS = {
    "copy": [2405], "set": [356], "sort": [1843], "union": [7021], "reverse": [7211],
    "search": [960], "replace": [3601], "length": [2475], "delete": [9268], "count": [3476],
    "duplicate": [19197], "intersect": [27806], "deduplicate": [20, 26, 413, 26221],
    "first_char": [166, 834, 4059], "last_char": [336, 834, 4059],
    "longest_word": [14783, 834, 6051], "set_1_minus_2": [356, 834, 536, 834, 14078, 834, 357],
    "set_2_minus_1": [356, 834, 357, 834, 14078, 834, 536],
}
# Answers whose T5 ids the SPEC gives; "220" is returned with the lone "▁" (id 3) in front, which
# VocabSpec.encode must drop.
T5_ANSWER_IDS = {"yes": [4273], "no": [150], "6": [431], "9": [668], "22": [1630], "45": [3479],
                 "220": [3, 204, 1755]}


def _fake_t5_encode(text: str) -> list[int]:
  if text in T5_CODE_NAME_IDS:
    return list(T5_CODE_NAME_IDS[text])
  if text in T5_ANSWER_IDS:
    return list(T5_ANSWER_IDS[text])
  # Anything else (other numbers): a deterministic stand-in inside the symbol range.
  return [3] + [1000 + ord(c) for c in text]


def t5_like_spec() -> VocabSpec:
  """T5's id layout (symbols 2..31999, extra ids 32000..32099) with a table-driven encoder."""
  return VocabSpec(symbol_low=2, symbol_high=31999, base_vocab_size=32000, num_extra_ids=100,
                   encode_fn=_fake_t5_encode, space_piece_id=3, name="t5-fake")


def decode_bytes(ids) -> str:
  """ByteVocabulary decoding of ordinary byte ids (id - 3)."""
  return bytes(int(i) - 3 for i in ids).decode("utf-8")
