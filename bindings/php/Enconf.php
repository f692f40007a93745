<?php
// enconf for PHP panels: the C library through FFI, in PHP terms. Validation answers and the
// controller's refusals become Enconf\Error exceptions (with the field at fault), bodies go in
// and come out as PHP arrays, and every string and error the library hands out is freed here.
//
//   require "Enconf.php";
//   $enconf = Enconf\Library::load("/usr/lib/libenconf.so", "/usr/include/enconf_api.h"); // CLI
//   $enconf = Enconf\Library::scope("enconf");                          // ffi.preload (web SAPIs)
//   $enconf->validateDomain("shop.example");                            // throws Enconf\Error
//   $panel = $enconf->client("https://panel.example:8080", $adminToken);
//   $account = $panel->createAccount(["username" => "shop", "domains" => ["shop.example"]]);

declare(strict_types=1);

namespace Enconf;

/** A refusal: `code` as the API's (`invalid`, `duplicate`, `unauthorized`, `unreachable`…),
 *  `field` the field at fault (or null), `httpStatus` the controller's (0 when the answer
 *  did not come from it). */
final class Error extends \Exception
{
    public function __construct(
        public readonly int $status,
        public readonly string $errorCode,
        string $message,
        public readonly ?string $field,
        public readonly int $httpStatus,
    ) {
        parent::__construct($message, $status);
    }
}

final class Library
{
    private function __construct(private readonly \FFI $ffi)
    {
    }

    /** The library at `$library`, declared by the header `$header` (needs ffi.enable=1). */
    public static function load(string $library, string $header): self
    {
        return new self(\FFI::cdef(file_get_contents($header), $library));
    }

    /** The library a `ffi.preload` header declared under `FFI_SCOPE("$scope")`. */
    public static function scope(string $scope = "enconf"): self
    {
        return new self(\FFI::scope($scope));
    }

    public function version(): string
    {
        return $this->ffi->enconf_version();
    }

    public function validateDomain(string $domain): void
    {
        $this->check("enconf_validate_domain", $domain);
    }

    public function validateUsername(string $username): void
    {
        $this->check("enconf_validate_username", $username);
    }

    public function validateMailAddress(string $address): void
    {
        $this->check("enconf_validate_mail_address", $address);
    }

    /** @param array<string, mixed> $server the body of POST /api/v1/servers */
    public function validateServer(array $server): void
    {
        $this->check("enconf_validate_server_input", json_encode($server, JSON_THROW_ON_ERROR));
    }

    /** @param array<string, mixed> $account the body of POST /api/v1/accounts */
    public function validateAccount(array $account): void
    {
        $this->check("enconf_validate_account_input", json_encode($account, JSON_THROW_ON_ERROR));
    }

    /** A client of the controller at `$url` with an administrator token. */
    public function client(string $url, string $token, ?string $caFile = null, int $timeoutMs = 0): Client
    {
        $client = $this->ffi->new("EnconfClient*");
        $error = $this->ffi->new("EnconfError*");
        $status = $this->ffi->enconf_client_new(
            $url, strlen($url), $token, strlen($token),
            $caFile, $caFile === null ? 0 : strlen($caFile),
            $timeoutMs, \FFI::addr($client), \FFI::addr($error),
        );
        $this->raise($status, $error);
        return new Client($this, $client);
    }

    /** @internal Calls `$fn(..., $input, len, &out, &out_len, &error)` and decodes the JSON. */
    public function callJson(string $fn, array $before, string $input): array
    {
        $out = $this->ffi->new("char*");
        $len = $this->ffi->new("size_t");
        $error = $this->ffi->new("EnconfError*");
        $status = $this->ffi->$fn(...[...$before, $input, strlen($input),
            \FFI::addr($out), \FFI::addr($len), \FFI::addr($error)]);
        $this->raise($status, $error);
        try {
            return json_decode(\FFI::string($out, $len->cdata), true, 512, JSON_THROW_ON_ERROR);
        } finally {
            $this->ffi->enconf_string_free($out);
        }
    }

    /** @internal */
    public function free(\FFI\CData $client): void
    {
        $this->ffi->enconf_client_free($client);
    }

    private function check(string $fn, string $input): void
    {
        $error = $this->ffi->new("EnconfError*");
        $status = $this->ffi->$fn($input, strlen($input), \FFI::addr($error));
        $this->raise($status, $error);
    }

    /** Throws the error of a call that did not answer OK, after freeing it. */
    private function raise(int $status, \FFI\CData $error): void
    {
        if ($status === $this->ffi->ENCONF_STATUS_OK) {
            return;
        }
        // PHP's FFI copies a returned `const char *` into a PHP string (NULL: null).
        $e = new Error(
            $status,
            $this->ffi->enconf_error_code($error),
            $this->ffi->enconf_error_message($error),
            $this->ffi->enconf_error_field($error),
            $this->ffi->enconf_error_http_status($error),
        );
        $this->ffi->enconf_error_free($error);
        throw $e;
    }
}

/** The controller's Management API. Lists answer one page: ["items" => [...], "next" => cursor
 *  or null]; pass the cursor back as "after" for the next one. */
final class Client
{
    public function __construct(private readonly Library $library, private ?\FFI\CData $client)
    {
    }

    public function __destruct()
    {
        if ($this->client !== null) {
            $this->library->free($this->client);
            $this->client = null;
        }
    }

    /** @param array<string, mixed> $server the body of POST /api/v1/servers */
    public function createServer(array $server): array
    {
        return $this->library->callJson("enconf_client_create_server", [$this->client],
            json_encode($server, JSON_THROW_ON_ERROR));
    }

    /** @param array<string, string|int> $query limit, after */
    public function listServers(array $query = []): array
    {
        return $this->library->callJson("enconf_client_list_servers", [$this->client],
            http_build_query($query));
    }

    /** @param array<string, mixed> $account the body of POST /api/v1/accounts */
    public function createAccount(array $account): array
    {
        return $this->library->callJson("enconf_client_create_account", [$this->client],
            json_encode($account, JSON_THROW_ON_ERROR));
    }

    /** @param array<string, string|int> $query limit, after, server_id, role, q */
    public function listAccounts(array $query = []): array
    {
        return $this->library->callJson("enconf_client_list_accounts", [$this->client],
            http_build_query($query));
    }
}
