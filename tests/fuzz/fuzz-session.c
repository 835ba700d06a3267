/* libFuzzer: session frames as the runtime (root) receives them from users, and as the CLI
 * receives them from a runtime: the incremental decoder fed in uneven pieces, the sequencing
 * and credit checks of both roles, and the JSON payloads. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "proto/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        /* the first byte chooses how the stream is cut into feeds */
        size_t step = (size_t)data[0] * 7 + 1;
        data++;
        size--;
        struct session_decoder d;
        session_decoder_init(&d, true);
        struct session_channel server, client;
        session_channel_init(&server, SESSION_ROLE_SERVER);
        session_channel_init(&client, SESSION_ROLE_CLIENT);
        for (size_t off = 0; off < size; off += step) {
                size_t n = size - off < step ? size - off : step;
                if (session_decoder_feed(&d, data + off, n) < 0)
                        break;
                struct session_frame f;
                int r;
                while ((r = session_decoder_next(&d, &f, NULL)) == 1) {
                        (void)session_channel_receive(&server, &f, NULL);
                        (void)session_channel_receive(&client, &f, NULL);
                        if (f.type == SESSION_OPEN) {
                                struct session_open *o = NULL;
                                struct cm_error *err = NULL;
                                if (session_open_parse(f.payload, f.length, &o, &err) == 0)
                                        session_open_free(o);
                                cm_error_free(err);
                        } else if (f.type == SESSION_EXIT) {
                                int st;
                                json_t *j = NULL;
                                if (session_exit_parse(f.payload, f.length, &st, &j) == 0)
                                        json_decref(j);
                        } else if (f.type == SESSION_ERROR) {
                                char *c = NULL, *m = NULL;
                                if (session_error_parse(f.payload, f.length, &c, &m) == 0) {
                                        free(c);
                                        free(m);
                                }
                        }
                }
                if (r < 0)
                        break;
        }
        session_decoder_done(&d);
        return 0;
}
