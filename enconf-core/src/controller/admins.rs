//! Administrators (`/api/v1/admins`) and the audit log (`/api/v1/audit`): who a presented
//! token is, managing administrators, and recording and reading what they changed.

use super::{Controller, ControllerError, Result};
use crate::domain::AdminToken;
use crate::domain::admin::{Actor, AdminId, NewAuditEntry, TokenDigest};
use crate::protocol::admin::{AdminCreated, AdminInput, AdminPatch, AdminView};
use crate::protocol::list::{ListQuery, Page};

impl Controller {
    /// The stored administrator whose token `presented` is, if any. The token is looked up by
    /// its digest: a removed administrator's token finds nothing from the moment the removal
    /// is committed.
    pub async fn administrator(&self, presented: &[u8]) -> Result<Option<Actor>> {
        let admin = self
            .store
            .admin_by_token(TokenDigest::of(presented))
            .await?;
        Ok(admin.as_ref().map(Actor::of))
    }

    pub async fn admins(&self) -> Result<Vec<AdminView>> {
        Ok(self
            .store
            .admins()
            .await?
            .iter()
            .map(AdminView::from)
            .collect())
    }

    /// Makes an administrator with a new random token, returned this once.
    pub async fn create_admin(&self, input: &AdminInput) -> Result<AdminCreated> {
        let (name, role) = input.validate()?;
        let token = AdminToken::generate().map_err(|e| ControllerError::Internal(e.to_string()))?;
        let admin = self
            .store
            .insert_admin(
                name,
                role,
                TokenDigest::of(token.expose_secret().as_bytes()),
                self.now(),
            )
            .await?;
        tracing::info!(admin = %admin.id, role = %admin.role, "administrator added");
        Ok(AdminCreated {
            admin: AdminView::from(&admin),
            token: token.expose_secret().to_owned(),
        })
    }

    pub async fn patch_admin(&self, id: AdminId, patch: &AdminPatch) -> Result<AdminView> {
        let role = patch.validate()?;
        let admin = self.store.set_admin_role(id, role).await?;
        tracing::info!(admin = %admin.id, role = %admin.role, "administrator's role changed");
        Ok(AdminView::from(&admin))
    }

    /// Removes an administrator: their token is refused from the next request on.
    pub async fn delete_admin(&self, id: AdminId) -> Result<()> {
        let admin = self.store.delete_admin(id).await?;
        tracing::info!(admin = %admin.id, "administrator removed");
        Ok(())
    }

    /// Adds an entry to the audit log.
    pub async fn record_audit(&self, entry: NewAuditEntry) -> Result<()> {
        self.store.append_audit(entry).await?;
        Ok(())
    }

    /// The audit log, newest first, one page at a time, filtered by object and administrator.
    pub async fn audit_page(
        &self,
        query: &ListQuery,
    ) -> Result<Page<crate::domain::admin::AuditEntry>> {
        let paging = query.paging()?;
        let filter = query.audit()?;
        let entries = self
            .store
            .audit_page(filter, paging.after, paging.limit + 1)
            .await?;
        Ok(Page::of(entries, paging.limit, |e| e.id))
    }

    /// The time an audit entry is stamped with.
    pub(crate) fn audit_time(&self) -> time::OffsetDateTime {
        self.now()
    }
}
