//! Wire types of the db role: the Management API's databases and database users, and what the
//! controller sends the db server's agent (password hashes, never passwords).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{present, required};
use crate::domain::db::{DbHost, DbName, DbPassword, DbSpec, DbUserName, DbUserSpec, NativeHash};
use crate::domain::{Rule, ServerId, UserName, ValidationError};

/// `POST /api/v1/accounts/{id}/databases`.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseInput {
    /// With or without the account's prefix `<username>_`; then lowercase letters, digits and
    /// `_`, 64 characters in all at most.
    #[cfg_attr(feature = "controller", schema(example = "shop_wordpress"))]
    pub name: Option<String>,
}

impl DatabaseInput {
    pub fn validate(&self, account: &UserName) -> Result<DbName, ValidationError> {
        DbName::parse(account, required(self.name.as_deref(), "name")?).map_err(|r| r.at("name"))
    }
}

/// `Database` of the contract.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseView {
    /// The full name, prefix included.
    pub name: String,
    /// What its tables take on disk (data and indexes); `null` when the db server cannot be
    /// asked now.
    pub size_bytes: Option<u64>,
    #[cfg_attr(feature = "controller", schema(value_type = u64))]
    pub server_id: ServerId,
}

/// `DbUserInput` of the contract (`POST /api/v1/accounts/{id}/database-users`).
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbUserInput {
    /// With or without the account's prefix, as a database name.
    #[cfg_attr(feature = "controller", schema(example = "shop_wp"))]
    pub name: Option<String>,
    /// 8 to 1,024 characters; write-only (only its hash is kept, sealed).
    #[cfg_attr(feature = "controller", schema(write_only))]
    pub password: Option<String>,
    /// The account's databases this user gets all privileges on (and nothing else).
    #[serde(default)]
    pub databases: Vec<String>,
}

/// A database user to create, as validated.
#[derive(Debug, Clone)]
pub struct NewDbUser {
    pub name: DbUserName,
    pub password: DbPassword,
    pub databases: Vec<DbName>,
}

fn databases(
    account: &UserName,
    names: &[String],
    field: &str,
) -> Result<Vec<DbName>, ValidationError> {
    let mut out: Vec<DbName> = Vec::with_capacity(names.len());
    if names.len() > crate::domain::db::MAX_DATABASES {
        return Err(Rule::TooMany {
            max: crate::domain::db::MAX_DATABASES,
        }
        .at(field));
    }
    for (i, name) in names.iter().enumerate() {
        let db = DbName::parse(account, name).map_err(|r| r.at(format!("{field}[{i}]")))?;
        if out.contains(&db) {
            return Err(Rule::DuplicateOf(db.to_string()).at(format!("{field}[{i}]")));
        }
        out.push(db);
    }
    Ok(out)
}

impl DbUserInput {
    pub fn validate(&self, account: &UserName) -> Result<NewDbUser, ValidationError> {
        let name = DbUserName::parse(account, required(self.name.as_deref(), "name")?)
            .map_err(|r| r.at("name"))?;
        let password = DbPassword::parse(required(self.password.as_deref(), "password")?)
            .map_err(|r| r.at("password"))?;
        Ok(NewDbUser {
            name,
            password,
            databases: databases(account, &self.databases, "databases")?,
        })
    }
}

/// `PATCH /api/v1/accounts/{id}/database-users/{name}`: a new password and/or databases.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbUserPatch {
    /// A new password (`null` is refused).
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = String, required = false, write_only))]
    pub password: Option<Option<String>>,
    /// The databases it has all privileges on from now on (`null` is refused).
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "controller", schema(value_type = Vec<String>, required = false))]
    pub databases: Option<Option<Vec<String>>>,
}

/// A validated [`DbUserPatch`].
#[derive(Debug, Clone)]
pub struct DbUserChange {
    pub password: Option<DbPassword>,
    pub databases: Option<Vec<DbName>>,
}

impl DbUserPatch {
    pub fn validate(&self, account: &UserName) -> Result<DbUserChange, ValidationError> {
        let password = match &self.password {
            None => None,
            Some(None) => return Err(Rule::Required.at("password")),
            Some(Some(p)) => Some(DbPassword::parse(p).map_err(|r| r.at("password"))?),
        };
        let databases = match &self.databases {
            None => None,
            Some(None) => return Err(Rule::Required.at("databases")),
            Some(Some(list)) => Some(databases(account, list, "databases")?),
        };
        Ok(DbUserChange {
            password,
            databases,
        })
    }
}

/// `DbUser` of the contract: no password or hash field, so no answer can carry one.
#[cfg_attr(feature = "controller", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbUserView {
    pub name: String,
    pub databases: Vec<String>,
    /// Where it may connect from: `localhost` (the db server itself, and its phpMyAdmin),
    /// and the account's web server when that is another machine.
    pub hosts: Vec<String>,
    /// phpMyAdmin on the db server, when it serves it (`https://<panel>/<path>/`).
    pub phpmyadmin_url: Option<String>,
}

/// What a db server is sent of a user (`PUT /v1/accounts/{username}`, `db.users[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbUserPut {
    pub name: String,
    /// `*` and 40 uppercase hexadecimal digits (`mysql_native_password`).
    pub password_hash: String,
    #[serde(default)]
    pub databases: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// What a db server is sent of an account (`PUT /v1/accounts/{username}`, `db`): its
/// databases and users, whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbPut {
    #[serde(default)]
    pub databases: Vec<String>,
    #[serde(default)]
    pub users: Vec<DbUserPut>,
}

impl DbPut {
    pub fn from_spec(spec: &DbSpec) -> Self {
        Self {
            databases: spec.databases.iter().map(ToString::to_string).collect(),
            users: spec
                .users
                .iter()
                .map(|u| DbUserPut {
                    name: u.name.to_string(),
                    password_hash: u.hash.expose_secret().to_owned(),
                    databases: u.databases.iter().map(ToString::to_string).collect(),
                    hosts: u.hosts.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        }
    }

    /// Validates every name against `account` (`at`: the field prefix, `db.`).
    pub fn validate(&self, at: &str, account: &UserName) -> Result<DbSpec, ValidationError> {
        let parse_db = |name: &str, field: String| {
            DbName::parse_full(name)
                .map_err(|r| r.at(field.clone()))
                .and_then(|db| match db.belongs_to(account) {
                    true => Ok(db),
                    false => Err(Rule::EmptyAfterPrefix(format!("{account}_")).at(field)),
                })
        };
        let mut spec = DbSpec::default();
        for (i, name) in self.databases.iter().enumerate() {
            spec.databases
                .push(parse_db(name, format!("{at}databases[{i}]"))?);
        }
        for (i, user) in self.users.iter().enumerate() {
            let field = |f: &str| format!("{at}users[{i}].{f}");
            let name = DbUserName::parse_full(&user.name).map_err(|r| r.at(field("name")))?;
            let hash =
                NativeHash::parse(&user.password_hash).map_err(|r| r.at(field("password_hash")))?;
            let mut dbs = Vec::with_capacity(user.databases.len());
            for (j, db) in user.databases.iter().enumerate() {
                dbs.push(parse_db(db, field(&format!("databases[{j}]")))?);
            }
            let mut hosts = Vec::with_capacity(user.hosts.len());
            for (j, host) in user.hosts.iter().enumerate() {
                let host = DbHost::parse(host).map_err(|r| r.at(field(&format!("hosts[{j}]"))))?;
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
            spec.users.push(DbUserSpec {
                name,
                hash,
                databases: dbs,
                hosts,
            });
        }
        spec.check(account, at)?;
        Ok(spec)
    }
}

/// Agent API: `PUT /v1/phpmyadmin`: where the server's panel HTTPS block serves phpMyAdmin
/// (`null`: nowhere).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhpMyAdminPut {
    pub path: Option<crate::domain::UrlPath>,
}

/// `GET /v1/db/{username}` answer: what each database of the account takes on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentDatabases {
    /// Bytes of data and indexes, by database name (a database without tables: 0).
    pub sizes: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> UserName {
        UserName::parse("shop").unwrap()
    }

    #[test]
    fn inputs_name_the_field_at_fault() {
        let bad = DbUserInput {
            name: Some("wp".into()),
            password: Some("long-enough".into()),
            databases: vec!["data".into(), "da ta".into()],
        };
        assert_eq!(bad.validate(&shop()).unwrap_err().field, "databases[1]");
        let short = DbUserInput {
            name: Some("wp".into()),
            password: Some("short".into()),
            databases: Vec::new(),
        };
        assert_eq!(short.validate(&shop()).unwrap_err().field, "password");
        let ok = DbUserInput {
            name: Some("shop_wp".into()),
            password: Some("long-enough".into()),
            databases: vec!["data".into()],
        }
        .validate(&shop())
        .unwrap();
        assert_eq!(ok.name.as_str(), "shop_wp");
        assert_eq!(ok.databases[0].as_str(), "shop_data");
    }

    #[test]
    fn a_put_round_trips_and_refuses_foreign_names() {
        let spec = DbSpec {
            databases: vec![DbName::parse_full("shop_a").unwrap()],
            users: vec![DbUserSpec {
                name: DbUserName::parse_full("shop_u").unwrap(),
                hash: NativeHash::of("password"),
                databases: vec![DbName::parse_full("shop_a").unwrap()],
                hosts: vec![DbHost::Localhost],
            }],
        };
        let put = DbPut::from_spec(&spec);
        assert_eq!(put.validate("db.", &shop()).unwrap(), spec);
        let mut foreign = put.clone();
        foreign.databases.push("other_a".into());
        assert_eq!(
            foreign.validate("db.", &shop()).unwrap_err().field,
            "db.databases[1]"
        );
        let mut hostile = put;
        hostile.users[0].hosts.push("%".into());
        assert_eq!(
            hostile.validate("db.", &shop()).unwrap_err().field,
            "db.users[0].hosts[1]"
        );
    }
}
