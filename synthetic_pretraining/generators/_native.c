/* Row-wise kernels of the synthetic-task generators, for whole blocks of id rows at once.
 *
 * set_operation: set operations with CPython's set iteration order.
 *
 * The release writes list(set(a) | set(b)) (and &, a - b, b - a): its output order is the order of
 * CPython's set hash table. For ints 0 <= v < 2**61 - 1, hash(v) == v, so that order depends only on
 * the values and on how the table was built. This module re-creates CPython 3.11's set tables
 * (open addressing, 9 linear probes then perturbed jumps, growth at 3/5 fill, the copy/merge/
 * intersection/difference strategies of setobject.c) on plain int64 arrays, for whole blocks of
 * rows at once, without the GIL and without allocating per row. tests/generators/test_setops.py
 * checks it against real Python sets.
 *
 * first_occurrence / group_representatives: per-row "first of its value" flags and "index of the
 * first (or last) equal element", with a small hash map per row (the numpy versions in ragged.py
 * sort every row; tests/generators/test_native.py checks both agree).
 *
 * gather_segments: concatenation of many short slices (how rows are assembled from pieces).
 *
 * distinct_draws: per-row samples without replacement by sequential rejection.
 *
 * run_labels: the labels step of the Set sampler.
 *
 * shuffle_rows: per-row Fisher-Yates shuffles driven by random words drawn by numpy.
 *
 * Pure functions of their inputs (randomness stays in numpy). `native.py` loads this module;
 * callers fall back to the numpy / Python versions when it is not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LINEAR_PROBES 9
#define PERTURB_SHIFT 5
#define MIN_SIZE 8
#define EMPTY ((int32_t)-1)
#define DUMMY ((int32_t)-2)

enum { OP_UNION = 0, OP_INTERSECT = 1, OP_A_MINUS_B = 2, OP_B_MINUS_A = 3 };

/* A set's hash table. Its slots live in one of two buffers of a preallocated arena (the other
 * receives the table when it grows), so no row allocates memory. Keys are >= 0; EMPTY and DUMMY
 * (a deleted key) are negative. */
typedef struct {
  int32_t *slots;
  int32_t *spare;
  int32_t *keys; /* scratch for this table's keys: by its own resize, and by operations that read
                  * this table while they fill another one (never while this one changes) */
  size_t mask;
  Py_ssize_t fill; /* active + dummy slots */
  Py_ssize_t used; /* active slots */
} table_t;

static void table_init(table_t *t, int32_t *buffers, size_t capacity) {
  t->slots = buffers;
  t->spare = buffers + capacity;
  t->keys = buffers + 2 * capacity;
  t->mask = MIN_SIZE - 1;
  t->fill = t->used = 0;
  for (int i = 0; i < MIN_SIZE; i++) t->slots[i] = EMPTY;
}

/* Writes the table's keys in slot order to keys (branch-free: the slots' fill pattern is random,
 * so a branch per slot would mispredict about half the time); returns their count. keys needs
 * room for mask + 2 entries. */
static size_t table_keys(const int32_t *slots, size_t mask, int32_t *keys) {
  size_t count = 0;
  for (size_t i = 0; i <= mask; i++) {
    int32_t key = slots[i];
    keys[count] = key;
    count += key >= 0;
  }
  return count;
}

/* Places key in the first empty slot of its probe sequence (no dummies, key absent). */
static void insert_clean(int32_t *slots, size_t mask, int32_t key) {
  size_t perturb = (size_t)key;
  size_t i = (size_t)key & mask;
  for (;;) {
    if (slots[i] == EMPTY) {
      slots[i] = key;
      return;
    }
    if (i + LINEAR_PROBES <= mask) {
      for (size_t j = 1; j <= LINEAR_PROBES; j++) {
        if (slots[i + j] == EMPTY) {
          slots[i + j] = key;
          return;
        }
      }
    }
    perturb >>= PERTURB_SHIFT;
    i = (i * 5 + 1 + perturb) & mask;
  }
}

/* Re-creates the table at the smallest power-of-two size > minused (>= 8), in old slot order. */
static void table_resize(table_t *t, Py_ssize_t minused) {
  size_t size = MIN_SIZE;
  while (size <= (size_t)minused) size <<= 1;
  int32_t *slots = t->spare;
  memset(slots, 0xff, size * sizeof(int32_t)); /* all EMPTY (-1) */
  size_t count = table_keys(t->slots, t->mask, t->keys);
  for (size_t k = 0; k < count; k++) insert_clean(slots, size - 1, t->keys[k]);
  t->spare = t->slots;
  t->slots = slots;
  t->mask = size - 1;
  t->fill = t->used;
}

static void table_add(table_t *t, int32_t key) {
  size_t mask = t->mask;
  size_t perturb = (size_t)key;
  size_t i = (size_t)key & mask;
  int32_t *entry = &t->slots[i];
  if (*entry == EMPTY) goto found_unused; /* the common case at <= 60% fill */
  for (;;) {
    size_t probes = (i + LINEAR_PROBES <= mask) ? LINEAR_PROBES : 0;
    entry = &t->slots[i];
    do {
      if (*entry == EMPTY) goto found_unused;
      if (*entry == key) return;
      entry++;
    } while (probes--);
    perturb >>= PERTURB_SHIFT;
    i = (i * 5 + 1 + perturb) & mask;
  }
found_unused:
  *entry = key;
  t->fill++;
  t->used++;
  if ((size_t)t->fill * 5 < mask * 3) return;
  table_resize(t, t->used > 50000 ? t->used * 2 : t->used * 4);
}

/* Slot holding key, or NULL. */
static int32_t *table_find(const table_t *t, int32_t key) {
  size_t mask = t->mask;
  size_t perturb = (size_t)key;
  size_t i = (size_t)key & mask;
  for (;;) {
    size_t probes = (i + LINEAR_PROBES <= mask) ? LINEAR_PROBES : 0;
    int32_t *entry = &t->slots[i];
    do {
      if (*entry == EMPTY) return NULL;
      if (*entry == key) return entry;
      entry++;
    } while (probes--);
    perturb >>= PERTURB_SHIFT;
    i = (i * 5 + 1 + perturb) & mask;
  }
}

static void table_discard(table_t *t, int32_t key) {
  int32_t *entry = table_find(t, key);
  if (entry != NULL) {
    *entry = DUMMY;
    t->used--;
  }
}

/* so |= other, the way set_merge does it (so may be empty: then it copies other's layout). */
static void table_merge(table_t *so, const table_t *other) {
  if (other->used == 0) return;
  if ((size_t)(so->fill + other->used) * 5 >= so->mask * 3) {
    table_resize(so, (so->used + other->used) * 2);
  }
  if (so->fill == 0 && so->mask == other->mask && other->fill == other->used) {
    memcpy(so->slots, other->slots, (other->mask + 1) * sizeof(int32_t));
    so->fill = other->fill;
    so->used = other->used;
    return;
  }
  int32_t *keys = other->keys;
  size_t count = table_keys(other->slots, other->mask, keys);
  if (so->fill == 0) {
    so->fill = so->used = other->used;
    for (size_t k = 0; k < count; k++) insert_clean(so->slots, so->mask, keys[k]);
    return;
  }
  for (size_t k = 0; k < count; k++) table_add(so, keys[k]);
}

/* result = so & other (result starts empty): iterate the smaller set, keep keys the other holds. */
static void table_intersection(table_t *result, const table_t *so, const table_t *other) {
  if (other->used > so->used) {
    const table_t *tmp = so;
    so = other;
    other = tmp;
  }
  int32_t *keys = other->keys;
  size_t count = table_keys(other->slots, other->mask, keys);
  for (size_t k = 0; k < count; k++) {
    if (table_find(so, keys[k]) != NULL) table_add(result, keys[k]);
  }
}

/* so -= other; `common` is scratch for the intersection CPython takes when other is much larger. */
static void table_difference_update(table_t *so, const table_t *other, table_t *common) {
  if ((other->used >> 3) > so->used) {
    table_intersection(common, so, other);
    other = common;
  }
  int32_t *keys = other->keys;
  size_t count = table_keys(other->slots, other->mask, keys);
  for (size_t k = 0; k < count; k++) table_discard(so, keys[k]);
  if ((size_t)(so->fill - so->used) <= so->mask / 4) return;
  table_resize(so, so->used > 50000 ? so->used * 2 : so->used * 4);
}

/* result = so - other (result starts empty). */
static void table_difference(table_t *result, const table_t *so, const table_t *other,
                             table_t *scratch) {
  if (so->used == 0) return;
  if ((so->used >> 2) > other->used) { /* copy, then discard other's keys */
    table_merge(result, so);
    table_difference_update(result, other, scratch);
    return;
  }
  int32_t *keys = so->keys;
  size_t count = table_keys(so->slots, so->mask, keys);
  for (size_t k = 0; k < count; k++) {
    if (table_find(other, keys[k]) == NULL) table_add(result, keys[k]);
  }
}

/* One row: writes the result's keys in table order to out (which needs one spare entry past the
 * row's len(a) + len(b)); returns their count. `arena` holds 12 buffers of `capacity` slots, enough
 * for any table of this row (see set_operation). */
static int64_t row_operation(int op, const int32_t *a, int64_t a_len, const int32_t *b,
                             int64_t b_len, int32_t *out, int32_t *arena, size_t capacity) {
  table_t ta, tb, result, scratch;
  table_init(&ta, arena, capacity);
  table_init(&tb, arena + 3 * capacity, capacity);
  table_init(&result, arena + 6 * capacity, capacity);
  table_init(&scratch, arena + 9 * capacity, capacity);
  for (int64_t i = 0; i < a_len; i++) table_add(&ta, a[i]);
  for (int64_t i = 0; i < b_len; i++) table_add(&tb, b[i]);
  switch (op) {
    case OP_UNION:
      table_merge(&result, &ta);
      table_merge(&result, &tb);
      break;
    case OP_INTERSECT:
      table_intersection(&result, &ta, &tb);
      break;
    case OP_A_MINUS_B:
      table_difference(&result, &ta, &tb, &scratch);
      break;
    default:
      table_difference(&result, &tb, &ta, &scratch);
      break;
  }
  return (int64_t)table_keys(result.slots, result.mask, out);
}

static int check_buffer(const Py_buffer *buf, Py_ssize_t itemsize, const char *name) {
  if (buf->len % itemsize != 0) {
    PyErr_Format(PyExc_ValueError, "%s: byte length %zd is not a multiple of %zd", name, buf->len,
                 itemsize);
    return -1;
  }
  return 0;
}

static PyObject *set_operation(PyObject *self, PyObject *args) {
  (void)self;
  int op;
  Py_buffer a_values, a_lengths, b_values, b_lengths, out_values, out_lengths;
  if (!PyArg_ParseTuple(args, "iy*y*y*y*w*w*", &op, &a_values, &a_lengths, &b_values, &b_lengths,
                        &out_values, &out_lengths)) {
    return NULL;
  }
  PyObject *result = NULL;
  const int32_t *av = (const int32_t *)a_values.buf, *bv = (const int32_t *)b_values.buf;
  const int64_t *al = (const int64_t *)a_lengths.buf, *bl = (const int64_t *)b_lengths.buf;
  int32_t *ov = (int32_t *)out_values.buf;
  int64_t *ol = (int64_t *)out_lengths.buf;
  Py_ssize_t rows = a_lengths.len / 8;
  Py_ssize_t na = a_values.len / 4, nb = b_values.len / 4, nout = out_values.len / 4;
  if (op < OP_UNION || op > OP_B_MINUS_A) {
    PyErr_Format(PyExc_ValueError, "op must be 0 (union), 1 (intersect), 2 (a - b) or 3 (b - a), "
                 "got %d", op);
    goto done;
  }
  if (check_buffer(&a_values, 4, "a_values") < 0 || check_buffer(&b_values, 4, "b_values") < 0 ||
      check_buffer(&out_values, 4, "out_values") < 0 ||
      check_buffer(&a_lengths, 8, "a_lengths") < 0 || check_buffer(&b_lengths, 8, "b_lengths") < 0 ||
      check_buffer(&out_lengths, 8, "out_lengths") < 0) {
    goto done;
  }
  if (b_lengths.len / 8 != rows || out_lengths.len / 8 != rows) {
    PyErr_SetString(PyExc_ValueError, "a_lengths, b_lengths and out_lengths must have one entry "
                    "per row");
    goto done;
  }
  int64_t total_a = 0, total_b = 0;
  for (Py_ssize_t r = 0; r < rows; r++) {
    if (al[r] < 0 || bl[r] < 0) {
      PyErr_Format(PyExc_ValueError, "row %zd: negative length", r);
      goto done;
    }
    total_a += al[r];
    total_b += bl[r];
  }
  if (total_a != na || total_b != nb) {
    PyErr_Format(PyExc_ValueError, "lengths sum to %lld and %lld but there are %zd and %zd values",
                 (long long)total_a, (long long)total_b, na, nb);
    goto done;
  }
  if (nout < na + nb + 1) {
    PyErr_Format(PyExc_ValueError, "out_values holds %zd ids, needs len(a) + len(b) + 1 = %zd",
                 nout, na + nb + 1);
    goto done;
  }
  for (Py_ssize_t i = 0; i < na; i++) {
    if (av[i] < 0) {
      PyErr_Format(PyExc_ValueError, "a_values[%zd] = %d: ids must be non-negative", i, av[i]);
      goto done;
    }
  }
  for (Py_ssize_t i = 0; i < nb; i++) {
    if (bv[i] < 0) {
      PyErr_Format(PyExc_ValueError, "b_values[%zd] = %d: ids must be non-negative", i, bv[i]);
      goto done;
    }
  }
  /* Every table of a row has fewer than 8 * (len(a) + len(b)) + 8 slots: sets grow to the
   * smallest power of two above 4 * used (merges: above 2 * (used + other)). */
  int64_t longest = 0;
  for (Py_ssize_t r = 0; r < rows; r++) {
    if (al[r] + bl[r] > longest) longest = al[r] + bl[r];
  }
  size_t capacity = 2 * MIN_SIZE;
  while (capacity <= (size_t)(8 * longest) + 1) capacity <<= 1;
  int32_t *arena = (int32_t *)malloc(12 * capacity * sizeof(int32_t));
  if (arena == NULL) {
    PyErr_NoMemory();
    goto done;
  }
  int64_t written = 0;
  Py_BEGIN_ALLOW_THREADS
  for (Py_ssize_t r = 0; r < rows; r++) {
    int64_t count = row_operation(op, av, al[r], bv, bl[r], ov + written, arena, capacity);
    ol[r] = count;
    written += count;
    av += al[r];
    bv += bl[r];
  }
  Py_END_ALLOW_THREADS
  free(arena);
  result = PyLong_FromLongLong((long long)written);
done:
  PyBuffer_Release(&a_values);
  PyBuffer_Release(&a_lengths);
  PyBuffer_Release(&b_values);
  PyBuffer_Release(&b_lengths);
  PyBuffer_Release(&out_values);
  PyBuffer_Release(&out_lengths);
  return result;
}

/* ---- per-row hash maps: value -> flat index of its first (or last) element ---------------- */

static inline size_t hash_slot(int32_t value, unsigned shift) {
  return (size_t)(((uint64_t)(uint32_t)value * 0x9E3779B97F4A7C15ull) >> shift);
}

/* Per row, a map (2**bits slots of flat indices, -1 = empty) from each value to the flat index of
 * its first element (or last, if `last`). Writes reps[j] = that index for every element j, or, if
 * reps is NULL, first[j] = 1 where j is that element and 0 elsewhere. */
static int rows_representatives(const int32_t *values, const int64_t *lengths, Py_ssize_t rows,
                                int last, int64_t *reps, uint8_t *first) {
  int64_t longest = 0;
  for (Py_ssize_t r = 0; r < rows; r++) {
    if (lengths[r] > longest) longest = lengths[r];
  }
  size_t capacity = 16;
  while (capacity < (size_t)(2 * longest)) capacity <<= 1;
  int64_t *map = (int64_t *)malloc(capacity * sizeof(int64_t));
  if (map == NULL) return -1;
  int64_t start = 0;
  for (Py_ssize_t r = 0; r < rows; r++) {
    int64_t n = lengths[r];
    unsigned bits = 4;
    while (((size_t)1 << bits) < (size_t)(2 * n)) bits++;
    size_t mask = ((size_t)1 << bits) - 1;
    memset(map, 0xff, (mask + 1) * sizeof(int64_t));
    for (int64_t k = 0; k < n; k++) {
      int64_t j = last ? start + n - 1 - k : start + k;
      int32_t v = values[j];
      size_t slot = hash_slot(v, 64 - bits);
      for (;;) {
        int64_t held = map[slot];
        if (held < 0) {
          map[slot] = j;
          if (reps) reps[j] = j; else first[j] = 1;
          break;
        }
        if (values[held] == v) {
          if (reps) reps[j] = held; else first[j] = 0;
          break;
        }
        slot = (slot + 1) & mask;
      }
    }
    start += n;
  }
  free(map);
  return 0;
}

/* Checks that `lengths` (int64, one per row) are >= 0 and sum to the number of `itemsize`-byte
 * entries of `values`; sets *rows. */
static int parse_rows_of(Py_buffer *values, Py_ssize_t itemsize, const char *name,
                         Py_buffer *lengths, Py_ssize_t *rows) {
  if (check_buffer(values, itemsize, name) < 0 || check_buffer(lengths, 8, "lengths") < 0) {
    return -1;
  }
  const int64_t *l = (const int64_t *)lengths->buf;
  *rows = lengths->len / 8;
  int64_t total = 0;
  for (Py_ssize_t r = 0; r < *rows; r++) {
    if (l[r] < 0) {
      PyErr_Format(PyExc_ValueError, "row %zd: negative length", r);
      return -1;
    }
    total += l[r];
  }
  if (total != values->len / itemsize) {
    PyErr_Format(PyExc_ValueError, "lengths sum to %lld but there are %zd %s",
                 (long long)total, values->len / itemsize, name);
    return -1;
  }
  return 0;
}

static int parse_rows(Py_buffer *values, Py_buffer *lengths, Py_ssize_t *rows) {
  return parse_rows_of(values, 4, "values", lengths, rows);
}

static PyObject *group_representatives(PyObject *self, PyObject *args) {
  Py_buffer values, lengths, out;
  int last;
  (void)self;
  if (!PyArg_ParseTuple(args, "y*y*pw*", &values, &lengths, &last, &out)) return NULL;
  PyObject *result = NULL;
  Py_ssize_t rows;
  if (parse_rows(&values, &lengths, &rows) < 0) goto done;
  if (out.len != values.len * 2) {
    PyErr_SetString(PyExc_ValueError, "out must hold one int64 per value");
    goto done;
  }
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = rows_representatives((const int32_t *)values.buf, (const int64_t *)lengths.buf, rows, last,
                            (int64_t *)out.buf, NULL);
  Py_END_ALLOW_THREADS
  if (rc < 0) {
    PyErr_NoMemory();
    goto done;
  }
  result = Py_NewRef(Py_None);
done:
  PyBuffer_Release(&values);
  PyBuffer_Release(&lengths);
  PyBuffer_Release(&out);
  return result;
}

static PyObject *first_occurrence(PyObject *self, PyObject *args) {
  Py_buffer values, lengths, out;
  (void)self;
  if (!PyArg_ParseTuple(args, "y*y*w*", &values, &lengths, &out)) return NULL;
  PyObject *result = NULL;
  Py_ssize_t rows;
  if (parse_rows(&values, &lengths, &rows) < 0) goto done;
  if (out.len * 4 != values.len) {
    PyErr_SetString(PyExc_ValueError, "out must hold one byte (bool) per value");
    goto done;
  }
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = rows_representatives((const int32_t *)values.buf, (const int64_t *)lengths.buf, rows, 0,
                            NULL, (uint8_t *)out.buf);
  Py_END_ALLOW_THREADS
  if (rc < 0) {
    PyErr_NoMemory();
    goto done;
  }
  result = Py_NewRef(Py_None);
done:
  PyBuffer_Release(&values);
  PyBuffer_Release(&lengths);
  PyBuffer_Release(&out);
  return result;
}

/* ---- distinct draws ---------------------------------------------------------------------- */

/* Row r draws sizes[r] distinct indices in [0, alphabet) by sequential rejection: index =
 * floor(U * alphabet), U = (word >> 11) / 2**53 from the next word, skipped if the row already
 * holds it. Returns the number of words used, or -1 if they ran out (ragged.distinct_draws then
 * appends more words and calls again, which reproduces the same prefix). */
static int64_t rows_distinct(const int64_t *sizes, Py_ssize_t rows, int64_t alphabet,
                             const uint64_t *words, int64_t num_words, int64_t *out,
                             int64_t *set) {
  int64_t used = 0, written = 0;
  for (Py_ssize_t r = 0; r < rows; r++) {
    unsigned bits = 4;
    while (((size_t)1 << bits) < (size_t)(2 * sizes[r])) bits++;
    size_t mask = ((size_t)1 << bits) - 1;
    memset(set, 0xff, (mask + 1) * sizeof(int64_t)); /* the set of indices drawn: -1 = empty */
    for (int64_t have = 0; have < sizes[r];) {
      if (used == num_words) return -1;
      int64_t index = (int64_t)((double)(words[used++] >> 11) * 0x1.0p-53 * (double)alphabet);
      size_t slot = hash_slot((int32_t)index, 64 - bits);
      while (set[slot] >= 0 && set[slot] != index) slot = (slot + 1) & mask;
      if (set[slot] < 0) {
        set[slot] = index;
        out[written++] = index;
        have++;
      }
    }
  }
  return used;
}

static PyObject *distinct_draws(PyObject *self, PyObject *args) {
  Py_buffer sizes, words, out;
  long long alphabet;
  (void)self;
  if (!PyArg_ParseTuple(args, "y*Ly*w*", &sizes, &alphabet, &words, &out)) return NULL;
  PyObject *result = NULL;
  if (check_buffer(&sizes, 8, "sizes") < 0 || check_buffer(&words, 8, "words") < 0 ||
      check_buffer(&out, 8, "out") < 0) {
    goto done;
  }
  Py_ssize_t rows = sizes.len / 8;
  const int64_t *sz = (const int64_t *)sizes.buf;
  int64_t total = 0, largest = 0;
  for (Py_ssize_t r = 0; r < rows; r++) {
    if (sz[r] < 0 || sz[r] > alphabet) {
      PyErr_Format(PyExc_ValueError, "row %zd: cannot draw %lld distinct ids from %lld", r,
                   (long long)sz[r], alphabet);
      goto done;
    }
    total += sz[r];
    if (sz[r] > largest) largest = sz[r];
  }
  if (out.len != 8 * total) {
    PyErr_SetString(PyExc_ValueError, "out must hold sum(sizes) int64 entries");
    goto done;
  }
  size_t capacity = 16;
  while (capacity < (size_t)(2 * largest)) capacity <<= 1;
  int64_t *set = (int64_t *)malloc(capacity * sizeof(int64_t));
  if (set == NULL) {
    PyErr_NoMemory();
    goto done;
  }
  int64_t used;
  Py_BEGIN_ALLOW_THREADS
  used = rows_distinct(sz, rows, alphabet, (const uint64_t *)words.buf, words.len / 8,
                       (int64_t *)out.buf, set);
  Py_END_ALLOW_THREADS
  free(set);
  result = PyLong_FromLongLong((long long)used);
done:
  PyBuffer_Release(&sizes);
  PyBuffer_Release(&words);
  PyBuffer_Release(&out);
  return result;
}

/* ---- run labels of the Set sampler ------------------------------------------------------- */

/* Row r holds lengths[r] positions; seed[j] marks its k_r >= 1 "seed" positions. Seeds take the
 * row's labels offset_r + 0 .. offset_r + k_r - 1 in position order, every other position the
 * label offset_r + floor(uniform[j] * k_r), where offset_r = k_0 + ... + k_{r-1}. */
static PyObject *run_labels(PyObject *self, PyObject *args) {
  Py_buffer lengths, seed, uniform, out;
  (void)self;
  if (!PyArg_ParseTuple(args, "y*y*y*w*", &lengths, &seed, &uniform, &out)) return NULL;
  PyObject *result = NULL;
  Py_ssize_t rows, n = seed.len;
  if (parse_rows_of(&seed, 1, "seed flags", &lengths, &rows) < 0) goto done;
  if (uniform.len != 8 * n || out.len != 8 * n) {
    PyErr_SetString(PyExc_ValueError, "uniform (float64) and out (int64) must hold one entry "
                    "per seed flag");
    goto done;
  }
  const int64_t *l = (const int64_t *)lengths.buf;
  const uint8_t *sd = (const uint8_t *)seed.buf;
  const double *u = (const double *)uniform.buf;
  int64_t *lab = (int64_t *)out.buf;
  int64_t start = 0, offset = 0;
  for (Py_ssize_t r = 0; r < rows; r++) {
    int64_t k = 0;
    for (int64_t j = start; j < start + l[r]; j++) k += sd[j] != 0;
    if (k == 0 && l[r] > 0) {
      PyErr_Format(PyExc_ValueError, "row %zd has no seed position", r);
      goto done;
    }
    int64_t seen = 0;
    for (int64_t j = start; j < start + l[r]; j++) {
      int64_t other = offset + (int64_t)(u[j] * (double)k);
      lab[j] = sd[j] ? offset + seen : other;
      seen += sd[j] != 0;
    }
    start += l[r];
    offset += k;
  }
  result = PyLong_FromLongLong((long long)offset);
done:
  PyBuffer_Release(&lengths);
  PyBuffer_Release(&seed);
  PyBuffer_Release(&uniform);
  PyBuffer_Release(&out);
  return result;
}

/* ---- segment gathers ----------------------------------------------------------------------- */

static PyObject *gather_segments(PyObject *self, PyObject *args) {
  Py_buffer source, starts, lengths, out;
  (void)self;
  if (!PyArg_ParseTuple(args, "y*y*y*w*", &source, &starts, &lengths, &out)) return NULL;
  PyObject *result = NULL;
  if (check_buffer(&source, 4, "source") < 0 || check_buffer(&starts, 8, "starts") < 0 ||
      check_buffer(&lengths, 8, "lengths") < 0 || check_buffer(&out, 4, "out") < 0) {
    goto done;
  }
  Py_ssize_t segments = starts.len / 8, size = source.len / 4;
  if (lengths.len != starts.len) {
    PyErr_SetString(PyExc_ValueError, "starts and lengths must have one entry per segment");
    goto done;
  }
  const int64_t *s = (const int64_t *)starts.buf, *l = (const int64_t *)lengths.buf;
  int64_t total = 0;
  for (Py_ssize_t k = 0; k < segments; k++) {
    if (l[k] < 0 || s[k] < 0 || s[k] + l[k] > size) {
      PyErr_Format(PyExc_ValueError, "segment %zd = [%lld, %lld) lies outside the source of %zd ids",
                   k, (long long)s[k], (long long)(s[k] + l[k]), size);
      goto done;
    }
    total += l[k];
  }
  if (total != out.len / 4) {
    PyErr_Format(PyExc_ValueError, "segments hold %lld ids but out has room for %zd",
                 (long long)total, out.len / 4);
    goto done;
  }
  Py_BEGIN_ALLOW_THREADS
  const int32_t *src = (const int32_t *)source.buf;
  int32_t *dst = (int32_t *)out.buf;
  for (Py_ssize_t k = 0; k < segments; k++) {
    memcpy(dst, src + s[k], (size_t)l[k] * sizeof(int32_t));
    dst += l[k];
  }
  Py_END_ALLOW_THREADS
  result = Py_NewRef(Py_None);
done:
  PyBuffer_Release(&source);
  PyBuffer_Release(&starts);
  PyBuffer_Release(&lengths);
  PyBuffer_Release(&out);
  return result;
}

/* ---- per-row Fisher-Yates shuffles driven by given random words -------------------------- */

/* Row r's elements are permuted in place: for i = n-1 .. 1, swap element i with element
 * j = floor(U * (i + 1)), U = (word >> 11) / 2**53 from the row's i-th word (words[start + i]).
 * ragged.shuffle_rows has the same procedure in numpy. */
static void rows_shuffle(int32_t *values, const int64_t *lengths, Py_ssize_t rows,
                         const uint64_t *words) {
  int64_t start = 0;
  for (Py_ssize_t r = 0; r < rows; r++) {
    int32_t *row = values + start;
    const uint64_t *w = words + start;
    for (int64_t i = lengths[r] - 1; i >= 1; i--) {
      int64_t j = (int64_t)((double)(w[i] >> 11) * 0x1.0p-53 * (double)(i + 1));
      int32_t tmp = row[i];
      row[i] = row[j];
      row[j] = tmp;
    }
    start += lengths[r];
  }
}

static PyObject *shuffle_rows(PyObject *self, PyObject *args) {
  Py_buffer values, lengths, words;
  (void)self;
  if (!PyArg_ParseTuple(args, "w*y*y*", &values, &lengths, &words)) return NULL;
  PyObject *result = NULL;
  Py_ssize_t rows;
  if (parse_rows(&values, &lengths, &rows) < 0) goto done;
  if (words.len != values.len * 2) {
    PyErr_SetString(PyExc_ValueError, "words must hold one uint64 per value");
    goto done;
  }
  Py_BEGIN_ALLOW_THREADS
  rows_shuffle((int32_t *)values.buf, (const int64_t *)lengths.buf, rows,
               (const uint64_t *)words.buf);
  Py_END_ALLOW_THREADS
  result = Py_NewRef(Py_None);
done:
  PyBuffer_Release(&values);
  PyBuffer_Release(&lengths);
  PyBuffer_Release(&words);
  return result;
}

static PyMethodDef methods[] = {
    {"set_operation", set_operation, METH_VARARGS,
     "set_operation(op, a_values, a_lengths, b_values, b_lengths, out_values, out_lengths) -> n\n\n"
     "Row r of the result = list(set(a_r) OP set(b_r)) in CPython 3.11's set order. Values are\n"
     "int32 buffers, lengths int64 buffers; out_values needs len(a_values) + len(b_values) + 1.\n"
     "op: 0 union, 1 intersect, 2 a - b, 3 b - a. Returns the number of ids written."},
    {"group_representatives", group_representatives, METH_VARARGS,
     "group_representatives(values, lengths, last, out) -> None\n\n"
     "out[j] = flat index of the first (last: the last) element of j's row equal to values[j].\n"
     "values int32, lengths int64 (rows), out int64 with one entry per value."},
    {"first_occurrence", first_occurrence, METH_VARARGS,
     "first_occurrence(values, lengths, out) -> None\n\n"
     "out[j] = whether values[j] is the first element of its row with that value (out: bool)."},
    {"gather_segments", gather_segments, METH_VARARGS,
     "gather_segments(source, starts, lengths, out) -> None\n\n"
     "out = concatenation of source[starts[k]:starts[k] + lengths[k]] over k (int32 source/out,\n"
     "int64 starts/lengths)."},
    {"distinct_draws", distinct_draws, METH_VARARGS,
     "distinct_draws(sizes, alphabet, words, out) -> words used, or -1 if too few\n\n"
     "Row r: sizes[r] distinct indices in [0, alphabet) by sequential rejection, one uint64 word\n"
     "per draw (see ragged.distinct_draws)."},
    {"run_labels", run_labels, METH_VARARGS,
     "run_labels(lengths, seed, uniform, out) -> total runs\n\n"
     "Run labels of the Set sampler (see simple_unary.SetTask): seeds take their row's labels in\n"
     "order, other positions floor(uniform * k) (offset by the runs of earlier rows)."},
    {"shuffle_rows", shuffle_rows, METH_VARARGS,
     "shuffle_rows(values, lengths, words) -> None\n\n"
     "Fisher-Yates shuffle of each row of the int32 buffer values, in place, driven by one uint64\n"
     "random word per value (see ragged.shuffle_rows)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", "Row-wise kernels of the synthetic-task generators.", -1,
    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
