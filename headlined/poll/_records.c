/*
 * headlined.poll._records: one pass over a response's records in C (see headlined/poll/records.py).
 *
 * For every record a Scanner builds the identity (canonical JSON of the key fields), tells
 * records already seen from new ones, counts copies of one key that carry different records,
 * and gives each new record its time and sequence number.  Only the common shapes are handled
 * here: an object whose key fields are present by name and hold 64-bit integers or plain ASCII
 * strings, and times written as YYYY-MM-DDTHH:MM:SS[.ffffff][Z|+00:00].  Everything else is
 * handed to the Python functions the Scanner was built with, which define the rules; the tests
 * check that both ways give the same answer (tests/poll/test_records.py, with hypothesis).
 *
 * Why C: a steady poll reads 200 records, half of them already seen; in Python this loop was
 * a third of the CPU of a poll.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    PyObject *fields;     /* tuple of str: the key fields, in config order */
    PyObject *time_field; /* str, or None when the records have no time */
    PyObject *record;     /* the Record class: Record(key, time, payload, seq) */
    PyObject *key_of;     /* item -> (identity, values), or a str: why it has no key */
    PyObject *time_of;    /* item -> datetime | None, when the time field is not there by name */
    PyObject *parse_time; /* value -> datetime | None, for times not in the usual form */
    PyObject *seq_of;     /* values -> (group, number) | None, beyond one integer field */
    PyObject *no_group;   /* "[]": the group of a single integer key */
} Scanner;

static int scanner_traverse(Scanner *self, visitproc visit, void *arg) {
    Py_VISIT(self->fields);
    Py_VISIT(self->time_field);
    Py_VISIT(self->record);
    Py_VISIT(self->key_of);
    Py_VISIT(self->time_of);
    Py_VISIT(self->parse_time);
    Py_VISIT(self->seq_of);
    Py_VISIT(self->no_group);
    return 0;
}

static int scanner_clear(Scanner *self) {
    Py_CLEAR(self->fields);
    Py_CLEAR(self->time_field);
    Py_CLEAR(self->record);
    Py_CLEAR(self->key_of);
    Py_CLEAR(self->time_of);
    Py_CLEAR(self->parse_time);
    Py_CLEAR(self->seq_of);
    Py_CLEAR(self->no_group);
    return 0;
}

static void scanner_dealloc(Scanner *self) {
    PyObject_GC_UnTrack(self);
    scanner_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int scanner_init(Scanner *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"fields", "time_field", "record", "key_of",
                            "time_of", "parse_time", "seq_of", NULL};
    PyObject *fields, *time_field, *record, *key_of, *time_of, *parse_time, *seq_of;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OOOOOO", names, &PyTuple_Type, &fields,
                                     &time_field, &record, &key_of, &time_of, &parse_time,
                                     &seq_of)) {
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "a key needs at least one field");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(fields, i))) {
            PyErr_SetString(PyExc_TypeError, "key fields must be str");
            return -1;
        }
    }
    if (time_field != Py_None && !PyUnicode_CheckExact(time_field)) {
        PyErr_SetString(PyExc_TypeError, "time_field must be str or None");
        return -1;
    }
    PyObject *no_group = PyUnicode_FromString("[]");
    if (no_group == NULL) {
        return -1;
    }
    scanner_clear(self);
    self->fields = Py_NewRef(fields);
    self->time_field = Py_NewRef(time_field);
    self->record = Py_NewRef(record);
    self->key_of = Py_NewRef(key_of);
    self->time_of = Py_NewRef(time_of);
    self->parse_time = Py_NewRef(parse_time);
    self->seq_of = Py_NewRef(seq_of);
    self->no_group = no_group;
    return 0;
}

/* ------------------------------------------------------------------------------ the key */

/* Room for one key of the fast path: each field at most KEY_PART bytes. */
#define KEY_PART 256
#define KEY_FIELDS 8

/*
 * Appends the canonical JSON of one key value to buf (at *len) and returns 1, or returns 0
 * when the value is not of the fast path (Python then decides), or -1 on an error.
 */
static int append_value(PyObject *value, char *buf, size_t *len, size_t room) {
    if (PyLong_CheckExact(value)) { /* exact: bool is an int subclass, and is "true" */
        int overflow = 0;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow != 0) {
            return 0;
        }
        if (number == -1 && PyErr_Occurred()) {
            return -1;
        }
        int written = snprintf(buf + *len, room - *len, "%lld", number);
        if (written < 0 || (size_t)written >= room - *len) {
            return 0;
        }
        *len += (size_t)written;
        return 1;
    }
    if (PyUnicode_CheckExact(value) && PyUnicode_IS_ASCII(value)) {
        Py_ssize_t size = PyUnicode_GET_LENGTH(value);
        if ((size_t)size + 2 > room - *len) {
            return 0;
        }
        const char *text = (const char *)PyUnicode_1BYTE_DATA(value);
        for (Py_ssize_t i = 0; i < size; i++) {
            char c = text[i];
            /* Printable and not escaped by json.dumps: written as it is. */
            if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
                return 0;
            }
        }
        buf[(*len)++] = '"';
        memcpy(buf + *len, text, (size_t)size);
        *len += (size_t)size;
        buf[(*len)++] = '"';
        return 1;
    }
    return 0;
}

/*
 * The identity of an item on the fast path (a new reference), Py_None when Python must
 * decide, NULL on an error.  values[] receives the key values (borrowed).
 */
static PyObject *fast_identity(Scanner *self, PyObject *item, PyObject **values) {
    if (!PyDict_CheckExact(item)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(self->fields);
    if (n > KEY_FIELDS) {
        Py_RETURN_NONE;
    }
    char buf[KEY_FIELDS * (KEY_PART + 1) + 2];
    size_t len = 0;
    buf[len++] = '[';
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyDict_GetItemWithError(item, PyTuple_GET_ITEM(self->fields, i));
        if (value == NULL) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            Py_RETURN_NONE; /* perhaps a dotted name: Python walks it */
        }
        if (i > 0) {
            buf[len++] = ',';
        }
        int ok = append_value(value, buf, &len, len + KEY_PART);
        if (ok < 0) {
            return NULL;
        }
        if (ok == 0) {
            Py_RETURN_NONE;
        }
        values[i] = value;
    }
    buf[len++] = ']';
    return PyUnicode_DecodeASCII(buf, (Py_ssize_t)len, NULL);
}

/* ----------------------------------------------------------------------------- the time */

static int digits(const char *s, int n, int *out) {
    int value = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
        value = value * 10 + (s[i] - '0');
    }
    *out = value;
    return 1;
}

static int days_in_month(int year, int month) {
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return days[month - 1] + (month == 2 && leap);
}

/*
 * A datetime (UTC) for YYYY-MM-DD[T ]HH:MM:SS[.f{1,6}][Z|+00:00], Py_None when the text is of
 * another form (Python then decides), NULL on an error.
 */
static PyObject *fast_time(PyObject *text) {
    if (!PyUnicode_IS_ASCII(text)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const char *s = (const char *)PyUnicode_1BYTE_DATA(text);
    int year, month, day, hour, minute, second, micro = 0;
    if (n < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') ||
        s[13] != ':' || s[16] != ':' || !digits(s, 4, &year) || !digits(s + 5, 2, &month) ||
        !digits(s + 8, 2, &day) || !digits(s + 11, 2, &hour) || !digits(s + 14, 2, &minute) ||
        !digits(s + 17, 2, &second)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t at = 19;
    if (at < n && s[at] == '.') {
        Py_ssize_t start = ++at;
        while (at < n && at - start < 6 && s[at] >= '0' && s[at] <= '9') {
            micro = micro * 10 + (s[at++] - '0');
        }
        if (at == start || (at < n && s[at] >= '0' && s[at] <= '9')) {
            Py_RETURN_NONE; /* no digit, or more than six */
        }
        for (Py_ssize_t scale = at - start; scale < 6; scale++) {
            micro *= 10;
        }
    }
    if (at < n && s[at] == 'Z') {
        at++;
    } else if (n - at == 6 && memcmp(s + at, "+00:00", 6) == 0) {
        at += 6;
    }
    if (at != n || year < 1 || month < 1 || month > 12 || day < 1 ||
        day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 59) {
        Py_RETURN_NONE;
    }
    return PyDateTimeAPI->DateTime_FromDateAndTime(year, month, day, hour, minute, second, micro,
                                                   PyDateTime_TimeZone_UTC,
                                                   PyDateTimeAPI->DateTimeType);
}

/* The time of a new record (a new reference), NULL on an error. */
static PyObject *record_time(Scanner *self, PyObject *item) {
    if (self->time_field == Py_None) {
        Py_RETURN_NONE;
    }
    PyObject *value = NULL;
    if (PyDict_CheckExact(item)) {
        value = PyDict_GetItemWithError(item, self->time_field);
        if (value == NULL && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (value == NULL) {
        return PyObject_CallOneArg(self->time_of, item);
    }
    if (value == Py_None) {
        Py_RETURN_NONE;
    }
    if (PyUnicode_CheckExact(value)) {
        PyObject *fast = fast_time(value);
        if (fast != Py_None) {
            return fast;
        }
        Py_DECREF(fast);
    }
    return PyObject_CallOneArg(self->parse_time, value);
}

/* ----------------------------------------------------------------------------- the scan */

/* What identify() finds of an item. */
typedef struct {
    PyObject *identity;          /* owned; NULL when the item has no key */
    PyObject *values;            /* owned list, when Python found the key; else NULL */
    PyObject *found[KEY_FIELDS]; /* borrowed key values, when the fast path found the key */
    PyObject *reason;            /* owned: why the item has no key */
} Key;

static void key_clear(Key *key) {
    Py_CLEAR(key->identity);
    Py_CLEAR(key->values);
    Py_CLEAR(key->reason);
}

/* The identity of an item and its key values, either way.  Returns 0, or -1 on an error. */
static int identify(Scanner *self, PyObject *item, Key *key) {
    PyObject *fast = fast_identity(self, item, key->found);
    if (fast == NULL) {
        return -1;
    }
    if (fast != Py_None) {
        key->identity = fast;
        return 0;
    }
    Py_DECREF(fast);
    PyObject *answer = PyObject_CallOneArg(self->key_of, item);
    if (answer == NULL) {
        return -1;
    }
    if (PyUnicode_Check(answer)) {
        key->reason = answer;
        return 0;
    }
    if (!PyTuple_Check(answer) || PyTuple_GET_SIZE(answer) != 2 ||
        !PyUnicode_Check(PyTuple_GET_ITEM(answer, 0)) ||
        !PyList_Check(PyTuple_GET_ITEM(answer, 1))) {
        Py_DECREF(answer);
        PyErr_SetString(PyExc_TypeError, "key_of must return (str, list) or str");
        return -1;
    }
    key->identity = Py_NewRef(PyTuple_GET_ITEM(answer, 0));
    key->values = Py_NewRef(PyTuple_GET_ITEM(answer, 1));
    Py_DECREF(answer);
    return 0;
}

/* The sequence number of a new record (a new reference), NULL on an error. */
static PyObject *record_seq(Scanner *self, Key *key) {
    if (key->values != NULL) {
        return PyObject_CallOneArg(self->seq_of, key->values);
    }
    Py_ssize_t n = PyTuple_GET_SIZE(self->fields);
    if (n == 1 && PyLong_CheckExact(key->found[0])) { /* the usual key: one number */
        return PyTuple_Pack(2, self->no_group, key->found[0]);
    }
    PyObject *values = PyList_New(n);
    if (values == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyList_SET_ITEM(values, i, Py_NewRef(key->found[i]));
    }
    PyObject *seq = PyObject_CallOneArg(self->seq_of, values);
    Py_DECREF(values);
    return seq;
}

/* A new record: Record(identity, time, item, seq), or NULL on an error. */
static PyObject *new_record(Scanner *self, PyObject *item, Key *key) {
    /* The sequence first: key->found is borrowed from the item, and the time may run Python. */
    PyObject *seq = record_seq(self, key);
    if (seq == NULL) {
        return NULL;
    }
    PyObject *time = record_time(self, item);
    PyObject *record = NULL;
    if (time != NULL) {
        record = PyObject_CallFunctionObjArgs(self->record, key->identity, time, item, seq, NULL);
        Py_DECREF(time);
    }
    Py_DECREF(seq);
    return record;
}

typedef struct {
    Py_ssize_t fetched, overlap, known_sum, new_sum, conflicts, rejected;
    PyObject *conflict_key; /* owned */
    PyObject *reason;       /* owned */
} Tally;

/* One item into the tally and, when it is new, into `out`.  Returns 0, or -1 on an error. */
static int scan_one(Scanner *self, PyObject *item, PyObject *known, PyObject *firsts,
                    PyObject *out, Tally *t) {
    Key key = {0};
    int status = -1;
    if (identify(self, item, &key) < 0) {
        goto done;
    }
    if (key.identity == NULL) {
        t->rejected++;
        Py_XSETREF(t->reason, Py_NewRef(key.reason));
        status = 0;
        goto done;
    }
    Py_ssize_t position = t->fetched++;
    Py_ssize_t before = PyDict_GET_SIZE(firsts);
    PyObject *earlier = PyDict_SetDefault(firsts, key.identity, item); /* borrowed */
    if (earlier == NULL) {
        goto done;
    }
    int first = PyDict_GET_SIZE(firsts) != before;
    if (!first && earlier != item) {
        /* A later copy of a key: the API repeating a record, or a key that is not unique. */
        int same = PyObject_RichCompareBool(earlier, item, Py_EQ);
        if (same < 0) {
            goto done;
        }
        if (!same) {
            t->conflicts++;
            Py_XSETREF(t->conflict_key, Py_NewRef(key.identity));
        }
    }
    int seen = PySequence_Contains(known, key.identity);
    if (seen < 0) {
        goto done;
    }
    if (seen) {
        t->overlap++;
        t->known_sum += position;
    } else if (first) {
        PyObject *record = new_record(self, item, &key);
        if (record == NULL) {
            goto done;
        }
        int appended = PyList_Append(out, record);
        Py_DECREF(record);
        if (appended < 0) {
            goto done;
        }
        t->new_sum += position;
    }
    status = 0;
done:
    key_clear(&key);
    return status;
}

static PyObject *scanner_scan(Scanner *self, PyObject *args) {
    PyObject *items, *known;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &items, &known)) {
        return NULL;
    }
    Tally t = {0};
    PyObject *firsts = PyDict_New();
    PyObject *out = PyList_New(0);
    PyObject *result = NULL;
    if (firsts == NULL || out == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        Py_INCREF(item); /* a Python callback could shrink the list */
        int status = scan_one(self, item, known, firsts, out, &t);
        Py_DECREF(item);
        if (status < 0) {
            goto done;
        }
    }
    result = Py_BuildValue("(OnnnnnOnO)", out, t.fetched, t.overlap, t.known_sum, t.new_sum,
                           t.conflicts, t.conflict_key ? t.conflict_key : Py_None, t.rejected,
                           t.reason ? t.reason : Py_None);
done:
    Py_XDECREF(firsts);
    Py_XDECREF(out);
    Py_XDECREF(t.conflict_key);
    Py_XDECREF(t.reason);
    return result;
}

static PyMethodDef scanner_methods[] = {
    {"scan", (PyCFunction)scanner_scan, METH_VARARGS,
     "scan(items, known) -> (new, fetched, overlap, known_positions, new_positions, conflicts, "
     "conflict_key, rejected, reason)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "headlined.poll._records.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Reads a response's records for one source's key and time fields.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)scanner_init,
    .tp_dealloc = (destructor)scanner_dealloc,
    .tp_traverse = (traverseproc)scanner_traverse,
    .tp_clear = (inquiry)scanner_clear,
    .tp_methods = scanner_methods,
};

static int is_digit(unsigned char c) { return (unsigned char)(c - '0') < 10; }

/*
 * Whether `data` holds `run` ASCII digits in a row (an integer orjson would turn into a float).
 * Any such run covers every run-th byte, so only those are looked at unless one is a digit:
 * most of a body is read 1 byte in `run`.
 */
static PyObject *has_digit_run(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer data;
    Py_ssize_t run;
    if (!PyArg_ParseTuple(args, "y*n", &data, &run)) {
        return NULL;
    }
    const unsigned char *b = data.buf;
    Py_ssize_t n = data.len;
    int found = run <= 0;
    for (Py_ssize_t i = run - 1; i < n && !found;) {
        if (!is_digit(b[i])) {
            i += run;
            continue;
        }
        Py_ssize_t start = i, end = i + 1;
        while (start > 0 && is_digit(b[start - 1]) && end - start < run) {
            start--;
        }
        while (end < n && is_digit(b[end]) && end - start < run) {
            end++;
        }
        found = end - start >= run;
        i = end + run; /* b[end] is no digit: a run must start after it */
    }
    PyBuffer_Release(&data);
    return PyBool_FromLong(found);
}

static PyMethodDef module_methods[] = {
    {"has_digit_run", has_digit_run, METH_VARARGS,
     "has_digit_run(data, run) -> whether data holds run ASCII digits in a row"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "headlined.poll._records",
    .m_methods = module_methods,
    .m_doc = "A response's records in one pass: keys, new or seen, times, sequence numbers.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__records(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL || PyType_Ready(&ScannerType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
