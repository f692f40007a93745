//! Rendering: pure functions from validated specs to config file bytes. The only place that
//! produces config text.
//!
//! Every value written comes from a validated type ([`UserName`], [`DomainName`],
//! [`PhpVersion`], numbers) or from the [`Layout`], whose paths are checked at start-up, so no
//! input can add a directive, close a block or start a new pool section.
//!
//! Logging layout: all vhosts share one access log whose format starts with `$host`
//! ([`ACCESS_LOG`], format [`LOG_FORMAT`]), and the server-wide error log. nginx opens a log
//! path once however many server blocks name it, so 10,000 sites cost one descriptor rather
//! than 20,000. Each account's PHP errors go to a file in its home, opened by its own workers.

use std::path::PathBuf;

use enconf_core::domain::{AccountSpec, DomainName, PhpVersion, UserName};

use crate::config::Layout;

/// The http-level file the agent writes into the sites directory, first in include order.
pub const HTTP_CONF_FILE: &str = "enconf-00-http.conf";
/// The name of the shared log format.
pub const LOG_FORMAT: &str = "enconf_vhost";
/// The shared access log, in the nginx log directory.
pub const ACCESS_LOG: &str = "enconf-access.log";

/// Where an account's files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountPaths {
    pub vhost: PathBuf,
    pub pool: PathBuf,
    pub home: PathBuf,
    pub docroot: PathBuf,
    pub tmp: PathBuf,
    pub logs: PathBuf,
}

impl AccountPaths {
    pub fn new(layout: &Layout, user: &UserName, php: PhpVersion) -> Self {
        let home = layout.web_root_base.join(user.as_str());
        Self {
            vhost: layout.nginx_sites_dir.join(format!("enconf-{user}.conf")),
            pool: layout
                .php_fpm_pool_dir(php)
                .join(format!("enconf-{user}.conf")),
            docroot: home.join("public"),
            tmp: home.join("tmp"),
            logs: home.join("logs"),
            home,
        }
    }
}

/// The http-level settings every vhost relies on: the shared log format and server-name hash
/// sizes that hold many thousands of names.
pub fn http_conf(_layout: &Layout) -> String {
    format!(
        "# Managed by enconf. Do not edit: the agent rewrites this file.\n\
         log_format {LOG_FORMAT} '$host $remote_addr - $remote_user [$time_local] \"$request\" \
         $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $request_time';\n\
         server_names_hash_max_size 131072;\n\
         server_names_hash_bucket_size 128;\n"
    )
}

/// The file of the server's own names (panel, ACME answers), after the http-level file.
pub const PANEL_CONF_FILE: &str = "enconf-01-panel.conf";

/// The server's own names as nginx serves them: ACME HTTP-01 answers on the HTTP port, and
/// with a certificate an HTTPS server block (proxying to the panel when one is configured).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PanelSite {
    pub names: Vec<DomainName>,
    /// Whether `panel.crt` / `panel.key` are installed.
    pub tls: bool,
    /// Where Roundcube is served in the HTTPS server block (`/webmail`), if anywhere.
    #[serde(default)]
    pub webmail: Option<enconf_core::domain::UrlPath>,
    /// Where phpMyAdmin is served in the HTTPS server block (`/phpmyadmin`), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phpmyadmin: Option<enconf_core::domain::UrlPath>,
}

/// The PHP-FPM pool that runs Roundcube, as the web server's user.
pub const WEBMAIL_POOL_FILE: &str = "enconf-webmail.conf";

/// The socket of the webmail pool.
pub fn webmail_socket(layout: &Layout) -> PathBuf {
    layout.php_fpm_socket_dir.join("enconf-webmail.sock")
}

/// The PHP-FPM pool of Roundcube: the web server's user (Debian's Roundcube files and
/// database belong to it), on-demand workers.
pub fn webmail_pool(layout: &Layout) -> String {
    app_pool(layout, "webmail", &webmail_socket(layout))
}

/// The PHP-FPM pool that runs phpMyAdmin, as the web server's user.
pub const PHPMYADMIN_POOL_FILE: &str = "enconf-phpmyadmin.conf";

/// The socket of the phpMyAdmin pool.
pub fn phpmyadmin_socket(layout: &Layout) -> PathBuf {
    layout.php_fpm_socket_dir.join("enconf-phpmyadmin.sock")
}

/// The PHP-FPM pool of phpMyAdmin: the web server's user (Debian's phpMyAdmin settings and
/// its temporary directory belong to it), on-demand workers.
pub fn phpmyadmin_pool(layout: &Layout) -> String {
    app_pool(layout, "phpmyadmin", &phpmyadmin_socket(layout))
}

/// The pool `enconf-<app>` of a server-wide PHP application, on `socket`.
fn app_pool(layout: &Layout, app: &str, socket: &std::path::Path) -> String {
    format!(
        "; Managed by enconf: {app}. Do not edit: the agent rewrites this file.\n\
         [enconf-{app}]\nuser = {web}\ngroup = {web}\nlisten = {socket}\n\
         listen.owner = {web}\nlisten.group = {web}\nlisten.mode = 0660\n\
         pm = ondemand\npm.max_children = 10\npm.process_idle_timeout = 10s\n\
         php_admin_value[upload_max_filesize] = 25M\nphp_admin_value[post_max_size] = 26M\n",
        web = layout.web_server_user,
        socket = socket.display(),
    )
}

/// The webmail locations of the panel's HTTPS server block: `path` redirects to `path/`, where
/// Roundcube's document root is served and its PHP runs in the webmail pool.
fn webmail_locations(layout: &Layout, path: &enconf_core::domain::UrlPath) -> String {
    app_locations(layout, path, &layout.roundcube_dir, &webmail_socket(layout))
}

/// The phpMyAdmin locations, as the webmail ones.
fn phpmyadmin_locations(layout: &Layout, path: &enconf_core::domain::UrlPath) -> String {
    app_locations(
        layout,
        path,
        &layout.phpmyadmin_dir,
        &phpmyadmin_socket(layout),
    )
}

/// `path` redirects to `path/`, where `dir` is served and its PHP runs on `socket`.
fn app_locations(
    layout: &Layout,
    path: &enconf_core::domain::UrlPath,
    dir: &std::path::Path,
    socket: &std::path::Path,
) -> String {
    format!(
        "\n    location = {path} {{\n        return 301 {path}/;\n    }}\n\n    \
         location ^~ {path}/ {{\n        alias {dir}/;\n        index index.php;\n        \
         client_max_body_size 26m;\n        \
         location ~ \\.php$ {{\n            include {params};\n            \
         fastcgi_param SCRIPT_FILENAME $request_filename;\n            \
         fastcgi_param HTTPS on;\n            \
         fastcgi_pass unix:{socket};\n        }}\n    }}\n",
        path = path.as_str(),
        dir = dir.display(),
        params = layout.nginx_fastcgi_params.display(),
        socket = socket.display(),
    )
}

/// The certificate and key paths of a kind (`panel`, `mail`).
pub fn cert_paths(layout: &Layout, kind: &str) -> (PathBuf, PathBuf) {
    (
        layout.cert_dir.join(format!("{kind}.crt")),
        layout.cert_dir.join(format!("{kind}.key")),
    )
}

/// The panel server blocks. Every value is a validated name or a checked layout value.
pub fn panel_vhost(layout: &Layout, site: &PanelSite) -> String {
    let names: String = site.names.iter().map(|n| format!(" {n}")).collect();
    let (cert, key) = cert_paths(layout, "panel");
    let https_target = match layout.https_port {
        443 => "https://$host$request_uri".to_owned(),
        port => format!("https://$host:{port}$request_uri"),
    };
    let plain = if site.tls {
        format!("return 301 {https_target};")
    } else {
        "return 404;".to_owned()
    };
    let mut out = format!(
        "# Managed by enconf: the server's own names. Do not edit: the agent rewrites this file.\n\
         server {{\n    listen {http};\n    server_name{names};\n\n    \
         location ^~ /.well-known/acme-challenge/ {{\n        root {acme};\n        \
         default_type text/plain;\n        try_files $uri =404;\n    }}\n\n    \
         location / {{\n        {plain}\n    }}\n}}\n",
        http = layout.http_port,
        acme = layout.acme_root.display(),
    );
    if site.tls {
        let upstream = match &layout.panel_upstream {
            Some(u) => format!(
                "proxy_pass {u};\n        proxy_set_header Host $host;\n        \
                 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n        \
                 proxy_set_header X-Forwarded-Proto https;"
            ),
            None => "return 404;".to_owned(),
        };
        out.push_str(&format!(
            "server {{\n    listen {https} ssl;\n    server_name{names};\n    \
             ssl_certificate {cert};\n    ssl_certificate_key {key};\n    \
             ssl_protocols TLSv1.2 TLSv1.3;\n{webmail}{phpmyadmin}\n    location / {{\n        {upstream}\n    }}\n}}\n",
            https = layout.https_port,
            cert = cert.display(),
            key = key.display(),
            webmail = site
                .webmail
                .as_ref()
                .map(|p| webmail_locations(layout, p))
                .unwrap_or_default(),
            phpmyadmin = site
                .phpmyadmin
                .as_ref()
                .map(|p| phpmyadmin_locations(layout, p))
                .unwrap_or_default(),
        ));
    }
    out
}

/// The Dovecot settings file the agent writes into `conf.d` (last in include order).
pub const DOVECOT_TLS_FILE: &str = "99-enconf-tls.conf";

/// `main.cf` with the TLS settings pointing at `cert` and `key` (STARTTLS offered), the rest
/// kept (see [`crate::settings`]).
pub fn postfix_tls(main_cf: &str, cert: &std::path::Path, key: &std::path::Path) -> String {
    crate::settings::set(
        main_cf,
        crate::settings::Syntax::Postfix,
        &[
            ("smtpd_tls_cert_file", cert.display().to_string()),
            ("smtpd_tls_key_file", key.display().to_string()),
            ("smtpd_tls_security_level", "may".to_owned()),
        ],
        "the mail certificate",
    )
}

/// Dovecot's TLS settings pointing at `cert` and `key`.
pub fn dovecot_tls(cert: &std::path::Path, key: &std::path::Path) -> String {
    format!(
        "# Managed by enconf: the mail certificate. Do not edit: the agent rewrites this file.\n\
         ssl = yes\nssl_cert = <{}\nssl_key = <{}\n",
        cert.display(),
        key.display()
    )
}

/// The nginx server block of an account. `%name%` marks a value: layout values are filled in
/// once per [`Renderer`], account values at each render.
const VHOST: &str = "\
# Managed by enconf for account %user%. Do not edit: the agent rewrites this file.
server {
    listen %port%;
    server_name%domains%;
    root %base%/%user%/public;
    index index.php index.html;
    access_log %logdir%/enconf-access.log enconf_vhost;
    client_max_body_size %upload%m;

    location / {
        try_files $uri $uri/ /index.php$is_args$args;
    }

    location ~ \\.php$ {
        try_files $uri =404;
        include %params%;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_pass unix:%sockets%/enconf-%user%.sock;
        fastcgi_read_timeout %read_timeout%s;
    }

    location ~ /\\.(?!well-known/) {
        deny all;
    }
}
";

/// The PHP-FPM pool of an account: its own user, its own socket (readable by the web server
/// only), on-demand workers, limits, and PHP confined to its home.
const POOL: &str = "\
; Managed by enconf for account %user%. Do not edit: the agent rewrites this file.
[%user%]
user = %user%
group = %user%
listen = %sockets%/enconf-%user%.sock
listen.owner = %web%
listen.group = %web%
listen.mode = 0660
pm = ondemand
pm.max_children = %children%
pm.process_idle_timeout = 10s
pm.max_requests = 500
chdir = /
php_admin_value[memory_limit] = %memory%M
php_admin_value[upload_max_filesize] = %upload%M
php_admin_value[post_max_size] = %upload%M
php_admin_value[max_execution_time] = %max_time%
php_admin_value[open_basedir] = %base%/%user%/
php_admin_value[upload_tmp_dir] = %base%/%user%/tmp
php_admin_value[session.save_path] = %base%/%user%/tmp
php_admin_value[sys_temp_dir] = %base%/%user%/tmp
php_admin_flag[log_errors] = on
php_admin_value[error_log] = %base%/%user%/logs/php-error.log
";

/// A value of the account, filled in at each render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    User,
    /// Each domain, preceded by a space.
    Domains,
    Upload,
    ReadTimeout,
    Children,
    Memory,
    MaxTime,
}

impl Slot {
    fn named(name: &str) -> Option<Slot> {
        Some(match name {
            "user" => Slot::User,
            "domains" => Slot::Domains,
            "upload" => Slot::Upload,
            "read_timeout" => Slot::ReadTimeout,
            "children" => Slot::Children,
            "memory" => Slot::Memory,
            "max_time" => Slot::MaxTime,
            _ => return None,
        })
    }
}

/// A template with the layout filled in: literal text, then the slot that follows it.
#[derive(Debug, Clone)]
struct Compiled(Vec<(String, Option<Slot>)>);

impl Compiled {
    fn new(template: &str, layout: &[(&str, &str)]) -> Self {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(start) = rest.find('%') {
            literal.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            // Templates are ours: every '%' opens a marker that a later '%' closes.
            let end = after.find('%').unwrap_or(after.len());
            let name = &after[..end];
            if let Some(slot) = Slot::named(name) {
                parts.push((std::mem::take(&mut literal), Some(slot)));
            } else if let Some((_, value)) = layout.iter().find(|(k, _)| *k == name) {
                literal.push_str(value);
            } else {
                // Not a marker we know: kept as written, so a typo shows in the output.
                literal.push('%');
                literal.push_str(name);
                literal.push('%');
            }
            rest = after.get(end + 1..).unwrap_or("");
        }
        literal.push_str(rest);
        parts.push((literal, None));
        Self(parts)
    }

    fn render(&self, out: &mut String, spec: &AccountSpec) {
        let php = spec.php;
        let mut num = itoa::Buffer::new();
        for (literal, slot) in &self.0 {
            out.push_str(literal);
            match slot {
                None => {}
                Some(Slot::User) => out.push_str(spec.username.as_str()),
                Some(Slot::Domains) => {
                    for domain in &spec.domains {
                        out.push(' ');
                        out.push_str(domain.as_str());
                    }
                }
                Some(Slot::Upload) => out.push_str(num.format(php.upload_max_mb())),
                Some(Slot::ReadTimeout) => {
                    out.push_str(num.format(php.max_execution_time_s() + 30))
                }
                Some(Slot::Children) => out.push_str(num.format(php.max_children())),
                Some(Slot::Memory) => out.push_str(num.format(php.memory_limit_mb())),
                Some(Slot::MaxTime) => out.push_str(num.format(php.max_execution_time_s())),
            }
        }
    }
}

/// The vhost and pool templates with the layout filled in. Rendering with it allocates nothing
/// but the growth of the output buffer.
#[derive(Debug, Clone)]
pub struct Renderer {
    vhost: Compiled,
    pool: Compiled,
    default_php: PhpVersion,
}

impl Renderer {
    pub fn new(layout: &Layout) -> Self {
        // Layout paths and names are checked at start-up to hold no '%' (nor anything else
        // outside A-Z a-z 0-9 . _ - /).
        let text = |p: &std::path::Path| p.display().to_string();
        let (port, base, logdir) = (
            layout.http_port.to_string(),
            text(&layout.web_root_base),
            text(&layout.nginx_log_dir),
        );
        let (params, sockets) = (
            text(&layout.nginx_fastcgi_params),
            text(&layout.php_fpm_socket_dir),
        );
        let values = [
            ("port", port.as_str()),
            ("base", base.as_str()),
            ("logdir", logdir.as_str()),
            ("params", params.as_str()),
            ("sockets", sockets.as_str()),
            ("web", layout.web_server_user.as_str()),
        ];
        Self {
            vhost: Compiled::new(VHOST, &values),
            pool: Compiled::new(POOL, &values),
            default_php: layout.php_default_version,
        }
    }

    /// The PHP version an account runs: its own, or the server default.
    pub fn php_version(&self, spec: &AccountSpec) -> PhpVersion {
        spec.php_version.unwrap_or(self.default_php)
    }

    /// Appends the nginx server block of an account: every domain, PHP through its pool.
    pub fn vhost_into(&self, out: &mut String, spec: &AccountSpec) {
        self.vhost.render(out, spec);
    }

    /// Appends the PHP-FPM pool of an account.
    pub fn pool_into(&self, out: &mut String, spec: &AccountSpec) {
        self.pool.render(out, spec);
    }
}

/// The nginx server block of an account.
pub fn vhost(layout: &Layout, spec: &AccountSpec) -> String {
    let mut out = String::with_capacity(1024);
    Renderer::new(layout).vhost_into(&mut out, spec);
    out
}

/// The PHP-FPM pool of an account.
pub fn fpm_pool(layout: &Layout, spec: &AccountSpec) -> String {
    let mut out = String::with_capacity(1024);
    Renderer::new(layout).pool_into(&mut out, spec);
    out
}

/// The shape of rendered config, for checking that no input changed it: what directives there
/// are and how they nest, ignoring their arguments.
pub mod shape {
    /// The directives of nginx config text as `(depth, name)`, in order; blocks count as
    /// directives. Errors on unbalanced braces or a directive left open at the end.
    pub fn nginx(conf: &str) -> Result<Vec<(usize, String)>, String> {
        let mut out = Vec::new();
        let mut depth = 0usize;
        let mut words: Vec<String> = Vec::new();
        let mut chars = conf.chars().peekable();
        let mut word = String::new();
        let flush = |word: &mut String, words: &mut Vec<String>| {
            if !word.is_empty() {
                words.push(std::mem::take(word));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '#' if word.is_empty() => {
                    for c in chars.by_ref() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                '\'' | '"' => {
                    // A quoted string is one word.
                    word.push(c);
                    for q in chars.by_ref() {
                        word.push(q);
                        if q == c {
                            break;
                        }
                    }
                }
                '\\' => {
                    word.push(c);
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
                ';' | '{' => {
                    flush(&mut word, &mut words);
                    let name = words
                        .first()
                        .cloned()
                        .ok_or(format!("'{c}' without a directive"))?;
                    out.push((depth, name));
                    words.clear();
                    if c == '{' {
                        depth += 1;
                    }
                }
                '}' => {
                    flush(&mut word, &mut words);
                    if !words.is_empty() {
                        return Err("directive not ended before '}'".into());
                    }
                    depth = depth.checked_sub(1).ok_or("unbalanced '}'")?;
                }
                c if c.is_whitespace() => flush(&mut word, &mut words),
                c => word.push(c),
            }
        }
        flush(&mut word, &mut words);
        if depth != 0 || !words.is_empty() {
            return Err("unterminated block or directive".into());
        }
        Ok(out)
    }

    /// The section headers and keys of PHP-FPM (INI) config text, in order.
    pub fn ini(conf: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for line in conf.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                if !line.ends_with(']') || line[1..line.len() - 1].contains(['[', ']']) {
                    return Err(format!("bad section header {line:?}"));
                }
                out.push("[]".to_owned());
            } else {
                let (key, _) = line.split_once('=').ok_or(format!("no '=' in {line:?}"))?;
                out.push(key.trim().to_owned());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod mail_tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn postfix_settings_are_replaced_in_place_or_appended() {
        let (cert, key) = (Path::new("/ssl/mail.crt"), Path::new("/ssl/mail.key"));
        let main_cf = "myhostname = mx.example.com\nsmtpd_tls_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem\n  # a comment\nsmtpd_tls_key_file = /etc/ssl/private/a.key\n    /continued/line\nsmtpd_tls_security_level=may\nsmtpd_tls_cert_file_extra = keep\n";
        let out = postfix_tls(main_cf, cert, key);
        assert_eq!(
            out,
            "myhostname = mx.example.com\nsmtpd_tls_cert_file = /ssl/mail.crt\n  # a comment\nsmtpd_tls_key_file = /ssl/mail.key\nsmtpd_tls_security_level = may\nsmtpd_tls_cert_file_extra = keep\n"
        );
        assert_eq!(postfix_tls(&out, cert, key), out, "idempotent");
        let appended = postfix_tls("myhostname = a.example", cert, key);
        assert_eq!(
            appended,
            "myhostname = a.example\n# Managed by enconf: the mail certificate.\nsmtpd_tls_cert_file = /ssl/mail.crt\nsmtpd_tls_key_file = /ssl/mail.key\nsmtpd_tls_security_level = may\n"
        );
        // A setting given twice keeps one definition.
        let twice = postfix_tls(
            "smtpd_tls_key_file = a\nsmtpd_tls_key_file = b\n",
            cert,
            key,
        );
        assert_eq!(twice.matches("smtpd_tls_key_file").count(), 1, "{twice}");
    }
}
