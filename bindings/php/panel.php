<?php
// A panel's calls to enconf from PHP: check the input with enconf's rules, then add a server
// and an account through the controller and list the accounts a page at a time.
//
//   ENCONF_URL=http://127.0.0.1:8080 ENCONF_ADMIN_TOKEN=… AGENT_URL=http://web1:50000 AGENT_TOKEN=… \
//     php -d ffi.enable=1 panel.php [libenconf.so] [enconf_api.h]
declare(strict_types=1);
require __DIR__ . "/Enconf.php";

$root = dirname(__DIR__, 2);
$enconf = Enconf\Library::load(
    $argv[1] ?? "$root/target/debug/libenconf.so",
    $argv[2] ?? "$root/bindings/c/include/enconf_api.h",
);
$panel = $enconf->client(getenv("ENCONF_URL"), getenv("ENCONF_ADMIN_TOKEN"));

// A form's input is checked here, as the controller will, before any request.
try {
    $enconf->validateAccount(["username" => "shop", "domains" => ["shop.example", "evil.example;"]]);
} catch (Enconf\Error $e) {
    echo "form: {$e->field}: {$e->getMessage()}\n";
}

$server = $panel->createServer([
    "name" => "web1",
    "hostname" => "web1.example.com",
    "agent_url" => getenv("AGENT_URL"),
    "agent_token" => getenv("AGENT_TOKEN"),
    "roles" => ["web", "mail", "dns", "db"],
]);
echo "server {$server['id']} {$server['name']}: ", $server["reachable"] ? "reachable" : "offline", "\n";

foreach (["shop", "blog", "wiki"] as $user) {
    $account = $panel->createAccount(["username" => $user, "domains" => ["$user.example"]]);
    echo "account {$account['username']} on server {$account['server_id']}\n";
}
try {
    $panel->createAccount(["username" => "shop", "domains" => ["other.example"]]);
} catch (Enconf\Error $e) {
    echo "controller: {$e->errorCode} ({$e->httpStatus}) at {$e->field}\n";
}

$query = ["limit" => 2];
do {
    $page = $panel->listAccounts($query);
    echo "page: ", implode(", ", array_column($page["items"], "username")), "\n";
    $query["after"] = $page["next"];
} while ($page["next"] !== null);
