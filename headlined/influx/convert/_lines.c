/*
 * headlined.influx.convert._lines: the converter's first pass in C (see headlined/influx/convert/read.py
 * and docs/converter.md, "The data path", steps 1 to 3).
 *
 * A Splitter is fed the input's bytes in pieces of any size.  It cuts them into physical
 * lines, classifies each one (a line that is not UTF-8 or is overlong becomes a row of its own
 * kind, with its bytes in hex), and splits a bulk line into its series key, field key, value and
 * time.  The rows collect in column buffers that take() hands over as a Batch, which DuckDB reads
 * through the Arrow PyCapsule stream interface (__arrow_c_stream__), so no Arrow library is
 * needed and any UTF-8 text (NUL, CR, a BOM) reaches DuckDB as it is.  Values are typed and
 * checked by the grammar of headlined/lineprotocol/grammar.py, which C cannot import: the code
 * below follows it by hand, and tests/influx/test_lines.py checks that the two agree;
 * tests/influx/test_convert.py checks the outcome against the exact parser.
 *
 * Why C: this pass touches every byte of the input; in Python it was the converter's largest
 * cost, and DuckDB's string functions still needed about 1 s for 2M lines.
 */
#define _GNU_SOURCE /* memrchr */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ Arrow C data interface */

#include "../../arrow_abi.h"

/* ------------------------------------------------------------------ growable buffers */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} Buf;

static int buf_grow(Buf *b, size_t more) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) {
        cap *= 2;
    }
    char *data = realloc(b->data, cap);
    if (data == NULL) {
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

/* Inlined: called several times for every line. */
static inline __attribute__((always_inline)) int buf_reserve(Buf *b, size_t more) {
    return b->len + more <= b->cap ? 0 : buf_grow(b, more);
}

static inline __attribute__((always_inline)) int buf_add(Buf *b, const void *src, size_t n) {
    if (buf_reserve(b, n) < 0) {
        return -1;
    }
    if (n) {
        memcpy(b->data + b->len, src, n);
    }
    b->len += n;
    return 0;
}

/* Grows `b` to `n` bytes, the new ones zero. */
static int buf_zero_to(Buf *b, size_t n) {
    if (n <= b->len) {
        return 0;
    }
    if (buf_reserve(b, n - b->len) < 0) {
        return -1;
    }
    memset(b->data + b->len, 0, n - b->len);
    b->len = n;
    return 0;
}

/* Columns of the `lines` table: kind, kid (the series key's number), fk, v, ts, raw, and the
 * value's type and whether it is bad (of a one-field bulk line; else NULL). */
enum { C_KIND, C_KID, C_FK, C_V, C_TS, C_RAW, C_TY, C_BAD, N_COLUMNS };

static const char *const column_names[N_COLUMNS] = {"kind", "kid", "fk", "v",
                                                     "ts",   "raw", "ty", "bad"};
static const char *const column_formats[N_COLUMNS] = {"C", "i", "u", "u", "l", "u", "C", "b"};

typedef struct Column {
    Buf validity; /* one bit per row, set when the value is present */
    Buf values;   /* fixed-width values or bits, or the int32 offsets of a string column */
    Buf chars;    /* string bytes */
    int64_t nulls;
    const char *format; /* Arrow format: a static string */
    char name[16];
    /* A dictionary-encoded column: `values` holds int32 indices into this column of
     * `entries` values (its own `dict` is NULL). */
    struct Column *dict;
    int64_t entries;
} Column;

/* A table of rows: a batch of the `lines` table, or one measurement's points (pivot). */
typedef struct {
    Column *col;
    int n;
    int64_t rows;
    int refs;   /* arrays exported from this batch that are not yet released */
    int tagged; /* a pivoted table given its tag columns (with_tags) */
} Columns;

/* The buffers of columns `from`..`to` of `col` (their dictionaries too). */
static void columns_free_from(Column *col, int from, int to) {
    for (int i = from; col != NULL && i < to; i++) {
        free(col[i].validity.data);
        free(col[i].values.data);
        free(col[i].chars.data);
        if (col[i].dict != NULL) {
            free(col[i].dict->values.data);
            free(col[i].dict->chars.data);
            free(col[i].dict);
        }
    }
}

static void columns_free(Columns *c) {
    if (c == NULL) {
        return;
    }
    columns_free_from(c->col, 0, c->n);
    free(c->col);
    free(c);
}

/* Empty columns, `n` of them, each yet without format or name. */
static Columns *columns_alloc(int n) {
    Columns *c = calloc(1, sizeof(Columns));
    if (c == NULL) {
        return NULL;
    }
    c->col = calloc((size_t)n, sizeof(Column));
    if (c->col == NULL) {
        free(c);
        return NULL;
    }
    c->n = n;
    return c;
}

/* New `lines` columns with room for what `like` held (NULL: a little), so that a batch like
 * the one before it is split without growing its buffers. */
static Columns *columns_new(const Columns *like) {
    Columns *c = columns_alloc(N_COLUMNS);
    if (c == NULL) {
        return NULL;
    }
    for (int i = 0; i < N_COLUMNS; i++) {
        /* Arrow wants real buffers even for a column of nulls; offsets start at 0. */
        Column *col = &c->col[i];
        const Column *old = like != NULL ? &like->col[i] : NULL;
        int32_t zero = 0;
        col->format = column_formats[i];
        snprintf(col->name, sizeof col->name, "%s", column_names[i]);
        if (buf_reserve(&col->validity, old != NULL ? old->validity.len + 8 : 8) < 0 ||
            buf_reserve(&col->values, old != NULL ? old->values.len + 8 : 8) < 0 ||
            buf_reserve(&col->chars, old != NULL ? old->chars.len + 8 : 8) < 0 ||
            (col->format[0] == 'u' && buf_add(&col->values, &zero, sizeof zero) < 0)) {
            columns_free(c);
            return NULL;
        }
    }
    return c;
}

/* Appends bit `row` of an Arrow bitmap (a byte every eight rows), set when `on`. */
static inline __attribute__((always_inline)) int add_bit(Buf *bits, int64_t row, int on) {
    if ((row & 7) == 0) {
        char zero = 0;
        if (buf_add(bits, &zero, 1) < 0) {
            return -1;
        }
    }
    if (on) {
        bits->data[row >> 3] |= (char)(1 << (row & 7));
    }
    return 0;
}

static inline __attribute__((always_inline)) int set_valid(Column *col, int64_t row, int valid) {
    col->nulls += !valid;
    return add_bit(&col->validity, row, valid);
}

/* Appends a string, or NULL when s is NULL. */
static inline __attribute__((always_inline)) int add_string(Column *col, int64_t row, const char *s, size_t n) {
    if (set_valid(col, row, s != NULL) < 0) {
        return -1;
    }
    if (s != NULL && buf_add(&col->chars, s, n) < 0) {
        return -1;
    }
    if (col->chars.len > INT32_MAX) {
        return -2;
    }
    int32_t end = (int32_t)col->chars.len;
    return buf_add(&col->values, &end, sizeof end);
}

/* ------------------------------------------------------------------ exporting a batch */

typedef struct {
    Columns *columns;
    int is_parent;
} ArrayData;

static void schema_release(struct ArrowSchema *schema) {
    if (schema->children != NULL) {
        for (int64_t i = 0; i < schema->n_children; i++) {
            struct ArrowSchema *child = schema->children[i];
            if (child->release != NULL) {
                child->release(child);
            }
            if (child->dictionary != NULL) {
                free(child->dictionary); /* released with its child */
            }
            free(child);
        }
        free(schema->children);
    }
    schema->release = NULL;
}

static void child_schema_release(struct ArrowSchema *schema) { schema->release = NULL; }

static int fill_schema(struct ArrowSchema *out, const Columns *c) {
    memset(out, 0, sizeof *out);
    out->format = "+s";
    out->name = "";
    out->n_children = c->n;
    out->children = calloc((size_t)c->n, sizeof(struct ArrowSchema *));
    out->release = schema_release;
    if (out->children == NULL) {
        out->n_children = 0;
        return ENOMEM;
    }
    for (int i = 0; i < c->n; i++) {
        struct ArrowSchema *child = calloc(1, sizeof *child);
        if (child == NULL) {
            out->n_children = i;
            return ENOMEM;
        }
        child->format = c->col[i].format;
        child->name = c->col[i].name;
        child->flags = ARROW_FLAG_NULLABLE;
        child->release = child_schema_release;
        out->children[i] = child;
        const Column *dict = c->col[i].dict;
        if (dict != NULL) {
            child->dictionary = calloc(1, sizeof *child->dictionary);
            if (child->dictionary == NULL) {
                out->n_children = i + 1;
                return ENOMEM;
            }
            child->dictionary->format = dict->format;
            child->dictionary->name = "";
            child->dictionary->flags = ARROW_FLAG_NULLABLE;
            child->dictionary->release = child_schema_release;
        }
    }
    return 0;
}

static void columns_unref(Columns *c) {
    if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        columns_free(c);
    }
}

static void array_release(struct ArrowArray *array) {
    ArrayData *data = array->private_data;
    if (data->is_parent && array->children != NULL) {
        for (int64_t i = 0; i < array->n_children; i++) {
            struct ArrowArray *child = array->children[i];
            if (child->release != NULL) {
                child->release(child);
            }
            free(child);
        }
        free(array->children);
    }
    if (array->dictionary != NULL) {
        if (array->dictionary->release != NULL) {
            array->dictionary->release(array->dictionary);
        }
        free(array->dictionary);
    }
    free((void *)array->buffers);
    columns_unref(data->columns);
    free(data);
    array->release = NULL;
}

/* `col` of `c` (a table's column, or a column's dictionary) as an Arrow array. */
static int fill_column(struct ArrowArray *out, Columns *c, Column *col, int64_t length) {
    int strings = col->format[0] == 'u' || col->format[0] == 'U';
    memset(out, 0, sizeof *out);
    ArrayData *data = malloc(sizeof *data);
    const void **buffers = calloc(3, sizeof(void *));
    if (data == NULL || buffers == NULL) {
        free(data);
        free(buffers);
        return ENOMEM;
    }
    data->columns = c;
    data->is_parent = 0;
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
    out->length = length;
    out->null_count = col->nulls;
    out->n_buffers = strings ? 3 : 2;
    buffers[0] = col->nulls ? col->validity.data : NULL;
    buffers[1] = col->values.data;
    buffers[2] = col->chars.data;
    out->buffers = buffers;
    out->release = array_release;
    out->private_data = data;
    if (col->dict != NULL) {
        out->dictionary = malloc(sizeof *out->dictionary);
        int err = out->dictionary == NULL
                      ? ENOMEM
                      : fill_column(out->dictionary, c, col->dict, col->dict->entries);
        if (err != 0) {
            free(out->dictionary);
            out->dictionary = NULL;
            array_release(out);
            return err;
        }
    }
    return 0;
}

static int fill_child(struct ArrowArray *out, Columns *c, int i) {
    return fill_column(out, c, &c->col[i], c->rows);
}

static int fill_array(struct ArrowArray *out, Columns *c) {
    memset(out, 0, sizeof *out);
    ArrayData *data = malloc(sizeof *data);
    const void **buffers = calloc(1, sizeof(void *));
    struct ArrowArray **children = calloc((size_t)c->n, sizeof(struct ArrowArray *));
    if (data == NULL || buffers == NULL || children == NULL) {
        free(data);
        free(buffers);
        free(children);
        return ENOMEM;
    }
    data->columns = c;
    data->is_parent = 1;
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
    out->length = c->rows;
    out->n_buffers = 1;
    out->buffers = buffers;
    out->children = children;
    out->release = array_release;
    out->private_data = data;
    for (int i = 0; i < c->n; i++) {
        struct ArrowArray *child = malloc(sizeof *child);
        if (child == NULL || fill_child(child, c, i) != 0) {
            free(child);
            out->n_children = i;
            array_release(out);
            return ENOMEM;
        }
        children[i] = child;
        out->n_children = i + 1;
    }
    return 0;
}

typedef struct {
    Columns *columns; /* NULL once handed out */
    Columns *schema;  /* the same columns, referenced until the stream is released */
} StreamData;

static int stream_get_schema(struct ArrowArrayStream *stream, struct ArrowSchema *out) {
    StreamData *data = stream->private_data;
    int err = fill_schema(out, data->schema);
    if (err != 0) {
        out->release(out);
    }
    return err;
}

static int stream_get_next(struct ArrowArrayStream *stream, struct ArrowArray *out) {
    StreamData *data = stream->private_data;
    if (data->columns == NULL) {
        memset(out, 0, sizeof *out); /* release == NULL: the end of the stream */
        return 0;
    }
    int err = fill_array(out, data->columns);
    if (err == 0) {
        columns_unref(data->columns); /* the handed-out reference */
        data->columns = NULL;
    }
    return err;
}

static const char *stream_get_last_error(struct ArrowArrayStream *stream) {
    (void)stream;
    return "out of memory";
}

static void stream_release(struct ArrowArrayStream *stream) {
    StreamData *data = stream->private_data;
    if (data->columns != NULL) {
        columns_unref(data->columns);
    }
    columns_unref(data->schema);
    free(data);
    stream->release = NULL;
}

static void capsule_destructor(PyObject *capsule) {
    struct ArrowArrayStream *stream = PyCapsule_GetPointer(capsule, "arrow_array_stream");
    if (stream == NULL) {
        PyErr_WriteUnraisable(capsule);
        return;
    }
    if (stream->release != NULL) {
        stream->release(stream);
    }
    free(stream);
}

/* ------------------------------------------------------------------ Batch */

typedef struct {
    PyObject_HEAD Columns *columns;
    Py_ssize_t rows;
} BatchObject;

static void batch_dealloc(BatchObject *self) {
    columns_unref(self->columns);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t batch_len(BatchObject *self) { return self->rows; }

static PyObject *batch_arrow_c_stream(BatchObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"requested_schema", NULL};
    PyObject *requested = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O", keywords, &requested)) {
        return NULL;
    }
    if (requested != Py_None) {
        PyErr_SetString(PyExc_NotImplementedError, "a Batch has its own fixed schema");
        return NULL;
    }
    struct ArrowArrayStream *stream = calloc(1, sizeof *stream);
    StreamData *data = malloc(sizeof *data);
    if (stream == NULL || data == NULL) {
        free(stream);
        free(data);
        return PyErr_NoMemory();
    }
    /* DuckDB asks more than once (to bind, then to scan): each stream holds a reference. */
    data->columns = data->schema = self->columns;
    __atomic_add_fetch(&self->columns->refs, 2, __ATOMIC_ACQ_REL);
    stream->get_schema = stream_get_schema;
    stream->get_next = stream_get_next;
    stream->get_last_error = stream_get_last_error;
    stream->release = stream_release;
    stream->private_data = data;
    PyObject *capsule = PyCapsule_New(stream, "arrow_array_stream", capsule_destructor);
    if (capsule == NULL) {
        stream->release(stream);
        free(stream);
    }
    return capsule;
}

/* Whether a pivoted table's rows (kid, ts, ...) are in the order of (rank[kid], ts), no two
 * alike. */
static int rows_in_order(const Columns *c, const int32_t *rank, size_t n_ranks) {
    const int32_t *kids = (const int32_t *)c->col[0].values.data;
    const int64_t *times = (const int64_t *)c->col[1].values.data;
    for (int64_t row = 0; row < c->rows; row++) {
        if (kids[row] < 0 || (size_t)kids[row] >= n_ranks) {
            return 0;
        }
        if (row > 0) {
            int32_t before = rank[kids[row - 1]], now = rank[kids[row]];
            if (now < before || (now == before && times[row] <= times[row - 1])) {
                return 0;
            }
        }
    }
    return 1;
}

/* A run of a pivoted table's rows: one kid's, one after another, their times rising. */
typedef struct {
    int32_t rank;
    int32_t start; /* its first row */
    int32_t rows;
    int64_t first, last; /* its times */
} Run;

static int run_cmp(const void *a, const void *b) {
    const Run *x = a, *y = b;
    if (x->rank != y->rank) {
        return x->rank < y->rank ? -1 : 1;
    }
    return x->first < y->first ? -1 : x->first > y->first;
}

/* The runs that put a pivoted table's rows in (rank[kid], ts) order when taken one after
 * another, if moving whole runs is enough: a chunk of several shards, each listing its
 * series in order with their times rising, in whatever order the shards come. NULL when it
 * is not (a kid without a rank, runs of one rank whose times overlap, more than MAX_RUNS
 * runs), or out of memory (*oom set); else *n_runs of them, to be freed. */
#define MAX_RUNS(rows) ((rows) / 32 + 4096)
static Run *rank_order(const Columns *c, const int32_t *rank, size_t n_ranks, int64_t *n_runs,
                       int *oom) {
    const int32_t *kids = (const int32_t *)c->col[0].values.data;
    const int64_t *times = (const int64_t *)c->col[1].values.data;
    if (c->rows > INT32_MAX) {
        return NULL;
    }
    Buf runs = {0};
    Run *run = NULL;
    *n_runs = 0;
    for (int64_t row = 0; row < c->rows; row++) {
        int32_t kid = kids[row];
        if (kid < 0 || (size_t)kid >= n_ranks || rank[kid] < 0) {
            free(runs.data);
            return NULL;
        }
        if (row > 0 && kid == kids[row - 1] && times[row] > times[row - 1]) {
            run->rows++;
            run->last = times[row];
            continue;
        }
        if (++*n_runs > MAX_RUNS(c->rows) || buf_reserve(&runs, sizeof(Run)) < 0) {
            *oom = *n_runs <= MAX_RUNS(c->rows);
            free(runs.data);
            return NULL;
        }
        run = (Run *)(runs.data + runs.len);
        runs.len += sizeof(Run);
        *run = (Run){rank[kid], (int32_t)row, 1, times[row], times[row]};
    }
    Run *all = (Run *)runs.data;
    qsort(all, (size_t)*n_runs, sizeof(Run), run_cmp);
    for (int64_t i = 1; i < *n_runs; i++) {
        if (all[i].rank == all[i - 1].rank && all[i].first <= all[i - 1].last) {
            free(runs.data);
            return NULL;
        }
    }
    return all;
}

/* The bits of `from` run after run as a new buffer of `rows` bits into `to`; -1 out of
 * memory. */
static int move_bits(Buf *to, const Buf *from, const Run *runs, int64_t n_runs, int64_t rows) {
    if (buf_zero_to(to, (size_t)(rows + 7) / 8) < 0) {
        return -1;
    }
    const unsigned char *bits = (const unsigned char *)from->data;
    int64_t at = 0;
    for (int64_t i = 0; i < n_runs; i++) {
        for (int64_t row = runs[i].start; row < (int64_t)runs[i].start + runs[i].rows; row++, at++) {
            if (bits[row >> 3] >> (row & 7) & 1) {
                to->data[at >> 3] |= (char)(1 << (at & 7));
            }
        }
    }
    return 0;
}

/* Column `col` of `rows` rows with its rows run after run, in new buffers (the old ones
 * freed); -1 out of memory, the column then unchanged. */
static int move_runs(Column *col, const Run *runs, int64_t n_runs, int64_t rows) {
    Column out = *col;
    memset(&out.validity, 0, sizeof out.validity);
    memset(&out.values, 0, sizeof out.values);
    memset(&out.chars, 0, sizeof out.chars);
    int err = col->validity.data != NULL &&
              move_bits(&out.validity, &col->validity, runs, n_runs, rows) < 0;
    if (err) {
        /* the column stays as it is */
    } else if (col->format[0] == 'b') {
        err = move_bits(&out.values, &col->values, runs, n_runs, rows) < 0;
    } else if (col->format[0] == 'u') {
        /* Reserved whole, so the adds below cannot fail: the runs hold every string once. */
        const int32_t *ends = (const int32_t *)col->values.data;
        err = buf_reserve(&out.chars, col->chars.len + 8) < 0 ||
              buf_reserve(&out.values, (size_t)(rows + 1) * sizeof(int32_t)) < 0;
        int32_t end = 0;
        if (!err) {
            buf_add(&out.values, &end, sizeof end);
        }
        for (int64_t i = 0; !err && i < n_runs; i++) {
            int32_t from = runs[i].start, to = runs[i].start + runs[i].rows;
            int32_t shift = (int32_t)out.chars.len - ends[from];
            buf_add(&out.chars, col->chars.data + ends[from], (size_t)(ends[to] - ends[from]));
            for (int32_t row = from + 1; row <= to; row++) {
                end = ends[row] + shift;
                buf_add(&out.values, &end, sizeof end);
            }
        }
    } else {
        size_t width = col->format[0] == 'i' ? 4 : 8;
        err = buf_reserve(&out.values, (size_t)rows * width) < 0;
        for (int64_t i = 0; !err && i < n_runs; i++) {
            buf_add(&out.values, col->values.data + (size_t)runs[i].start * width,
                    (size_t)runs[i].rows * width);
        }
    }
    if (err) {
        free(out.validity.data);
        free(out.values.data);
        free(out.chars.data);
        return -1;
    }
    free(col->validity.data);
    free(col->values.data);
    free(col->chars.data);
    *col = out;
    return 0;
}

/* The UTF-8 of each kid's value in `values` (a list by kid: str or None; NULL for None),
 * each str held until tag_text_free; -1 with a Python error set. */
static int tag_text(PyObject *values, const char ***text, Py_ssize_t **length,
                    PyObject ***held) {
    Py_ssize_t n_kids = PyList_GET_SIZE(values);
    *text = calloc((size_t)n_kids + 1, sizeof(char *));
    *length = calloc((size_t)n_kids + 1, sizeof(Py_ssize_t));
    *held = calloc((size_t)n_kids + 1, sizeof(PyObject *));
    if (*text == NULL || *length == NULL || *held == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t kid = 0; kid < n_kids; kid++) {
        PyObject *value = PyList_GET_ITEM(values, kid);
        if (value == Py_None) {
            continue;
        }
        if (!PyUnicode_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "with_tags: a tag value is a str or None");
            return -1;
        }
        (*text)[kid] = PyUnicode_AsUTF8AndSize(value, &(*length)[kid]);
        if ((*text)[kid] == NULL) {
            return -1;
        }
        (*held)[kid] = Py_NewRef(value); /* its UTF-8 lives as long as it does */
    }
    return 0;
}

static void tag_text_free(Py_ssize_t n_kids, const char **text, Py_ssize_t *length,
                          PyObject **held) {
    for (Py_ssize_t kid = 0; held != NULL && kid < n_kids; kid++) {
        Py_XDECREF(held[kid]);
    }
    free(text);
    free(length);
    free(held);
}

/* A dictionary-encoded column of each row's value into `to`: int32 indices (the row's kid)
 * into a large-string dictionary (Arrow "U") of the values by kid, `text` and `length`
 * (NULL: none, the row's value null); -1 out of memory. Needs no GIL. */
static int tag_column(Column *to, const Columns *c, const char **text, const Py_ssize_t *length,
                      Py_ssize_t n_kids, int index) {
    to->format = "i";
    snprintf(to->name, sizeof to->name, "t%d", index);
    Column *dict = to->dict = calloc(1, sizeof(Column));
    if (dict == NULL) {
        return -1;
    }
    dict->format = "U";
    dict->entries = n_kids;
    int64_t end = 0;
    int any_null = 0;
    if (buf_add(&dict->values, &end, sizeof end) < 0) {
        return -1;
    }
    for (Py_ssize_t kid = 0; kid < n_kids; kid++) {
        any_null |= text[kid] == NULL;
        if (text[kid] != NULL && buf_add(&dict->chars, text[kid], (size_t)length[kid]) < 0) {
            return -1;
        }
        end = (int64_t)dict->chars.len;
        if (buf_add(&dict->values, &end, sizeof end) < 0) {
            return -1;
        }
    }
    /* Arrow wants a data buffer even when every value is empty. */
    if (buf_reserve(&dict->chars, 8) < 0 ||
        buf_add(&to->values, c->col[0].values.data, (size_t)c->rows * sizeof(int32_t)) < 0) {
        return -1;
    }
    if (!any_null) {
        return 0;
    }
    const int32_t *kids = (const int32_t *)c->col[0].values.data;
    if (buf_zero_to(&to->validity, (size_t)(c->rows + 7) / 8) < 0) {
        return -1;
    }
    for (int64_t row = 0; row < c->rows; row++) {
        if (text[kids[row]] != NULL) {
            to->validity.data[row >> 3] |= (char)(1 << (row & 7));
        } else {
            to->nulls++;
        }
    }
    return 0;
}

static PyObject *batch_with_tags(BatchObject *self, PyObject *args) {
    Py_buffer ranks;
    PyObject *tags;
    if (!PyArg_ParseTuple(args, "y*O!", &ranks, &PyList_Type, &tags)) {
        return NULL;
    }
    Columns *c = self->columns;
    Py_ssize_t n_tags = PyList_GET_SIZE(tags);
    PyObject *result = NULL;
    Column *more = NULL;
    const char ***text = calloc((size_t)n_tags + 1, sizeof(char **));
    Py_ssize_t **length = calloc((size_t)n_tags + 1, sizeof(Py_ssize_t *));
    PyObject ***held = calloc((size_t)n_tags + 1, sizeof(PyObject **));
    Py_ssize_t *n_kids = calloc((size_t)n_tags + 1, sizeof(Py_ssize_t)); /* 0: not taken */
    if (text == NULL || length == NULL || held == NULL || n_kids == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (c->refs != 1 || c->tagged || c->n < 2 || strcmp(c->col[0].name, "kid") != 0 ||
        strcmp(c->col[1].name, "ts") != 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "with_tags: once per pivoted table, while nothing reads it");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_tags; i++) {
        PyObject *values = PyList_GET_ITEM(tags, i);
        if (!PyList_Check(values)) {
            PyErr_SetString(PyExc_TypeError, "with_tags: a list of values by kid per tag");
            goto done;
        }
        n_kids[i] = PyList_GET_SIZE(values);
        if ((size_t)n_kids[i] < (size_t)ranks.len / sizeof(int32_t)) {
            PyErr_SetString(PyExc_ValueError, "with_tags: a tag value for every ranked kid");
            goto done;
        }
        if (tag_text(values, &text[i], &length[i], &held[i]) < 0) {
            goto done;
        }
    }
    more = calloc((size_t)(c->n + n_tags), sizeof(Column));
    if (more == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int in_order, err = 0, broken = 0;
    Py_BEGIN_ALLOW_THREADS;
    size_t n_ranks = (size_t)ranks.len / sizeof(int32_t);
    in_order = rows_in_order(c, ranks.buf, n_ranks);
    int64_t n_runs = 0;
    Run *runs = in_order ? NULL : rank_order(c, ranks.buf, n_ranks, &n_runs, &err);
    /* Column by column, so that the table takes one column more at most; out of memory half
     * way, the table is broken (its rows no longer line up): MemoryError, and it is not read. */
    for (int i = 0; runs != NULL && !err && i < c->n; i++) {
        err = broken = move_runs(&c->col[i], runs, n_runs, c->rows) < 0;
        in_order = 1;
    }
    free(runs);
    for (Py_ssize_t i = 0; in_order && !err && i < n_tags; i++) {
        err = tag_column(&more[c->n + i], c, text[i], length[i], n_kids[i], (int)i) < 0;
    }
    Py_END_ALLOW_THREADS;
    if (err) {
        columns_free_from(more, c->n, c->n + (int)n_tags);
        if (broken) {
            c->rows = 0;
            self->rows = 0;
        }
        PyErr_NoMemory();
        goto done;
    }
    if (!in_order) {
        result = Py_NewRef(Py_False);
        goto done;
    }
    memcpy(more, c->col, (size_t)c->n * sizeof(Column));
    free(c->col);
    c->col = more;
    more = NULL;
    c->n += (int)n_tags;
    c->tagged = 1;
    result = Py_NewRef(Py_True);
done:
    free(more);
    for (Py_ssize_t i = 0; text != NULL && length != NULL && held != NULL && n_kids != NULL &&
                           i < n_tags;
         i++) {
        tag_text_free(n_kids[i], text[i], length[i], held[i]);
    }
    free(text);
    free(length);
    free(held);
    free(n_kids);
    PyBuffer_Release(&ranks);
    return result;
}

static PyMethodDef batch_methods[] = {
    {"__arrow_c_stream__", (PyCFunction)(void (*)(void))batch_arrow_c_stream,
     METH_VARARGS | METH_KEYWORDS, "The rows as an Arrow C stream."},
    {"with_tags", (PyCFunction)batch_with_tags, METH_VARARGS,
     "with_tags(ranks, tags): if a pivoted table's rows are in (ranks[kid], ts) order (int32 "
     "ranks by kid), or moving whole runs of a kid's rows (its times rising) puts them in "
     "that order (which it then does), add a dictionary-encoded column t0, t1... per list of "
     "tags (each a str or None by kid) and return True; else change nothing and return "
     "False."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods batch_as_sequence = {.sq_length = (lenfunc)batch_len};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "headlined.influx.convert._lines.Batch",
    .tp_basicsize = sizeof(BatchObject),
    .tp_dealloc = (destructor)batch_dealloc,
    .tp_as_sequence = &batch_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Rows of the `lines` table, read by DuckDB through __arrow_c_stream__.",
    .tp_methods = batch_methods,
};

/* A Batch that takes over one reference to `c`; NULL (and `c` left alone) out of memory. */
static BatchObject *batch_new(Columns *c) {
    BatchObject *batch = PyObject_New(BatchObject, &BatchType);
    if (batch != NULL) {
        batch->columns = c;
        batch->rows = (Py_ssize_t)c->rows;
    }
    return batch;
}

/* ------------------------------------------------------------------ classification */

#define MAX_LINE (1 << 20) /* bytes of one physical line; longer ones become K_OVERLONG rows */
#define HEAD 200           /* bytes of an overlong line kept in its row */
#define MAX_PAIRS (1 << 20) /* (series key, field key) pairs followed for `unique`: ~50 MiB */

/* Kinds of `lines` rows: split in bulk; skipped (blank, comment, header); for the exact parser;
 * taken out by the converter (part of a line that began earlier, or handed to the exact parser:
 * never written here); not UTF-8 (raw: the bytes in hex); longer than MAX_LINE (raw:
 * "<length>:<hex of the first HEAD bytes>"). */
enum { K_BULK = 0, K_SKIP = 1, K_SLOW = 2, K_TAKEN = 3, K_NOT_UTF8 = 4, K_OVERLONG = 5 };

/* Strict UTF-8, as Python's decoder: no overlong forms, surrogates or values past U+10FFFF. */
static int is_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) {
                lo = 0xA0;
            } else if (c == 0xED) {
                hi = 0x9F;
            }
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) {
                lo = 0x90;
            } else if (c == 0xF4) {
                hi = 0x8F;
            }
        } else {
            return 0;
        }
        if (i + need >= n) {
            return 0; /* truncated */
        }
        if (s[i + 1] < lo || s[i + 1] > hi) {
            return 0;
        }
        for (size_t k = 2; k <= need; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) {
                return 0;
            }
        }
        i += need + 1;
    }
    return 1;
}

/* Whether `t` is the canonical decimal text of an integer in [low, high]: what DuckDB's
 * TRY_CAST(t AS BIGINT) read and CAST(... AS VARCHAR) printed back the same. */
static int canonical_time(const char *t, size_t n, int64_t low, int64_t high, int64_t *out) {
    size_t i = 0;
    int negative = 0;
    if (n && t[0] == '-') {
        negative = 1;
        i = 1;
    }
    if (i == n || t[i] < '0' || t[i] > '9' || (t[i] == '0' && n - i > 1) ||
        (negative && t[i] == '0')) {
        return 0;
    }
    /* The magnitude, in 64 unsigned bits: 19 digits fit.  Four digits a step, as every line
     * has a time of 19 digits or so: a chain of 19 multiply-adds was a quarter of a line's
     * time. */
    if (n - i > 19) {
        return 0;
    }
    uint64_t magnitude = 0;
    for (; i + 4 <= n; i += 4) {
        unsigned d0 = (unsigned char)t[i] - '0', d1 = (unsigned char)t[i + 1] - '0';
        unsigned d2 = (unsigned char)t[i + 2] - '0', d3 = (unsigned char)t[i + 3] - '0';
        if (d0 > 9 || d1 > 9 || d2 > 9 || d3 > 9) {
            return 0;
        }
        magnitude = magnitude * 10000 + (d0 * 1000 + d1 * 100 + d2 * 10 + d3);
    }
    for (; i < n; i++) {
        unsigned digit = (unsigned char)t[i] - '0';
        if (digit > 9) {
            return 0;
        }
        magnitude = magnitude * 10 + digit;
    }
    int64_t value;
    if (negative) {
        if (magnitude > (uint64_t)INT64_MAX + 1) {
            return 0;
        }
        value = magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)magnitude;
    } else {
        if (magnitude > (uint64_t)INT64_MAX) {
            return 0;
        }
        value = (int64_t)magnitude;
    }
    if (value < low || value > high) {
        return 0;
    }
    *out = value;
    return 1;
}

/* One string field as influx_inspect writes it (the key has no escapes), fully matched:
 * [^\\,= "\t\x00][^\\,= "]*="(?:[^"\\]|\\.)*" */
static int string_field(const char *f, size_t n) {
    size_t i = 0;
    if (n == 0 || f[0] == '\\' || f[0] == ',' || f[0] == '=' || f[0] == ' ' || f[0] == '"' ||
        f[0] == '\t' || f[0] == '\0') {
        return 0;
    }
    for (i = 1; i < n && f[i] != '=' ; i++) {
        if (f[i] == '\\' || f[i] == ',' || f[i] == ' ' || f[i] == '"') {
            return 0;
        }
    }
    if (i + 1 >= n || f[i + 1] != '"') {
        return 0;
    }
    for (i += 2; i < n; i++) {
        if (f[i] == '"') {
            return i == n - 1;
        }
        if (f[i] == '\\') {
            i++; /* an escape takes the next character, whatever it is */
        }
    }
    return 0;
}

/* Whether every byte is ASCII: such a line is valid UTF-8, which is nearly every line.  Eight
 * bytes at a time. */
static int is_ascii(const char *p, size_t n) {
    const uint64_t high = 0x8080808080808080ULL;
    uint64_t found = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        found |= x & high;
    }
    for (; i < n; i++) {
        found |= (unsigned char)p[i] >= 0x80;
    }
    return found == 0;
}

/* Type codes: the order of grammar.TYPES. */
enum { T_FLOAT, T_INTEGER, T_UNSIGNED, T_STRING, T_BOOLEAN };

/* Whether digits p[0:n] (leading zeros allowed) are at most the number `limit` spells. */
static int digits_at_most(const char *p, size_t n, const char *limit) {
    size_t limit_n = strlen(limit);
    while (n > 1 && *p == '0') {
        p++;
        n--;
    }
    return n < limit_n || (n == limit_n && memcmp(p, limit, n) <= 0);
}

static int all_digits(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }
    }
    return n > 0;
}

/* grammar.FLOAT, fully: -?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?
 * `magnitude` bounds the decimal exponent: the value is below 10 ** magnitude. */
static int float_syntax(const char *p, size_t n, long *magnitude) {
    size_t i = 0, digits = 0;
    long whole = 0, exponent = 0; /* significant digits before the point; the exponent */
    if (i < n && p[i] == '-') {
        i++;
    }
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
        digits++;
        whole += whole > 0 || p[i] != '0';
    }
    if (i < n && p[i] == '.') {
        for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
            digits++;
        }
    }
    if (digits == 0) {
        return 0;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        int negative = i < n && p[i] == '-';
        if (i < n && (p[i] == '+' || p[i] == '-')) {
            i++;
        }
        if (!all_digits(p + i, n - i)) {
            return 0;
        }
        for (; i < n; i++) {
            exponent = exponent < 1000000 ? exponent * 10 + (p[i] - '0') : exponent;
        }
        exponent = negative ? -exponent : exponent;
    }
    *magnitude = whole + exponent;
    return i == n;
}

static locale_t c_locale;

/* One of grammar.BOOLEANS. */
static int is_boolean(const char *v, size_t n) {
    switch (n) {
    case 1:
        return v[0] == 't' || v[0] == 'T' || v[0] == 'f' || v[0] == 'F';
    case 4:
        return memcmp(v, "true", 4) == 0 || memcmp(v, "True", 4) == 0 ||
               memcmp(v, "TRUE", 4) == 0;
    case 5:
        return memcmp(v, "false", 5) == 0 || memcmp(v, "False", 5) == 0 ||
               memcmp(v, "FALSE", 5) == 0;
    default:
        return 0;
    }
}

/* A field value's type by its shape, and whether the exact parser would refuse it (bad syntax,
 * out of range, infinite): grammar.parse_value's rules and limits (INT64_MIN/MAX, UINT64_MAX),
 * as convert/values.py's TYPE_SQL and BAD_SQL also apply them. */
static int value_type(const char *v, size_t n, int *bad) {
    *bad = 0;
    if (n && v[0] == '"') {
        return T_STRING;
    }
    if (is_boolean(v, n)) {
        return T_BOOLEAN;
    }
    if (n && v[n - 1] == 'i') {
        int negative = n > 1 && v[0] == '-';
        const char *body = v + negative;
        size_t body_n = n - 1 - (size_t)negative;
        *bad = !(all_digits(body, body_n) &&
                 digits_at_most(body, body_n, negative ? "9223372036854775808"
                                                       : "9223372036854775807"));
        return T_INTEGER;
    }
    if (n && v[n - 1] == 'u') {
        *bad = !(all_digits(v, n - 1) && digits_at_most(v, n - 1, "18446744073709551615"));
        return T_UNSIGNED;
    }
    long magnitude;
    if (!float_syntax(v, n, &magnitude)) {
        *bad = 1;
        return T_FLOAT;
    }
    if (magnitude <= 308) {
        return T_FLOAT; /* below 1e308 < DBL_MAX: finite, no need to read it */
    }
    char small[64];
    char *text = n < sizeof small ? small : malloc(n + 1);
    if (text == NULL) {
        *bad = 1; /* the exact parser decides, and can say why */
        return T_FLOAT;
    }
    memcpy(text, v, n);
    text[n] = '\0';
    *bad = isinf(strtod_l(text, NULL, c_locale));
    if (text != small) {
        free(text);
    }
    return T_FLOAT;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\0'; }

/* ------------------------------------------------------------------ Interner */

/* Distinct byte strings, numbered 0, 1, ... in order of first appearance.  Open addressing;
 * the string looked up last is compared first, as an export repeats one for long runs. */
typedef struct {
    Buf chars;       /* the strings' bytes, one after another */
    Buf ends;        /* int64 end offset of each string in chars */
    uint32_t *slots; /* number + 1, or 0 for an empty slot */
    size_t n_slots;  /* a power of two, at least twice the number of strings */
    int64_t last;    /* the number looked up last, or -1 */
} Interner;

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    }
    return h;
}

static size_t interner_count(const Interner *in) { return in->ends.len / sizeof(int64_t); }

static const char *interner_at(const Interner *in, size_t id, size_t *n) {
    const int64_t *ends = (const int64_t *)in->ends.data;
    int64_t start = id > 0 ? ends[id - 1] : 0;
    *n = (size_t)(ends[id] - start);
    return in->chars.data + start;
}

static int interner_holds(const Interner *in, size_t id, const char *p, size_t n) {
    size_t len;
    const char *text = interner_at(in, id, &len);
    return len == n && memcmp(text, p, n) == 0;
}

static int interner_grow(Interner *in) {
    size_t n_slots = in->n_slots ? in->n_slots * 2 : 1024;
    uint32_t *slots = calloc(n_slots, sizeof *slots);
    if (slots == NULL) {
        return -1;
    }
    for (size_t id = 0; id < interner_count(in); id++) {
        size_t len;
        const char *text = interner_at(in, id, &len);
        size_t at = hash_bytes(text, len) & (n_slots - 1);
        while (slots[at] != 0) {
            at = (at + 1) & (n_slots - 1);
        }
        slots[at] = (uint32_t)id + 1;
    }
    free(in->slots);
    in->slots = slots;
    in->n_slots = n_slots;
    return 0;
}

/* The number of p[0:n], a new one if it was never seen; -1 out of memory. */
static int64_t interner_add(Interner *in, const char *p, size_t n) {
    if (in->last >= 0 && interner_holds(in, (size_t)in->last, p, n)) {
        return in->last;
    }
    if ((interner_count(in) + 1) * 2 > in->n_slots && interner_grow(in) < 0) {
        return -1;
    }
    size_t at = hash_bytes(p, n) & (in->n_slots - 1);
    while (in->slots[at] != 0) {
        size_t id = in->slots[at] - 1;
        if (interner_holds(in, id, p, n)) {
            in->last = (int64_t)id;
            return in->last;
        }
        at = (at + 1) & (in->n_slots - 1);
    }
    if (interner_count(in) >= INT32_MAX - 1 || buf_add(&in->chars, p, n) < 0) {
        return -1;
    }
    int64_t end = (int64_t)in->chars.len;
    if (buf_add(&in->ends, &end, sizeof end) < 0) {
        return -1;
    }
    in->last = (int64_t)interner_count(in) - 1;
    in->slots[at] = (uint32_t)in->last + 1;
    return in->last;
}

static void interner_free(Interner *in) {
    free(in->chars.data);
    free(in->ends.data);
    free(in->slots);
    memset(in, 0, sizeof *in);
    in->last = -1;
}

/* ------------------------------------------------------------------ Pivot */

/* The fast path for a file that is nothing but one-field bulk lines (an influx_inspect
 * export, nearly always): instead of a `lines` row per line for DuckDB to merge, each line's
 * value goes straight into its point's cell of a per-measurement table, one row per point
 * (series key, time) and a column per (field key, type); a later line for the same point and
 * field replaces the earlier one, as in the general way.  Times are kept in nanoseconds and
 * handed to DuckDB as Arrow timestamp[ns, tz=UTC]: its TIMESTAMPTZ_NS as it is, where a cast
 * would cost a time zone conversion per point.  Any line it cannot take that way
 * (an exact-path line, a bad value, a context header after the data, a table past the memory
 * budget) makes the pivot *fail*: the caller then converts the file again the general way,
 * which decides every such case. */

#define PIVOT_COLUMNS 4096 /* (field key, type) columns of one measurement, at most */

typedef struct {
    int32_t table; /* the measurement's number */
    int type;      /* T_FLOAT ... T_BOOLEAN */
    Buf validity;  /* a bit per point of the table, set when the cell holds a value */
    Buf values;    /* 8 bytes per point; booleans: a bit per point; strings: offset, length */
    Buf chars;     /* string values, unescaped */
    int64_t count; /* cells set */
    int64_t other; /* the next column of the same field key with another type (a ring), or -1 */
} PivotColumn;

typedef struct {
    Buf kids;       /* int32 series key number of each point */
    Buf times;      /* int64 time of each point */
    int64_t points;
    int n_columns;
} PivotTable;

typedef struct {
    int64_t time;
    int32_t kid;
    int32_t point; /* point number + 1, 0 for an empty slot */
} PointSlot;

/* Where a series key's points are: while `hashed` is 0, in spans of its table, each a run of
 * points one after another with their times increasing, as an export lists the first field
 * of a series (a span per shard when other keys' points come between, the shards in any
 * order).  The spans of a key are linked in the order of their times, which never overlap:
 * a point is found by a binary search in its span, and a new one goes at the end of the table,
 * extending the span before it there or starting one, without a look in the hash table.
 * Finding a point's span walks the key's spans, so the walks a key may take are bounded by
 * its points (SPAN_WALK each); past that, or for a new point within a span, the key's points
 * move into the hash table (`hashed` 1) for good. */
typedef struct {
    int32_t head;    /* the span of its earliest times, or -1: no point yet */
    int32_t current; /* the span its latest new point went into */
    int32_t hashed;
    int64_t walk; /* span steps it may still take */
} KidRun;

/* A run of a key's points: first..last of its table. */
typedef struct {
    int32_t first, last;
    int32_t next; /* the key's span of the next later times, or -1 */
} Span;

#define SPAN_WALK 16 /* span steps a key may take per point it has, on average */

typedef struct {
    int active;              /* asked for, and not failed */
    const char *failure;     /* why it failed (static text), or NULL */
    int64_t budget;          /* bytes the tables may take */
    int64_t used;            /* bytes they take, about */
    long long first_line;    /* the physical line (from 1) of the first value taken, or 0 */
    long long taken;         /* lines taken (one that replaced an earlier value included) */
    Interner measurements;   /* a series key's measurement, as written (escapes and all) */
    Buf kid_table;           /* int32 measurement number of each series key */
    Buf kid_runs;            /* KidRun of each series key */
    Buf spans;               /* Span, of all the keys */
    Buf tables;              /* PivotTable, by measurement number */
    Interner column_keys;    /* (table int32, type byte, field key) -> column number */
    Buf columns;             /* PivotColumn, by column number */
    Buf column_key;          /* the key of the current line's column */
    /* (series key number, time) -> point number in its table: open addressing, a slot's
     * three parts side by side (one cache line per probe, not three) */
    PointSlot *slots;
    size_t n_slots, n_points;
    int32_t last_table, last_point; /* the point of the line before, for a guess */
} Pivot;

static void pivot_fail(Pivot *p, const char *why) {
    if (p->active) {
        p->active = 0;
        p->failure = why;
    }
}

static void pivot_free(Pivot *p) {
    interner_free(&p->measurements);
    interner_free(&p->column_keys);
    PivotTable *tables = (PivotTable *)p->tables.data;
    for (size_t i = 0; i < p->tables.len / sizeof(PivotTable); i++) {
        free(tables[i].kids.data);
        free(tables[i].times.data);
    }
    PivotColumn *columns = (PivotColumn *)p->columns.data;
    for (size_t i = 0; i < p->columns.len / sizeof(PivotColumn); i++) {
        free(columns[i].validity.data);
        free(columns[i].values.data);
        free(columns[i].chars.data);
    }
    free(p->kid_table.data);
    free(p->kid_runs.data);
    free(p->spans.data);
    free(p->tables.data);
    free(p->columns.data);
    free(p->column_key.data);
    free(p->slots);
    /* What the properties tell outlives the tables. */
    int active = p->active;
    const char *failure = p->failure;
    long long first_line = p->first_line, taken = p->taken;
    memset(p, 0, sizeof *p);
    p->measurements.last = p->column_keys.last = -1;
    p->active = active;
    p->failure = failure;
    p->first_line = first_line;
    p->taken = taken;
}

/* The measurement of a series key as the bulk split writes it: up to the first comma that
 * no backslash escapes.  (The exact parser checks every key later; a key it reads otherwise
 * fails the pivot there.) */
static size_t measurement_length(const char *key, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (key[i] == '\\') {
            i++;
        } else if (key[i] == ',') {
            return i;
        }
    }
    return n;
}

static uint64_t point_hash(int32_t kid, int64_t ts) {
    uint64_t h = (uint64_t)ts * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uint32_t)kid * 0xC2B2AE3D27D4EB4FULL;
    return h ^ (h >> 29);
}

static int point_slots_grow(Pivot *p) {
    size_t n_slots = p->n_slots ? p->n_slots * 2 : 1 << 16;
    PointSlot *slots = calloc(n_slots, sizeof *slots);
    if (slots == NULL) {
        return -1;
    }
    for (size_t i = 0; i < p->n_slots; i++) {
        if (p->slots[i].point != 0) {
            size_t at = point_hash(p->slots[i].kid, p->slots[i].time) & (n_slots - 1);
            while (slots[at].point != 0) {
                at = (at + 1) & (n_slots - 1);
            }
            slots[at] = p->slots[i];
        }
    }
    p->used += (int64_t)((n_slots - p->n_slots) * sizeof(PointSlot));
    free(p->slots);
    p->slots = slots;
    p->n_slots = n_slots;
    return 0;
}

/* Puts point `point` (kid, ts) into the hash table, which has room. */
static void point_slot_put(Pivot *p, int32_t kid, int64_t ts, int32_t point) {
    size_t at = point_hash(kid, ts) & (p->n_slots - 1);
    while (p->slots[at].point != 0) {
        at = (at + 1) & (p->n_slots - 1);
    }
    p->slots[at].kid = kid;
    p->slots[at].time = ts;
    p->slots[at].point = point + 1;
    p->n_points++;
}

/* A new point (kid, ts) at the end of `t`; -1 out of memory. */
static int64_t point_append(Pivot *p, PivotTable *t, int32_t table, int32_t kid, int64_t ts) {
    if (t->points >= INT32_MAX - 1 || buf_add(&t->kids, &kid, sizeof kid) < 0 ||
        buf_add(&t->times, &ts, sizeof ts) < 0) {
        return -1;
    }
    p->used += 12 + 8 * t->n_columns;
    p->last_table = table;
    p->last_point = (int32_t)t->points++;
    return p->last_point;
}

/* The point of the first time >= ts in span `s`, or -1 when ts is not among its times. */
static int32_t span_find(const Span *s, const int64_t *times, int64_t ts) {
    int32_t lo = s->first, hi = s->last;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (times[mid] < ts) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return times[lo] == ts ? lo : -1;
}

/* A new point (kid, ts) at the end of `t`, in a span of its own after `prev` (-1: first) and
 * before `next`; -1 out of memory. */
static int64_t span_start(Pivot *p, PivotTable *t, int32_t table, KidRun *run, int32_t kid,
                          int64_t ts, int32_t prev, int32_t next) {
    size_t n = p->spans.len / sizeof(Span);
    if (n >= INT32_MAX - 1 || buf_reserve(&p->spans, sizeof(Span)) < 0) {
        return -1;
    }
    int64_t point = point_append(p, t, table, kid, ts);
    if (point < 0) {
        return -1;
    }
    Span fresh = {.first = (int32_t)point, .last = (int32_t)point, .next = next};
    buf_add(&p->spans, &fresh, sizeof fresh); /* reserved above: cannot fail */
    p->used += (int64_t)sizeof fresh;
    if (prev >= 0) {
        ((Span *)p->spans.data)[prev].next = (int32_t)n;
    } else {
        run->head = (int32_t)n;
    }
    run->current = (int32_t)n;
    run->walk += SPAN_WALK;
    return point;
}

/* The point (kid, ts) of a key whose points are in spans, added when new; -1 out of memory,
 * -2 when the key's points must go into the hash table. */
static int64_t span_point(Pivot *p, PivotTable *t, int32_t table, KidRun *run, int32_t kid,
                          int64_t ts) {
    if (run->head < 0) {
        return span_start(p, t, table, run, kid, ts, -1, -1);
    }
    const int64_t *times = (const int64_t *)t->times.data;
    Span *spans = (Span *)p->spans.data;
    /* Where the key's last new point went, first: the next one nearly always follows it. */
    int32_t prev = run->current;
    Span *s = &spans[prev];
    if (ts < times[s->first] || (s->next >= 0 && ts >= times[spans[s->next].first])) {
        /* Elsewhere: the last span that begins at or before ts (-1: none), from the start. */
        prev = -1;
        for (int32_t at = run->head; at >= 0 && times[spans[at].first] <= ts;
             at = spans[at].next) {
            prev = at;
            if (--run->walk < 0) {
                return -2;
            }
        }
    }
    int32_t next = prev >= 0 ? spans[prev].next : run->head;
    if (prev >= 0 && ts <= times[spans[prev].last]) { /* within the span: there, or out of order */
        int32_t found = span_find(&spans[prev], times, ts);
        if (found < 0) {
            return -2;
        }
        p->last_table = table;
        p->last_point = found;
        return found;
    }
    /* A new point, between span `prev` and the next one. */
    if (prev >= 0 && spans[prev].last == t->points - 1) { /* the span ends the table: it grows */
        int64_t point = point_append(p, t, table, kid, ts);
        if (point < 0) {
            return -1;
        }
        spans = (Span *)p->spans.data;
        spans[prev].last = (int32_t)point;
        run->current = prev;
        run->walk += SPAN_WALK;
        return point;
    }
    return span_start(p, t, table, run, kid, ts, prev, next);
}

/* The point (kid, ts) of `table`, added when new; -1 out of memory. */
static int64_t pivot_point(Pivot *p, int32_t table, int32_t kid, int64_t ts) {
    PivotTable *t = &((PivotTable *)p->tables.data)[table];
    /* An export lists a series' times once per field, in the same order: after the first
     * field, the next point is nearly always the one after the line before's. */
    if (p->last_table == table && p->last_point + 1 < t->points) {
        int32_t guess = p->last_point + 1;
        if (((int32_t *)t->kids.data)[guess] == kid && ((int64_t *)t->times.data)[guess] == ts) {
            p->last_point = guess;
            return guess;
        }
    }
    KidRun *run = &((KidRun *)p->kid_runs.data)[kid];
    if (!run->hashed) {
        int64_t point = span_point(p, t, table, run, kid, ts);
        if (point != -2) {
            return point;
        }
        /* Out of order within a span, or too many walks: into the hash table, for good. */
        const int64_t *times = (const int64_t *)t->times.data;
        const Span *spans = (const Span *)p->spans.data;
        size_t count = 0;
        for (int32_t s = run->head; s >= 0; s = spans[s].next) {
            count += (size_t)(spans[s].last - spans[s].first + 1);
        }
        while ((p->n_points + count + 1) * 2 > p->n_slots) {
            if (point_slots_grow(p) < 0) {
                return -1;
            }
        }
        for (int32_t s = run->head; s >= 0; s = spans[s].next) {
            for (int32_t at = spans[s].first; at <= spans[s].last; at++) {
                point_slot_put(p, kid, times[at], at);
            }
        }
        run->hashed = 1;
    }
    if ((p->n_points + 1) * 2 > p->n_slots && point_slots_grow(p) < 0) {
        return -1;
    }
    size_t at = point_hash(kid, ts) & (p->n_slots - 1);
    while (p->slots[at].point != 0) {
        if (p->slots[at].kid == kid && p->slots[at].time == ts) {
            p->last_table = table;
            p->last_point = p->slots[at].point - 1;
            return p->last_point;
        }
        at = (at + 1) & (p->n_slots - 1);
    }
    int64_t point = point_append(p, t, table, kid, ts);
    if (point >= 0) {
        point_slot_put(p, kid, ts, (int32_t)point);
    }
    return point;
}

/* The column of (table, type, field key); -1 out of memory, -2 too many. */
static int64_t pivot_column(Pivot *p, int32_t table, int type, const char *fk, size_t fk_n) {
    unsigned char ty = (unsigned char)type;
    p->column_key.len = 0;
    if (buf_add(&p->column_key, &table, sizeof table) < 0 || buf_add(&p->column_key, &ty, 1) < 0 ||
        buf_add(&p->column_key, fk, fk_n) < 0) {
        return -1;
    }
    size_t before = interner_count(&p->column_keys);
    int64_t id = interner_add(&p->column_keys, p->column_key.data, p->column_key.len);
    if (id < 0 || interner_count(&p->column_keys) == before) {
        return id;
    }
    PivotTable *t = &((PivotTable *)p->tables.data)[table];
    if (t->n_columns >= PIVOT_COLUMNS) {
        return -2;
    }
    /* A field with several types (rare): link its columns in a ring, to catch a point whose
     * field comes twice with different types. */
    int64_t sibling = -1;
    for (int64_t i = 0; i < id && sibling < 0; i++) {
        size_t n;
        const char *key = interner_at(&p->column_keys, (size_t)i, &n);
        const PivotColumn *other = &((PivotColumn *)p->columns.data)[i];
        if (other->table == table && n == fk_n + 5 && memcmp(key + 5, fk, fk_n) == 0) {
            sibling = i;
        }
    }
    PivotColumn column = {.table = table, .type = type, .other = -1};
    if (buf_add(&p->columns, &column, sizeof column) < 0) {
        return -1;
    }
    if (sibling >= 0) {
        PivotColumn *columns = (PivotColumn *)p->columns.data;
        columns[id].other = columns[sibling].other >= 0 ? columns[sibling].other : sibling;
        columns[sibling].other = id;
    }
    t->n_columns++;
    p->used += 8 * t->points + (int64_t)fk_n + 64;
    return id;
}

/* Clinger's fast path: a decimal of at most 15 significant digits and a power of ten of at
 * most 22 are both exact doubles, so one multiplication or division rounds correctly, as
 * strtod does.  Anything else goes to strtod_l.  `v` has the parser's float syntax. */
static double read_float(const char *v, size_t n) {
    static const double powers[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    size_t i = 0;
    int negative = v[0] == '-';
    i += (size_t)negative;
    uint64_t mantissa = 0;
    int digits = 0, exponent = 0;
    for (; i < n && v[i] >= '0' && v[i] <= '9'; i++) {
        if (mantissa || v[i] != '0') {
            digits++;
        }
        mantissa = mantissa * 10 + (uint64_t)(v[i] - '0');
        if (digits > 15) {
            break;
        }
    }
    if (digits <= 15 && i < n && v[i] == '.') {
        for (i++; i < n && v[i] >= '0' && v[i] <= '9'; i++) {
            if (mantissa || v[i] != '0') {
                digits++;
            }
            mantissa = mantissa * 10 + (uint64_t)(v[i] - '0');
            exponent--;
            if (digits > 15) {
                break;
            }
        }
    }
    if (digits <= 15 && i == n && exponent >= -22) {
        double value = (double)mantissa / powers[-exponent];
        return negative ? -value : value;
    }
    char small[64];
    char *text = n < sizeof small ? small : malloc(n + 1);
    if (text == NULL) {
        return NAN; /* never stored: the caller checks */
    }
    memcpy(text, v, n);
    text[n] = '\0';
    double value = strtod_l(text, NULL, c_locale);
    if (text != small) {
        free(text);
    }
    return value;
}

/* The value of a checked field `v` of type `type` into `column`'s cell `point`. */
static int pivot_store(PivotColumn *column, int64_t point, int type, const char *v, size_t n) {
    size_t bits = (size_t)(point / 8 + 1);
    if (buf_zero_to(&column->validity, bits) < 0) {
        return -1;
    }
    if (type == T_BOOLEAN) {
        if (buf_zero_to(&column->values, bits) < 0) {
            return -1;
        }
        char bit = (char)(1 << (point & 7));
        column->values.data[point >> 3] &= (char)~bit; /* a later line may say false */
        if (v[0] == 't' || v[0] == 'T') {
            column->values.data[point >> 3] |= bit;
        }
    } else {
        size_t width = type == T_STRING ? 16 : 8;
        if (buf_zero_to(&column->values, (size_t)(point + 1) * width) < 0) {
            return -1;
        }
        char *cell = column->values.data + (size_t)point * width;
        if (type == T_FLOAT) {
            double value = read_float(v, n);
            if (isnan(value)) {
                return -1;
            }
            memcpy(cell, &value, 8);
        } else if (type == T_INTEGER || type == T_UNSIGNED) {
            /* Checked for range already: accumulate in unsigned, negate at the end. */
            int negative = v[0] == '-';
            uint64_t value = 0;
            for (size_t i = (size_t)negative; i < n - 1; i++) {
                value = value * 10 + (uint64_t)(v[i] - '0');
            }
            value = negative ? 0 - value : value;
            memcpy(cell, &value, 8);
        } else {
            /* Inside the quotes, \" and \\ are escapes, nothing else is. */
            int64_t start = (int64_t)column->chars.len;
            if (buf_reserve(&column->chars, n) < 0) {
                return -1;
            }
            for (size_t i = 1; i + 1 < n; i++) {
                char c = v[i];
                if (c == '\\' && i + 2 < n && (v[i + 1] == '"' || v[i + 1] == '\\')) {
                    c = v[++i];
                }
                column->chars.data[column->chars.len++] = c;
            }
            int64_t length = (int64_t)column->chars.len - start;
            memcpy(cell, &start, 8);
            memcpy(cell + 8, &length, 8);
        }
    }
    column->validity.data[point >> 3] |= (char)(1 << (point & 7));
    column->count++;
    return 0;
}

/* A one-field bulk line with a good value into its cell; -1 out of memory. */
static int pivot_add(Pivot *p, int32_t kid, const char *key, size_t key_n, const char *fk,
                     size_t fk_n, const char *v, size_t v_n, int type, int64_t ts,
                     long long line_number) {
    size_t known = p->kid_table.len / sizeof(int32_t);
    if ((size_t)kid > known) {
        /* Keys are numbered as bulk lines bring them, and every one so far came here. */
        pivot_fail(p, "a series key of a line the pivot did not take");
        return 0;
    }
    if ((size_t)kid == known) {
        size_t tables = interner_count(&p->measurements);
        int64_t table = interner_add(&p->measurements, key, measurement_length(key, key_n));
        if (table < 0) {
            return -1;
        }
        int32_t t32 = (int32_t)table;
        KidRun run = {.head = -1, .current = -1, .hashed = 0, .walk = 0};
        if (buf_add(&p->kid_table, &t32, sizeof t32) < 0 ||
            buf_add(&p->kid_runs, &run, sizeof run) < 0) {
            return -1;
        }
        if (interner_count(&p->measurements) > tables) {
            PivotTable fresh = {0};
            if (buf_add(&p->tables, &fresh, sizeof fresh) < 0) {
                return -1;
            }
        }
    }
    int32_t table = ((int32_t *)p->kid_table.data)[kid];
    int64_t id = pivot_column(p, table, type, fk, fk_n);
    if (id == -2) {
        pivot_fail(p, "too many fields in one measurement");
        return 0;
    }
    int64_t point = id < 0 ? -1 : pivot_point(p, table, kid, ts);
    if (point < 0) {
        return -1;
    }
    PivotColumn *columns = (PivotColumn *)p->columns.data;
    PivotColumn *column = &columns[id];
    /* A later line wins (the WAL after TSM): a value the point's field already has goes,
     * whichever of the field's type columns holds it. */
    for (int64_t at = id;;) {
        PivotColumn *c = &columns[at];
        if (c->validity.len > (size_t)(point >> 3) &&
            (c->validity.data[point >> 3] >> (point & 7) & 1)) {
            c->validity.data[point >> 3] &= (char)~(1 << (point & 7));
            c->count--;
        }
        at = c->other;
        if (at < 0 || at == id) {
            break;
        }
    }
    size_t chars = column->chars.len;
    if (pivot_store(column, point, type, v, v_n) < 0) {
        return -1;
    }
    p->used += (int64_t)(column->chars.len - chars);
    p->taken++;
    if (p->first_line == 0) {
        p->first_line = line_number;
    }
    if (p->used > p->budget) {
        pivot_fail(p, "the points exceed the memory budget");
    }
    return 0;
}

/* ------------------------------------------------------------------ Splitter */

typedef struct {
    PyObject_HEAD Columns *columns;
    int64_t low, high; /* bounds of a bulk line's time, in the input's precision */
    int64_t scale;     /* nanoseconds per unit of that precision: the pivot's times in ns */
    long long lines;   /* physical lines so far */
    int final_newline; /* whether the input so far ends with a newline (or is empty) */
    Buf pending;       /* the unfinished last line */
    Buf scratch;       /* the raw text of a K_NOT_UTF8 or K_OVERLONG row */
    int in_long;       /* skipping the rest of an overlong line whose head is in `pending` */
    size_t long_length;
    int error; /* -1 out of memory, -2 a batch too large: raised once the GIL is back */
    /* Distinct series keys, numbered in order of first appearance: the rows carry the number,
     * so DuckDB groups and joins integers, not 2M copies of the same few keys. */
    Interner keys;
    /* Whether no two one-field bulk lines share series key, field key and time, so that no
     * line overrides another: each (key, field) pair's times so far only ever increased. */
    int unique;
    Interner pairs;  /* (kid, field key), as the kid's 4 bytes then the field key */
    Buf pair_times;  /* int64 latest time of each pair */
    Buf pair_key;    /* the pair of the current line */
    Pivot pivot;
} SplitterObject;

/* Clears `unique` when this line's time is not after the last one of its (key, field). */
static int track_time(SplitterObject *self, int32_t kid, const char *fk, size_t fk_n,
                      int64_t ts) {
    self->pair_key.len = 0;
    if (buf_add(&self->pair_key, &kid, sizeof kid) < 0 || buf_add(&self->pair_key, fk, fk_n) < 0) {
        return -1;
    }
    size_t before = interner_count(&self->pairs);
    int64_t pair = interner_add(&self->pairs, self->pair_key.data, self->pair_key.len);
    if (pair < 0) {
        return -1;
    }
    if (interner_count(&self->pairs) > MAX_PAIRS) {
        /* Too many to follow within bounded memory: assume lines may override others. */
        self->unique = 0;
        interner_free(&self->pairs);
        free(self->pair_times.data);
        memset(&self->pair_times, 0, sizeof self->pair_times);
        return 0;
    }
    if (interner_count(&self->pairs) > before) {
        return buf_add(&self->pair_times, &ts, sizeof ts);
    }
    int64_t *times = (int64_t *)self->pair_times.data;
    self->unique = ts > times[pair];
    times[pair] = ts;
    return 0;
}

/* kid < 0: no series key; ty < 0: no type (nor bad) for this row. */
static int add_row(SplitterObject *self, int kind, int32_t kid, const char *fk, size_t fk_n,
                   const char *v, size_t v_n, const int64_t *ts, const char *raw, size_t raw_n,
                   int ty, int bad) {
    Columns *c = self->columns;
    int64_t row = c->rows;
    uint8_t k = (uint8_t)kind;
    int err = buf_add(&c->col[C_KIND].values, &k, 1); /* never NULL: no validity bitmap */
    if (!err) err = set_valid(&c->col[C_KID], row, kid >= 0);
    if (!err) err = buf_add(&c->col[C_KID].values, &kid, sizeof kid);
    if (!err) err = add_string(&c->col[C_FK], row, fk, fk_n);
    if (!err) err = add_string(&c->col[C_V], row, v, v_n);
    if (!err) err = set_valid(&c->col[C_TS], row, ts != NULL);
    if (!err) {
        int64_t value = ts != NULL ? *ts : 0;
        err = buf_add(&c->col[C_TS].values, &value, sizeof value);
    }
    if (!err) err = add_string(&c->col[C_RAW], row, raw, raw_n);
    if (!err) err = set_valid(&c->col[C_TY], row, ty >= 0);
    if (!err) {
        uint8_t value = ty >= 0 ? (uint8_t)ty : 0;
        err = buf_add(&c->col[C_TY].values, &value, 1);
    }
    if (!err) err = set_valid(&c->col[C_BAD], row, ty >= 0);
    if (!err) err = add_bit(&c->col[C_BAD].values, row, ty >= 0 && bad); /* Arrow booleans */
    if (!err) c->rows++;
    return err;
}

/* A row of kind K_NOT_UTF8 or K_OVERLONG: `prefix`, then the bytes `head` in hex. */
static int add_unreadable(SplitterObject *self, int kind, const char *prefix,
                          const unsigned char *head, size_t n) {
    static const char hex[] = "0123456789abcdef";
    pivot_fail(&self->pivot, "a line for the exact parser");
    self->scratch.len = 0;
    if (buf_add(&self->scratch, prefix, strlen(prefix)) < 0 ||
        buf_reserve(&self->scratch, 2 * n) < 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        self->scratch.data[self->scratch.len++] = hex[head[i] >> 4];
        self->scratch.data[self->scratch.len++] = hex[head[i] & 15];
    }
    return add_row(self, kind, -1, NULL, 0, NULL, 0, NULL, self->scratch.data, self->scratch.len,
                   -1, 0);
}

static int add_long(SplitterObject *self, const unsigned char *head, size_t head_n,
                    size_t length) {
    char prefix[48];
    snprintf(prefix, sizeof prefix, "%zu:", length);
    return add_unreadable(self, K_OVERLONG, prefix, head, head_n < HEAD ? head_n : HEAD);
}

static int line(SplitterObject *self, const char *s, size_t m) {
    self->lines++;
    if (m == 0) {
        return add_row(self, K_SKIP, -1, NULL, 0, NULL, 0, NULL, NULL, 0, -1, 0);
    }
    if (!is_ascii(s, m) && !is_utf8((const unsigned char *)s, m)) {
        return add_unreadable(self, K_NOT_UTF8, "", (const unsigned char *)s, m);
    }
    const char *quote = memchr(s, '"', m);
    /* The last two spaces: time after the last; fields before it. */
    const char *last = memrchr(s, ' ', m);
    const char *second = last != NULL ? memrchr(s, ' ', (size_t)(last - s)) : NULL;
    int64_t ts = 0;
    int bulk = 0;
    const char *key = NULL, *f = NULL;
    size_t key_n = 0, f_n = 0;
    if (second != NULL &&
        canonical_time(last + 1, (size_t)(s + m - last - 1), self->low, self->high, &ts)) {
        if (quote == NULL) {
            key = s;
            key_n = (size_t)(second - s);
            f = second + 1;
            f_n = (size_t)(last - second - 1);
            const char *eq = memchr(f, '=', f_n);
            bulk = eq != NULL && eq > f && memchr(f, '\\', f_n) == NULL && f[0] != '\t' &&
                   f[0] != '\0';
        } else {
            /* A string field may hold spaces: the key ends at the first space that is not
             * escaped (a backslash-space pair, scanned left to right, is one unit). */
            const char *ke = NULL;
            for (size_t i = 0; i < m; i++) {
                if (s[i] == '\\' && i + 1 < m && s[i + 1] == ' ') {
                    i++;
                } else if (s[i] == ' ') {
                    ke = s + i;
                    break;
                }
            }
            if (ke != NULL && last > ke + 1) {
                key = s;
                key_n = (size_t)(ke - s);
                f = ke + 1;
                f_n = (size_t)(last - ke - 1);
                bulk = string_field(f, f_n);
            }
        }
    }
    if (bulk) {
        const char *eq = memchr(f, '=', f_n);
        size_t eq_at = (size_t)(eq - f);
        int64_t kid = interner_add(&self->keys, key, key_n);
        if (kid < 0) {
            return -1;
        }
        if (quote == NULL && memchr(f, ',', f_n) != NULL) {
            pivot_fail(&self->pivot, "a line with several fields");
            return add_row(self, K_BULK, (int32_t)kid, NULL, 0, f, f_n, &ts, NULL, 0, -1, 0);
        }
        const char *v = eq + 1;
        size_t v_n = f_n - eq_at - 1;
        int bad;
        int ty = value_type(v, v_n, &bad);
        if (self->pivot.active) {
            if (!bad) {
                return pivot_add(&self->pivot, (int32_t)kid, key, key_n, f, eq_at, v, v_n, ty,
                                 ts * self->scale, self->lines);
            }
            pivot_fail(&self->pivot, "a bad value");
        }
        if (self->unique && track_time(self, (int32_t)kid, f, eq_at, ts) < 0) {
            return -1;
        }
        return add_row(self, K_BULK, (int32_t)kid, f, eq_at, v, v_n, &ts, NULL, 0, ty, bad);
    }
    int kind = K_SLOW;
    if (quote == NULL && s[m - 1] != '\\') {
        size_t i = 0;
        while (i < m && is_ws(s[i])) {
            i++;
        }
        if (i == m || s[i] == '#' || (m >= 16 && memcmp(s, "CREATE DATABASE ", 16) == 0)) {
            kind = K_SKIP;
        }
    }
    if (kind == K_SLOW) {
        pivot_fail(&self->pivot, "a line for the exact parser");
    } else if (self->pivot.first_line && m >= 10 && memcmp(s, "# CONTEXT-", 10) == 0) {
        pivot_fail(&self->pivot, "a context header after the data");
    }
    return add_row(self, kind, -1, NULL, 0, NULL, 0, NULL, s, m, -1, 0);
}

/* The line in `pending` ended (at a newline or the end of the input), or the overlong one
 * whose head it holds. */
static int end_line(SplitterObject *self) {
    int err;
    if (self->in_long) {
        self->lines++;
        err = add_long(self, (const unsigned char *)self->pending.data, self->pending.len,
                       self->long_length);
        self->in_long = 0;
    } else {
        err = line(self, self->pending.data, self->pending.len);
    }
    self->pending.len = 0;
    return err;
}

/* Feeds bytes; whole lines are split, the rest waits in `pending`. */
static int feed(SplitterObject *self, const char *p, size_t n) {
    if (self->pivot.failure != NULL) {
        return 0; /* the caller converts the input again, the general way */
    }
    if (n) {
        self->final_newline = p[n - 1] == '\n';
    }
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl != NULL ? (size_t)(nl - p) : n;
        int err = 0;
        if (self->in_long) {
            self->long_length += take;
        } else if (self->pending.len + take > MAX_LINE) {
            /* Overlong: keep its head only and count the rest. */
            self->long_length = self->pending.len + take;
            if (self->pending.len < HEAD) {
                size_t head = HEAD - self->pending.len;
                err = buf_add(&self->pending, p, take < head ? take : head);
            } else {
                self->pending.len = HEAD;
            }
            self->in_long = 1;
        } else if (nl != NULL && self->pending.len == 0) {
            err = line(self, p, take); /* the common case: no copy */
        } else {
            err = buf_add(&self->pending, p, take);
        }
        if (!err && nl != NULL && (self->in_long || self->pending.len)) {
            err = end_line(self);
        }
        if (err) {
            return err;
        }
        if (nl == NULL) {
            break;
        }
        p = nl + 1;
        n -= take + 1;
    }
    return 0;
}

static void splitter_dealloc(SplitterObject *self) {
    if (self->columns != NULL) {
        columns_unref(self->columns);
    }
    free(self->pending.data);
    free(self->scratch.data);
    interner_free(&self->keys);
    interner_free(&self->pairs);
    free(self->pair_times.data);
    free(self->pair_key.data);
    pivot_free(&self->pivot);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int fresh_columns(SplitterObject *self, const Columns *like) {
    self->columns = columns_new(like);
    if (self->columns == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->columns->refs = 1;
    return 0;
}

static int splitter_init(SplitterObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"low", "high", "pivot", "scale", NULL};
    long long low, high, pivot = 0, scale = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "LL|LL", keywords, &low, &high, &pivot,
                                     &scale)) {
        return -1;
    }
    if (pivot < 0 || pivot > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "pivot: a budget of 0 (off) to 2 GiB bytes");
        return -1;
    }
    if (scale < 1 || low < INT64_MIN / scale || high > INT64_MAX / scale) {
        PyErr_SetString(PyExc_ValueError, "scale: at least 1, and low and high scaled fit 64 bits");
        return -1;
    }
    if (self->columns != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Splitter is initialised once");
        return -1;
    }
    self->low = low;
    self->high = high;
    self->scale = scale;
    self->keys.last = -1;
    self->pairs.last = -1;
    self->unique = 1;
    self->final_newline = 1;
    self->pivot.measurements.last = self->pivot.column_keys.last = -1;
    self->pivot.active = pivot > 0;
    self->pivot.budget = pivot;
    return fresh_columns(self, NULL);
}

static PyObject *raise_error(SplitterObject *self, int err) {
    self->error = err;
    if (err == -2) {
        PyErr_SetString(PyExc_OverflowError,
                        "more than 2 GiB of text in one column of a batch: take() it sooner");
    } else {
        PyErr_NoMemory();
    }
    return NULL;
}

/* Whether __init__ ran (its columns exist); else a RuntimeError is set. */
static int initialised(SplitterObject *self) {
    if (self->columns == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Splitter not initialised");
        return 0;
    }
    return 1;
}

static PyObject *splitter_feed(SplitterObject *self, PyObject *arg) {
    Py_buffer view;
    if (!initialised(self)) {
        return NULL;
    }
    if (self->error) {
        return raise_error(self, self->error);
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    int err;
    Py_BEGIN_ALLOW_THREADS err = feed(self, view.buf, (size_t)view.len);
    Py_END_ALLOW_THREADS PyBuffer_Release(&view);
    if (err) {
        return raise_error(self, err);
    }
    Py_RETURN_NONE;
}

static PyObject *splitter_finish(SplitterObject *self, PyObject *unused) {
    (void)unused;
    if (!initialised(self)) {
        return NULL;
    }
    int err = self->in_long || self->pending.len ? end_line(self) : 0;
    if (err) {
        return raise_error(self, err);
    }
    Py_RETURN_NONE;
}

static PyObject *splitter_take(SplitterObject *self, PyObject *unused) {
    (void)unused;
    if (!initialised(self)) {
        return NULL;
    }
    BatchObject *batch = batch_new(self->columns); /* the Splitter's reference moves */
    if (batch == NULL) {
        return NULL;
    }
    self->columns = NULL;
    if (fresh_columns(self, batch->columns) < 0) {
        Py_DECREF(batch);
        return NULL;
    }
    return (PyObject *)batch;
}

static PyObject *splitter_keys(SplitterObject *self, PyObject *arg) {
    Py_ssize_t start = PyLong_AsSsize_t(arg);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    size_t count = interner_count(&self->keys);
    if (start < 0 || (size_t)start > count) {
        PyErr_SetString(PyExc_IndexError, "keys(start): start out of range");
        return NULL;
    }
    PyObject *keys = PyList_New((Py_ssize_t)(count - (size_t)start));
    if (keys == NULL) {
        return NULL;
    }
    for (size_t kid = (size_t)start; kid < count; kid++) {
        size_t len;
        const char *key = interner_at(&self->keys, kid, &len);
        PyObject *text = PyUnicode_DecodeUTF8(key, (Py_ssize_t)len, "strict");
        if (text == NULL) {
            Py_DECREF(keys);
            return NULL;
        }
        PyList_SET_ITEM(keys, (Py_ssize_t)(kid - (size_t)start), text);
    }
    return keys;
}

/* One measurement's points as Arrow columns kid, ts (timestamp[ns, tz=UTC]), c0, c1...; moves
 * the buffers out. */
static Columns *pivot_columns(Pivot *p, int32_t table, PyObject *fields) {
    PivotTable *t = &((PivotTable *)p->tables.data)[table];
    Columns *c = columns_alloc(2 + t->n_columns);
    if (c == NULL) {
        return NULL;
    }
    c->rows = t->points;
    c->col[0] = (Column){.values = t->kids, .format = "i", .name = "kid"};
    c->col[1] = (Column){.values = t->times, .format = "tsn:UTC", .name = "ts"};
    memset(&t->kids, 0, sizeof t->kids);
    memset(&t->times, 0, sizeof t->times);
    static const char *const formats[] = {"g", "l", "L", "u", "b"};
    PivotColumn *columns = (PivotColumn *)p->columns.data;
    size_t bits = (size_t)(t->points + 7) / 8;
    int at = 2;
    for (size_t id = 0; id < p->columns.len / sizeof(PivotColumn); id++) {
        PivotColumn *from = &columns[id];
        if (from->table != table) {
            continue;
        }
        Column *to = &c->col[at];
        to->format = formats[from->type];
        snprintf(to->name, sizeof to->name, "c%d", at - 2);
        to->nulls = t->points - from->count;
        to->validity = from->validity;
        memset(&from->validity, 0, sizeof from->validity);
        int err = buf_zero_to(&to->validity, bits);
        if (from->type == T_STRING) {
            /* Cells came in any order; Arrow wants the strings one after another. */
            int32_t end = 0;
            err = err || buf_add(&to->values, &end, sizeof end) || buf_reserve(&to->chars, from->chars.len + 8);
            for (int64_t point = 0; !err && point < t->points; point++) {
                int64_t cell[2] = {0, 0};
                if ((size_t)(point * 16) < from->values.len) {
                    memcpy(cell, from->values.data + point * 16, sizeof cell);
                }
                err = cell[1] ? buf_add(&to->chars, from->chars.data + cell[0], (size_t)cell[1]) : 0;
                end = (int32_t)to->chars.len;
                err = err || to->chars.len > INT32_MAX || buf_add(&to->values, &end, sizeof end);
            }
        } else {
            to->values = from->values;
            memset(&from->values, 0, sizeof from->values);
            err = err || buf_zero_to(&to->values, from->type == T_BOOLEAN ? bits : (size_t)t->points * 8);
        }
        at++;
        size_t n;
        const char *key = interner_at(&p->column_keys, id, &n);
        PyObject *field = Py_BuildValue("(s#i)", key + 5, (Py_ssize_t)(n - 5), from->type);
        if (err || field == NULL || PyList_Append(fields, field) < 0) {
            Py_XDECREF(field);
            columns_free(c);
            if (!PyErr_Occurred()) {
                PyErr_NoMemory();
            }
            return NULL;
        }
        Py_DECREF(field);
    }
    return c;
}

static PyObject *splitter_pivot_tables(SplitterObject *self, PyObject *unused) {
    (void)unused;
    Pivot *p = &self->pivot;
    if (!p->active) {
        PyErr_SetString(PyExc_RuntimeError, "no pivot: not asked for, failed, or taken");
        return NULL;
    }
    size_t n_tables = interner_count(&p->measurements);
    PyObject *out = PyList_New(0);
    PyObject **kids = calloc(n_tables + 1, sizeof(PyObject *));
    int ok = out != NULL && kids != NULL;
    for (size_t i = 0; ok && i < n_tables; i++) {
        ok = (kids[i] = PyList_New(0)) != NULL;
    }
    const int32_t *kid_table = (const int32_t *)p->kid_table.data;
    for (size_t kid = 0; ok && kid < p->kid_table.len / sizeof(int32_t); kid++) {
        PyObject *number = PyLong_FromSize_t(kid);
        ok = number != NULL && PyList_Append(kids[kid_table[kid]], number) == 0;
        Py_XDECREF(number);
    }
    for (size_t i = 0; ok && i < n_tables; i++) {
        PyObject *fields = PyList_New(0);
        Columns *c = fields != NULL ? pivot_columns(p, (int32_t)i, fields) : NULL;
        BatchObject *batch = c != NULL ? batch_new(c) : NULL;
        if (batch == NULL) {
            columns_free(c);
            Py_XDECREF(fields);
            ok = 0;
            break;
        }
        c->refs = 1;
        size_t n;
        const char *name = interner_at(&p->measurements, i, &n);
        PyObject *entry = Py_BuildValue("(s#OON)", name, (Py_ssize_t)n, kids[i], fields, batch);
        Py_DECREF(fields);
        ok = entry != NULL && PyList_Append(out, entry) == 0;
        Py_XDECREF(entry);
    }
    for (size_t i = 0; kids != NULL && i < n_tables; i++) {
        Py_XDECREF(kids[i]);
    }
    free(kids);
    pivot_free(p);
    p->active = 0;
    if (!ok) {
        Py_XDECREF(out);
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    return out;
}

static PyObject *splitter_get_pivot_failure(SplitterObject *self, void *closure) {
    (void)closure;
    if (self->pivot.failure == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(self->pivot.failure);
}

static PyObject *splitter_get_pivot_lines(SplitterObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLongLong(self->pivot.taken);
}

static PyObject *splitter_get_pivot_first_line(SplitterObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLongLong(self->pivot.first_line);
}

static PyObject *splitter_get_lines(SplitterObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLongLong(self->lines);
}

static PyObject *splitter_get_rows(SplitterObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLongLong(self->columns != NULL ? self->columns->rows : 0);
}

static PyObject *splitter_get_size(SplitterObject *self, void *closure) {
    (void)closure;
    size_t size = 0;
    for (int i = 0; self->columns != NULL && i < self->columns->n; i++) {
        size += self->columns->col[i].chars.len;
    }
    return PyLong_FromSize_t(size);
}

static PyObject *splitter_get_unique(SplitterObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->unique);
}

static PyObject *splitter_get_final_newline(SplitterObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->final_newline);
}

static PyMethodDef splitter_methods[] = {
    {"feed", (PyCFunction)splitter_feed, METH_O,
     "Split the whole lines of these bytes; an unfinished last line waits for more."},
    {"finish", (PyCFunction)splitter_finish, METH_NOARGS,
     "The input ended: split its unfinished last line, if any."},
    {"take", (PyCFunction)splitter_take, METH_NOARGS,
     "The rows split since the last take(), as a Batch."},
    {"keys", (PyCFunction)splitter_keys, METH_O,
     "The series keys numbered start and up (a row's kid is its key's index), as text."},
    {"pivot_tables", (PyCFunction)splitter_pivot_tables, METH_NOARGS,
     "The pivot's tables, once: [(measurement, kids, [(field key, type)], Batch)]."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef splitter_getset[] = {
    {"lines", (getter)splitter_get_lines, NULL, "Physical lines split so far.", NULL},
    {"rows", (getter)splitter_get_rows, NULL, "Rows waiting for take().", NULL},
    {"size", (getter)splitter_get_size, NULL, "Bytes of text in the rows waiting for take().",
     NULL},
    {"unique", (getter)splitter_get_unique, NULL,
     "Whether no two one-field bulk lines so far share series key, field key and time.", NULL},
    {"final_newline", (getter)splitter_get_final_newline, NULL,
     "Whether the input fed so far ends with a newline (or is empty).", NULL},
    {"pivot_failure", (getter)splitter_get_pivot_failure, NULL,
     "Why the pivot failed (then feed() ignores the rest), or None.", NULL},
    {"pivot_lines", (getter)splitter_get_pivot_lines, NULL, "Lines the pivot took.", NULL},
    {"pivot_first_line", (getter)splitter_get_pivot_first_line, NULL,
     "The physical line (from 1) of the first line the pivot took, or 0.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SplitterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "headlined.influx.convert._lines.Splitter",
    .tp_basicsize = sizeof(SplitterObject),
    .tp_dealloc = (destructor)splitter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Splitter(low, high, pivot=0, scale=1): the converter's first pass; see "
              "headlined/influx/convert/_lines.c.",
    .tp_methods = splitter_methods,
    .tp_getset = splitter_getset,
    .tp_init = (initproc)splitter_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "headlined.influx.convert._lines",
    .m_doc = "The converter's first pass in C: lines into the columns of the `lines` table.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__lines(void) {
    /* Floats are read as the parser reads them, whatever the process's locale. */
    if (c_locale == (locale_t)0) {
        c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
        if (c_locale == (locale_t)0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return NULL;
        }
    }
    if (PyType_Ready(&BatchType) < 0 || PyType_Ready(&SplitterType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Batch", (PyObject *)&BatchType) < 0 ||
        PyModule_AddObjectRef(m, "Splitter", (PyObject *)&SplitterType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_LINE", MAX_LINE) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PAIRS", MAX_PAIRS) < 0 ||
        PyModule_AddIntConstant(m, "BULK", K_BULK) < 0 ||
        PyModule_AddIntConstant(m, "SKIP", K_SKIP) < 0 ||
        PyModule_AddIntConstant(m, "SLOW", K_SLOW) < 0 ||
        PyModule_AddIntConstant(m, "TAKEN", K_TAKEN) < 0 ||
        PyModule_AddIntConstant(m, "NOT_UTF8", K_NOT_UTF8) < 0 ||
        PyModule_AddIntConstant(m, "OVERLONG", K_OVERLONG) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
