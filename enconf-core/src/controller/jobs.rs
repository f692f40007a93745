//! Running jobs: each is recorded `queued` (the store refuses a second for the same account),
//! runs on its own task, writes its progress as it goes, and ends `succeeded` or `failed`
//! with the reason. A controller that starts again ([`Controller::resume_jobs`]) runs every
//! unfinished job again from its start: each kind is safe to repeat (a backup adds snapshots
//! to the same set; a restore loads into a fresh copy before it replaces anything).

use super::{Controller, ControllerError, Result};
use crate::domain::job::{Job, JobId, JobStatus, JobWork, NewJob, Progress};
use crate::protocol::backup::JobView;

impl Controller {
    /// One page of the jobs (of one account when the query names it), newest first
    /// (`GET /api/v1/jobs`): the cursor is the last job of the page before, and the page holds
    /// older ones.
    pub async fn jobs_page(
        &self,
        query: &crate::protocol::list::ListQuery,
    ) -> Result<crate::protocol::list::Page<JobView>> {
        let paging = query.paging()?;
        let account = query.jobs()?;
        let jobs = self
            .store
            .jobs_page(account, paging.after.map(JobId), paging.limit + 1)
            .await?;
        let views = jobs.iter().map(JobView::from).collect();
        Ok(crate::protocol::list::Page::of(
            views,
            paging.limit,
            |j: &JobView| j.id,
        ))
    }

    pub async fn job(&self, id: JobId) -> Result<JobView> {
        Ok(JobView::from(&self.store.job(id).await?))
    }

    /// Records a job and starts it on a task of its own.
    pub(super) async fn start_job(&self, new: NewJob) -> Result<Job> {
        let job = self.store.insert_job(new, self.now()).await?;
        tracing::info!(job = %job.id, kind = ?job.work.kind(), account = ?job.account_id, "job queued");
        let runner = self.clone();
        let started = job.clone();
        tokio::spawn(async move { runner.run_job(started).await });
        Ok(job)
    }

    /// Waits for a job to finish (what a delete does with the final backup).
    pub(super) async fn wait_job(&self, id: JobId) -> Result<Job> {
        loop {
            let job = self.store.job(id).await?;
            if !job.status.is_active() {
                return Ok(job);
            }
            tokio::time::sleep(self.config.job_poll).await;
        }
    }

    /// Runs again every job a controller left unfinished (queued or running when it stopped).
    /// Called once at start by the controller that runs the monitor.
    pub async fn resume_jobs(&self) -> Result<usize> {
        let mut resumed = 0;
        for job in self.store.unfinished_jobs().await? {
            tracing::info!(job = %job.id, status = ?job.status, "job resumed after a restart");
            let runner = self.clone();
            tokio::spawn(async move { runner.run_job(job).await });
            resumed += 1;
        }
        Ok(resumed)
    }

    async fn run_job(&self, mut job: Job) {
        job.status = JobStatus::Running;
        job.started_at = Some(self.now());
        job.error = None;
        if let Err(e) = self.store.update_job(job.clone()).await {
            tracing::error!(job = %job.id, error = %e, "could not record that the job runs");
        }
        let result = match job.work.clone() {
            JobWork::Backup { cause } => self.run_backup(&mut job, cause).await,
            JobWork::Restore {
                set,
                parts,
                database,
                mailbox,
            } => {
                self.run_restore(&mut job, set, &parts, database, mailbox)
                    .await
            }
            JobWork::Migrate { targets } => match job.account_id {
                // Its checks passed when it was queued; a refusal now names `targets.<role>`.
                Some(account) => self
                    .migrate(account, &targets, false, Some(&mut job))
                    .await
                    .map(drop),
                None => Err(ControllerError::Internal(
                    "a migration without an account".into(),
                )),
            },
            JobWork::Update { target } => match job.server_id {
                Some(server) => self.run_update(server, &target).await,
                None => Err(ControllerError::Internal(
                    "an update without a server".into(),
                )),
            },
        };
        job.finished_at = Some(self.now());
        match result {
            Ok(()) => {
                job.status = JobStatus::Succeeded;
                tracing::info!(job = %job.id, "job succeeded");
            }
            Err(e) => {
                job.status = JobStatus::Failed;
                job.error = Some(failure(&e));
                tracing::warn!(job = %job.id, error = %e, "job failed");
            }
        }
        // Finishing must be recorded, or the account stays busy: try again for a while.
        for attempt in 0..30 {
            match self.store.update_job(job.clone()).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(job = %job.id, attempt, error = %e, "could not record the job's end");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Records how far a job is (its progress is read from the store by the API).
    pub(super) async fn progress(&self, job: &mut Job, progress: Progress) {
        job.progress = Some(progress);
        if let Err(e) = self.store.update_job(job.clone()).await {
            tracing::warn!(job = %job.id, error = %e, "could not record the job's progress");
        }
    }
}

/// The reason a job failed, as the API shows it (never a secret: errors carry none).
fn failure(e: &ControllerError) -> String {
    match e {
        ControllerError::Internal(_) => "internal error (see the controller's log)".into(),
        other => other.to_string(),
    }
}
