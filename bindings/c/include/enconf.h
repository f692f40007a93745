/*
 * enconf from C. Include this file; it brings the declarations of enconf_api.h (generated
 * by cbindgen, free of preprocessor lines so that PHP's FFI::cdef can read it as it is).
 *
 * Link with -lenconf (libenconf.so, or libenconf.a with -lpthread -ldl -lm).
 *
 * Ownership rules:
 *  - Strings you pass are a pointer and a length in bytes, UTF-8, not NUL-terminated; the
 *    pointer may be NULL only with length 0. The library reads them during the call only.
 *  - Every enconf_validate_* returns an EnconfStatus. When it is not ENCONF_STATUS_OK and
 *    `error` is not NULL, *error is a new EnconfError that you own: read it with
 *    enconf_error_code / _message / _field and release it with enconf_error_free. On success
 *    *error is set to NULL. Pass NULL for `error` when you need the status only.
 *  - The strings an error returns are NUL-terminated UTF-8 owned by that error: valid until
 *    enconf_error_free. enconf_version's string is static; never free it.
 *  - No panic crosses the boundary: a failure inside the library answers
 *    ENCONF_STATUS_INTERNAL. Every function may be called from any thread.
 */
#ifndef ENCONF_H
#define ENCONF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "enconf_api.h"

#ifdef __cplusplus
}
#endif

#endif /* ENCONF_H */
