/* The controller client from C, run by tests/client_c.rs under AddressSanitizer (leaks
 * included): adds a server and two accounts, pages through the accounts, and shows one
 * refusal. Usage: client <controller URL> <admin token> <agent URL> <agent token> */
#include <stdio.h>
#include <string.h>

#include "enconf.h"

static int failed(EnconfStatus status, EnconfError *error, const char *what) {
    if (status == ENCONF_STATUS_OK) {
        return 0;
    }
    const char *field = enconf_error_field(error);
    printf("%s: status %d, %s (HTTP %u) at %s\n", what, (int)status, enconf_error_code(error),
           (unsigned)enconf_error_http_status(error), field ? field : "-");
    enconf_error_free(error);
    return 1;
}

/* Calls one client function with `input`; prints the JSON it answers, prefixed by `what`. */
static int call(EnconfStatus (*fn)(const EnconfClient *, const char *, size_t, char **, size_t *,
                                   EnconfError **),
                const EnconfClient *client, const char *what, const char *input) {
    char *out = NULL;
    size_t out_len = 0;
    EnconfError *error = NULL;
    /* The call first: `error` is read only after it has set it. */
    EnconfStatus status = fn(client, input, strlen(input), &out, &out_len, &error);
    if (failed(status, error, what)) {
        return 1;
    }
    printf("%s: %zu bytes, %s\n", what, out_len, strlen(out) == out_len ? "whole" : "cut");
    enconf_string_free(out);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s URL TOKEN AGENT_URL AGENT_TOKEN\n", argv[0]);
        return 2;
    }
    EnconfClient *client = NULL;
    EnconfError *error = NULL;
    EnconfStatus status = enconf_client_new(argv[1], strlen(argv[1]), argv[2], strlen(argv[2]),
                                            NULL, 0, 10000, &client, &error);
    if (failed(status, error, "client")) {
        return 1;
    }
    char body[1024];
    snprintf(body, sizeof body,
             "{\"name\": \"web1\", \"hostname\": \"web1.example.com\", \"agent_url\": \"%s\", "
             "\"agent_token\": \"%s\", \"roles\": [\"web\", \"mail\", \"dns\", \"db\"]}",
             argv[3], argv[4]);
    int bad = call(enconf_client_create_server, client, "server", body);
    bad |= call(enconf_client_create_account, client, "shop",
                "{\"username\": \"shop\", \"domains\": [\"shop.example\"]}");
    bad |= call(enconf_client_create_account, client, "blog",
                "{\"username\": \"blog\", \"domains\": [\"blog.example\"]}");
    /* Refused by the controller: the user name is taken. */
    call(enconf_client_create_account, client, "again",
         "{\"username\": \"shop\", \"domains\": [\"other.example\"]}");
    /* Refused here: a parameter the lists do not take. */
    call(enconf_client_list_accounts, client, "list", "colour=red");
    bad |= call(enconf_client_list_accounts, client, "page", "limit=1");
    bad |= call(enconf_client_list_servers, client, "servers", "");
    enconf_client_free(client);
    return bad;
}
