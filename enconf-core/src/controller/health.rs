//! The health monitor: every interval, every agent is checked, concurrently (up to a bound),
//! each within its own timeout, so one slow or dead agent never holds up the others. The
//! checks of a round start scattered over a short window (each agent at its own offset), and
//! the whole round is recorded in one store transaction. A server is marked offline after
//! [`OFFLINE_AFTER`](crate::domain::OFFLINE_AFTER) missed checks in a row, not at the first.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Controller;
use crate::domain::{Server, ServerId};

/// How long the answers of a health round are gathered, after the last one came, before
/// they are recorded together.
const GROUP_WAIT: Duration = Duration::from_millis(50);
/// The most answers recorded in one transaction.
const GROUP_MAX: usize = 512;

/// When in a round of `spread` the check of `server` starts: the same offset every round,
/// scattered over the window by the id (Fibonacci hashing), so that neighbours do not start
/// together.
fn offset(server: ServerId, spread: Duration) -> Duration {
    let scattered = server.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    spread.mul_f64(scattered as f64 / f64::from(u32::MAX))
}

/// What one round of checks saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub reachable: usize,
    pub unreachable: usize,
    /// Checks that could not be recorded (the server was deleted meanwhile, or the store
    /// failed).
    pub failed: usize,
}

impl Controller {
    /// Checks every server's agent once, concurrently (at most
    /// [`health_concurrency`](super::ControllerConfig::health_concurrency) at a time, each within
    /// [`health_timeout`](super::ControllerConfig::health_timeout)), and records what each said.
    pub async fn check_all(&self) -> Round {
        let servers = match self.store.servers().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "health round: cannot list servers");
                return Round::default();
            }
        };
        let permits = Arc::new(Semaphore::new(self.config.health_concurrency.max(1)));
        let spread = self.config.health_spread;
        let mut checks = JoinSet::new();
        for server in servers {
            let controller = self.clone();
            let permits = Arc::clone(&permits);
            checks.spawn(async move {
                tokio::time::sleep(offset(server.id, spread)).await;
                // The semaphore is never closed, so a permit always comes.
                let _permit = permits.acquire_owned().await;
                let health = controller.probed(&server, true).await;
                (server, health)
            });
        }
        // Recorded in groups as the answers come: one transaction for the answers that came
        // together, so a hanging agent delays no other's record, and a thousand answers are a
        // handful of commits.
        let mut round = Round::default();
        let mut pending = Vec::new();
        loop {
            let next = match pending.is_empty() {
                true => checks.join_next().await,
                false => match tokio::time::timeout(GROUP_WAIT, checks.join_next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.record_group(std::mem::take(&mut pending), &mut round)
                            .await;
                        continue;
                    }
                },
            };
            match next {
                None => break,
                Some(Ok(pair)) => {
                    pending.push(pair);
                    if pending.len() >= GROUP_MAX {
                        self.record_group(std::mem::take(&mut pending), &mut round)
                            .await;
                    }
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "a health check task failed");
                    round.failed += 1;
                }
            }
        }
        self.record_group(pending, &mut round).await;
        round
    }

    /// Records the checks of a group in one transaction, counting them into `round`.
    async fn record_group(&self, group: Vec<(Server, crate::domain::Health)>, round: &mut Round) {
        if group.is_empty() {
            return;
        }
        let checked: Vec<Server> = group.iter().map(|(s, _)| s.clone()).collect();
        match self.store.record_healths(group).await {
            Ok(results) => {
                for (before, result) in checked.iter().zip(results) {
                    match result {
                        Ok(server) => {
                            self.after_check(before, &server);
                            match server.health.reachable {
                                true => round.reachable += 1,
                                false => round.unreachable += 1,
                            }
                        }
                        Err(e) => {
                            tracing::debug!(server = %before.id, error = %e, "health check not recorded");
                            round.failed += 1;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "health round: cannot record the checks");
                round.failed += checked.len();
            }
        }
    }

    /// Runs [`check_all`](Self::check_all) every `interval` until `shutdown` resolves, and
    /// after each round starts [`renew_due`](Self::renew_due) on its own (an ACME order never
    /// holds up health checks). The first round starts at once; a round that takes longer than
    /// the interval delays the next one rather than overlapping it. Of the controllers sharing
    /// a store, only the one holding the [monitor lease](super::once) runs rounds; it gives the
    /// lease up when it stops. When it takes the lease it runs again the jobs left unfinished
    /// ([`resume_jobs`](Self::resume_jobs)), and after each round it starts the scheduled
    /// backups that are due ([`schedule_backups`](Self::schedule_backups)).
    pub async fn monitor(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        let interval = interval.max(Duration::from_millis(100));
        let lease = super::once::monitor_lease(interval);
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut holding = false;
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    let held = self.hold(super::once::MONITOR, lease).await;
                    if held != holding {
                        tracing::info!(instance = %self.instance, "{}", if held {
                            "this controller runs the health monitor"
                        } else {
                            "another controller runs the health monitor"
                        });
                        holding = held;
                        // The holder runs the jobs a stopped controller left unfinished.
                        if held {
                            match self.resume_jobs().await {
                                Ok(0) => {}
                                Ok(n) => tracing::info!(jobs = n, "unfinished jobs run again"),
                                Err(e) => tracing::error!(error = %e, "could not read the unfinished jobs"),
                            }
                        }
                    }
                    if !held {
                        continue;
                    }
                    let round = self.check_all().await;
                    tracing::debug!(reachable = round.reachable, unreachable = round.unreachable, failed = round.failed, "health round");
                    let renewer = self.clone();
                    tokio::spawn(async move {
                        renewer.renew_due().await;
                        renewer.renew_agent_certificates().await;
                    });
                    match self.schedule_backups().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(backups = n, "scheduled backups started"),
                        Err(e) => tracing::warn!(error = %e, "could not start the scheduled backups"),
                    }
                }
                () = &mut shutdown => break,
            }
        }
        if holding {
            self.let_go(super::once::MONITOR).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_start_scattered_over_the_window() {
        let spread = Duration::from_millis(500);
        let offsets: Vec<Duration> = (1..=1000).map(|id| offset(ServerId(id), spread)).collect();
        assert!(offsets.iter().all(|o| *o <= spread));
        // No tenth of the window holds more than twice its share; neighbours differ.
        for tenth in 0..10u32 {
            let (from, to) = (spread * tenth / 10, spread * (tenth + 1) / 10);
            let n = offsets.iter().filter(|o| **o >= from && **o < to).count();
            assert!(n < 200, "tenth {tenth}: {n}");
        }
        assert_ne!(offsets[0], offsets[1]);
        assert_eq!(offset(ServerId(7), spread), offset(ServerId(7), spread));
        assert_eq!(offset(ServerId(7), Duration::ZERO), Duration::ZERO);
    }
}
