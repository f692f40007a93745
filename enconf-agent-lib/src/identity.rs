//! The agent's identity: 128 random bits made at its first start and kept in
//! `<state_dir>/agent-id`, reported in its health. The controller refuses to register one
//! agent as two servers (six spellings of one URL would otherwise be six servers, each with its
//! own `max_accounts`).

use std::path::Path;

use enconf_core::protocol::AgentHealth;

use crate::system::{System, SystemError};

/// The identity kept under `state_dir`, made (and written, 0600) when there is none or the file
/// does not hold one.
pub fn load_or_create<S: System>(system: &S, state_dir: &Path) -> Result<String, SystemError> {
    let path = state_dir.join("agent-id");
    if let Some(bytes) = system.read(&path)? {
        let text = String::from_utf8_lossy(&bytes).trim().to_owned();
        if AgentHealth::valid_agent_id(&text) {
            return Ok(text);
        }
        tracing::warn!(path = %path.display(), "the agent identity file is damaged: making a new identity");
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| SystemError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    system.write_atomic(&path, format!("{id}\n").as_bytes(), 0o600)?;
    Ok(id)
}
