//! The sandbox's stand-ins for the services' own files: a sandbox agent has no Postfix,
//! Dovecot, OpenDKIM or Roundcube installed, so the files their packages would have written are written
//! under the sandbox root (when missing) for the mail role to edit as it would on a server.
//! Nothing here runs on a real system.

use std::path::Path;

use crate::config::Layout;
use crate::system::{Sandbox, System, SystemError};

/// What Debian's packages install, reduced to what the mail role reads.
const MAIN_CF: &str = "# Stand-in for Postfix's main.cf (sandbox)\n\
queue_directory = /var/spool/postfix\n\
myhostname = localhost\n\
smtpd_tls_security_level = may\n";
const DOVECOT_CONF: &str = "# Stand-in for Dovecot's dovecot.conf (sandbox)\n\
!include_try /usr/share/dovecot/protocols.d/*.protocol\n\
!include conf.d/*.conf\n";
const ROUNDCUBE_CONF: &str = "<?php\n// Stand-in for Roundcube's config.inc.php (sandbox)\n\
$config = [];\n\
$config['imap_host'] = [\"localhost:143\"];\n";
const OPENDKIM_CONF: &str = "# Stand-in for OpenDKIM's opendkim.conf (sandbox)\n\
Syslog yes\n\
Socket inet:8891@127.0.0.1\n";

/// Writes the stand-ins that are missing; an existing file is left as it is.
pub fn install_mail(sandbox: &Sandbox, layout: &Layout) -> Result<(), SystemError> {
    let main_cf = layout.postfix_config_dir.join("main.cf");
    for (path, text) in [
        (main_cf.as_path(), MAIN_CF),
        (layout.dovecot_config.as_path(), DOVECOT_CONF),
        (layout.opendkim_config.as_path(), OPENDKIM_CONF),
        (layout.roundcube_config.as_path(), ROUNDCUBE_CONF),
    ] {
        write_missing(sandbox, path, text)?;
    }
    Ok(())
}

fn write_missing(sandbox: &Sandbox, path: &Path, text: &str) -> Result<(), SystemError> {
    if sandbox.read(path)?.is_none() {
        sandbox.write_atomic(path, text.as_bytes(), 0o644)?;
    }
    Ok(())
}
