//! nginx: `nginx -t` over the http-level file and the changed server blocks only, as staged
//! copies of their new content, and `SIGHUP` to reload.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::sample;
use crate::config::Layout;
use crate::executor::{ApplyError, Check, Reload, Stage, same_check};
use crate::render::HTTP_CONF_FILE;

/// Validates the plan's server blocks `vhosts` (and the http-level file when the plan changes
/// it). A certificate or key of the plan is staged too, and the staged server blocks name the
/// copy, so the new pair is what gets checked. The cost grows with the size of the change, not
/// with the number of sites; a batch of many blocks is read by a sample of them
/// ([`super::sample`]), every block checked by our rules.
#[derive(Debug, Clone, Default)]
pub struct NginxCheck {
    /// A set: merging the checks of a batch of 10,000 accounts into a list that refused
    /// duplicates by search compared paths 50 million times.
    pub vhosts: BTreeSet<PathBuf>,
}

impl Check for NginxCheck {
    fn absorb(&mut self, other: Box<dyn Check>) -> Option<Box<dyn Check>> {
        match same_check::<NginxCheck>(other) {
            Ok(other) => {
                self.vhosts.extend(other.vhosts);
                None
            }
            Err(other) => Some(other),
        }
    }

    fn run(&self, stage: &Stage<'_>) -> Result<(), ApplyError> {
        let layout = stage.layout();
        let dir = stage.dir();
        let http = layout.nginx_sites_dir.join(HTTP_CONF_FILE);
        stage.with_copies(|copies| {
            let certs = copies.certs("nginx-")?;
            let mut include = |live: &PathBuf| -> Result<String, ApplyError> {
                // The new content, or (when certificates change under it) the live one.
                let bytes = match stage.plan().content(live) {
                    Some(bytes) => Some(bytes.to_vec()),
                    None if !certs.is_empty() => stage.read_live(live)?,
                    None => None,
                };
                let Some(bytes) = bytes else {
                    return Ok(live.display().to_string());
                };
                let name = live.file_name().map(|n| n.to_string_lossy().into_owned());
                let copy = copies.stage(&name.unwrap_or_default(), &certs.point(&bytes))?;
                Ok(copy.display().to_string())
            };
            let mut conf = format!(
                "pid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\nevents {{}}\nhttp {{\n    include {http};\n",
                dir = dir.display(),
                http = include(&http)?,
            );
            for v in self.to_read(stage, certs.is_empty())? {
                conf.push_str("    include ");
                conf.push_str(&include(v)?);
                conf.push_str(";\n");
            }
            conf.push_str("}\n");
            let conf_path = stage.write("nginx.conf", conf.as_bytes())?;
            let conf_arg = conf_path.display().to_string();
            let err_arg = dir.join("nginx-error.log").display().to_string();
            stage.run(
                "nginx",
                &layout.nginx_bin,
                &["-t", "-q", "-e", &err_arg, "-c", &conf_arg],
            )
        })
    }
}

impl NginxCheck {
    /// The server blocks `nginx -t` reads: all of them when certificates change (each block
    /// naming one is checked against the new pair) or the batch is small; else a sample by
    /// shape, once every block is seen to have one. A block that loads a certificate, or that
    /// the plan does not write, is always read.
    fn to_read(&self, stage: &Stage<'_>, sample_ok: bool) -> Result<Vec<&PathBuf>, ApplyError> {
        if !sample_ok || self.vhosts.len() <= sample::FULL_CHECK_MAX {
            return Ok(self.vhosts.iter().collect());
        }
        let vhosts: Vec<&PathBuf> = self.vhosts.iter().collect();
        let shapes = vhosts
            .iter()
            .map(|v| vhost_shape(v, stage.plan().content(v)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(sample::to_read(&shapes)
            .into_iter()
            .map(|i| vhosts[i])
            .collect())
    }
}

/// The shape a sample of server blocks is taken by (see [`sample`]); `None` for a block that
/// must be read: one the plan does not write, or one that loads a certificate (nginx reads the
/// files, which no shape vouches for).
fn vhost_shape(
    path: &std::path::Path,
    content: Option<&[u8]>,
) -> Result<Option<Vec<(usize, String)>>, ApplyError> {
    let Some(bytes) = content else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(bytes);
    if text.contains("ssl_certificate") {
        return Ok(None);
    }
    crate::render::shape::nginx(&text)
        .map(Some)
        .map_err(|e| ApplyError::Rejected {
            validator: "nginx".into(),
            message: format!("{}: {e}", path.display()),
        })
}

/// `SIGHUP` to nginx's master.
pub fn reload(layout: &Layout) -> Reload {
    Reload::Signal {
        pid_file: layout.nginx_pid_file.clone(),
        signal: "HUP".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_block_with_a_certificate_or_not_in_the_plan_is_always_read() {
        let path = std::path::Path::new("/sites/enconf-shop.conf");
        let plain = b"server {\n    listen 80;\n    server_name shop.example;\n}\n";
        assert!(vhost_shape(path, Some(plain)).unwrap().is_some());
        let tls = b"server {\n    listen 443 ssl;\n    ssl_certificate /c.pem;\n    ssl_certificate_key /k.pem;\n}\n";
        assert_eq!(vhost_shape(path, Some(tls)).unwrap(), None);
        assert_eq!(vhost_shape(path, None).unwrap(), None);
        let e = vhost_shape(path, Some(b"server { listen 80; }}")).unwrap_err();
        assert!(e.to_string().contains("enconf-shop.conf"), "{e}");
    }
}
