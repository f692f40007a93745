//! A preview of what the agent writes for an account's web role, without a server: the nginx
//! server block and the PHP-FPM pool under the layout an agent's `config.env` gives. Panels
//! show it before they create the account (through the bindings).

use enconf_core::domain::AccountSpec;

use crate::config::{AgentConfig, ConfigError, parse_env_file};
use crate::render::{AccountPaths, Renderer};

/// A token for the agent's settings, which require one: the layout does not use it.
const PLACEHOLDER_TOKEN: &str = "preview-token-not-used-0123456789";

/// The account's server block and pool, each after a `# <path>` line, under the layout
/// `settings` (the text of an agent's `config.env`; empty: the Debian defaults) gives. Its
/// token, if any, is not used.
pub fn web(spec: &AccountSpec, settings: &str) -> Result<String, ConfigError> {
    let mut values = parse_env_file("settings", settings)?;
    values.insert("AGENT_TOKEN".to_owned(), PLACEHOLDER_TOKEN.to_owned());
    let layout = AgentConfig::from_values(&values)?.layout;
    let renderer = Renderer::new(&layout);
    let paths = AccountPaths::new(&layout, &spec.username, renderer.php_version(spec));
    let mut out = format!("# {}\n", paths.vhost.display());
    renderer.vhost_into(&mut out, spec);
    out.push_str(&format!("# {}\n", paths.pool.display()));
    renderer.pool_into(&mut out, spec);
    Ok(out)
}
