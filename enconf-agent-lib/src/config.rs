//! The agent's configuration: `/etc/netcell-webpanel-agent/config.env`, overridden by
//! environment variables of the same names.
//!
//! The file is a list of `KEY=VALUE` lines; blank lines and lines starting with `#` are skipped.
//! A value is a run of plain characters, `'single-quoted'` parts and `\x` escapes, as in POSIX
//! `sh`, so `KEY='it'\''s'` means `it's` to the agent and to a shell alike. Parsing is strict:
//! an unknown key, a key given twice, a malformed line or a missing token stops start-up with the
//! line number.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use enconf_core::domain::{AgentToken, HttpUrl, PhpVersion, RoleSet, Rule};

/// Where the agent looks for its configuration when not told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/netcell-webpanel-agent/config.env";

/// Every key the agent knows, with its default (`None`: no default).
pub const KEYS: &[(&str, Option<&str>)] = &[
    ("AGENT_TOKEN", None),
    ("AGENT_PORT", Some("50000")),
    ("AGENT_BIND", Some("0.0.0.0")),
    ("AGENT_TLS_CERT", None),
    ("AGENT_TLS_KEY", None),
    ("AGENT_TLS_CLIENT_CA", None),
    ("AGENT_MODE", Some("system")),
    ("AGENT_ROLES", Some("web")),
    (
        "AGENT_SANDBOX_ROOT",
        Some("/var/lib/netcell-webpanel-agent/sandbox"),
    ),
    ("AGENT_STATE_DIR", Some("/var/lib/netcell-webpanel-agent")),
    ("AGENT_MAX_BODY_BYTES", Some("33554432")),
    ("AGENT_NGINX_BIN", Some("/usr/sbin/nginx")),
    ("AGENT_NGINX_SITES_DIR", Some("/etc/nginx/sites-enabled")),
    ("AGENT_NGINX_PID_FILE", Some("/run/nginx.pid")),
    ("AGENT_NGINX_LOG_DIR", Some("/var/log/nginx")),
    (
        "AGENT_NGINX_FASTCGI_PARAMS",
        Some("/etc/nginx/fastcgi_params"),
    ),
    ("AGENT_HTTP_PORT", Some("80")),
    ("AGENT_WEB_SERVER_USER", Some("www-data")),
    ("AGENT_PHP_DEFAULT_VERSION", Some("8.2")),
    ("AGENT_PHP_FPM_BIN", Some("/usr/sbin/php-fpm{version}")),
    (
        "AGENT_PHP_FPM_POOL_DIR",
        Some("/etc/php/{version}/fpm/pool.d"),
    ),
    (
        "AGENT_PHP_FPM_PID_FILE",
        Some("/run/php/php{version}-fpm.pid"),
    ),
    ("AGENT_PHP_FPM_SOCKET_DIR", Some("/run/php")),
    ("AGENT_WEB_ROOT_BASE", Some("/var/www")),
    ("AGENT_HTTPS_PORT", Some("443")),
    ("AGENT_CERT_DIR", Some("/etc/netcell-webpanel-agent/ssl")),
    ("AGENT_ACME_ROOT", Some("/var/www/enconf-acme")),
    ("AGENT_PANEL_UPSTREAM", None),
    ("AGENT_POSTFIX_BIN", Some("/usr/sbin/postfix")),
    ("AGENT_POSTFIX_CONFIG_DIR", Some("/etc/postfix")),
    ("AGENT_DOVECOT_CONFIG", Some("/etc/dovecot/dovecot.conf")),
    ("AGENT_DOVECOT_CONF_D", Some("/etc/dovecot/conf.d")),
    ("AGENT_DOVECOT_PID_FILE", Some("/run/dovecot/master.pid")),
    ("AGENT_DOVECONF_BIN", Some("/usr/bin/doveconf")),
    ("AGENT_DOVECOT_GROUP", Some("dovecot")),
    ("AGENT_POSTMAP_BIN", Some("/usr/sbin/postmap")),
    ("AGENT_POSTFIX_MAP_DIR", Some("/etc/postfix/enconf")),
    ("AGENT_MAIL_USERS_DIR", Some("/etc/dovecot/enconf-users")),
    ("AGENT_VMAIL_DIR", Some("/var/vmail")),
    ("AGENT_VMAIL_USER", Some("vmail")),
    ("AGENT_MAIL_DEFAULT_QUOTA_MB", Some("1024")),
    ("AGENT_MAIL_LMTP_PORT", Some("24")),
    ("AGENT_MAIL_POLICY_PORT", Some("12340")),
    ("AGENT_MAIL_AUTH_PORT", Some("12345")),
    ("AGENT_OPENDKIM_CONFIG", Some("/etc/opendkim.conf")),
    ("AGENT_OPENDKIM_DIR", Some("/etc/opendkim/enconf")),
    (
        "AGENT_OPENDKIM_PID_FILE",
        Some("/run/opendkim/opendkim.pid"),
    ),
    ("AGENT_OPENDKIM_USER", Some("opendkim")),
    ("AGENT_DKIM_SELECTOR", Some("enconf")),
    ("AGENT_MAIL_IMAP_PORT", Some("143")),
    (
        "AGENT_ROUNDCUBE_DIR",
        Some("/var/lib/roundcube/public_html"),
    ),
    (
        "AGENT_ROUNDCUBE_CONFIG",
        Some("/etc/roundcube/config.inc.php"),
    ),
    ("AGENT_PDNS_CONFIG_DIR", Some("/etc/powerdns")),
    ("AGENT_PDNSUTIL_BIN", Some("/usr/bin/pdnsutil")),
    ("AGENT_PDNS_CONTROL_BIN", Some("/usr/bin/pdns_control")),
    ("AGENT_PDNS_PID_FILE", Some("/run/pdns/pdns.pid")),
    (
        "AGENT_DNS_ZONES_DIR",
        Some("/var/lib/netcell-webpanel-agent/zones"),
    ),
    ("AGENT_DB_SOCKET", Some("/run/mysqld/mysqld.sock")),
    ("AGENT_DB_ADMIN_USER", Some("root")),
    ("AGENT_MARIADB_PID_FILE", Some("/run/mysqld/mysqld.pid")),
    ("AGENT_DB_LISTEN", Some("127.0.0.1")),
    (
        "AGENT_MARIADB_CONFIG",
        Some("/etc/mysql/mariadb.conf.d/90-enconf.cnf"),
    ),
    ("AGENT_PHPMYADMIN_DIR", Some("/usr/share/phpmyadmin")),
    ("AGENT_PHPMYADMIN_CONF_D", Some("/etc/phpmyadmin/conf.d")),
    ("AGENT_MARIADB_BIN", Some("/usr/bin/mariadb")),
    ("AGENT_MARIADB_DUMP_BIN", Some("/usr/bin/mariadb-dump")),
    ("AGENT_RESTIC_BIN", Some("/usr/bin/restic")),
    ("AGENT_RCLONE_BIN", Some("/usr/bin/rclone")),
    ("AGENT_RSYNC_BIN", Some("/usr/bin/rsync")),
    (
        "AGENT_BACKUP_DIR",
        Some("/var/lib/netcell-webpanel-agent/backups"),
    ),
    (
        "AGENT_BACKUP_HTPASSWD",
        Some("/etc/netcell-webpanel-agent/backup.htpasswd"),
    ),
    ("AGENT_BACKUP_LISTEN", Some("0.0.0.0:50001")),
    ("AGENT_BACKUP_URL", None),
];

/// A configuration error; the message names the line or the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {reason}")]
    Read { path: String, reason: String },
    #[error("{source_name}:{line}: {message}")]
    Line {
        source_name: String,
        line: usize,
        message: String,
    },
    #[error("{key} {message}")]
    Value { key: &'static str, message: String },
    /// The default configuration file is not there, and what the environment gives is not
    /// enough.
    #[error(
        "{inner} (looked for {path}, which does not exist: write it, or give --config PATH, or set the keys in the environment)"
    )]
    NoFile {
        path: String,
        inner: Box<ConfigError>,
    },
}

/// How the agent touches the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Real files, real commands.
    System,
    /// Files under `AGENT_SANDBOX_ROOT`; commands are recorded, not run.
    Sandbox,
}

/// The agent's configuration, every value checked.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub token: AgentToken,
    pub bind: IpAddr,
    pub port: u16,
    /// Certificate chain and key for HTTPS; plain HTTP when `None`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// With HTTPS: the authority (PEM) whose client certificates are required (mutual TLS,
    /// `AGENT_TLS_CLIENT_CA`: the controller's agent CA); `None`: the token alone.
    pub client_ca: Option<PathBuf>,
    pub mode: Mode,
    pub sandbox_root: PathBuf,
    pub max_body_bytes: usize,
    /// The roles this agent serves (`AGENT_ROLES`, `web,mail,…`).
    pub roles: RoleSet,
    pub layout: Layout,
}

/// Where things live on the server, and the programs the agent runs. Every path is absolute and
/// made only of `A-Z a-z 0-9 . _ - /` (plus `{version}` where a PHP version goes), so it can be
/// written into a config file as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub state_dir: PathBuf,
    pub nginx_bin: PathBuf,
    pub nginx_sites_dir: PathBuf,
    pub nginx_pid_file: PathBuf,
    pub nginx_log_dir: PathBuf,
    pub nginx_fastcgi_params: PathBuf,
    pub http_port: u16,
    pub web_server_user: String,
    pub php_default_version: PhpVersion,
    php_fpm_bin: String,
    php_fpm_pool_dir: String,
    php_fpm_pid_file: String,
    pub php_fpm_socket_dir: PathBuf,
    pub web_root_base: PathBuf,
    /// The port of the panel's HTTPS server block.
    pub https_port: u16,
    /// Where installed certificates and keys go (`panel.crt`, `panel.key`, `mail.crt`, …).
    pub cert_dir: PathBuf,
    /// The document root of ACME HTTP-01 answers (under it: `.well-known/acme-challenge/`).
    pub acme_root: PathBuf,
    /// Where the panel's HTTPS server block proxies to (`http://127.0.0.1:8080`); `None`: it
    /// answers 404.
    pub panel_upstream: Option<String>,
    pub postfix_bin: PathBuf,
    pub postfix_config_dir: PathBuf,
    pub dovecot_config: PathBuf,
    pub dovecot_conf_d: PathBuf,
    pub dovecot_pid_file: PathBuf,
    pub doveconf_bin: PathBuf,
    /// The group Dovecot's auth process reads the passwd-files as.
    pub dovecot_group: String,
    pub postmap_bin: PathBuf,
    /// The Postfix lmdb maps the agent keeps (`domains`, `mailboxes`, `aliases`).
    pub postfix_map_dir: PathBuf,
    /// Dovecot's passwd-files, one per mail domain.
    pub mail_users_dir: PathBuf,
    /// Where mail is stored (`<domain>/<local part>/Maildir`), owned by `vmail_user`.
    pub vmail_dir: PathBuf,
    pub vmail_user: String,
    pub mail_default_quota_mb: u32,
    /// Loopback ports of Dovecot's LMTP (delivery), quota policy and SASL auth services.
    pub mail_lmtp_port: u16,
    pub mail_policy_port: u16,
    pub mail_auth_port: u16,
    pub opendkim_config: PathBuf,
    /// DKIM keys (`keys/<domain>.private`) and OpenDKIM's key and signing tables.
    pub opendkim_dir: PathBuf,
    pub opendkim_pid_file: PathBuf,
    /// The user OpenDKIM runs as: it owns the keys.
    pub opendkim_user: String,
    pub dkim_selector: String,
    /// The port of this server's own IMAP (Dovecot), which webmail logs in over.
    pub mail_imap_port: u16,
    /// Roundcube's document root and its settings file (Debian's package).
    pub roundcube_dir: PathBuf,
    pub roundcube_config: PathBuf,
    /// PowerDNS's configuration directory (`pdns.conf`, naming its gsqlite3 database and the
    /// control socket's directory), passed to `pdnsutil` and `pdns_control`.
    pub pdns_config_dir: PathBuf,
    pub pdnsutil_bin: PathBuf,
    pub pdns_control_bin: PathBuf,
    pub pdns_pid_file: PathBuf,
    /// The zone files the agent keeps (`<zone>.zone`, and `<zone>.key`, 0600, when signed):
    /// what PowerDNS is made to serve.
    pub dns_zones_dir: PathBuf,
    /// MariaDB's unix socket, and the user the agent logs in as over it (socket
    /// authentication: no password anywhere).
    pub db_socket: PathBuf,
    pub db_admin_user: String,
    pub mariadb_pid_file: PathBuf,
    /// The address MariaDB is set to listen on (`bind-address` in [`Layout::mariadb_config`]).
    /// A loopback address (the default) keeps it local: database users may then connect
    /// from this machine only, and a grant for another host is refused.
    pub db_listen: IpAddr,
    /// The MariaDB option file the agent writes (its listening address).
    pub mariadb_config: PathBuf,
    /// phpMyAdmin's document root and the directory of settings it reads last (Debian's
    /// package).
    pub phpmyadmin_dir: PathBuf,
    pub phpmyadmin_conf_d: PathBuf,
    /// The MariaDB client and dump programs (backups and restores of databases).
    pub mariadb_bin: PathBuf,
    pub mariadb_dump_bin: PathBuf,
    /// restic (every role's backups; the backup server's pruning), rclone (the backup
    /// server's append-only REST endpoint) and rsync (restores).
    pub restic_bin: PathBuf,
    pub rclone_bin: PathBuf,
    pub rsync_bin: PathBuf,
    /// The backup server's repositories, one directory per account.
    pub backup_dir: PathBuf,
    /// The backup server's password file (one bcrypt line per account).
    pub backup_htpasswd: PathBuf,
    /// Where the backup server serves the repositories.
    pub backup_listen: std::net::SocketAddr,
    /// The URL the account's servers reach that endpoint at (`http://host:port`); unset: the
    /// host name and the port of `backup_listen`.
    pub backup_url: Option<String>,
}

impl Layout {
    fn versioned(template: &str, v: PhpVersion) -> PathBuf {
        PathBuf::from(template.replace("{version}", &v.to_string()))
    }

    pub fn php_fpm_bin(&self, v: PhpVersion) -> PathBuf {
        Self::versioned(&self.php_fpm_bin, v)
    }

    /// The directory the PHP-FPM programs are in, and the parts of their file name around the
    /// version (`/usr/sbin`, `php-fpm`, ``), to find the installed versions.
    pub fn php_fpm_bin_pattern(&self) -> (PathBuf, String, String) {
        let (before, after) = self
            .php_fpm_bin
            .split_once("{version}")
            .unwrap_or((self.php_fpm_bin.as_str(), ""));
        let before = std::path::Path::new(before);
        let dir = before.parent().map(PathBuf::from).unwrap_or_default();
        let prefix = before
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (dir, prefix, after.to_owned())
    }

    pub fn php_fpm_pool_dir(&self, v: PhpVersion) -> PathBuf {
        Self::versioned(&self.php_fpm_pool_dir, v)
    }

    pub fn php_fpm_pid_file(&self, v: PhpVersion) -> PathBuf {
        Self::versioned(&self.php_fpm_pid_file, v)
    }
}

/// Parses config.env text into key/value pairs. `source_name` is used in error messages.
pub fn parse_env_file(
    source_name: &str,
    text: &str,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let err = |message: String| ConfigError::Line {
            source_name: source_name.to_owned(),
            line: line_no,
            message,
        };
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let trimmed = trimmed.strip_prefix("export ").unwrap_or(trimmed);
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(err("expected KEY=VALUE".into()));
        };
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(err(format!("{key:?} is not a valid key (A-Z, 0-9, _)")));
        }
        if !KEYS.iter().any(|(k, _)| *k == key) {
            return Err(err(format!("unknown key {key}")));
        }
        let value = unquote(value).map_err(|m| err(format!("{key}: {m}")))?;
        if out.insert(key.to_owned(), value).is_some() {
            return Err(err(format!("{key} is given twice")));
        }
    }
    Ok(out)
}

/// The `sh` subset: plain characters, `'…'` (anything but `'`), and `\x`.
fn unquote(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => out.push(c),
                    None => return Err("unterminated single quote".into()),
                }
            },
            '\\' => match chars.next() {
                Some(c) => out.push(c),
                None => return Err("trailing backslash".into()),
            },
            c if c.is_whitespace() => {
                // Trailing white space is allowed; anything after it is not.
                if chars.all(char::is_whitespace) {
                    break;
                }
                return Err("unquoted white space in a value".into());
            }
            '"' | '$' | '`' | ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                return Err(format!("{c:?} must be quoted ('…')"));
            }
            c if c.is_control() => return Err("control character in a value".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

impl AgentConfig {
    /// Reads `path` (when given, or the default path when it exists) and applies environment
    /// overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let (path, must_exist) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let mut found = true;
        let mut values = match std::fs::read_to_string(&path) {
            Ok(text) => parse_env_file(&path.display().to_string(), &text)?,
            Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => {
                found = false;
                BTreeMap::new()
            }
            Err(e) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        for (key, _) in KEYS {
            if let Some(v) = env(key) {
                values.insert((*key).to_owned(), v);
            }
        }
        Self::from_values(&values).map_err(|inner| match found {
            true => inner,
            false => ConfigError::NoFile {
                path: path.display().to_string(),
                inner: Box::new(inner),
            },
        })
    }

    /// The configuration keys, each with its default (`None`: required or unset), for
    /// `--help`.
    pub fn keys_help() -> String {
        let mut out = String::from(
            "Configuration (KEY=VALUE lines in the file; environment variables of the same names win):\n",
        );
        for (key, default) in KEYS {
            let default = match (*key, default) {
                ("AGENT_TOKEN", _) => "required".to_owned(),
                (_, Some(d)) => format!("default {d}"),
                (_, None) => "unset".to_owned(),
            };
            out.push_str(&format!("  {key:<28} {default}\n"));
        }
        out.push_str("Every key is described in the README (Configuration of the agent).");
        out
    }

    /// Builds the configuration from parsed values, filling in defaults and checking each.
    pub fn from_values(values: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let get = |key: &'static str| -> Option<&str> {
            values
                .get(key)
                .map(String::as_str)
                .or_else(|| KEYS.iter().find(|(k, _)| *k == key).and_then(|(_, d)| *d))
        };
        let required = |key: &'static str| {
            get(key).ok_or(ConfigError::Value {
                key,
                message: "is required".into(),
            })
        };
        let bad = |key: &'static str, message: String| ConfigError::Value { key, message };
        let rule = |key: &'static str| move |r: Rule| bad(key, r.to_string());
        let port = |key: &'static str| -> Result<u16, ConfigError> {
            match required(key)?.parse::<u16>() {
                Ok(0) | Err(_) => Err(bad(key, "must be a port number (1 to 65535)".into())),
                Ok(p) => Ok(p),
            }
        };
        let path = |key: &'static str| -> Result<PathBuf, ConfigError> {
            let v = required(key)?;
            check_path(v, false).map_err(|m| bad(key, m))?;
            Ok(PathBuf::from(v))
        };
        let template = |key: &'static str| -> Result<String, ConfigError> {
            let v = required(key)?;
            check_path(v, true).map_err(|m| bad(key, m))?;
            Ok(v.to_owned())
        };

        let token = AgentToken::parse(required("AGENT_TOKEN")?).map_err(rule("AGENT_TOKEN"))?;
        let bind = required("AGENT_BIND")?
            .parse()
            .map_err(|_| bad("AGENT_BIND", "must be an IP address".into()))?;
        let tls = match (get("AGENT_TLS_CERT"), get("AGENT_TLS_KEY")) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            (Some(_), None) => {
                return Err(bad(
                    "AGENT_TLS_KEY",
                    "is required with AGENT_TLS_CERT".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "AGENT_TLS_CERT",
                    "is required with AGENT_TLS_KEY".into(),
                ));
            }
        };
        let client_ca = match get("AGENT_TLS_CLIENT_CA") {
            None => None,
            Some(_) if tls.is_none() => {
                return Err(bad(
                    "AGENT_TLS_CLIENT_CA",
                    "needs AGENT_TLS_CERT and AGENT_TLS_KEY (client certificates are asked for over HTTPS)".into(),
                ));
            }
            Some(path) => Some(PathBuf::from(path)),
        };
        let mode = match required("AGENT_MODE")? {
            "system" => Mode::System,
            "sandbox" => Mode::Sandbox,
            other => {
                return Err(bad(
                    "AGENT_MODE",
                    format!("must be system or sandbox, not {other:?}"),
                ));
            }
        };
        let max_body_bytes = required("AGENT_MAX_BODY_BYTES")?
            .parse::<usize>()
            .ok()
            .filter(|n| (1024..=1 << 30).contains(n))
            .ok_or_else(|| {
                bad(
                    "AGENT_MAX_BODY_BYTES",
                    "must be between 1024 and 1073741824".into(),
                )
            })?;
        let roles: RoleSet = required("AGENT_ROLES")?
            .parse()
            .map_err(rule("AGENT_ROLES"))?;
        let user_name = |key: &'static str| -> Result<String, ConfigError> {
            let v = required(key)?;
            if v.is_empty()
                || v.len() > 32
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad(key, "must be a user name".into()));
            }
            Ok(v.to_owned())
        };
        let web_server_user = user_name("AGENT_WEB_SERVER_USER")?;
        let dkim_selector = required("AGENT_DKIM_SELECTOR")?;
        if dkim_selector.is_empty()
            || dkim_selector.len() > 63
            || !dkim_selector
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || dkim_selector.starts_with('-')
            || dkim_selector.ends_with('-')
        {
            return Err(bad(
                "AGENT_DKIM_SELECTOR",
                "must be a DNS label (a-z, 0-9, '-')".into(),
            ));
        }
        let mail_default_quota_mb = required("AGENT_MAIL_DEFAULT_QUOTA_MB")?
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=enconf_core::domain::QuotaMb::MAX).contains(n))
            .ok_or_else(|| {
                bad(
                    "AGENT_MAIL_DEFAULT_QUOTA_MB",
                    "must be a number of megabytes (1 to 1048576)".into(),
                )
            })?;
        let layout = Layout {
            state_dir: path("AGENT_STATE_DIR")?,
            nginx_bin: path("AGENT_NGINX_BIN")?,
            nginx_sites_dir: path("AGENT_NGINX_SITES_DIR")?,
            nginx_pid_file: path("AGENT_NGINX_PID_FILE")?,
            nginx_log_dir: path("AGENT_NGINX_LOG_DIR")?,
            nginx_fastcgi_params: path("AGENT_NGINX_FASTCGI_PARAMS")?,
            http_port: port("AGENT_HTTP_PORT")?,
            web_server_user,
            php_default_version: PhpVersion::parse(required("AGENT_PHP_DEFAULT_VERSION")?)
                .map_err(rule("AGENT_PHP_DEFAULT_VERSION"))?,
            php_fpm_bin: template("AGENT_PHP_FPM_BIN")?,
            php_fpm_pool_dir: template("AGENT_PHP_FPM_POOL_DIR")?,
            php_fpm_pid_file: template("AGENT_PHP_FPM_PID_FILE")?,
            php_fpm_socket_dir: path("AGENT_PHP_FPM_SOCKET_DIR")?,
            web_root_base: path("AGENT_WEB_ROOT_BASE")?,
            https_port: port("AGENT_HTTPS_PORT")?,
            cert_dir: path("AGENT_CERT_DIR")?,
            acme_root: path("AGENT_ACME_ROOT")?,
            panel_upstream: get("AGENT_PANEL_UPSTREAM")
                .map(|u| {
                    let url = HttpUrl::parse(u).map_err(rule("AGENT_PANEL_UPSTREAM"))?;
                    if url.path() != "/" {
                        return Err(bad("AGENT_PANEL_UPSTREAM", "must have no path".into()));
                    }
                    Ok(url.to_string())
                })
                .transpose()?,
            postfix_bin: path("AGENT_POSTFIX_BIN")?,
            postfix_config_dir: path("AGENT_POSTFIX_CONFIG_DIR")?,
            dovecot_config: path("AGENT_DOVECOT_CONFIG")?,
            dovecot_conf_d: path("AGENT_DOVECOT_CONF_D")?,
            dovecot_pid_file: path("AGENT_DOVECOT_PID_FILE")?,
            doveconf_bin: path("AGENT_DOVECONF_BIN")?,
            dovecot_group: user_name("AGENT_DOVECOT_GROUP")?,
            postmap_bin: path("AGENT_POSTMAP_BIN")?,
            postfix_map_dir: path("AGENT_POSTFIX_MAP_DIR")?,
            mail_users_dir: path("AGENT_MAIL_USERS_DIR")?,
            vmail_dir: path("AGENT_VMAIL_DIR")?,
            vmail_user: user_name("AGENT_VMAIL_USER")?,
            mail_default_quota_mb,
            mail_lmtp_port: port("AGENT_MAIL_LMTP_PORT")?,
            mail_policy_port: port("AGENT_MAIL_POLICY_PORT")?,
            mail_auth_port: port("AGENT_MAIL_AUTH_PORT")?,
            opendkim_config: path("AGENT_OPENDKIM_CONFIG")?,
            opendkim_dir: path("AGENT_OPENDKIM_DIR")?,
            opendkim_pid_file: path("AGENT_OPENDKIM_PID_FILE")?,
            opendkim_user: user_name("AGENT_OPENDKIM_USER")?,
            dkim_selector: dkim_selector.to_owned(),
            mail_imap_port: port("AGENT_MAIL_IMAP_PORT")?,
            roundcube_dir: path("AGENT_ROUNDCUBE_DIR")?,
            roundcube_config: path("AGENT_ROUNDCUBE_CONFIG")?,
            pdns_config_dir: path("AGENT_PDNS_CONFIG_DIR")?,
            pdnsutil_bin: path("AGENT_PDNSUTIL_BIN")?,
            pdns_control_bin: path("AGENT_PDNS_CONTROL_BIN")?,
            pdns_pid_file: path("AGENT_PDNS_PID_FILE")?,
            dns_zones_dir: path("AGENT_DNS_ZONES_DIR")?,
            db_socket: path("AGENT_DB_SOCKET")?,
            db_admin_user: user_name("AGENT_DB_ADMIN_USER")?,
            mariadb_pid_file: path("AGENT_MARIADB_PID_FILE")?,
            db_listen: required("AGENT_DB_LISTEN")?
                .parse()
                .map_err(|_| bad("AGENT_DB_LISTEN", "must be an IP address".into()))?,
            mariadb_config: path("AGENT_MARIADB_CONFIG")?,
            phpmyadmin_dir: path("AGENT_PHPMYADMIN_DIR")?,
            phpmyadmin_conf_d: path("AGENT_PHPMYADMIN_CONF_D")?,
            mariadb_bin: path("AGENT_MARIADB_BIN")?,
            mariadb_dump_bin: path("AGENT_MARIADB_DUMP_BIN")?,
            restic_bin: path("AGENT_RESTIC_BIN")?,
            rclone_bin: path("AGENT_RCLONE_BIN")?,
            rsync_bin: path("AGENT_RSYNC_BIN")?,
            backup_dir: path("AGENT_BACKUP_DIR")?,
            backup_htpasswd: path("AGENT_BACKUP_HTPASSWD")?,
            backup_listen: required("AGENT_BACKUP_LISTEN")?.parse().map_err(|_| {
                bad(
                    "AGENT_BACKUP_LISTEN",
                    "must be an address and port (0.0.0.0:50001)".into(),
                )
            })?,
            backup_url: match get("AGENT_BACKUP_URL") {
                None => None,
                Some(url) => Some(check_backup_url(url).map_err(|m| bad("AGENT_BACKUP_URL", m))?),
            },
        };
        Ok(Self {
            token,
            bind,
            port: port("AGENT_PORT")?,
            tls,
            client_ca,
            mode,
            sandbox_root: path("AGENT_SANDBOX_ROOT")?,
            max_body_bytes,
            roles,
            layout,
        })
    }
}

/// `http(s)://host[:port]`, nothing after it, of safe characters.
fn check_backup_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty()
        || !rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        return Err("must be http(s)://host[:port] and nothing more".into());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// An absolute path of safe characters, without `.`/`..` segments; `{version}` allowed in
/// templates.
fn check_path(p: &str, template: bool) -> Result<(), String> {
    let plain = if template {
        p.replace("{version}", "")
    } else {
        p.to_owned()
    };
    if !p.starts_with('/') {
        return Err("must be an absolute path".into());
    }
    if let Some(c) = plain
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-')))
    {
        return Err(format!("must not contain {c:?}"));
    }
    if p.split('/').any(|s| s == "." || s == "..") {
        return Err("must not contain '.' or '..' segments".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        parse_env_file("config.env", text)
    }

    #[test]
    fn parses_the_sh_subset() {
        let v = parse(
            "# comment\n\nAGENT_TOKEN='it'\\''s$`\"x'\r\n  AGENT_PORT=50001  \nexport AGENT_MODE=sandbox\n",
        )
        .unwrap();
        assert_eq!(v["AGENT_TOKEN"], "it's$`\"x");
        assert_eq!(v["AGENT_PORT"], "50001");
        assert_eq!(v["AGENT_MODE"], "sandbox");
        assert_eq!(parse("AGENT_TOKEN=\n").unwrap()["AGENT_TOKEN"], "");
    }

    #[test]
    fn errors_name_the_line() {
        let line = |text: &str| match parse(text) {
            Err(ConfigError::Line { line, message, .. }) => (line, message),
            other => panic!("{other:?}"),
        };
        assert_eq!(line("AGENT_PORT=1\nAGENT_PROT=2\n").0, 2);
        assert!(
            line("AGENT_PORT=1\nAGENT_PROT=2\n")
                .1
                .contains("unknown key AGENT_PROT")
        );
        assert_eq!(line("\n\njust words\n").0, 3);
        assert!(line("AGENT_PORT=1\nAGENT_PORT=2").1.contains("twice"));
        assert!(line("AGENT_TOKEN='abc").1.contains("unterminated"));
        assert!(line("AGENT_TOKEN=a b").1.contains("white space"));
        assert!(line("AGENT_TOKEN=$(id)").1.contains("quoted"));
        assert!(line("agent_token=x").1.contains("not a valid key"));
        assert!(line("AGENT_TOKEN=a\\").1.contains("backslash"));
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_fit_a_debian_server() {
        let c = AgentConfig::from_values(&values(&[("AGENT_TOKEN", "0123456789abcdef")])).unwrap();
        assert_eq!(c.port, 50000);
        assert_eq!(c.bind.to_string(), "0.0.0.0");
        assert_eq!(c.mode, Mode::System);
        assert!(c.tls.is_none());
        let v = c.layout.php_default_version;
        assert_eq!(
            c.layout.php_fpm_bin(v),
            PathBuf::from("/usr/sbin/php-fpm8.2")
        );
        assert_eq!(
            c.layout.php_fpm_pool_dir(v),
            PathBuf::from("/etc/php/8.2/fpm/pool.d")
        );
    }

    #[test]
    fn values_are_checked() {
        let err = |pairs: &[(&str, &str)]| {
            let mut all = vec![("AGENT_TOKEN", "0123456789abcdef")];
            all.extend_from_slice(pairs);
            AgentConfig::from_values(&values(&all))
                .unwrap_err()
                .to_string()
        };
        assert!(
            AgentConfig::from_values(&BTreeMap::new())
                .unwrap_err()
                .to_string()
                .contains("AGENT_TOKEN is required")
        );
        assert!(err(&[("AGENT_TOKEN", "short")]).contains("AGENT_TOKEN"));
        assert!(err(&[("AGENT_PORT", "0")]).contains("AGENT_PORT"));
        assert!(err(&[("AGENT_PORT", "70000")]).contains("AGENT_PORT"));
        assert!(err(&[("AGENT_BIND", "localhost")]).contains("AGENT_BIND"));
        assert!(err(&[("AGENT_MODE", "dry")]).contains("AGENT_MODE"));
        assert!(err(&[("AGENT_TLS_CERT", "/c.pem")]).contains("AGENT_TLS_KEY"));
        // Client certificates are asked for over HTTPS only.
        assert!(err(&[("AGENT_TLS_CLIENT_CA", "/ca.pem")]).contains("AGENT_TLS_CLIENT_CA"));
        assert!(err(&[("AGENT_WEB_ROOT_BASE", "var/www")]).contains("absolute"));
        assert!(err(&[("AGENT_WEB_ROOT_BASE", "/var/www;")]).contains("';'"));
        assert!(err(&[("AGENT_WEB_ROOT_BASE", "/var/../etc")]).contains("'..'"));
        assert!(err(&[("AGENT_NGINX_SITES_DIR", "/etc/ng inx")]).contains("' '"));
        assert!(err(&[("AGENT_PHP_FPM_POOL_DIR", "/etc/php/{ver}/pool.d")]).contains("'{'"));
        assert!(err(&[("AGENT_PHP_DEFAULT_VERSION", "8")]).contains("AGENT_PHP_DEFAULT_VERSION"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.env");
        std::fs::write(&file, "AGENT_TOKEN=0123456789abcdef\nAGENT_PORT=50001\n").unwrap();
        let env = |k: &str| (k == "AGENT_PORT").then(|| "50002".to_owned());
        let c = AgentConfig::load(Some(&file), env).unwrap();
        assert_eq!(c.port, 50002);
        assert_eq!(c.token.expose_secret(), "0123456789abcdef");
        let missing = AgentConfig::load(Some(&dir.path().join("nope.env")), |_| None);
        assert!(matches!(missing, Err(ConfigError::Read { .. })));
    }
}
