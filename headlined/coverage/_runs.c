/*
 * headlined.coverage._runs: the per-point pass of `headlined coverage` in C (see
 * headlined/coverage/gaps.py, the same algorithm in Python, and docs/coverage.md).
 *
 * A Tracker follows many series of one measurement at once.  feed() reads the times of a query
 * (one int64 or timestamp column, through the Arrow PyCapsule stream interface DuckDB offers,
 * so no Arrow library is needed) together with the query's runs: which series each stretch of
 * rows belongs to, in row order (the rows are grouped by series and time-ascending within one).
 * Per series it keeps: the count, first and last time, the same within [lo, hi], a log-binned
 * histogram of the diffs between consecutive points (the typical cadence, within 0.8%), and
 * the gaps: a diff d is one when d > K x its local cadence, the upper median of up to 4 diffs
 * before it and 4 after it.  A diff is judged once the 4 diffs after it are known, so its
 * series' state (the last 9 diffs) carries across batches and across feed() calls: a series
 * can continue in the next file.  Memory is bounded by the series and their gaps, never by the
 * points.
 *
 * Why C: every point of an export passes here; a Python loop over 10M points takes seconds, a
 * window function in DuckDB about 1 s, this loop a few milliseconds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ Arrow C data interface */

#include "../arrow_abi.h"

/* ------------------------------------------------------------------ one series */

#define SIDE 4            /* diffs on each side of the one judged */
#define RING (2 * SIDE + 1)
#define BIN_BITS 6        /* mantissa bits per histogram bin: bins 1/64 wide */
#define N_BINS (64 << BIN_BITS)
#define SPARSE_MAX 32     /* distinct bins kept as a list before the dense array */

typedef struct {
    uint32_t bin;
    int64_t count;
} Bin;

typedef struct {
    int64_t prev, next, cadence;
} Gap;

typedef struct {
    int64_t count, first, last;          /* distinct times seen */
    int64_t in_count, in_first, in_last; /* the same within [lo, hi] */
    int64_t diffs;                       /* diffs seen: count - 1 */
    int64_t calm_min, calm_max, calm_len; /* the calm run ending at the newest diff */
    int64_t same_d, same;                /* the newest diff, and how many times in a row: not */
                                         /* in the histogram yet */
    int64_t d[RING];                     /* diff i is d[i % RING] */
    Bin *bins;                           /* sparse histogram, unsorted */
    int nbins, hot;
    int64_t *dense;                      /* N_BINS counts once the list is too long */
    Gap *gaps;
    Py_ssize_t ngaps, capgaps;
} Series;

/* The bin of a positive diff: its top bit and the 6 bits after it, as in a float. */
static inline uint32_t bin_of(uint64_t d) {
    int msb = 63 - __builtin_clzll(d);
    uint64_t mantissa =
        msb >= BIN_BITS ? (d >> (msb - BIN_BITS)) : (d << (BIN_BITS - msb));
    return (uint32_t)msb * (1u << BIN_BITS) + (uint32_t)(mantissa & ((1u << BIN_BITS) - 1));
}

/* The middle of bin b: within 1/128 of any diff in it. */
static double bin_middle(uint32_t b) {
    int msb = (int)(b >> BIN_BITS);
    double m = (double)(b & ((1u << BIN_BITS) - 1));
    double low = ldexp(1.0 + m / (1 << BIN_BITS), msb);
    double high = ldexp(1.0 + (m + 1.0) / (1 << BIN_BITS), msb);
    return (low + high) / 2.0;
}

/* Counts `n` diffs of length d. */
static int hist_add(Series *s, uint64_t d, int64_t n) {
    uint32_t b = bin_of(d);
    if (s->dense != NULL) {
        s->dense[b] += n;
        return 0;
    }
    if (s->nbins > 0 && s->bins[s->hot].bin == b) {
        s->bins[s->hot].count += n;
        return 0;
    }
    for (int i = 0; i < s->nbins; i++) {
        if (s->bins[i].bin == b) {
            s->bins[i].count += n;
            s->hot = i;
            return 0;
        }
    }
    if (s->nbins < SPARSE_MAX) {
        if (s->bins == NULL) {
            s->bins = malloc(SPARSE_MAX * sizeof *s->bins);
            if (s->bins == NULL) {
                return -1;
            }
        }
        s->bins[s->nbins].bin = b;
        s->bins[s->nbins].count = n;
        s->hot = s->nbins++;
        return 0;
    }
    /* Many distinct diffs (jitter): a dense array, 32 KiB, is cheaper than searching. */
    s->dense = calloc(N_BINS, sizeof *s->dense);
    if (s->dense == NULL) {
        return -1;
    }
    for (int i = 0; i < s->nbins; i++) {
        s->dense[s->bins[i].bin] += s->bins[i].count;
    }
    free(s->bins);
    s->bins = NULL;
    s->nbins = 0;
    s->dense[b] += n;
    return 0;
}

static int bin_cmp(const void *a, const void *b) {
    uint32_t x = ((const Bin *)a)->bin, y = ((const Bin *)b)->bin;
    return (x > y) - (x < y);
}

/* The upper median of all diffs (the diff at rank diffs / 2), as its bin's middle; 0 if none.
 * Call once, at the end: it sorts the bins. */
static double hist_median(Series *s) {
    if (s->same > 0) {
        if (hist_add(s, (uint64_t)s->same_d, s->same) < 0) {
            return -1.0;
        }
        s->same = 0;
    }
    if (s->diffs == 0) {
        return 0.0;
    }
    int64_t rank = s->diffs / 2, seen = 0;
    if (s->dense != NULL) {
        for (uint32_t b = 0; b < N_BINS; b++) {
            seen += s->dense[b];
            if (seen > rank) {
                return bin_middle(b);
            }
        }
        return 0.0;
    }
    qsort(s->bins, (size_t)s->nbins, sizeof *s->bins, bin_cmp);
    s->hot = 0;
    for (int i = 0; i < s->nbins; i++) {
        seen += s->bins[i].count;
        if (seen > rank) {
            return bin_middle(s->bins[i].bin);
        }
    }
    return 0.0;
}

/* Judges diff i with the known diffs up to `newest` after it (`last`: the time the newest diff
 * ends at): a gap when d > k x the upper median of its neighbours (at most SIDE each side). */
static int judge(Series *s, int64_t i, int64_t newest, int64_t last, double k) {
    int64_t d = s->d[i % RING];
    int64_t near[2 * SIDE];
    int n = 0;
    for (int64_t j = i >= SIDE ? i - SIDE : 0; j < i; j++) {
        near[n++] = s->d[j % RING];
    }
    for (int64_t j = i + 1; j <= newest && j <= i + SIDE; j++) {
        near[n++] = s->d[j % RING];
    }
    if (n == 0) {
        return 0;
    }
    /* The median is at least the smallest neighbour: most diffs stop here. */
    int64_t smallest = near[0];
    for (int j = 1; j < n; j++) {
        smallest = near[j] < smallest ? near[j] : smallest;
    }
    if ((double)d <= k * (double)smallest) {
        return 0;
    }
    for (int j = 1; j < n; j++) { /* insertion sort: at most 8 values */
        int64_t v = near[j];
        int m = j - 1;
        while (m >= 0 && near[m] > v) {
            near[m + 1] = near[m];
            m--;
        }
        near[m + 1] = v;
    }
    int64_t cadence = near[n / 2];
    if ((double)d <= k * (double)cadence) {
        return 0;
    }
    if (s->ngaps == s->capgaps) {
        Py_ssize_t cap = s->capgaps ? 2 * s->capgaps : 8;
        Gap *gaps = realloc(s->gaps, (size_t)cap * sizeof *gaps);
        if (gaps == NULL) {
            return -1;
        }
        s->gaps = gaps;
        s->capgaps = cap;
    }
    int64_t next = last; /* the time diff i ends at: `last` less the diffs after it */
    for (int64_t j = i + 1; j <= newest; j++) {
        next -= s->d[j % RING];
    }
    s->gaps[s->ngaps++] = (Gap){next - d, next, cadence};
    return 0;
}

/* ------------------------------------------------------------------ Tracker */

typedef struct {
    PyObject_HEAD double k;
    int64_t lo, hi;
    Series *series;
    Py_ssize_t nseries;
    int finished;
    int busy;
} TrackerObject;

enum { OK = 0, E_MEMORY = 1, E_ORDER = 2 };

typedef struct {
    int error;
    Py_ssize_t sid;
    int64_t before, after; /* the times out of order */
} Outcome;

/* Adds `n` times of series `sid`; runs without the GIL.
 *
 * The fast path: a "calm" run is a stretch of consecutive diffs whose largest is at most k times
 * its smallest.  A diff whose neighbours all lie in the calm run ending at the newest diff is
 * at most k times each of them, so at most k times their median: not a gap, and not judged.
 * Regular data is one long calm run of equal diffs, which only count up. */
static void add_times(TrackerObject *t, Py_ssize_t sid, const int64_t *times, int64_t n,
                      Outcome *out) {
    Series *s = &t->series[sid];
    const double k = t->k;
    const int64_t lo = t->lo, hi = t->hi;
    int64_t r = 0;
    if (n > 0 && s->count == 0) {
        s->first = s->last = times[0];
        s->count = 1;
        if (times[0] >= lo && times[0] <= hi) {
            s->in_count = 1;
            s->in_first = s->in_last = times[0];
        }
        r = 1;
    }
    int64_t last = s->last, diffs = s->diffs;
    int64_t in_count = s->in_count, in_first = s->in_first, in_last = s->in_last;
    int64_t calm_min = s->calm_min, calm_max = s->calm_max, calm_len = s->calm_len;
    int64_t same_d = s->same_d, same = s->same;
    int pos = (int)(diffs % RING);
    for (; r < n; r++) {
        int64_t time = times[r];
        int64_t d = time - last;
        if (d <= 0) {
            if (d == 0) {
                continue; /* the same point twice (overlapping files): once */
            }
            *out = (Outcome){E_ORDER, sid, last, time};
            break;
        }
        if (time >= lo && time <= hi) {
            if (in_count++ == 0) {
                in_first = time;
            }
            in_last = time;
        }
        int64_t idx = diffs++;
        s->d[pos] = d;
        pos = pos + 1 == RING ? 0 : pos + 1;
        last = time;
        if (d == same_d) {
            same++;
            calm_len++; /* the same diff as the newest: the calm run goes on */
        } else {
            if (same > 0 && hist_add(s, (uint64_t)same_d, same) < 0) {
                out->error = E_MEMORY;
                break;
            }
            same_d = d;
            same = 1;
            int64_t low = d < calm_min ? d : calm_min, high = d > calm_max ? d : calm_max;
            if (calm_len > 0 && (double)high <= k * (double)low) {
                calm_min = low;
                calm_max = high;
                calm_len++;
            } else {
                calm_min = calm_max = d;
                calm_len = 1;
            }
        }
        /* Diff idx - SIDE's neighbours are diffs max(0, idx - 2 SIDE) .. idx. */
        if (calm_len < RING && idx >= SIDE && calm_len < (idx < 2 * SIDE ? idx : 2 * SIDE) + 1 &&
            judge(s, idx - SIDE, idx, last, k) < 0) {
            out->error = E_MEMORY;
            break;
        }
    }
    s->last = last;
    s->count += diffs - s->diffs;
    s->diffs = diffs;
    s->in_count = in_count;
    s->in_first = in_first;
    s->in_last = in_last;
    s->calm_min = calm_min;
    s->calm_max = calm_max;
    s->calm_len = calm_len;
    s->same_d = same_d;
    s->same = same;
}

static void series_free(Series *s) {
    free(s->bins);
    free(s->dense);
    free(s->gaps);
}

static void tracker_dealloc(TrackerObject *self) {
    for (Py_ssize_t i = 0; i < self->nseries; i++) {
        series_free(&self->series[i]);
    }
    free(self->series);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int tracker_init(TrackerObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"k", "lo", "hi", NULL};
    double k;
    long long lo = INT64_MIN, hi = INT64_MAX;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "d|LL", keywords, &k, &lo, &hi)) {
        return -1;
    }
    if (!(k >= 1.0)) {
        PyErr_SetString(PyExc_ValueError, "k must be at least 1");
        return -1;
    }
    self->k = k;
    self->lo = lo;
    self->hi = hi;
    return 0;
}

static int grow(TrackerObject *self, Py_ssize_t n) {
    if (n <= self->nseries) {
        return 0;
    }
    Series *series = realloc(self->series, (size_t)n * sizeof *series);
    if (series == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(series + self->nseries, 0, (size_t)(n - self->nseries) * sizeof *series);
    self->series = series;
    self->nseries = n;
    return 0;
}

typedef struct {
    Py_ssize_t sid;
    int64_t rows;
} Run;

/* Reads [(sid, rows), ...] into a C array; grows the series to the largest sid. */
static Run *read_runs(TrackerObject *self, PyObject *runs, Py_ssize_t *n, int64_t *total) {
    PyObject *seq = PySequence_Fast(runs, "runs must be a sequence of (series, rows) pairs");
    if (seq == NULL) {
        return NULL;
    }
    *n = PySequence_Fast_GET_SIZE(seq);
    Run *out = malloc(((size_t)*n + 1) * sizeof *out);
    if (out == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return NULL;
    }
    Py_ssize_t most = -1;
    *total = 0;
    for (Py_ssize_t i = 0; i < *n; i++) {
        Py_ssize_t sid;
        long long rows;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "nL", &sid, &rows)) {
            goto fail;
        }
        if (sid < 0 || rows < 0) {
            PyErr_SetString(PyExc_ValueError, "a run's series and rows must not be negative");
            goto fail;
        }
        out[i] = (Run){sid, rows};
        most = sid > most ? sid : most;
        *total += rows;
    }
    Py_DECREF(seq);
    if (grow(self, most + 1) < 0) {
        free(out);
        return NULL;
    }
    return out;
fail:
    Py_DECREF(seq);
    free(out);
    return NULL;
}

/* The stream of `source` (an object with __arrow_c_stream__, or its capsule). */
static PyObject *stream_capsule(PyObject *source) {
    if (PyCapsule_CheckExact(source)) {
        Py_INCREF(source);
        return source;
    }
    return PyObject_CallMethod(source, "__arrow_c_stream__", NULL);
}

static int check_schema(struct ArrowArrayStream *stream) {
    struct ArrowSchema schema = {0};
    if (stream->get_schema(stream, &schema) != 0) {
        const char *why = stream->get_last_error(stream);
        PyErr_Format(PyExc_RuntimeError, "reading the stream's schema failed: %s",
                     why ? why : "(no message)");
        return -1;
    }
    int ok = strcmp(schema.format, "+s") == 0 && schema.n_children == 1 &&
             (strcmp(schema.children[0]->format, "l") == 0 ||
              strncmp(schema.children[0]->format, "ts", 2) == 0);
    if (!ok) {
        PyErr_Format(PyExc_ValueError,
                     "the stream must have one int64 or timestamp column (Arrow format %s)",
                     schema.n_children > 0 ? schema.children[0]->format : schema.format);
    }
    schema.release(&schema);
    return ok ? 0 : -1;
}

static PyObject *tracker_feed(TrackerObject *self, PyObject *args) {
    PyObject *source, *runs_obj;
    if (!PyArg_ParseTuple(args, "OO", &source, &runs_obj)) {
        return NULL;
    }
    if (self->finished) {
        PyErr_SetString(PyExc_RuntimeError, "feed() after results(): the Tracker is done");
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "feed() while another feed() runs");
        return NULL;
    }
    Py_ssize_t nruns;
    int64_t total;
    Run *runs = read_runs(self, runs_obj, &nruns, &total);
    if (runs == NULL) {
        return NULL;
    }
    PyObject *capsule = stream_capsule(source);
    if (capsule == NULL) {
        free(runs);
        return NULL;
    }
    struct ArrowArrayStream *stream = PyCapsule_GetPointer(capsule, "arrow_array_stream");
    if (stream == NULL || check_schema(stream) < 0) {
        Py_DECREF(capsule);
        free(runs);
        return NULL;
    }
    self->busy = 1;
    Outcome out = {OK, 0, 0, 0};
    int64_t rows = 0;
    Py_ssize_t run = 0;
    int64_t left = nruns > 0 ? runs[0].rows : 0;
    const char *failure = NULL;
    int nulls = 0, surplus = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (;;) {
        struct ArrowArray batch = {0};
        if (stream->get_next(stream, &batch) != 0) {
            failure = stream->get_last_error(stream);
            failure = failure ? failure : "(no message)";
            break;
        }
        if (batch.release == NULL) {
            break; /* the end */
        }
        if (batch.n_children != 1) {
            failure = "a batch without exactly one column";
            batch.release(&batch);
            break;
        }
        struct ArrowArray *column = batch.children[0];
        if (column->null_count != 0 && column->buffers[0] != NULL) {
            nulls = 1;
            batch.release(&batch);
            break;
        }
        const int64_t *times = (const int64_t *)column->buffers[1] + column->offset + batch.offset;
        int64_t n = batch.length;
        rows += n;
        while (n > 0 && out.error == OK) {
            while (left == 0 && run + 1 < nruns) {
                left = runs[++run].rows;
            }
            if (left == 0) {
                surplus = 1;
                break;
            }
            int64_t take = n < left ? n : left;
            add_times(self, runs[run].sid, times, take, &out);
            times += take;
            n -= take;
            left -= take;
        }
        batch.release(&batch);
        if (out.error != OK || surplus) {
            break;
        }
    }
    Py_END_ALLOW_THREADS;
    self->busy = 0;
    Py_DECREF(capsule);
    free(runs);
    if (failure != NULL) {
        PyErr_Format(PyExc_RuntimeError, "reading the stream failed: %s", failure);
        return NULL;
    }
    if (out.error == E_MEMORY) {
        return PyErr_NoMemory();
    }
    if (out.error == E_ORDER) {
        PyErr_Format(PyExc_ValueError,
                     "series %zd is not in time order: %lld comes after %lld", out.sid,
                     (long long)out.after, (long long)out.before);
        return NULL;
    }
    if (nulls) {
        PyErr_SetString(PyExc_ValueError, "the stream has null times");
        return NULL;
    }
    if (surplus || rows != total) {
        PyErr_Format(PyExc_ValueError, "the stream has %s rows than the runs say (%lld)",
                     surplus ? "more" : "fewer", (long long)total);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *series_result(Series *s, double k) {
    /* The last diffs were waiting for neighbours after them: judged with those there are. */
    for (int64_t i = s->diffs > SIDE ? s->diffs - SIDE : 0; i < s->diffs; i++) {
        if (judge(s, i, s->diffs - 1, s->last, k) < 0) {
            return PyErr_NoMemory();
        }
    }
    double typical = hist_median(s);
    if (typical < 0) {
        return PyErr_NoMemory();
    }
    PyObject *gaps = PyList_New(s->ngaps);
    if (gaps == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < s->ngaps; i++) {
        PyObject *gap = Py_BuildValue("(LLL)", (long long)s->gaps[i].prev,
                                      (long long)s->gaps[i].next, (long long)s->gaps[i].cadence);
        if (gap == NULL) {
            Py_DECREF(gaps);
            return NULL;
        }
        PyList_SET_ITEM(gaps, i, gap);
    }
    return Py_BuildValue("(LLLLLLdN)", (long long)s->count, (long long)s->first,
                         (long long)s->last, (long long)s->in_count, (long long)s->in_first,
                         (long long)s->in_last, typical, gaps);
}

static PyObject *tracker_results(TrackerObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "results() while feed() runs");
        return NULL;
    }
    self->finished = 1;
    PyObject *out = PyList_New(self->nseries);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->nseries; i++) {
        PyObject *one = series_result(&self->series[i], self->k);
        if (one == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, one);
    }
    return out;
}

static PyMethodDef tracker_methods[] = {
    {"feed", (PyCFunction)tracker_feed, METH_VARARGS,
     "feed(stream, runs): the times of `stream` (one int64/timestamp column), whose rows are "
     "the runs [(series, rows), ...] in order."},
    {"results", (PyCFunction)tracker_results, METH_NOARGS,
     "Per series (by number): (count, first, last, count in range, first in range, last in "
     "range, typical cadence, [(prev, next, local cadence), ...]). Ends the Tracker."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TrackerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "headlined.coverage._runs.Tracker",
    .tp_basicsize = sizeof(TrackerObject),
    .tp_dealloc = (destructor)tracker_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Tracker(k, lo=-2**63, hi=2**63-1): points, cadence and gaps of many series; see "
              "headlined/coverage/_runs.c.",
    .tp_methods = tracker_methods,
    .tp_init = (initproc)tracker_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "headlined.coverage._runs",
    .m_doc = "The per-point pass of `headlined coverage` in C: counts, cadence and gaps.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__runs(void) {
    if (PyType_Ready(&TrackerType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&TrackerType);
    if (PyModule_AddObject(m, "Tracker", (PyObject *)&TrackerType) < 0) {
        Py_DECREF(&TrackerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
