/*
 * Runs each case of a table through enconf's C interface and prints one line per case:
 *   status <TAB> code <TAB> field <TAB> message
 * ("-" for what is NULL). The table is binary: per case a kind byte (d domain, u username,
 * m mail address, s server JSON, a account JSON), a 4-byte little-endian length, the bytes.
 * Each case is also run with a NULL `error` (the status must be the same), and the calls the
 * table cannot express are checked at the start. Exit status 0 when every check held.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enconf.h"

typedef EnconfStatus (*validator)(const char *, size_t, EnconfError **);

static validator pick(int kind) {
    switch (kind) {
    case 'd': return enconf_validate_domain;
    case 'u': return enconf_validate_username;
    case 'm': return enconf_validate_mail_address;
    case 's': return enconf_validate_server_input;
    case 'a': return enconf_validate_account_input;
    default: return NULL;
    }
}

static const char *or_dash(const char *s) { return s ? s : "-"; }

static int fail(const char *what) {
    fprintf(stderr, "table: %s\n", what);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) return fail("usage: table <cases file>");

    /* What the table cannot say. */
    const char *version = enconf_version();
    if (version == NULL || strlen(version) == 0) return fail("no version");
    EnconfError *error = (EnconfError *)1;
    if (enconf_validate_domain(NULL, 0, &error) != ENCONF_STATUS_INVALID || error == NULL)
        return fail("an empty domain (NULL, 0) is not invalid");
    enconf_error_free(error);
    error = (EnconfError *)1;
    if (enconf_validate_domain(NULL, 5, &error) != ENCONF_STATUS_BAD_ARGUMENT || error == NULL ||
        strcmp(enconf_error_code(error), "bad_argument") != 0 || enconf_error_field(error) != NULL)
        return fail("NULL with a length is not a bad argument");
    enconf_error_free(error);
    error = (EnconfError *)1;
    if (enconf_validate_domain("shop.example", 12, &error) != ENCONF_STATUS_OK || error != NULL)
        return fail("a valid domain does not clear *error");
    if (enconf_error_code(NULL) != NULL || enconf_error_message(NULL) != NULL ||
        enconf_error_field(NULL) != NULL)
        return fail("accessors of NULL are not NULL");
    enconf_error_free(NULL);

    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) return fail("cannot open the cases");
    int kind;
    while ((kind = fgetc(f)) != EOF) {
        unsigned char l[4];
        if (fread(l, 1, 4, f) != 4) return fail("truncated length");
        size_t len = (size_t)l[0] | (size_t)l[1] << 8 | (size_t)l[2] << 16 | (size_t)l[3] << 24;
        /* Exactly len bytes, no NUL after them: the library must not read past the length. */
        char *input = malloc(len ? len : 1);
        if (input == NULL) return fail("out of memory");
        if (len && fread(input, 1, len, f) != len) return fail("truncated input");
        validator v = pick(kind);
        if (v == NULL) return fail("unknown kind");

        EnconfError *err = NULL;
        EnconfStatus status = v(input, len, &err);
        printf("%d\t%s\t%s\t%s\n", (int)status, or_dash(enconf_error_code(err)),
               or_dash(enconf_error_field(err)), or_dash(enconf_error_message(err)));
        if ((status == ENCONF_STATUS_OK) != (err == NULL)) return fail("error set on success");
        enconf_error_free(err);
        if (v(input, len, NULL) != status) return fail("status differs without an error");
        free(input);
    }
    fclose(f);
    return 0;
}
