/*
 * Per-(client, window) aggregates of time-ordered requests in one pass: the fast path of
 * `floodwall.detect.windows._aggregate`, whose Polars expressions stay the reference (a test compares the two).
 *
 * Polars sorted the batch's ~20 narrow columns by client, then grouped: about 170 ms of CPU per 238k-row batch, the
 * largest single cost of detection. Here the rows are read once, in input order (time order, ties in input order),
 * into a hash table of (client hash, window) groups, with one hash set per counted-distinct column; the groups are
 * then sorted by (client hash, window), the order the reference gives. Every input is a contiguous array the caller
 * made with Polars; every output is a bytearray the caller views with NumPy. The GIL is released while counting.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define N_DISTINCT 3
#define MAX_FLAGS 16

typedef struct {
    uint64_t client;
    int64_t window;
    int64_t first_ts, last_ts, prev_ts;
    int64_t first_row, first_page, first_keys;
    uint32_t requests;
    uint32_t distinct[N_DISTINCT];
    uint32_t gaps;
    uint32_t counts[MAX_FLAGS];
    double gap_sum, gap_mean, gap_m2; /* sum for the mean; Welford's running mean and M2 for the deviation */
} Group;

typedef struct {
    uint64_t value;
    uint32_t group; /* group index + 1; 0 is an empty slot */
} SetSlot;

typedef struct {
    uint64_t client;
    int64_t window;
    size_t group;
} OrderKey;

static inline uint64_t mix(uint64_t x) { /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Whether (group, value) is new to `set` (and now in it). */
static inline int set_add(SetSlot *set, size_t mask, uint32_t group, uint64_t value) {
    size_t i = (size_t)mix(value ^ ((uint64_t)group * 0x9e3779b97f4a7c15ULL)) & mask;
    for (;;) {
        SetSlot *slot = &set[i];
        if (slot->group == 0) {
            slot->group = group + 1;
            slot->value = value;
            return 1;
        }
        if (slot->group == group + 1 && slot->value == value) return 0;
        i = (i + 1) & mask;
    }
}

typedef struct {
    Py_buffer client, window, ts, flags, page, keys, distinct[N_DISTINCT];
} Inputs;

static void release_inputs(Inputs *in) {
    Py_buffer *all[] = {&in->client, &in->window, &in->ts, &in->flags, &in->page, &in->keys};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i]->obj != NULL) PyBuffer_Release(all[i]);
    for (int i = 0; i < N_DISTINCT; i++)
        if (in->distinct[i].obj != NULL) PyBuffer_Release(&in->distinct[i]);
}

/*
 * The rows of one window are consecutive (time order), so they are counted a window at a time with tables sized to
 * that window, which stay in the CPU's caches: tables sized to the whole batch made every lookup a cache miss.
 */
static int count_window(const Inputs *in, size_t from, size_t to, int n_flags, Group *group, size_t *groups,
                        uint32_t **index_p, SetSlot **sets_p, uint32_t **row_group_p, size_t *cap_p) {
    const uint64_t *client = in->client.buf;
    const int64_t *window = in->window.buf, *ts = in->ts.buf;
    const uint16_t *flags = in->flags.buf;
    const uint8_t *page = in->page.buf, *keys = in->keys.buf;
    size_t rows = to - from, size = 64;
    while (size < 2 * rows) size *= 2;
    if (size > *cap_p) {
        free(*index_p);
        free(*sets_p);
        free(*row_group_p);
        *index_p = malloc(size * sizeof **index_p);
        *sets_p = malloc(size * N_DISTINCT * sizeof **sets_p);
        *row_group_p = malloc(size * sizeof **row_group_p);
        *cap_p = size;
        if (*index_p == NULL || *sets_p == NULL || *row_group_p == NULL) return 0;
    }
    uint32_t *index = *index_p, *row_group = *row_group_p;
    SetSlot *sets = *sets_p;
    size_t mask = size - 1, base = *groups;
    memset(index, 0, size * sizeof *index);
    memset(sets, 0, size * N_DISTINCT * sizeof *sets);
    for (size_t r = from; r < to; r++) {
        size_t i = (size_t)mix(client[r]) & mask;
        size_t g;
        for (;;) {
            uint32_t at = index[i];
            if (at == 0) {
                g = (*groups)++;
                index[i] = (uint32_t)(g - base + 1);
                group[g] = (Group){.client = client[r], .window = window[r], .first_ts = ts[r], .prev_ts = ts[r],
                                   .first_row = (int64_t)r, .first_page = -1, .first_keys = -1};
                break;
            }
            if (group[base + at - 1].client == client[r]) {
                g = base + at - 1;
                Group *x = &group[g];
                /* The gap to the group's previous row, in seconds, as the reference computes it. */
                double gap = (double)(ts[r] - x->prev_ts) / 1e6;
                x->gaps++;
                x->gap_sum += gap;
                double delta = gap - x->gap_mean;
                x->gap_mean += delta / x->gaps;
                x->gap_m2 += delta * (gap - x->gap_mean);
                x->prev_ts = ts[r];
                break;
            }
            i = (i + 1) & mask;
        }
        Group *x = &group[g];
        x->requests++;
        x->last_ts = ts[r];
        if (x->first_page < 0 && page[r]) x->first_page = (int64_t)r;
        if (x->first_keys < 0 && keys[r]) x->first_keys = (int64_t)r;
        uint16_t bits = flags[r];
        for (int f = 0; f < n_flags; f++) x->counts[f] += (bits >> f) & 1u;
        row_group[r - from] = (uint32_t)(g - base);
    }
    for (int d = 0; d < N_DISTINCT; d++) {
        const uint64_t *values = in->distinct[d].buf;
        SetSlot *set = sets + (size_t)d * size;
        for (size_t r = from; r < to; r++) {
            uint32_t g = row_group[r - from];
            group[base + g].distinct[d] += (uint32_t)set_add(set, mask, g, values[r]);
        }
    }
    return 1;
}

/*
 * The group table is kept between calls (under a lock; the engine calls from one thread, tests from several):
 * a fresh table of 40 MB per 238k-row batch was a third of the time here, in the kernel zeroing new pages.
 */
static pthread_mutex_t scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static Group *scratch;
static size_t scratch_cap;

/* `keys` sorted by client hash, stably (their windows are in order already): a radix sort, 8 bits at a time. */
static int sort_by_client(OrderKey *keys, size_t count) {
    OrderKey *tmp = malloc((count ? count : 1) * sizeof *tmp);
    if (tmp == NULL) return 0;
    OrderKey *from = keys, *to = tmp;
    for (int shift = 0; shift < 64; shift += 8) {
        size_t offsets[257] = {0};
        for (size_t i = 0; i < count; i++) offsets[((from[i].client >> shift) & 0xff) + 1]++;
        if (offsets[((from[0].client >> shift) & 0xff) + 1] == count) continue; /* one bucket: nothing moves */
        for (int b = 0; b < 256; b++) offsets[b + 1] += offsets[b];
        for (size_t i = 0; i < count; i++) to[offsets[(from[i].client >> shift) & 0xff]++] = from[i];
        OrderKey *swap = from;
        from = to;
        to = swap;
    }
    if (from != keys) memcpy(keys, from, count * sizeof *keys);
    free(tmp);
    return 1;
}

/* The groups of `n` rows (whose windows never decrease), and their output order (by client hash, then window) in
 * `*order`; NULL when out of memory. `*count` is set to the number of groups. Call with `scratch_lock` held. */
static Group *aggregate_rows(const Inputs *in, size_t n, int n_flags, OrderKey **order, size_t *count) {
    const int64_t *window = in->window.buf;
    if (n > scratch_cap) {
        free(scratch);
        scratch = malloc(n * sizeof *scratch);
        scratch_cap = scratch == NULL ? 0 : n;
        if (scratch == NULL) return NULL;
    }
    Group *group = scratch;
    uint32_t *index = NULL, *row_group = NULL;
    SetSlot *sets = NULL;
    size_t cap = 0, groups = 0;
    int ok = 1;
    for (size_t from = 0; ok && from < n;) {
        size_t to = from + 1;
        while (to < n && window[to] == window[from]) to++;
        ok = count_window(in, from, to, n_flags, group, &groups, &index, &sets, &row_group, &cap);
        from = to;
    }
    free(index);
    free(sets);
    free(row_group);
    OrderKey *keys = ok ? malloc((groups ? groups : 1) * sizeof *keys) : NULL;
    if (keys == NULL) return NULL;
    for (size_t g = 0; g < groups; g++) keys[g] = (OrderKey){group[g].client, group[g].window, g};
    if (groups && !sort_by_client(keys, groups)) {
        free(keys);
        return NULL;
    }
    *order = keys;
    *count = groups;
    return group;
}

static int get_input(PyObject *obj, Py_buffer *view, size_t item, size_t n, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) return 0;
    if ((size_t)view->len != item * n) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, %zu expected", name, view->len, item * n);
        return 0;
    }
    return 1;
}

static PyObject *new_array(size_t bytes, char **data) {
    PyObject *array = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)bytes);
    if (array != NULL) *data = PyByteArray_AS_STRING(array);
    return array;
}

static PyObject *aggregate(PyObject *module, PyObject *args) {
    PyObject *objs[6 + N_DISTINCT];
    Py_ssize_t rows;
    int n_flags;
    if (!PyArg_ParseTuple(args, "niOOOOOOOOO:aggregate", &rows, &n_flags, &objs[0], &objs[1], &objs[2], &objs[3],
                          &objs[4], &objs[5], &objs[6], &objs[7], &objs[8]))
        return NULL;
    if (rows < 0 || rows >= (Py_ssize_t)UINT32_MAX || n_flags < 0 || n_flags > MAX_FLAGS)
        return PyErr_Format(PyExc_ValueError, "rows %zd or flags %d out of range", rows, n_flags);
    size_t n = (size_t)rows;
    Inputs in;
    memset(&in, 0, sizeof in);
    Py_buffer *views[] = {&in.client, &in.window, &in.ts, &in.flags, &in.page, &in.keys,
                          &in.distinct[0], &in.distinct[1], &in.distinct[2]};
    static const size_t items[] = {8, 8, 8, 2, 1, 1, 8, 8, 8};
    static const char *names[] = {"client", "window", "ts", "flags", "page", "keys", "distinct 0", "distinct 1",
                                  "distinct 2"};
    for (int i = 0; i < 6 + N_DISTINCT; i++)
        if (!get_input(objs[i], views[i], items[i], n, names[i])) {
            release_inputs(&in);
            return NULL;
        }
    Group *group;
    OrderKey *order = NULL;
    size_t groups = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&scratch_lock);
    group = aggregate_rows(&in, n, n_flags, &order, &groups);
    Py_END_ALLOW_THREADS
    release_inputs(&in);
    if (group == NULL) {
        pthread_mutex_unlock(&scratch_lock);
        return PyErr_NoMemory();
    }

    /* Columns: window, first_ts, last_ts, first_row, first_page, first_keys (int64); requests, the distinct counts
     * (uint32); the flag counts (uint32, group-major); gap mean and deviation (float64, NaN for none). */
    char *data[4];
    PyObject *times = new_array(groups * 6 * 8, &data[0]);
    PyObject *sizes = new_array(groups * (1 + N_DISTINCT) * 4, &data[1]);
    PyObject *flag_counts = new_array(groups * (size_t)n_flags * 4, &data[2]);
    PyObject *gaps = new_array(groups * 2 * 8, &data[3]);
    PyObject *result = NULL;
    if (times != NULL && sizes != NULL && flag_counts != NULL && gaps != NULL) {
        int64_t *t = (int64_t *)data[0];
        uint32_t *s = (uint32_t *)data[1], *c = (uint32_t *)data[2];
        double *gp = (double *)data[3];
        for (size_t g = 0; g < groups; g++) {
            const Group *x = &group[order[g].group];
            int64_t row[6] = {x->window, x->first_ts, x->last_ts, x->first_row, x->first_page, x->first_keys};
            for (int k = 0; k < 6; k++) t[k * groups + g] = row[k];
            s[g] = x->requests;
            for (int d = 0; d < N_DISTINCT; d++) s[(size_t)(1 + d) * groups + g] = x->distinct[d];
            memcpy(c + g * (size_t)n_flags, x->counts, (size_t)n_flags * sizeof *c);
            gp[g] = x->gaps ? x->gap_sum / x->gaps : NAN;
            gp[groups + g] = x->gaps > 1 ? sqrt(x->gap_m2 / (x->gaps - 1)) : NAN;
        }
        result = Py_BuildValue("nOOOO", (Py_ssize_t)groups, times, sizes, flag_counts, gaps);
    }
    Py_XDECREF(times);
    Py_XDECREF(sizes);
    Py_XDECREF(flag_counts);
    Py_XDECREF(gaps);
    pthread_mutex_unlock(&scratch_lock);
    free(order);
    return result;
}

static PyMethodDef module_methods[] = {
    {"aggregate", aggregate, METH_VARARGS,
     "aggregate(rows, n_flags, client, window, ts, flags, page, keys, d0, d1, d2) -> (groups, times, sizes, "
     "flag_counts, gaps); see floodwall.detect.windowagg."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "floodwall.detect._windowagg",
    .m_doc = "Per-(client, window) aggregates in one pass (reference: floodwall.detect.windows._aggregate).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__windowagg(void) { return PyModule_Create(&module_def); }
