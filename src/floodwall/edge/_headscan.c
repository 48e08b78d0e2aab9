/*
 * The edge's fast path for the usual request head: one call reads a whole, plain GET or HEAD head from the bytes a
 * connection received, instead of httptools' dozen Python callbacks (a third of a cache hit's CPU).
 *
 * The reference is httptools (llhttp) as `floodwall.edge.connection` drives it: every head accepted here gives
 * the request that path gives (a hypothesis test in tests/edge/test_headscan.py checks it). Anything this scanner
 * is unsure of gives None, and the caller feeds the bytes to httptools as before: another method, a body or its
 * announcement (Content-Length, Transfer-Encoding, Expect), Upgrade, a Connection field other than one plain
 * `keep-alive` or `close`, repeated Accept-Encoding, Cookie or Connection fields, a target byte outside RFC 3986's
 * characters, a control or non-ASCII byte in a field, an empty field value or one ending in white space, a bare LF,
 * more than 100 fields, a head not complete in the buffer. So it never answers 400 itself: what it cannot read, the
 * reference reads.
 *
 * scan(data, pos) -> None | (end, method, target, version, keep_alive, headers, host, user_agent, referer,
 *                            forwarded_for, accept_encoding, cookie, connection, no_store)
 *
 * `headers` lists (name in lower case, value) byte pairs in order; the fields after it are what
 * `floodwall.edge.http.Request` notes in its pass over the fields (first values; None when absent).
 *
 * scan_answer(data) -> None | (end, status, headers, content_length, keep_alive)
 *
 * The same for the head of an origin's answer at the start of `data` (`floodwall.edge.upstream`): a status of
 * 200-599 but 204 and 304, one decimal Content-Length, no Transfer-Encoding or Upgrade, at most one plain
 * Connection field; the reference for it is httptools' response parser.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#define MAX_FIELDS 100

/* RFC 9110 token characters (field names). */
static unsigned char tchar[256];
/* RFC 3986 characters (unreserved, reserved, '%'): what a request target may hold here. */
static unsigned char urlchar[256];

/* Field names we note or refuse, and the byte objects for common names (shared, not made per request). */
enum {
    F_OTHER = 0,
    F_HOST,
    F_AGENT,
    F_REFERER,
    F_FORWARDED,
    F_ENCODING,
    F_COOKIE,
    F_PRIVATE, /* authorization, range */
    F_CONTROL, /* cache-control */
    F_CONNECTION,
    F_REFUSE, /* content-length, transfer-encoding, expect, upgrade: the reference path */
};

struct known {
    const char *name;
    int kind;
    PyObject *bytes;
};

static struct known known_names[] = {
    {"host", F_HOST, NULL},
    {"user-agent", F_AGENT, NULL},
    {"referer", F_REFERER, NULL},
    {"x-forwarded-for", F_FORWARDED, NULL},
    {"accept-encoding", F_ENCODING, NULL},
    {"cookie", F_COOKIE, NULL},
    {"authorization", F_PRIVATE, NULL},
    {"range", F_PRIVATE, NULL},
    {"cache-control", F_CONTROL, NULL},
    {"connection", F_CONNECTION, NULL},
    {"content-length", F_REFUSE, NULL},
    {"transfer-encoding", F_REFUSE, NULL},
    {"expect", F_REFUSE, NULL},
    {"upgrade", F_REFUSE, NULL},
    {"accept", F_OTHER, NULL},
    {"accept-language", F_OTHER, NULL},
    {"upgrade-insecure-requests", F_OTHER, NULL},
    {"pragma", F_OTHER, NULL},
    {"dnt", F_OTHER, NULL},
    {"if-none-match", F_OTHER, NULL},
    {"if-modified-since", F_OTHER, NULL},
    {"sec-fetch-dest", F_OTHER, NULL},
    {"sec-fetch-mode", F_OTHER, NULL},
    {"sec-fetch-site", F_OTHER, NULL},
    {"sec-fetch-user", F_OTHER, NULL},
    {"x-forwarded-proto", F_OTHER, NULL},
    {"x-forwarded-host", F_OTHER, NULL},
    {"x-real-ip", F_OTHER, NULL},
    {"te", F_OTHER, NULL},
    {"priority", F_OTHER, NULL},
};
#define N_KNOWN (sizeof(known_names) / sizeof(known_names[0]))

static PyObject *str_get, *str_head, *str_11, *str_10;

static int lower_equal(const char *lowered, Py_ssize_t n, const char *name) {
    return (Py_ssize_t)strlen(name) == n && memcmp(lowered, name, (size_t)n) == 0;
}

static int eq_nocase(const char *value, Py_ssize_t n, const char *lowered) {
    if ((Py_ssize_t)strlen(lowered) != n) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = value[i];
        if (c >= 'A' && c <= 'Z') {
            c = (char)(c + 32);
        }
        if (c != lowered[i]) {
            return 0;
        }
    }
    return 1;
}

/* "no-store" anywhere in the value, in any case (as `b"no-store" in value.lower()`). */
static int has_no_store(const char *value, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i + 8 <= n; i++) {
        if (eq_nocase(value + i, 8, "no-store")) {
            return 1;
        }
    }
    return 0;
}

/* One field line at *p: 1 with its spans (and *p past its CRLF), 0 at the blank line ending the head (*p past
 * it), -1 when unsure (malformed for us, or not whole in the buffer). */
/* A Connection field's value: 1 keep-alive, 2 close, -1 anything else (left to httptools). */
static int connection_of(const char *value, Py_ssize_t n) {
    if (eq_nocase(value, n, "keep-alive")) {
        return 1;
    }
    return eq_nocase(value, n, "close") ? 2 : -1;
}

static int read_field(const char *buf, Py_ssize_t len, Py_ssize_t *pp, Py_ssize_t *name_start, Py_ssize_t *name_len,
                      Py_ssize_t *value_start, Py_ssize_t *value_len) {
    Py_ssize_t p = *pp;
    if (len - p < 2) {
        return -1;
    }
    if (buf[p] == '\r') {
        if (buf[p + 1] != '\n') {
            return -1;
        }
        *pp = p + 2;
        return 0;
    }
    *name_start = p;
    while (p < len && tchar[(unsigned char)buf[p]]) {
        p++;
    }
    *name_len = p - *name_start;
    if (*name_len == 0 || p >= len || buf[p] != ':') {
        return -1;
    }
    p++;
    while (p < len && (buf[p] == ' ' || buf[p] == '\t')) {
        p++;
    }
    *value_start = p;
    while (p < len) {
        unsigned char c = (unsigned char)buf[p];
        if ((c >= 0x20 && c < 0x7f) || c == '\t') {
            p++;
        } else {
            break;
        }
    }
    *value_len = p - *value_start;
    if (len - p < 2 || buf[p] != '\r' || buf[p + 1] != '\n' || *value_len == 0 || buf[p - 1] == ' ' ||
        buf[p - 1] == '\t') {
        return -1;
    }
    *pp = p + 2;
    return 1;
}

/* The field name in lower case (a shared object when it is a known one), and its kind; NULL on a Python error. */
static PyObject *field_name(const char *name, Py_ssize_t n, int *kind) {
    char lowered[64];
    *kind = F_OTHER;
    if (n <= (Py_ssize_t)sizeof(lowered)) {
        for (Py_ssize_t i = 0; i < n; i++) {
            char c = name[i];
            lowered[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        for (size_t k = 0; k < N_KNOWN; k++) {
            if (lower_equal(lowered, n, known_names[k].name)) {
                *kind = known_names[k].kind;
                Py_INCREF(known_names[k].bytes);
                return known_names[k].bytes;
            }
        }
        return PyBytes_FromStringAndSize(lowered, n);
    }
    PyObject *bytes = PyBytes_FromStringAndSize(name, n);
    if (bytes != NULL) {
        char *text = PyBytes_AS_STRING(bytes);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (text[i] >= 'A' && text[i] <= 'Z') {
                text[i] = (char)(text[i] + 32);
            }
        }
    }
    return bytes;
}

/* Appends (name, value) to `headers`; the value's new reference in *value (borrowed by the list too). */
static int append_field(PyObject *headers, PyObject *name, const char *value, Py_ssize_t n, PyObject **value_out) {
    PyObject *value_bytes = PyBytes_FromStringAndSize(value, n);
    if (value_bytes == NULL) {
        Py_DECREF(name);
        return -1;
    }
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(name);
        Py_DECREF(value_bytes);
        return -1;
    }
    PyTuple_SET_ITEM(pair, 0, name);
    PyTuple_SET_ITEM(pair, 1, value_bytes);
    int appended = PyList_Append(headers, pair);
    Py_DECREF(pair);
    *value_out = value_bytes;
    return appended;
}

#define NOTED 7 /* host, agent, referer, forwarded, encoding, cookie, connection */

static PyObject *scan(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    Py_ssize_t pos;
    if (!PyArg_ParseTuple(args, "y*n", &view, &pos)) {
        return NULL;
    }
    const char *buf = (const char *)view.buf;
    const Py_ssize_t len = view.len;
    PyObject *headers = NULL, *result = NULL;
    PyObject *noted[NOTED] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    int no_store = 0;
    Py_ssize_t p = pos;
    if (pos < 0 || pos > len) {
        goto unsure;
    }
    /* The request line: GET or HEAD, a target from "/", HTTP/1.0 or 1.1. */
    PyObject *method;
    if (len - p >= 4 && memcmp(buf + p, "GET ", 4) == 0) {
        method = str_get;
        p += 4;
    } else if (len - p >= 5 && memcmp(buf + p, "HEAD ", 5) == 0) {
        method = str_head;
        p += 5;
    } else {
        goto unsure;
    }
    const Py_ssize_t target_start = p;
    if (p >= len || buf[p] != '/') {
        goto unsure;
    }
    while (p < len && urlchar[(unsigned char)buf[p]]) {
        p++;
    }
    const Py_ssize_t target_end = p;
    if (len - p < 11 || memcmp(buf + p, " HTTP/1.", 8) != 0 || buf[p + 9] != '\r' || buf[p + 10] != '\n') {
        goto unsure;
    }
    int minor = buf[p + 8];
    if (minor != '0' && minor != '1') {
        goto unsure;
    }
    p += 11;
    headers = PyList_New(0);
    if (headers == NULL) {
        goto fail;
    }
    int fields = 0;
    int connection_kind = 0; /* 0 none, 1 keep-alive, 2 close */
    for (;;) {
        Py_ssize_t name_start, name_len, value_start, value_len;
        int got = read_field(buf, len, &p, &name_start, &name_len, &value_start, &value_len);
        if (got < 0 || ++fields > MAX_FIELDS) {
            goto unsure;
        }
        if (got == 0) {
            break;
        }
        int kind;
        PyObject *name = field_name(buf + name_start, name_len, &kind);
        if (name == NULL) {
            goto fail;
        }
        if (kind == F_REFUSE) {
            Py_DECREF(name);
            goto unsure;
        }
        const char *value = buf + value_start;
        PyObject *value_bytes;
        if (append_field(headers, name, value, value_len, &value_bytes) < 0) {
            goto fail;
        }
        int slot = -1;
        switch (kind) {
        case F_HOST:
            slot = 0;
            break;
        case F_AGENT:
            slot = 1;
            break;
        case F_REFERER:
            slot = 2;
            break;
        case F_FORWARDED:
            slot = 3;
            break;
        case F_ENCODING:
        case F_COOKIE:
            if (noted[kind == F_ENCODING ? 4 : 5] != NULL) {
                goto unsure; /* repeated: joined by the reference path */
            }
            slot = kind == F_ENCODING ? 4 : 5;
            break;
        case F_CONNECTION:
            if (noted[6] != NULL) {
                goto unsure;
            }
            connection_kind = connection_of(value, value_len);
            if (connection_kind < 0) {
                goto unsure;
            }
            slot = 6;
            break;
        case F_PRIVATE:
            no_store = 1;
            break;
        case F_CONTROL:
            if (has_no_store(value, value_len)) {
                no_store = 1;
            }
            break;
        default:
            break;
        }
        if (slot >= 0 && noted[slot] == NULL) {
            Py_INCREF(value_bytes);
            noted[slot] = value_bytes;
        }
    }
    /* RFC 9112 section 9.3: 1.1 keeps the connection unless it says close; 1.0 only when it says keep-alive. */
    int keep_alive = minor == '1' ? connection_kind != 2 : connection_kind == 1;
    PyObject *target = PyUnicode_New(target_end - target_start, 127);
    if (target == NULL) {
        goto fail;
    }
    memcpy(PyUnicode_DATA(target), buf + target_start, (size_t)(target_end - target_start));
    result = PyTuple_New(6 + NOTED + 1);
    if (result == NULL) {
        Py_DECREF(target);
        goto fail;
    }
    PyTuple_SET_ITEM(result, 0, PyLong_FromSsize_t(p));
    Py_INCREF(method);
    PyTuple_SET_ITEM(result, 1, method);
    PyTuple_SET_ITEM(result, 2, target);
    PyObject *version = minor == '1' ? str_11 : str_10;
    Py_INCREF(version);
    PyTuple_SET_ITEM(result, 3, version);
    PyObject *alive = keep_alive ? Py_True : Py_False;
    Py_INCREF(alive);
    PyTuple_SET_ITEM(result, 4, alive);
    PyTuple_SET_ITEM(result, 5, headers);
    headers = NULL;
    for (int i = 0; i < NOTED; i++) {
        PyObject *value = noted[i] != NULL ? noted[i] : Py_None;
        if (noted[i] == NULL) {
            Py_INCREF(Py_None);
        }
        noted[i] = NULL;
        PyTuple_SET_ITEM(result, 6 + i, value);
    }
    PyObject *private = no_store ? Py_True : Py_False;
    Py_INCREF(private);
    PyTuple_SET_ITEM(result, 6 + NOTED, private);
    if (PyTuple_GET_ITEM(result, 0) == NULL) {
        Py_CLEAR(result);
    }
    PyBuffer_Release(&view);
    return result;

unsure:
    Py_XDECREF(headers);
    for (int i = 0; i < NOTED; i++) {
        Py_XDECREF(noted[i]);
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;

fail:
    Py_XDECREF(headers);
    for (int i = 0; i < NOTED; i++) {
        Py_XDECREF(noted[i]);
    }
    PyBuffer_Release(&view);
    return NULL;
}

/* The origin's answer: "HTTP/1.x NNN reason" and fields with one plain Content-Length, no Transfer-Encoding, a
 * status of 200-599 other than 204 and 304, at most one plain Connection field. */
static PyObject *scan_answer(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) {
        return NULL;
    }
    const char *buf = (const char *)view.buf;
    const Py_ssize_t len = view.len;
    PyObject *headers = NULL;
    Py_ssize_t p = 0;
    if (len < 15 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ' ||
        buf[12] != ' ') {
        goto unsure;
    }
    const int minor = buf[7];
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9') {
            goto unsure;
        }
        status = status * 10 + (buf[i] - '0');
    }
    if (status < 200 || status > 599 || status == 204 || status == 304) {
        goto unsure;
    }
    p = 13;
    while (p < len && ((buf[p] >= 0x20 && buf[p] < 0x7f) || buf[p] == '\t')) {
        p++;
    }
    if (len - p < 2 || buf[p] != '\r' || buf[p + 1] != '\n') {
        goto unsure;
    }
    p += 2;
    headers = PyList_New(0);
    if (headers == NULL) {
        goto fail;
    }
    int fields = 0;
    int connection_kind = 0; /* 0 none, 1 keep-alive, 2 close */
    long long length = -1;
    for (;;) {
        Py_ssize_t name_start, name_len, value_start, value_len;
        int got = read_field(buf, len, &p, &name_start, &name_len, &value_start, &value_len);
        if (got < 0 || ++fields > MAX_FIELDS) {
            goto unsure;
        }
        if (got == 0) {
            break;
        }
        const char *name_text = buf + name_start;
        const char *value = buf + value_start;
        if (eq_nocase(name_text, name_len, "transfer-encoding") || eq_nocase(name_text, name_len, "upgrade")) {
            goto unsure;
        }
        if (eq_nocase(name_text, name_len, "content-length")) {
            if (length >= 0 || value_len > 15) {
                goto unsure;
            }
            length = 0;
            for (Py_ssize_t i = 0; i < value_len; i++) {
                if (value[i] < '0' || value[i] > '9') {
                    goto unsure;
                }
                length = length * 10 + (value[i] - '0');
            }
        } else if (eq_nocase(name_text, name_len, "connection")) {
            if (connection_kind != 0) {
                goto unsure;
            }
            connection_kind = connection_of(value, value_len);
            if (connection_kind < 0) {
                goto unsure;
            }
        }
        int kind;
        PyObject *name = field_name(name_text, name_len, &kind);
        if (name == NULL) {
            goto fail;
        }
        PyObject *value_bytes;
        if (append_field(headers, name, value, value_len, &value_bytes) < 0) {
            goto fail;
        }
    }
    if (length < 0) {
        goto unsure; /* the body ends with the connection: the reference path */
    }
    int keep_alive = minor == '1' ? connection_kind != 2 : connection_kind == 1;
    PyBuffer_Release(&view);
    return Py_BuildValue("(niNLO)", p, status, headers, length, keep_alive ? Py_True : Py_False);

unsure:
    Py_XDECREF(headers);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;

fail:
    Py_XDECREF(headers);
    PyBuffer_Release(&view);
    return NULL;
}

/* render(first, headers, drop, tail, body): first + "name: value\r\n" for each (name, value) of the list
 * `headers` whose name is not in the set `drop` + tail + body, made in one allocation (a head and its body in one
 * write). The reference is `floodwall.edge.http.render_fields`. */
static PyObject *render(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *first, *headers, *drop, *tail, *body;
    if (!PyArg_ParseTuple(args, "SO!OSS", &first, &PyList_Type, &headers, &drop, &tail, &body)) {
        return NULL;
    }
    if (!PyAnySet_Check(drop)) {
        PyErr_SetString(PyExc_TypeError, "render: drop must be a set or frozenset");
        return NULL;
    }
    const Py_ssize_t n = PyList_GET_SIZE(headers);
    Py_ssize_t size = PyBytes_GET_SIZE(first) + PyBytes_GET_SIZE(tail) + PyBytes_GET_SIZE(body);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(headers, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(pair, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "render: headers must be (bytes, bytes) pairs");
            return NULL;
        }
        int dropped = PySet_Contains(drop, PyTuple_GET_ITEM(pair, 0));
        if (dropped < 0) {
            return NULL;
        }
        if (!dropped) {
            size += PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 0)) + PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 1)) + 4;
        }
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL) {
        return NULL;
    }
    char *w = PyBytes_AS_STRING(out);
#define PUT(obj)                                                                                                       \
    do {                                                                                                               \
        memcpy(w, PyBytes_AS_STRING(obj), (size_t)PyBytes_GET_SIZE(obj));                                             \
        w += PyBytes_GET_SIZE(obj);                                                                                    \
    } while (0)
    PUT(first);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(headers, i);
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        if (PySet_Contains(drop, name)) { /* a set of bytes: cannot fail for bytes that hashed above */
            continue;
        }
        PUT(name);
        *w++ = ':';
        *w++ = ' ';
        PUT(PyTuple_GET_ITEM(pair, 1));
        *w++ = '\r';
        *w++ = '\n';
    }
    PUT(tail);
    PUT(body);
#undef PUT
    return out;
}

static PyMethodDef methods[] = {
    {"render", render, METH_VARARGS,
     "render(first, headers, drop, tail, body): a head's bytes and its body in one object (see the source)."},
    {"scan", scan, METH_VARARGS,
     "scan(data, pos): the plain GET or HEAD head at `pos` read whole, or None (see the module's source)."},
    {"scan_answer", scan_answer, METH_VARARGS,
     "scan_answer(data): the head of an origin's answer with a Content-Length, or None (see the module's source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_headscan", "The edge's fast path for plain GET and HEAD request heads.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__headscan(void) {
    const char *specials = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; c++) {
        tchar[c] = (unsigned char)((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                   (c != 0 && strchr(specials, c) != NULL));
        urlchar[c] = (unsigned char)((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                     (c != 0 && strchr("-._~:/?#[]@!$&'()*+,;=%", c) != NULL));
    }
    for (size_t k = 0; k < N_KNOWN; k++) {
        known_names[k].bytes = PyBytes_FromString(known_names[k].name);
        if (known_names[k].bytes == NULL) {
            return NULL;
        }
    }
    str_get = PyUnicode_InternFromString("GET");
    str_head = PyUnicode_InternFromString("HEAD");
    str_11 = PyUnicode_InternFromString("1.1");
    str_10 = PyUnicode_InternFromString("1.0");
    if (str_get == NULL || str_head == NULL || str_11 == NULL || str_10 == NULL) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
