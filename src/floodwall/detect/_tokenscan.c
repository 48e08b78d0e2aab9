/*
 * Per-request tokens of `floodwall.detect.windows.tokens`, in C: what the regular expressions there compute for a
 * path (kind, template, plain for the breach signatures) and for a query string (cache-busting flag, query keys,
 * plain), one pass per value. At 5M lines these regular expressions over distinct paths and queries cost about 3
 * CPU-seconds; here they cost a small fraction of that.
 *
 * The reference is the Python module: `windows._path_tokens_reference` and `windows._query_tokens_reference`, whose
 * expressions each function below names and follows; tests/detect/test_tokenscan.py checks both give the same
 * values on generated and real paths and queries. A path with a byte >= 0x80 is left to the reference (`done`
 * false): Unicode lower-casing and character counts belong to Polars. Every query is done here (its rules are
 * ASCII classes, which UTF-8's multi-byte characters never fall in; key lengths count characters).
 *
 * Input is a Polars string Series through the Arrow C stream interface (`__arrow_c_stream__`), read without
 * copying; output is one Arrow struct array (`__arrow_c_array__`), which Polars takes over without copying.
 * The work runs without the GIL.
 *
 * `dictionary_codes` numbers a batch's distinct values of a column, so that the tokens above are derived once per
 * value and gathered back to the rows (`floodwall.detect.dictionary`; its Polars reference is
 * `dictionary_reference`, tests/detect/test_dictionary.py compares the two).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- Arrow C Data and Stream Interfaces (copied from the specification) ----------------------------------- */
#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE
#define ARROW_FLAG_NULLABLE 2

struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};
#endif

#ifndef ARROW_C_STREAM_INTERFACE
#define ARROW_C_STREAM_INTERFACE
struct ArrowArrayStream {
    int (*get_schema)(struct ArrowArrayStream *, struct ArrowSchema *out);
    int (*get_next)(struct ArrowArrayStream *, struct ArrowArray *out);
    const char *(*get_last_error)(struct ArrowArrayStream *);
    void (*release)(struct ArrowArrayStream *);
    void *private_data;
};
#endif

/* ---- Output columns: booleans and utf8 strings, owned by the exported arrays ------------------------------ */
enum { KIND_BOOL, KIND_UTF8 };

typedef struct {
    int kind;
    const char *name;
    int64_t rows, nulls;
    uint8_t *valid; /* NULL: no nulls */
    uint8_t *bits;  /* booleans */
    int32_t *offsets;
    char *data;
    size_t data_len, data_cap;
    const void *buffers[3];
} Column;

static void column_free(Column *c) {
    free(c->valid);
    free(c->bits);
    free(c->offsets);
    free(c->data);
    c->valid = c->bits = NULL;
    c->offsets = NULL;
    c->data = NULL;
}

static int column_init(Column *c, int kind, const char *name, int64_t rows, int nullable) {
    size_t bytes = (size_t)(rows + 7) / 8 + 1;
    *c = (Column){.kind = kind, .name = name, .rows = rows};
    if (nullable && (c->valid = calloc(bytes, 1)) == NULL) return 0;
    if (kind == KIND_BOOL) return (c->bits = calloc(bytes, 1)) != NULL;
    c->data_cap = (size_t)rows * 8 + 64;
    c->offsets = calloc((size_t)rows + 1, sizeof *c->offsets);
    c->data = malloc(c->data_cap);
    return c->offsets != NULL && c->data != NULL;
}

static inline void bit_set(uint8_t *bits, int64_t i) { bits[i >> 3] |= (uint8_t)(1u << (i & 7)); }

static inline void put_bool(Column *c, int64_t i, int value) {
    if (c->valid != NULL) bit_set(c->valid, i);
    if (value) bit_set(c->bits, i);
}

/* Row i's string; rows must be pushed in order. 0 when out of memory or past int32 offsets. */
static inline int put_str(Column *c, int64_t i, const char *s, size_t len) {
    if (c->data_len + len > c->data_cap) {
        size_t cap = c->data_cap * 2;
        while (cap < c->data_len + len) cap *= 2;
        if (cap > INT32_MAX) return 0;
        char *p = realloc(c->data, cap);
        if (p == NULL) return 0;
        c->data = p;
        c->data_cap = cap;
    }
    memcpy(c->data + c->data_len, s, len);
    c->data_len += len;
    c->offsets[i + 1] = (int32_t)c->data_len;
    if (c->valid != NULL) bit_set(c->valid, i);
    return 1;
}

static inline void put_null(Column *c, int64_t i) {
    if (c->kind == KIND_UTF8) c->offsets[i + 1] = (int32_t)c->data_len;
    c->nulls++;
}

/* ---- Reading the input stream ------------------------------------------------------------------------------ */
/* One string of an Arrow array at index i (after the array's offset): its bytes, or NULL for a null. */
typedef struct {
    int view; /* 1: utf8 view ("vu"), 0: offsets ("u" or "U") */
    int large;
    const struct ArrowArray *array;
} Strings;

static inline const uint8_t *string_at(const Strings *s, int64_t i, size_t *len) {
    const struct ArrowArray *a = s->array;
    int64_t j = i + a->offset;
    const uint8_t *valid = a->buffers[0];
    if (valid != NULL && !((valid[j >> 3] >> (j & 7)) & 1)) return NULL;
    if (s->view) {
        const uint8_t *v = (const uint8_t *)a->buffers[1] + 16 * j;
        int32_t n, buffer, offset;
        memcpy(&n, v, 4);
        *len = (size_t)n;
        if (n <= 12) return v + 4;
        memcpy(&buffer, v + 8, 4);
        memcpy(&offset, v + 12, 4);
        return (const uint8_t *)a->buffers[2 + buffer] + offset;
    }
    if (s->large) {
        const int64_t *off = a->buffers[1];
        *len = (size_t)(off[j + 1] - off[j]);
        return (const uint8_t *)a->buffers[2] + off[j];
    }
    const int32_t *off = a->buffers[1];
    *len = (size_t)(off[j + 1] - off[j]);
    return (const uint8_t *)a->buffers[2] + off[j];
}

/* ---- Paths ------------------------------------------------------------------------------------------------- */
#define TEMPLATE_CHARS 60
#define STEP_MAX 4096 /* longer paths go to the reference (there are none in real logs) */

static inline int is_lower_alnum(uint8_t c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
static inline int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static inline int is_lower(uint8_t c) { return c >= 'a' && c <= 'z'; }

static int ends_with(const uint8_t *p, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && memcmp(p + n - k, suffix, k) == 0;
}

static int starts_with(const uint8_t *p, size_t n, const char *prefix) {
    size_t k = strlen(prefix);
    return n >= k && memcmp(p, prefix, k) == 0;
}

static int contains(const uint8_t *p, size_t n, const char *needle) {
    return memmem(p, n, needle, strlen(needle)) != NULL;
}

static int in_list(const uint8_t *p, size_t n, const char *const *words) {
    for (; *words != NULL; words++)
        if (strlen(*words) == n && memcmp(p, *words, n) == 0) return 1;
    return 0;
}

/* The text after the last '.' of p (NULL when there is none). */
static const uint8_t *after_last_dot(const uint8_t *p, size_t n) {
    for (size_t i = n; i > 0; i--)
        if (p[i - 1] == '.') return p + i;
    return NULL;
}

/* windows._ASSET_EXT's list, ASSET_DIR's folders, and the template's first replacement's extensions. */
static const char *const ASSET_EXT[] = {"css", "js", "mjs", "png", "jpg", "jpeg", "gif", "webp", "avif", "svg", "ico",
                                        "woff", "woff2", "ttf", "eot", "otf", "mp4", "webm", "mp3", "map", "json",
                                        NULL};
static const char *const ASSET_DIR[] = {"/wp-content/", "/wp-includes/", "/static/", "/assets/", "/_next/", "/media/",
                                        "/images/",     "/img/",         "/css/",    "/js/",     "/fonts/", NULL};
static const char *const TEMPLATE_EXT[] = {"jpg", "jpeg", "png", "gif", "webp", "avif", "svg",  "css",  "js",
                                           "ico", "woff", "woff2", "ttf", "mp4", "webm", "map", "htm", "html", NULL};
static const char *const API_PREFIX[] = {"/wp-json", "/api", "/graphql", "/ajax", "/wp-admin/admin-ajax.php", NULL};

/* windows.tokens' `kind`, on the lower-cased path. */
static const char *path_kind(const uint8_t *p, size_t n) {
    const uint8_t *ext = after_last_dot(p, n);
    if (ext != NULL && in_list(ext, (size_t)(p + n - ext), ASSET_EXT)) return "asset"; /* _ASSET_EXT */
    for (const char *const *dir = ASSET_DIR; *dir != NULL; dir++)                    /* _ASSET_DIR */
        if (starts_with(p, n, *dir)) return "asset";
    /* _FEED: (?:/feed/?$|/rss|\.xml$|\.rss$|/atom) */
    if (ends_with(p, n, "/feed") || ends_with(p, n, "/feed/") || contains(p, n, "/rss") || ends_with(p, n, ".xml") ||
        ends_with(p, n, ".rss") || contains(p, n, "/atom"))
        return "feed";
    for (const char *const *api = API_PREFIX; *api != NULL; api++) /* _API */
        if (starts_with(p, n, *api)) return "api";
    return "page";
}

/* The template's four replacements, each from `in` to `out` (both at least STEP_MAX + 16 bytes); returns the new
 * length. */

/* str.replace(r"/[^/]+(\.(?:jpe?g|png|...|html?))$", ...): the last segment becomes '*' and its extension (only
 * the last segment can reach the end). */
static size_t fold_file(const uint8_t *in, size_t n, uint8_t *out) {
    size_t slash = n;
    for (size_t i = n; i > 0; i--)
        if (in[i - 1] == '/') {
            slash = i - 1;
            break;
        }
    const uint8_t *ext = after_last_dot(in, n);
    memcpy(out, in, n);
    if (slash == n || ext == NULL || ext - 1 <= in + slash + 1 || !in_list(ext, (size_t)(in + n - ext), TEMPLATE_EXT))
        return n;
    size_t dot = (size_t)(ext - 1 - in), tail = n - dot;
    out[slash + 1] = '*';
    memmove(out + slash + 2, in + dot, tail);
    return slash + 2 + tail;
}

/* str.replace_all(r"/[a-z0-9]+(?:-[a-z0-9]+){2,}", "/{slug}") */
static size_t fold_slugs(const uint8_t *in, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        if (in[i] != '/') {
            out[o++] = in[i++];
            continue;
        }
        size_t j = i + 1, words = 0;
        for (;;) {
            size_t k = j;
            while (k < n && is_lower_alnum(in[k])) k++;
            if (k == j) break;
            words++;
            j = k;
            if (j + 1 < n && in[j] == '-' && is_lower_alnum(in[j + 1]))
                j++;
            else
                break;
        }
        if (words >= 3) {
            memcpy(out + o, "/{slug}", 7);
            o += 7;
            i = j;
        } else {
            out[o++] = in[i++];
        }
    }
    return o;
}

/* str.replace_all(r"/[^/]*[0-9][^/]*", "/0"): a segment holding a digit. */
static size_t fold_numbers(const uint8_t *in, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        if (in[i] != '/') {
            out[o++] = in[i++];
            continue;
        }
        size_t e = i + 1;
        int digit = 0;
        while (e < n && in[e] != '/') digit |= is_digit(in[e++]);
        if (digit) {
            out[o++] = '/';
            out[o++] = '0';
        } else {
            memcpy(out + o, in + i, e - i);
            o += e - i;
        }
        i = e;
    }
    return o;
}

/* str.replace_all(r"/[a-z]{7,}(?:/|$)", "/{word}/"): the match takes the following '/', so of two such segments in
 * a row only the first is folded. */
static size_t fold_words(const uint8_t *in, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        if (in[i] != '/') {
            out[o++] = in[i++];
            continue;
        }
        size_t k = i + 1;
        while (k < n && is_lower(in[k])) k++;
        if (k - i - 1 >= 7 && (k == n || in[k] == '/')) {
            memcpy(out + o, "/{word}/", 8);
            o += 8;
            i = k == n ? n : k + 1;
        } else {
            out[o++] = in[i++];
        }
    }
    return o;
}

/* breach._SUSPECT_PATH, case-insensitive, on the lower-cased path (only asked of paths that are _SAFE_PATH, all
 * ASCII). */
static const char *const SUSPECT_WORDS[] = {
    "admin",   "login",  "xmlrpc",  "wp-config", "wp-json",      "wp-cron", "cgi",    "phpmyadmin", ".well-known",
    "actuator", "server-status", "console", "shell",  "setup",  "install", "/.",   "debug",   "passwd",
    "etc/",    "proc/",  "boot",    "win.ini",   "vendor",       "backup",  "dump",   "owa",        "autodiscover",
    "solr",    "jenkins", "manager", NULL};
static const char *const SUSPECT_EXT[] = {"php",  "asp", "aspx", "jsp",  "cgi",      "pl",       "py",   "sh",   "env",
                                          "git",  "svn", "htaccess", "htpasswd", "ini", "conf", "config", "cfg",
                                          "sql",  "bak", "old",  "orig", "swp",      "log",      "yml",  "yaml", "zip",
                                          "tar",  "gz",  "rar",  "7z",   "pem",      "key",      "db",   "sqlite",
                                          "mdb",  "inc", "dist", "save", "tmp",      NULL};

/* SUSPECT_WORDS by their first byte (indices + 1, 0 ends a list), made once: one pass over a path then tries only
 * the words that can start at each byte (30 memmem calls per path cost 0.8 us). */
#define MAX_SAME_FIRST 8
static uint8_t WORDS_BY_FIRST[256][MAX_SAME_FIRST + 1];
static size_t WORD_LEN[64];

static void index_words(void) {
    for (int k = 0; SUSPECT_WORDS[k] != NULL; k++) {
        uint8_t *slot = WORDS_BY_FIRST[(uint8_t)SUSPECT_WORDS[k][0]];
        int used = 0;
        while (slot[used] != 0) used++;
        slot[used] = (uint8_t)(k + 1); /* MAX_SAME_FIRST is more than any first byte has */
        WORD_LEN[k] = strlen(SUSPECT_WORDS[k]);
    }
}

static int suspect_path(const uint8_t *p, size_t n) {
    if (n > 0 && p[n - 1] == '~') return 1; /* ~$ */
    for (size_t i = 0; i < n; i++) {
        for (const uint8_t *w = WORDS_BY_FIRST[p[i]]; *w != 0; w++) {
            size_t len = WORD_LEN[*w - 1];
            if (n - i >= len && memcmp(p + i, SUSPECT_WORDS[*w - 1], len) == 0) return 1;
        }
        if (p[i] == 'w' && n - i >= 12 && memcmp(p + i, "wp-includes/", 12) == 0) {
            /* wp-includes/[^/]*\.php */
            for (size_t q = i + 12; q + 4 <= n && p[q] != '/'; q++)
                if (memcmp(p + q, ".php", 4) == 0) return 1;
        } else if (p[i] == '.') {
            /* \.(?:php\d?|asp|...|tmp)(?:$|/|~): the extension runs to the end, a '/' or a '~' */
            size_t e = i + 1;
            while (e < n && p[e] != '/' && p[e] != '~' && p[e] != '.') e++;
            if (e < n && p[e] == '.') continue; /* another dot first: no extension of the list ends here */
            if (in_list(p + i + 1, e - i - 1, SUSPECT_EXT) ||
                (e - i - 1 == 4 && memcmp(p + i + 1, "php", 3) == 0 && is_digit(p[i + 4])))
                return 1;
        }
    }
    return 0;
}

/* breach._SAFE_PATH: ^[A-Za-z0-9/._~,+-]*$ ; breach._SAFE_QUERY: ^[A-Za-z0-9_.~,+=&-]*$ */
static uint8_t SAFE_PATH[256], SAFE_QUERY[256];

static void init_tables(void) {
    for (int c = 0; c < 256; c++) {
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        SAFE_PATH[c] = (uint8_t)(alnum || (c != 0 && strchr("/._~,+-", c) != NULL));
        SAFE_QUERY[c] = (uint8_t)(alnum || (c != 0 && strchr("_.~,+=&-", c) != NULL));
    }
}

enum { P_DONE, P_KIND, P_TEMPLATE, P_PLAIN, P_COLS };
static const char *const PATH_NAMES[P_COLS] = {"done", "kind", "template", "plain_path"};

static int path_row(const uint8_t *raw, size_t n, int64_t i, Column **cols, uint8_t *a, uint8_t *b) {
    int safe = 1, ascii = 1;
    for (size_t k = 0; k < n; k++) {
        safe &= SAFE_PATH[raw[k]];
        ascii &= raw[k] < 0x80;
    }
    if (!ascii || n > STEP_MAX) {
        put_bool(cols[P_DONE], i, 0);
        put_null(cols[P_KIND], i);
        put_null(cols[P_TEMPLATE], i);
        put_bool(cols[P_PLAIN], i, 0); /* not _SAFE_PATH: never plain */
        return 1;
    }
    for (size_t k = 0; k < n; k++) a[k] = (raw[k] >= 'A' && raw[k] <= 'Z') ? raw[k] + ('a' - 'A') : raw[k];
    const char *kind = path_kind(a, n);
    put_bool(cols[P_DONE], i, 1);
    put_bool(cols[P_PLAIN], i, safe && !suspect_path(a, n));
    /* Only the slugs' step lengthens the text ("/{slug}" for "/a-b-c", 7 bytes for 6): buffers of 2 * STEP_MAX + 64
     * bytes hold every step. */
    size_t m = fold_file(a, n, b);
    m = fold_slugs(b, m, a);
    m = fold_numbers(a, m, b);
    m = fold_words(b, m, a);
    return put_str(cols[P_KIND], i, kind, strlen(kind)) &&
           put_str(cols[P_TEMPLATE], i, (const char *)a, m < TEMPLATE_CHARS ? m : TEMPLATE_CHARS);
}

/* ---- Queries ----------------------------------------------------------------------------------------------- */
enum { Q_CACHE_BUST, Q_KEYS, Q_PLAIN, Q_COLS };
static const char *const QUERY_NAMES[Q_COLS] = {"cache_bust", "query_keys", "plain_query"};
#define KEY_CHARS 40

static inline int is_word(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}
static inline int is_letter(uint8_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* windows._RANDOM_VALUE or _TIMESTAMP_VALUE: from the start or after a '=' or '&', a run of [A-Za-z0-9_-] up to a
 * '&' or the end that is 8+ digits, or mixes letters and digits with 3+ characters after the mix. */
static int cache_bust(const uint8_t *q, size_t n) {
    for (size_t start = 0; start <= n; start++) {
        if (start > 0 && q[start - 1] != '=' && q[start - 1] != '&') continue;
        size_t end = start;
        while (end < n && is_word(q[end])) end++;
        if (end < n && q[end] != '&') continue;
        size_t len = end - start;
        if (len < 5) continue;
        const uint8_t *t = q + start;
        int digits = 1;
        for (size_t k = 0; k < len; k++) digits &= is_digit(t[k]);
        if (digits && len >= 8) return 1;
        /* [W]*[0-9][W]*[A-Za-z] then 3+: a letter at j <= len - 4 after a digit */
        size_t first_digit = len;
        for (size_t k = 0; k < len; k++)
            if (is_digit(t[k])) {
                first_digit = k;
                break;
            }
        for (size_t j = first_digit + 1; j + 4 <= len; j++)
            if (is_letter(t[j])) return 1;
        /* [A-Za-z][W]*[0-9] then 3+: a letter first, a digit at 1 <= j <= len - 4 */
        if (is_letter(t[0]))
            for (size_t j = 1; j + 4 <= len; j++)
                if (is_digit(t[j])) return 1;
    }
    return 0;
}

/* Up to KEY_CHARS characters of [^=&] from p: their byte length (0: none). */
static size_t key_at(const uint8_t *p, const uint8_t *end) {
    const uint8_t *q = p;
    int chars = 0;
    while (q < end && *q != '=' && *q != '&') {
        if ((*q & 0xC0) != 0x80) { /* a character starts here */
            if (chars == KEY_CHARS) break;
            chars++;
        }
        q++;
    }
    return (size_t)(q - p);
}

typedef struct {
    const uint8_t *p;
    size_t len;
} Key;

static int key_order(const void *x, const void *y) {
    const Key *a = x, *b = y;
    int c = memcmp(a->p, b->p, a->len < b->len ? a->len : b->len);
    return c != 0 ? c : (a->len > b->len) - (a->len < b->len);
}

/* windows._query_keys: the first key for a query without '&'; else every key of `(?:^|&)([^=&]{1,40})`, distinct,
 * sorted when there are several, joined with ','. */
static int query_keys(const uint8_t *q, size_t n, int64_t i, Column *col, Key **keys, size_t *keys_cap) {
    const uint8_t *end = q + n;
    if (memchr(q, '&', n) == NULL) return put_str(col, i, (const char *)q, key_at(q, end));
    size_t count = 0;
    const uint8_t *p = q;
    while (p < end) {
        size_t len = 0;
        const uint8_t *key = NULL;
        if (p == q && *p != '&' && *p != '=') {
            key = p;
        } else if (*p == '&' && p + 1 < end) {
            key = p + 1;
        }
        if (key != NULL && (len = key_at(key, end)) > 0) {
            if (count == *keys_cap) {
                size_t cap = *keys_cap * 2 + 8;
                Key *grown = realloc(*keys, cap * sizeof *grown);
                if (grown == NULL) return 0;
                *keys = grown;
                *keys_cap = cap;
            }
            (*keys)[count++] = (Key){key, len};
            p = key + len;
        } else {
            p++;
        }
    }
    if (count > 1) qsort(*keys, count, sizeof **keys, key_order);
    size_t total = 0, kept = 0;
    for (size_t k = 0; k < count; k++) {
        if (kept > 0 && key_order(&(*keys)[kept - 1], &(*keys)[k]) == 0) continue;
        (*keys)[kept++] = (*keys)[k];
        total += (*keys)[k].len + 1;
    }
    char stack[512];
    char *joined = total <= sizeof stack ? stack : malloc(total);
    if (joined == NULL) return 0;
    size_t o = 0;
    for (size_t k = 0; k < kept; k++) {
        if (k > 0) joined[o++] = ',';
        memcpy(joined + o, (*keys)[k].p, (*keys)[k].len);
        o += (*keys)[k].len;
    }
    int ok = put_str(col, i, joined, o);
    if (joined != stack) free(joined);
    return ok;
}

static int query_row(const uint8_t *q, size_t n, int64_t i, Column **cols, Key **keys, size_t *keys_cap) {
    if (q == NULL) { /* fill_null: no cache bust, no keys, plain */
        put_bool(cols[Q_CACHE_BUST], i, 0);
        put_bool(cols[Q_PLAIN], i, 1);
        return put_str(cols[Q_KEYS], i, "", 0);
    }
    int plain = 1;
    for (size_t k = 0; k < n; k++) plain &= SAFE_QUERY[q[k]];
    put_bool(cols[Q_CACHE_BUST], i, cache_bust(q, n));
    put_bool(cols[Q_PLAIN], i, plain);
    return query_keys(q, n, i, cols[Q_KEYS], keys, keys_cap);
}

/* ---- Arrow export of the columns as one struct array ------------------------------------------------------ */
/* Each column belongs to its child array (a consumer may move a child out and release the parent, as the
 * specification allows); the parent owns the rest. */
typedef struct {
    int n;
    Column **cols;
    struct ArrowArray *child_arrays;
    struct ArrowArray **child_array_ptrs;
    const void *struct_buffers[1];
} Table;

static void table_free(Table *t) {
    if (t == NULL) return;
    for (int k = 0; t->cols != NULL && k < t->n; k++)
        if (t->cols[k] != NULL) {
            column_free(t->cols[k]);
            free(t->cols[k]);
        }
    free(t->cols);
    free(t->child_arrays);
    free(t->child_array_ptrs);
    free(t);
}

static Table *table_new(int n) {
    Table *t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    t->n = n;
    t->cols = calloc((size_t)n, sizeof *t->cols);
    t->child_arrays = calloc((size_t)n, sizeof *t->child_arrays);
    t->child_array_ptrs = calloc((size_t)n, sizeof *t->child_array_ptrs);
    int ok = t->cols != NULL && t->child_arrays != NULL && t->child_array_ptrs != NULL;
    for (int k = 0; ok && k < n; k++) ok = (t->cols[k] = calloc(1, sizeof **t->cols)) != NULL;
    if (!ok) {
        table_free(t);
        return NULL;
    }
    return t;
}

/* Schemas point at static strings: the parent frees its children's structs, a child frees nothing. */
static void release_schema_child(struct ArrowSchema *s) { s->release = NULL; }
static void release_schema(struct ArrowSchema *s) {
    free(s->private_data);
    free(s->children);
    s->release = NULL;
}

static void release_array_child(struct ArrowArray *a) {
    Column *c = a->private_data;
    column_free(c);
    free(c);
    a->release = NULL;
}

static void release_array(struct ArrowArray *a) {
    Table *t = a->private_data;
    for (int k = 0; k < t->n; k++) {
        if (t->child_arrays[k].release != NULL) t->child_arrays[k].release(&t->child_arrays[k]);
        t->cols[k] = NULL; /* freed by its child, now or when the consumer that moved it out releases it */
    }
    table_free(t);
    a->release = NULL;
}

static int export_table(Table *t, int64_t rows, struct ArrowSchema *schema, struct ArrowArray *array) {
    struct ArrowSchema *schemas = calloc((size_t)t->n, sizeof *schemas);
    struct ArrowSchema **schema_ptrs = calloc((size_t)t->n, sizeof *schema_ptrs);
    if (schemas == NULL || schema_ptrs == NULL) {
        free(schemas);
        free(schema_ptrs);
        return 0;
    }
    for (int k = 0; k < t->n; k++) {
        Column *c = t->cols[k];
        schemas[k] = (struct ArrowSchema){
            .format = c->kind == KIND_BOOL ? "b" : "u",
            .name = c->name,
            .flags = ARROW_FLAG_NULLABLE,
            .release = release_schema_child,
        };
        schema_ptrs[k] = &schemas[k];
        c->buffers[0] = c->valid;
        c->buffers[1] = c->kind == KIND_BOOL ? (const void *)c->bits : (const void *)c->offsets;
        c->buffers[2] = c->data;
        t->child_arrays[k] = (struct ArrowArray){
            .length = rows,
            .null_count = c->nulls,
            .n_buffers = c->kind == KIND_BOOL ? 2 : 3,
            .buffers = c->buffers,
            .release = release_array_child,
            .private_data = c,
        };
        t->child_array_ptrs[k] = &t->child_arrays[k];
    }
    *schema = (struct ArrowSchema){
        .format = "+s",
        .name = "",
        .n_children = t->n,
        .children = schema_ptrs,
        .release = release_schema,
        .private_data = schemas,
    };
    *array = (struct ArrowArray){
        .length = rows,
        .n_buffers = 1,
        .buffers = t->struct_buffers,
        .n_children = t->n,
        .children = t->child_array_ptrs,
        .release = release_array,
        .private_data = t,
    };
    return 1;
}

static void schema_capsule_destructor(PyObject *capsule) {
    struct ArrowSchema *schema = PyCapsule_GetPointer(capsule, "arrow_schema");
    if (schema == NULL) return;
    if (schema->release != NULL) schema->release(schema);
    free(schema);
}

static void array_capsule_destructor(PyObject *capsule) {
    struct ArrowArray *array = PyCapsule_GetPointer(capsule, "arrow_array");
    if (array == NULL) return;
    if (array->release != NULL) array->release(array);
    free(array);
}

/* ---- Python: the result type ------------------------------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    Table *table; /* NULL once exported */
    int64_t rows;
} TokensObject;

static void Tokens_dealloc(TokensObject *self) {
    table_free(self->table);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Tokens_arrow_c_array(TokensObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"requested_schema", NULL};
    PyObject *requested = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:__arrow_c_array__", kwlist, &requested)) return NULL;
    if (self->table == NULL) return PyErr_Format(PyExc_RuntimeError, "these tokens were handed on already");
    struct ArrowSchema *schema = calloc(1, sizeof *schema);
    struct ArrowArray *array = calloc(1, sizeof *array);
    if (schema == NULL || array == NULL || !export_table(self->table, self->rows, schema, array)) {
        free(schema);
        free(array);
        return PyErr_NoMemory();
    }
    self->table = NULL; /* the array owns it now */
    PyObject *schema_capsule = PyCapsule_New(schema, "arrow_schema", schema_capsule_destructor);
    if (schema_capsule == NULL) {
        schema->release(schema);
        free(schema);
        array->release(array);
        free(array);
        return NULL;
    }
    PyObject *array_capsule = PyCapsule_New(array, "arrow_array", array_capsule_destructor);
    if (array_capsule == NULL) {
        Py_DECREF(schema_capsule);
        array->release(array);
        free(array);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, schema_capsule, array_capsule);
    Py_DECREF(schema_capsule);
    Py_DECREF(array_capsule);
    return pair;
}

static Py_ssize_t Tokens_len(TokensObject *self) { return (Py_ssize_t)self->rows; }

static PyMethodDef Tokens_methods[] = {
    {"__arrow_c_array__", (PyCFunction)(void (*)(void))Tokens_arrow_c_array, METH_VARARGS | METH_KEYWORDS,
     "The columns as an Arrow struct array (schema capsule, array capsule); can be taken once."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Tokens_as_sequence = {.sq_length = (lenfunc)Tokens_len};

static PyTypeObject TokensType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "floodwall.detect._tokenscan.Tokens",
    .tp_basicsize = sizeof(TokensObject),
    .tp_dealloc = (destructor)Tokens_dealloc,
    .tp_as_sequence = &Tokens_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Token columns, one row per input value, handed on through `__arrow_c_array__` (once).",
    .tp_methods = Tokens_methods,
};

/* ---- Python: the functions --------------------------------------------------------------------------------- */
enum { WHAT_PATHS, WHAT_QUERIES };

/* Moves every chunk of `stream` into `*chunks` (`*n_chunks` of them, `*total` rows). Runs without the GIL.
 * Returns NULL on success, else an error message (the chunks read so far are still the caller's to release). */
static const char *read_chunks(struct ArrowArrayStream *stream, struct ArrowArray **chunks_out, int *n_chunks_out,
                               int64_t *total_out) {
    struct ArrowArray *chunks = NULL;
    int n_chunks = 0, cap_chunks = 0;
    int64_t total = 0;
    const char *error = NULL;
    for (;;) {
        if (n_chunks == cap_chunks) {
            cap_chunks = cap_chunks * 2 + 4;
            struct ArrowArray *grown = realloc(chunks, (size_t)cap_chunks * sizeof *grown);
            if (grown == NULL) {
                error = "out of memory";
                break;
            }
            chunks = grown;
        }
        if (stream->get_next(stream, &chunks[n_chunks]) != 0) {
            error = "the Arrow stream failed";
            break;
        }
        if (chunks[n_chunks].release == NULL) break;
        total += chunks[n_chunks].length;
        n_chunks++;
    }
    *chunks_out = chunks;
    *n_chunks_out = n_chunks;
    *total_out = total;
    return error;
}

/* Reads every chunk of `stream` and fills `t` (WHAT_PATHS or WHAT_QUERIES columns). Runs without the GIL.
 * Returns NULL on success, else an error message. */
static const char *fill(struct ArrowArrayStream *stream, const char *format, int what, Table **out, int64_t *rows) {
    Strings s = {.view = strcmp(format, "vu") == 0, .large = strcmp(format, "U") == 0};
    struct ArrowArray *chunks = NULL;
    int n_chunks = 0;
    int64_t total = 0;
    const char *error = read_chunks(stream, &chunks, &n_chunks, &total);
    Table *t = NULL;
    if (error == NULL) {
        int n = what == WHAT_PATHS ? P_COLS : Q_COLS;
        t = table_new(n);
        int ok = t != NULL;
        for (int k = 0; ok && k < n; k++) {
            if (what == WHAT_PATHS)
                ok = column_init(t->cols[k], k == P_DONE || k == P_PLAIN ? KIND_BOOL : KIND_UTF8, PATH_NAMES[k], total,
                                 k == P_KIND || k == P_TEMPLATE);
            else
                ok = column_init(t->cols[k], k == Q_KEYS ? KIND_UTF8 : KIND_BOOL, QUERY_NAMES[k], total, 0);
        }
        uint8_t *a = malloc(2 * STEP_MAX + 64), *b = malloc(2 * STEP_MAX + 64);
        Key *keys = NULL;
        size_t keys_cap = 0;
        ok = ok && a != NULL && b != NULL;
        int64_t row = 0;
        for (int c = 0; ok && c < n_chunks; c++) {
            s.array = &chunks[c];
            for (int64_t i = 0; ok && i < chunks[c].length; i++, row++) {
                size_t len = 0;
                const uint8_t *v = string_at(&s, i, &len);
                if (what == WHAT_PATHS)
                    ok = path_row(v == NULL ? (const uint8_t *)"" : v, v == NULL ? 0 : len, row, t->cols, a, b);
                else
                    ok = query_row(v, len, row, t->cols, &keys, &keys_cap);
            }
        }
        free(a);
        free(b);
        free(keys);
        if (!ok) {
            table_free(t);
            t = NULL;
            error = "out of memory";
        }
    }
    for (int c = 0; c < n_chunks; c++) chunks[c].release(&chunks[c]);
    free(chunks);
    *out = t;
    *rows = total;
    return error;
}

/* Takes `series`' Arrow stream (moved into `*stream`) and its format; returns 0 with a Python error set on failure. */
static int open_strings(PyObject *series, struct ArrowArrayStream *stream, char format[8]) {
    PyObject *capsule = PyObject_CallMethod(series, "__arrow_c_stream__", NULL);
    if (capsule == NULL) return 0;
    struct ArrowArrayStream *source = PyCapsule_GetPointer(capsule, "arrow_array_stream");
    if (source == NULL) {
        Py_DECREF(capsule);
        return 0;
    }
    *stream = *source; /* moved out: the capsule's destructor then has nothing to release */
    source->release = NULL;
    Py_DECREF(capsule);
    struct ArrowSchema schema;
    if (stream->get_schema(stream, &schema) != 0) {
        stream->release(stream);
        PyErr_Format(PyExc_ValueError, "the Arrow stream gave no schema");
        return 0;
    }
    memset(format, 0, 8);
    strncpy(format, schema.format, 7);
    schema.release(&schema);
    if (strcmp(format, "vu") != 0 && strcmp(format, "u") != 0 && strcmp(format, "U") != 0) {
        stream->release(stream);
        PyErr_Format(PyExc_TypeError, "expected a string series, got Arrow format %s", format);
        return 0;
    }
    return 1;
}

static PyObject *run(PyObject *series, int what) {
    struct ArrowArrayStream stream;
    char format[8];
    if (!open_strings(series, &stream, format)) return NULL;
    Table *t = NULL;
    int64_t rows = 0;
    const char *error;
    Py_BEGIN_ALLOW_THREADS
    error = fill(&stream, format, what, &t, &rows);
    Py_END_ALLOW_THREADS
    stream.release(&stream);
    if (error != NULL) return PyErr_Format(PyExc_MemoryError, "%s", error);
    TokensObject *result = PyObject_New(TokensObject, &TokensType);
    if (result == NULL) {
        table_free(t);
        return NULL;
    }
    result->table = t;
    result->rows = rows;
    return (PyObject *)result;
}

/* ---- Dictionary codes -------------------------------------------------------------------------------------- */
/* A batch's paths, queries, referers and agents repeat a lot: detection derives its tokens once per distinct value
 * and hands them back to every row. Polars did that with a hash per row, a unique and a join per column; here one
 * pass gives each row the code of its value (0, 1, ... in order of first appearance; null is a value of its own) and
 * each code its first row, so the distinct values are one gather and the way back another. */
typedef struct {
    uint32_t hash; /* the value hash's high half */
    uint32_t code; /* code + 1; 0: the slot is empty */
} CodeSlot;

typedef struct {
    const uint8_t *value;
    size_t len;
} Value;

/* Set once at import from addresses that differ run to run (ASLR): a log's author cannot aim values at one slot. */
static uint64_t HASH_SEED = 0x9e3779b97f4a7c15ULL;

static inline uint64_t mum(uint64_t a, uint64_t b) { /* wyhash's multiply-and-fold */
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    /* Both factors carry the seeded state: no block of input alone can zero a product and so erase what came before. */
    uint64_t h = HASH_SEED ^ (n * 0xa0761d6478bd642fULL), a = 0, b = 0;
    size_t left = n;
    while (left > 16) {
        memcpy(&a, p, 8);
        memcpy(&b, p + 8, 8);
        h = mum(a ^ h ^ 0xe7037ed1a0b428dbULL, b ^ h ^ 0x8ebc6af09c88c6e3ULL);
        p += 16;
        left -= 16;
    }
    a = b = 0;
    memcpy(&a, p, left < 8 ? left : 8);
    if (left > 8) memcpy(&b, p + 8, left - 8);
    h = mum(a ^ h ^ 0xe7037ed1a0b428dbULL, b ^ h ^ 0x8ebc6af09c88c6e3ULL);
    return mum(h ^ 0x589965cc75374cc3ULL, (uint64_t)n ^ HASH_SEED);
}

/* Doubles `*slots` (a power of two, `*cap` of them), placing each code again by its value's hash. */
static int grow(CodeSlot **slots, size_t *cap, const Value *values, uint32_t n) {
    size_t bigger = *cap * 2, mask = bigger - 1;
    CodeSlot *grown = calloc(bigger, sizeof *grown);
    if (grown == NULL) return 0;
    for (uint32_t code = 0; code < n; code++) {
        if (values[code].value == NULL) continue; /* null has no slot */
        uint64_t h = hash_bytes(values[code].value, values[code].len);
        size_t k = (size_t)h & mask;
        while (grown[k].code != 0) k = (k + 1) & mask;
        grown[k] = (CodeSlot){.hash = (uint32_t)(h >> 32), .code = code + 1};
    }
    free(*slots);
    *slots = grown;
    *cap = bigger;
    return 1;
}

/* Fills `codes` (one per row) and `first` (one per code, `*distinct` of them). Runs without the GIL. The table holds
 * 8 bytes a slot and grows with the distinct values, so it stays in cache where values repeat; a value is compared
 * with its latest row (an exact comparison, never the hash alone), which a flood's repeats keep in cache too. */
static const char *encode(struct ArrowArray *chunks, int n_chunks, const char *format, uint32_t *codes,
                          uint32_t *first, uint32_t *distinct) {
    Strings s = {.view = strcmp(format, "vu") == 0, .large = strcmp(format, "U") == 0};
    size_t cap = 1024;
    CodeSlot *slots = calloc(cap, sizeof *slots);
    Value *values = malloc((cap / 2 + 1) * sizeof *values); /* the table grows once it is half full */
    if (slots == NULL || values == NULL) {
        free(slots);
        free(values);
        return "out of memory";
    }
    uint32_t n = 0;
    int64_t null_code = -1, row = 0;
    static const uint8_t empty = 0;
    const char *error = NULL;
    for (int c = 0; error == NULL && c < n_chunks; c++) {
        s.array = &chunks[c];
        for (int64_t i = 0; i < chunks[c].length; i++, row++) {
            size_t len = 0;
            const uint8_t *v = string_at(&s, i, &len);
            if (v != NULL && len == 0) v = &empty; /* a view of an empty string may point anywhere */
            if (v == NULL && null_code >= 0) {
                codes[row] = (uint32_t)null_code;
                continue;
            }
            uint64_t h = v == NULL ? 0 : hash_bytes(v, len);
            uint32_t tag = (uint32_t)(h >> 32), code = UINT32_MAX;
            size_t mask = cap - 1, k = (size_t)h & mask;
            for (; v != NULL && slots[k].code != 0; k = (k + 1) & mask) {
                Value *seen = &values[slots[k].code - 1];
                if (slots[k].hash == tag && seen->len == len && memcmp(seen->value, v, len) == 0) {
                    code = slots[k].code - 1;
                    seen->value = v;
                    break;
                }
            }
            if (code == UINT32_MAX) { /* a new value; null has a code and no slot */
                code = n++;
                first[code] = (uint32_t)row;
                values[code] = (Value){v, len};
                if (v == NULL)
                    null_code = code;
                else
                    slots[k] = (CodeSlot){.hash = tag, .code = n};
                if ((size_t)n * 2 > cap) {
                    Value *more = realloc(values, (cap + 1) * sizeof *values); /* room for the doubled table's */
                    if (more == NULL || !grow(&slots, &cap, more, n)) {
                        values = more == NULL ? values : more;
                        error = "out of memory";
                        break;
                    }
                    values = more;
                }
            }
            codes[row] = code;
        }
    }
    free(slots);
    free(values);
    *distinct = n;
    return error;
}

static PyObject *dictionary_codes(PyObject *module, PyObject *series) {
    struct ArrowArrayStream stream;
    char format[8];
    if (!open_strings(series, &stream, format)) return NULL;
    struct ArrowArray *chunks = NULL;
    int n_chunks = 0;
    int64_t total = 0;
    const char *error;
    Py_BEGIN_ALLOW_THREADS
    error = read_chunks(&stream, &chunks, &n_chunks, &total);
    Py_END_ALLOW_THREADS
    if (error == NULL && total > (int64_t)UINT32_MAX) error = "more rows than 32-bit codes can number";
    /* The codes are written straight into the bytes handed back; the first rows into a buffer cut to size after. */
    PyObject *codes = error == NULL ? PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total * 4) : NULL;
    uint32_t *first = error == NULL ? malloc((size_t)(total ? total : 1) * sizeof *first) : NULL;
    uint32_t distinct = 0;
    if (error == NULL && (codes == NULL || first == NULL)) error = "out of memory";
    if (error == NULL) {
        uint32_t *out = (uint32_t *)PyBytes_AS_STRING(codes);
        Py_BEGIN_ALLOW_THREADS
        error = encode(chunks, n_chunks, format, out, first, &distinct);
        Py_END_ALLOW_THREADS
    }
    for (int c = 0; c < n_chunks; c++) chunks[c].release(&chunks[c]);
    free(chunks);
    stream.release(&stream);
    PyObject *result = NULL;
    if (error != NULL)
        PyErr_Format(PyExc_MemoryError, "%s", error);
    else
        result = Py_BuildValue("(Oy#)", codes, (const char *)first, (Py_ssize_t)distinct * 4);
    Py_XDECREF(codes);
    free(first);
    return result;
}

static PyObject *path_tokens(PyObject *module, PyObject *series) { return run(series, WHAT_PATHS); }
static PyObject *query_tokens(PyObject *module, PyObject *series) { return run(series, WHAT_QUERIES); }

static PyMethodDef module_methods[] = {
    {"path_tokens", path_tokens, METH_O,
     "path_tokens(paths) -> Tokens: done, kind, template, plain_path per path (a Polars string Series)."},
    {"query_tokens", query_tokens, METH_O,
     "query_tokens(queries) -> Tokens: cache_bust, query_keys, plain_query per query (a Polars string Series)."},
    {"dictionary_codes", dictionary_codes, METH_O,
     "dictionary_codes(values) -> (codes, first): uint32 bytes, each row's code and each code's first row."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "floodwall.detect._tokenscan",
    .m_doc = "Per-request tokens of paths and queries (reference: floodwall.detect.windows).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__tokenscan(void) {
    uint64_t here = (uint64_t)(uintptr_t)&here, code = (uint64_t)(uintptr_t)&HASH_SEED;
    HASH_SEED = mum(here ^ 0x2d358dccaa6c78a5ULL, code ^ 0x8bb84b93962eacc9ULL) | 1;
    init_tables();
    index_words();
    if (PyType_Ready(&TokensType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    Py_INCREF(&TokensType);
    if (PyModule_AddObject(m, "Tokens", (PyObject *)&TokensType) < 0) {
        Py_DECREF(&TokensType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
