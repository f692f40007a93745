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

use std::fmt::Write;
use std::path::PathBuf;

use enconf_core::domain::{AccountSpec, PhpVersion, UserName};

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
    pub socket: PathBuf,
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
            socket: layout
                .php_fpm_socket_dir
                .join(format!("enconf-{user}.sock")),
            docroot: home.join("public"),
            tmp: home.join("tmp"),
            logs: home.join("logs"),
            home,
        }
    }
}

/// The PHP version an account runs: its own, or the server default.
pub fn php_version(layout: &Layout, spec: &AccountSpec) -> PhpVersion {
    spec.php_version.unwrap_or(layout.php_default_version)
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

/// The nginx server block of an account: every domain, PHP through the account's pool.
pub fn vhost(layout: &Layout, spec: &AccountSpec) -> String {
    let mut out = String::with_capacity(1024);
    vhost_into(&mut out, layout, spec);
    out
}

/// [`vhost`] into a buffer, for callers that render many.
pub fn vhost_into(out: &mut String, layout: &Layout, spec: &AccountSpec) {
    let user = &spec.username;
    let paths = AccountPaths::new(layout, user, php_version(layout, spec));
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "# Managed by enconf for account {user}. Do not edit: the agent rewrites this file.\n\
         server {{\n    listen {port};\n    server_name",
        port = layout.http_port,
    );
    for domain in &spec.domains {
        out.push(' ');
        out.push_str(domain.as_str());
    }
    let _ = write!(
        out,
        ";\n    root {docroot};\n\
         \x20   index index.php index.html;\n\
         \x20   access_log {logdir}/{ACCESS_LOG} {LOG_FORMAT};\n\
         \x20   client_max_body_size {upload}m;\n\
         \n\
         \x20   location / {{\n\
         \x20       try_files $uri $uri/ /index.php$is_args$args;\n\
         \x20   }}\n\
         \n\
         \x20   location ~ \\.php$ {{\n\
         \x20       try_files $uri =404;\n\
         \x20       include {params};\n\
         \x20       fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n\
         \x20       fastcgi_pass unix:{socket};\n\
         \x20       fastcgi_read_timeout {timeout}s;\n\
         \x20   }}\n\
         \n\
         \x20   location ~ /\\.(?!well-known/) {{\n\
         \x20       deny all;\n\
         \x20   }}\n\
         }}\n",
        docroot = paths.docroot.display(),
        logdir = layout.nginx_log_dir.display(),
        upload = spec.php.upload_max_mb(),
        params = layout.nginx_fastcgi_params.display(),
        socket = paths.socket.display(),
        timeout = spec.php.max_execution_time_s() + 30,
    );
}

/// The PHP-FPM pool of an account: its own user, its own socket (readable by the web server
/// only), on-demand workers, limits, and PHP confined to its home.
pub fn fpm_pool(layout: &Layout, spec: &AccountSpec) -> String {
    let mut out = String::with_capacity(1024);
    fpm_pool_into(&mut out, layout, spec);
    out
}

/// [`fpm_pool`] into a buffer.
pub fn fpm_pool_into(out: &mut String, layout: &Layout, spec: &AccountSpec) {
    let user = &spec.username;
    let php = spec.php;
    let paths = AccountPaths::new(layout, user, php_version(layout, spec));
    let _ = write!(
        out,
        "; Managed by enconf for account {user}. Do not edit: the agent rewrites this file.\n\
         [{user}]\n\
         user = {user}\n\
         group = {user}\n\
         listen = {socket}\n\
         listen.owner = {web}\n\
         listen.group = {web}\n\
         listen.mode = 0660\n\
         pm = ondemand\n\
         pm.max_children = {children}\n\
         pm.process_idle_timeout = 10s\n\
         pm.max_requests = 500\n\
         chdir = /\n\
         php_admin_value[memory_limit] = {memory}M\n\
         php_admin_value[upload_max_filesize] = {upload}M\n\
         php_admin_value[post_max_size] = {upload}M\n\
         php_admin_value[max_execution_time] = {time}\n\
         php_admin_value[open_basedir] = {home}/\n\
         php_admin_value[upload_tmp_dir] = {tmp}\n\
         php_admin_value[session.save_path] = {tmp}\n\
         php_admin_value[sys_temp_dir] = {tmp}\n\
         php_admin_flag[log_errors] = on\n\
         php_admin_value[error_log] = {logs}/php-error.log\n",
        socket = paths.socket.display(),
        web = layout.web_server_user,
        children = php.max_children(),
        memory = php.memory_limit_mb(),
        upload = php.upload_max_mb(),
        time = php.max_execution_time_s(),
        home = paths.home.display(),
        tmp = paths.tmp.display(),
        logs = paths.logs.display(),
    );
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
