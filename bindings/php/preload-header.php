<?php
// Web SAPIs (PHP-FPM, mod_php) allow FFI only in code loaded at start-up (ffi.enable=preload,
// the default). This prints the header PHP loads then, with the scope and the library named:
//   php bindings/php/preload-header.php /usr/lib/libenconf.so > /etc/php/enconf.h
// and in php.ini:
//   ffi.preload=/etc/php/enconf.h
// Scripts then take the library with FFI::scope("enconf") (see scoped.php).
if ($argc < 2) {
    fwrite(STDERR, "usage: php preload-header.php <path of libenconf.so> [enconf_api.h]\n");
    exit(2);
}
$header = $argv[2] ?? dirname(__DIR__) . '/c/include/enconf_api.h';
echo "#define FFI_SCOPE \"enconf\"\n";
echo "#define FFI_LIB ", json_encode($argv[1], JSON_UNESCAPED_SLASHES), "\n";
echo file_get_contents($header);
