/*
 * websockify-rs plugin ABI, version 2.
 *
 * A plugin is a shared library exporting one function:
 *
 *     const websockify_table *websockify_plugin_entry(void);
 *
 * which returns a pointer to a static table. The proxy checks `abi_version` first, then calls
 * `create` once with the configuration string (--token-source / --auth-source), `call` for
 * each request (on the plugin's own threads, several at once unless `flags` has
 * WEBSOCKIFY_FLAG_SERIAL, which makes the proxy call one instance one call at a time), and
 * `destroy` once (which may report a failure in its `out`). Strings passed in are borrowed for the duration of the call and are not
 * NUL-terminated; answers are written into the proxy's buffer with websockify_out_write().
 *
 * This header mirrors plugins/api/src/lib.rs; tests/tokens.rs checks their layouts agree.
 */
#ifndef WEBSOCKIFY_PLUGIN_H
#define WEBSOCKIFY_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define WEBSOCKIFY_PLUGIN_ABI_VERSION 2u

/* Table flags. */
#define WEBSOCKIFY_FLAG_SERIAL 1u /* an instance is not thread-safe: calls one at a time */

/* Table kinds. */
#define WEBSOCKIFY_KIND_RESOLVER 1u
#define WEBSOCKIFY_KIND_AUTH 2u

/* Answer kinds written into websockify_out.kind. */
#define WEBSOCKIFY_OUT_TARGET 1u      /* text: host:port */
#define WEBSOCKIFY_OUT_UNIX_SOCKET 2u /* text: /path/to.sock */
#define WEBSOCKIFY_OUT_REFUSE 3u      /* status: 400..599, text: reason */
#define WEBSOCKIFY_OUT_ALLOW 4u
#define WEBSOCKIFY_OUT_ERROR 5u       /* text: why */

/* A borrowed UTF-8 string; ptr may be NULL when len is 0. */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} websockify_str;

typedef struct {
    websockify_str name;
    websockify_str value;
} websockify_header;

/* What the proxy knows about a request; empty strings mean "absent". */
typedef struct {
    websockify_str token;
    websockify_str path;
    websockify_str query;
    websockify_str host;
    websockify_str origin;
    websockify_str client_addr;
    websockify_str client_cert_cn;
    const websockify_header *headers;
    size_t headers_len;
} websockify_facts;

/* The proxy's answer buffer: write `kind`, `status`, and up to `cap` bytes of text. */
typedef struct {
    uint32_t kind;
    uint16_t status;
    uint8_t *buf;
    size_t cap;
    size_t len;
} websockify_out;

typedef struct {
    uint32_t abi_version;
    uint32_t kind;
    uint32_t flags;
    websockify_str name;
    void *(*create)(websockify_str config, websockify_out *out);
    void (*call)(void *instance, const websockify_facts *facts, websockify_out *out);
    void (*destroy)(void *instance, websockify_out *out);
} websockify_table;

/* Writes an answer, cutting text that does not fit (keep it ASCII, or cut it yourself at a
 * character boundary). */
static inline void websockify_out_write(websockify_out *out, uint32_t kind, uint16_t status,
                                        const char *text) {
    size_t n = text ? strlen(text) : 0;
    if (n > out->cap) {
        n = out->cap;
    }
    out->kind = kind;
    out->status = status;
    if (n > 0 && out->buf) {
        memcpy(out->buf, text, n);
    }
    out->len = out->buf ? n : 0;
}

/* Compares a borrowed string with a NUL-terminated one. */
static inline int websockify_str_eq(websockify_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

#endif
