<?php
// What a web request does once preload.php was preloaded: the library from the "enconf" scope.
$enconf = FFI::scope("enconf");
$error = $enconf->new("EnconfError*");
$input = "shop.example\nserver_name evil";
$status = $enconf->enconf_validate_domain($input, strlen($input), FFI::addr($error));
echo $status === $enconf->ENCONF_STATUS_INVALID
    ? "refused: " . $enconf->enconf_error_field($error) . " " . $enconf->enconf_error_message($error) . "\n"
    : "accepted\n";
$enconf->enconf_error_free($error);
