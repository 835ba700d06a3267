/* libFuzzer: API frames and requests as the apiserver receives them from any local user. */
#include <stddef.h>
#include <stdint.h>

#include "proto/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_t *j = NULL;
        size_t used = 0;
        if (api_decode(data, size, &j, &used) == 0) {
                const char *m;
                json_t *p;
                struct cm_error *err = NULL;
                api_parse_request(j, &m, &p, &err);
                cm_error_free(err);
                json_decref(j);
        }
        return 0;
}
