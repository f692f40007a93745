//! The health monitor: every interval, every agent is checked, all at the same time (up to a
//! bound), each within its own timeout, so one slow or dead agent never holds up the others.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Controller;

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
        let mut checks = JoinSet::new();
        for server in servers {
            let controller = self.clone();
            let permits = Arc::clone(&permits);
            checks.spawn(async move {
                // The semaphore is never closed, so a permit always comes.
                let _permit = permits.acquire_owned().await;
                let id = server.id;
                controller.check(server).await.map_err(|e| (id, e))
            });
        }
        let mut round = Round::default();
        while let Some(done) = checks.join_next().await {
            match done {
                Ok(Ok(server)) if server.health.reachable => round.reachable += 1,
                Ok(Ok(_)) => round.unreachable += 1,
                Ok(Err((id, e))) => {
                    tracing::debug!(server = %id, error = %e, "health check not recorded");
                    round.failed += 1;
                }
                Err(e) => {
                    tracing::error!(error = %e, "a health check task failed");
                    round.failed += 1;
                }
            }
        }
        round
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
                    tokio::spawn(async move { renewer.renew_due().await });
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
