/*
 * An example resolver plugin in C: `--token-source host:port` names one target, and only
 * the token "open" may use it; every other token is refused with 403.
 *
 *     cc -shared -fPIC -I plugins/api/include -o libfixedtarget.so plugins/c-example/fixed_target.c
 *     websockify --token-plugin ./libfixedtarget.so --token-source localhost:5900 6080
 */
#include <stdlib.h>
#include <string.h>

#include "websockify_plugin.h"

#ifndef ABI_VERSION /* Overridable only so that the tests can build a wrong one. */
#define ABI_VERSION WEBSOCKIFY_PLUGIN_ABI_VERSION
#endif

typedef struct {
    char *target;
} fixed_target;

static void *create(websockify_str config, websockify_out *out) {
    if (config.len == 0) {
        websockify_out_write(out, WEBSOCKIFY_OUT_ERROR, 0, "needs --token-source host:port");
        return NULL;
    }
    fixed_target *self = malloc(sizeof *self);
    char *target = malloc(config.len + 1);
    if (!self || !target) {
        free(self);
        free(target);
        websockify_out_write(out, WEBSOCKIFY_OUT_ERROR, 0, "out of memory");
        return NULL;
    }
    memcpy(target, config.ptr, config.len);
    target[config.len] = '\0';
    self->target = target;
    return self;
}

static void call(void *instance, const websockify_facts *facts, websockify_out *out) {
    const fixed_target *self = instance;
    if (websockify_str_eq(facts->token, "open")) {
        websockify_out_write(out, WEBSOCKIFY_OUT_TARGET, 0, self->target);
    } else {
        websockify_out_write(out, WEBSOCKIFY_OUT_REFUSE, 403, "this token may not connect");
    }
}

static void destroy(void *instance, websockify_out *out) {
    (void)out; /* nothing can fail here */
    fixed_target *self = instance;
    if (self) {
        free(self->target);
        free(self);
    }
}

static const websockify_table TABLE = {
    .abi_version = ABI_VERSION,
    .kind = WEBSOCKIFY_KIND_RESOLVER,
    .flags = 0,
    .name = {(const uint8_t *)"FixedTarget", 11},
    .create = create,
    .call = call,
    .destroy = destroy,
};

const websockify_table *websockify_plugin_entry(void) { return &TABLE; }
