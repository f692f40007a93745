<?php
// enconf's rules from PHP, through FFI: php -d ffi.enable=1 validate.php [libenconf.so] [enconf_api.h]
// (from the repository's root the defaults find a `cargo build` of bindings/c).
$root = dirname(__DIR__, 2);
$lib = $argv[1] ?? "$root/target/debug/libenconf.so";
$header = $argv[2] ?? "$root/bindings/c/include/enconf_api.h";
$enconf = FFI::cdef(file_get_contents($header), $lib);

// One check: null when valid, else [code, field, message]. The error is freed here.
function check(FFI $enconf, string $fn, string $input): ?array {
    $error = $enconf->new("EnconfError*");
    $status = $enconf->$fn($input, strlen($input), FFI::addr($error));
    if ($status === $enconf->ENCONF_STATUS_OK) {
        return null;
    }
    // PHP's FFI copies a returned `const char *` into a PHP string (NULL: null).
    $answer = [
        $enconf->enconf_error_code($error),
        $enconf->enconf_error_field($error),
        $enconf->enconf_error_message($error),
    ];
    $enconf->enconf_error_free($error);
    return $answer;
}

echo "enconf ", $enconf->enconf_version(), "\n";
foreach (["shop.example", "shop.example;\nserver_name evil"] as $domain) {
    $refused = check($enconf, "enconf_validate_domain", $domain);
    echo json_encode($domain), $refused === null ? " is valid\n" : " is refused: {$refused[1]} {$refused[2]}\n";
}
$account = json_encode(["username" => "shop", "domains" => ["shop.example", "bad domain"]]);
[$code, $field, $message] = check($enconf, "enconf_validate_account_input", $account);
echo "account: $code at $field: $message\n";
