/* aura_sodium.c — fills the libsodium function table from a dlopen()ed library (see aura_sodium.h). */
#include "aura_sodium.h"

#include <dlfcn.h>
#include <stdio.h>

const aura_sodium_t *aura_na = NULL;

static aura_sodium_t table;
static int table_ready = 0;
static char table_path[4096];

int aura_sodium_load(const char *path, char *err, size_t errlen) {
    if (table_ready) return 0;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        snprintf(err, errlen, "cannot load libsodium from %s: %s", path, dlerror());
        return -1;
    }
    aura_sodium_t t;
    void *sym;
#define AURA_SODIUM_BIND(ret, name, args)                                                     \
    sym = dlsym(h, #name);                                                                    \
    if (sym == NULL) {                                                                        \
        snprintf(err, errlen, "libsodium at %s does not export %s", path, #name);            \
        dlclose(h);                                                                           \
        return -1;                                                                            \
    }                                                                                         \
    *(void **)(&t.name) = sym;
    AURA_SODIUM_FUNCS(AURA_SODIUM_BIND)
#undef AURA_SODIUM_BIND
    snprintf(table_path, sizeof table_path, "%s", path);
    t.path = table_path;
    if (t.sodium_init() < 0) {
        snprintf(err, errlen, "sodium_init() failed for %s", path);
        dlclose(h);
        return -1;
    }
    table = t; /* the handle stays open for the life of the process, on purpose */
    table_ready = 1;
    aura_na = &table;
    return 0;
}

const aura_sodium_t *aura_sodium_table(void) { return table_ready ? &table : NULL; }
