//! Work that runs once across the controllers sharing a store, not once per controller: the
//! health monitor's rounds and each certificate's issuance run under a lease in the store (a
//! row with an expiry on the database's clock, see [`Store::lease`](crate::store::Store::lease)).
//!
//! - The **monitor lease** is taken or renewed at every tick; a controller that does not hold
//!   it skips the round. It lasts [`monitor_lease`] (three intervals), so when its holder dies,
//!   another controller runs a round within that time and one interval more.
//! - A **certificate lease** (`ssl:<server>:<kind>`) is held for the whole of one issuance;
//!   whoever takes it reads the record again and goes on only if the certificate is still due,
//!   so a certificate renewed by one controller is not renewed again by another.
//!
//! On a store one process owns (redb, memory) every lease is always held: one controller.

use std::time::Duration;

use super::Controller;

/// The name of the health monitor's lease.
pub const MONITOR: &str = "monitor";

/// How long the monitor lease lasts for rounds every `interval`: three intervals, so that a
/// round that runs late does not lose it.
pub fn monitor_lease(interval: Duration) -> Duration {
    interval.saturating_mul(3)
}

/// This controller's name in leases: host, process and a random part (two controllers in
/// one process differ).
pub(super) fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let mut random = [0u8; 4];
    // Without random numbers the process id still tells controllers on one host apart.
    let _ = getrandom::fill(&mut random);
    let random: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}:{}:{random}", std::process::id())
}

impl Controller {
    /// Takes or renews the lease `name` for `ttl`: whether this controller holds it now. A
    /// store that cannot be reached holds nothing (the work waits for the next try).
    pub(super) async fn hold(&self, name: &str, ttl: Duration) -> bool {
        match self.store.lease(name, &self.instance, ttl).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(lease = name, error = %e, "cannot take a lease: the work waits");
                false
            }
        }
    }

    /// Gives up the lease `name`, so another controller may take it at once.
    pub(super) async fn let_go(&self, name: &str) {
        if let Err(e) = self.store.release(name, &self.instance).await {
            tracing::warn!(lease = name, error = %e, "cannot give up a lease: it expires by itself");
        }
    }

    /// This controller's name in the leases it holds.
    pub fn instance(&self) -> &str {
        &self.instance
    }
}
