/* sha256 digests in OCI form ("sha256:<64 hex>"). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define DIGEST_STR_MAX 72 /* "sha256:" + 64 hex + NUL, rounded */

struct digest_ctx; /* opaque, streaming */

struct digest_ctx *digest_new(void);
void digest_update(struct digest_ctx *c, const void *data, size_t len);
/* Writes "sha256:<hex>" into out (DIGEST_STR_MAX bytes) and frees the context. */
void digest_final(struct digest_ctx *c, char out[DIGEST_STR_MAX]);
void digest_free(struct digest_ctx *c);
void digest_buffer(const void *data, size_t len, char out[DIGEST_STR_MAX]);
/* Digest of an fd's contents from its current offset to EOF. */
int digest_fd(int fd, char out[DIGEST_STR_MAX], unsigned long long *ret_size);
/* A digest we accept: "sha256:" followed by exactly 64 lowercase hex digits. */
bool digest_is_valid(const char *s);
/* Pointer to the hex part of a valid digest. */
const char *digest_hex(const char *digest);
