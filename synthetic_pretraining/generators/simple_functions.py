"""The 18 simple tasks as pure functions: parsed arguments -> output ids (SPEC §1.2).

These are the reference definitions: the vectorised samplers compute the same outputs with numpy,
and the tests check both against each other and against the release's own lines. Every function
takes the argument lists (one for unary tasks, two for binary ones) and the `VocabSpec`, and returns
the raw output (possibly empty; `task_output` adds the empty-output marker).
"""

from __future__ import annotations

from typing import Callable, Sequence

from synthetic_pretraining.vocab_spec import VocabSpec

Ids = Sequence[int]

# Special ids, as extra ids of the vocabulary (SPEC §1.1).
TASK_DIVIDER_EXTRA_ID = 0  # between the task-name prefix and the arguments
WORD_DIVIDER_EXTRA_ID = 1  # between words (longest_word)
ARG_DIVIDER_EXTRA_ID = 2  # between the two arguments of a binary task
EMPTY_OUTPUT_EXTRA_ID = 3  # the whole output when the true output is empty


def identity(x: Ids, spec: VocabSpec) -> list[int]:
  del spec
  return list(x)


def reverse(x: Ids, spec: VocabSpec) -> list[int]:
  del spec
  return list(x)[::-1]


def duplicate(x: Ids, spec: VocabSpec) -> list[int]:
  del spec
  return [t for t in x for _ in (0, 1)]


def first_token(x: Ids, spec: VocabSpec) -> list[int]:
  del spec
  return [x[0]]


def last_token(x: Ids, spec: VocabSpec) -> list[int]:
  del spec
  return [x[-1]]


def length(x: Ids, spec: VocabSpec) -> list[int]:
  return spec.encode(str(len(x)))


def set_(x: Ids, spec: VocabSpec) -> list[int]:
  del spec
  return list(dict.fromkeys(x))


def deduplicate(x: Ids, spec: VocabSpec) -> list[int]:
  del spec
  return [t for i, t in enumerate(x) if i == 0 or x[i - 1] != t]


def longest_word(x: Ids, spec: VocabSpec) -> list[int]:
  """The first word of maximal length; words are separated by <extra_id_1>."""
  divider = spec.extra_id(WORD_DIVIDER_EXTRA_ID)
  best: list[int] = []
  word: list[int] = []
  for t in x:
    if t == divider:
      word = []
      continue
    word.append(t)
    if len(word) > len(best):
      best = word
  return list(best)


def find(a: Ids, b: Ids) -> int:
  """Index of the first occurrence of b as a contiguous sub-list of a, or -1."""
  a, b = list(a), list(b)
  n = len(b)
  for i in range(len(a) - n + 1):
    if a[i:i + n] == b:
      return i
  return -1


def count(a: Ids, b: Ids, spec: VocabSpec) -> list[int]:
  query = b[0]
  return spec.encode(str(sum(1 for t in a if t == query)))


def search(a: Ids, b: Ids, spec: VocabSpec) -> list[int]:
  return spec.encode("yes" if find(a, b) != -1 else "no")


def delete(a: Ids, b: Ids, spec: VocabSpec) -> list[int]:
  """a with the first occurrence of b removed (a unchanged if b does not occur)."""
  del spec
  i = find(a, b)
  a = list(a)
  return a if i == -1 else a[:i] + a[i + len(b):]


def sort(a: Ids, b: Ids, spec: VocabSpec) -> list[int]:
  """a stably sorted by each token's index in the order list b (its last index if repeated)."""
  del spec
  rank = {t: i for i, t in enumerate(b)}
  return sorted(a, key=lambda t: rank[t])


def replace(a: Ids, b: Ids, spec: VocabSpec) -> list[int]:
  """b = [key, value] (or more pairs): every key in a replaced by its value."""
  del spec
  mapping = {b[i]: b[i + 1] for i in range(0, len(b) - 1, 2)}
  return [mapping.get(t, t) for t in a]


# The set operations return CPython's iteration order of a set of Python ints, as the release.
def union(a: Ids, b: Ids, spec: VocabSpec) -> list[int]:
  del spec
  return list(set(a) | set(b))


def intersect(a: Ids, b: Ids, spec: VocabSpec) -> list[int]:
  del spec
  return list(set(a) & set(b))


def set1_minus_set2(a: Ids, b: Ids, spec: VocabSpec) -> list[int]:
  del spec
  return list(set(a) - set(b))


def set2_minus_set1(a: Ids, b: Ids, spec: VocabSpec) -> list[int]:
  del spec
  return list(set(b) - set(a))


UNARY_FUNCTIONS: dict[str, Callable[[Ids, VocabSpec], list[int]]] = {
    "identity": identity, "reverse": reverse, "duplicate": duplicate,
    "first_token": first_token, "last_token": last_token, "length": length, "set": set_,
    "deduplicate": deduplicate, "longest_word": longest_word,
}
BINARY_FUNCTIONS: dict[str, Callable[[Ids, Ids, VocabSpec], list[int]]] = {
    "count": count, "search": search, "delete": delete, "sort": sort, "replace": replace,
    "union": union, "intersect": intersect, "set1_minus_set2": set1_minus_set2,
    "set2_minus_set1": set2_minus_set1,
}

# Paper id -> the release's code name (the task-name prefix is the code name, tokenised).
CODE_NAMES: dict[str, str] = {
    "identity": "copy", "reverse": "reverse", "duplicate": "duplicate",
    "first_token": "first_char", "last_token": "last_char", "length": "length", "set": "set",
    "deduplicate": "deduplicate", "longest_word": "longest_word", "count": "count",
    "search": "search", "delete": "delete", "sort": "sort", "replace": "replace",
    "union": "union", "intersect": "intersect", "set1_minus_set2": "set_1_minus_2",
    "set2_minus_set1": "set_2_minus_1",
}
SIMPLE_TASK_NAMES: tuple[str, ...] = tuple(CODE_NAMES)


def is_binary(task: str) -> bool:
  return task in BINARY_FUNCTIONS


def task_prefix(task: str, spec: VocabSpec) -> list[int]:
  """Ids before the arguments: the tokenised code name and <extra_id_0>."""
  return spec.encode(CODE_NAMES[task]) + [spec.extra_id(TASK_DIVIDER_EXTRA_ID)]


def task_output(task: str, args: Sequence[Ids], spec: VocabSpec) -> list[int]:
  """The output ids of `task` for parsed arguments, with <extra_id_3> for an empty output."""
  if task in UNARY_FUNCTIONS:
    if len(args) != 1:
      raise ValueError(f"task {task!r} takes one argument, got {len(args)}")
    out = UNARY_FUNCTIONS[task](args[0], spec)
  elif task in BINARY_FUNCTIONS:
    if len(args) != 2:
      raise ValueError(f"task {task!r} takes two arguments, got {len(args)}")
    out = BINARY_FUNCTIONS[task](args[0], args[1], spec)
  else:
    raise ValueError(f"unknown simple task {task!r}; valid: {', '.join(SIMPLE_TASK_NAMES)}")
  return [int(t) for t in out] or [spec.extra_id(EMPTY_OUTPUT_EXTRA_ID)]


def task_input(task: str, args: Sequence[Ids], spec: VocabSpec) -> list[int]:
  """The input ids for arguments: prefix + x, or prefix + a + <extra_id_2> + b."""
  ids = task_prefix(task, spec) + [int(t) for t in args[0]]
  if is_binary(task):
    ids += [spec.extra_id(ARG_DIVIDER_EXTRA_ID)] + [int(t) for t in args[1]]
  return ids


def split_input(task: str, inputs: Ids, spec: VocabSpec) -> tuple[list[int], ...]:
  """Checks the task prefix of an input and returns its arguments (inverse of `task_input`)."""
  prefix = task_prefix(task, spec)
  inputs = [int(t) for t in inputs]
  if inputs[:len(prefix)] != prefix:
    raise ValueError(f"input does not start with the {task!r} prefix {prefix}: "
                     f"{inputs[:len(prefix)]}")
  body = inputs[len(prefix):]
  if not is_binary(task):
    return (body,)
  divider = spec.extra_id(ARG_DIVIDER_EXTRA_ID)
  if divider not in body:
    raise ValueError(f"binary task {task!r}: no argument divider {divider} in the input")
  i = body.index(divider)
  return body[:i], body[i + 1:]
