/* libFuzzer target for image reference parsing. Besides not crashing, a parsed reference
 * must format to a string that parses back to the same thing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;

        struct image_ref *r = NULL;
        struct cm_error *err = NULL;
        if (image_ref_parse(s, &r, &err) < 0) {
                if (!err || !err->message)
                        abort();
                cm_error_free(err);
                free(s);
                return 0;
        }

        char *formatted = image_ref_format(r);
        char *name = image_ref_name(r);
        char *familiar = image_ref_familiar_name(r);
        if (!formatted || !name || !familiar)
                abort();

        struct image_ref *again = NULL;
        if (image_ref_parse(formatted, &again, NULL) < 0)
                abort();
        char *formatted_again = image_ref_format(again);
        if (!formatted_again || strcmp(formatted, formatted_again) != 0)
                abort();

        /* the familiar name, with the tag and digest, means the same image */
        struct image_ref *from_familiar = NULL;
        if (image_ref_parse(familiar, &from_familiar, NULL) < 0)
                abort();
        char *name_again = image_ref_name(from_familiar);
        if (!name_again || strcmp(name, name_again) != 0)
                abort();

        free(name_again);
        image_ref_free(from_familiar);
        free(formatted_again);
        image_ref_free(again);
        free(familiar);
        free(name);
        free(formatted);
        image_ref_free(r);
        free(s);
        return 0;
}
