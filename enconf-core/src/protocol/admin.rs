//! Administrators and the audit log on the wire (`/api/v1/admins`, `/api/v1/session`,
//! `/api/v1/audit`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::ValidationError;
use crate::domain::admin::{Actor, Admin, AdminName, AdminRole, Permission};

/// `POST /api/v1/admins`.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminInput {
    pub name: Option<String>,
    /// `owner`, `admin`, `operator` or `viewer`.
    pub role: Option<String>,
}

/// `PATCH /api/v1/admins/{id}`.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminPatch {
    pub role: Option<String>,
}

fn role(raw: Option<&str>) -> Result<AdminRole, ValidationError> {
    match raw {
        None => Err(crate::domain::Rule::Required.at("role")),
        Some(text) => text.parse().map_err(|r: crate::domain::Rule| r.at("role")),
    }
}

impl AdminInput {
    pub fn validate(&self) -> Result<(AdminName, AdminRole), ValidationError> {
        let name = match self.name.as_deref() {
            None => return Err(crate::domain::Rule::Required.at("name")),
            Some(text) => AdminName::parse(text).map_err(|r| r.at("name"))?,
        };
        Ok((name, role(self.role.as_deref())?))
    }
}

impl AdminPatch {
    pub fn validate(&self) -> Result<AdminRole, ValidationError> {
        role(self.role.as_deref())
    }
}

/// `Admin` of the contract: never the token, which only [`AdminCreated`] carries, once.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminView {
    pub id: u64,
    pub name: String,
    pub role: AdminRole,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "controller", schema(value_type = String))]
    pub created_at: OffsetDateTime,
}

impl From<&Admin> for AdminView {
    fn from(a: &Admin) -> Self {
        Self {
            id: a.id.0,
            name: a.name.as_str().to_owned(),
            role: a.role,
            created_at: a.created_at,
        }
    }
}

/// The answer to `POST /api/v1/admins`: the administrator and their token, shown this once
/// (the controller keeps only its digest).
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCreated {
    #[serde(flatten)]
    pub admin: AdminView,
    pub token: String,
}

/// `GET /api/v1/session`: who the token is and what they may do (the web page shows only
/// that).
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// The administrator's id (`0`: the configured admin token).
    pub id: u64,
    pub name: String,
    pub role: AdminRole,
    /// `read`, `accounts`, `servers`, `audit`, `admins`: what the role may do.
    #[cfg_attr(feature = "controller", schema(value_type = Vec<String>))]
    pub permissions: Vec<Permission>,
}

impl From<&Actor> for SessionView {
    fn from(a: &Actor) -> Self {
        Self {
            id: a.id.0,
            name: a.name.clone(),
            role: a.role,
            permissions: Permission::ALL
                .into_iter()
                .filter(|p| a.role.may(*p))
                .collect(),
        }
    }
}
