//! The query of the list endpoints (`GET /api/v1/accounts`, `/servers` and `/jobs`): a page
//! of `limit` items after the cursor `after`, and (accounts) filters.

use serde::Deserialize;

use crate::domain::{Role, Rule, ServerId, ValidationError};
use crate::store::AccountQuery;

/// The most items one page holds.
pub const MAX_LIMIT: usize = 1_000;
/// The items of a page when the query names no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The longest search prefix (a domain name's length).
pub const MAX_PREFIX: usize = 253;

/// The query string of a list, as sent (each parameter checked by [`ListQuery::paging`] and
/// [`ListQuery::accounts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<String>,
    pub after: Option<String>,
    pub server_id: Option<String>,
    pub role: Option<String>,
    pub q: Option<String>,
    /// Jobs only: the jobs of one account.
    pub account_id: Option<String>,
    /// The audit log only: the entries about one object (`server:3`).
    pub object: Option<String>,
    /// The audit log only: the entries of one administrator (their id).
    pub admin: Option<String>,
}

/// One page of a list: its items, and the cursor of the next page when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// The page from up to `limit + 1` items read in id order: the extra one says there is a
    /// next page, which starts after the last item kept.
    pub fn of(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> u64) -> Self {
        let next = match items.len() > limit {
            true => {
                items.truncate(limit);
                items.last().map(|last| id(last).to_string())
            }
            false => None,
        };
        Page { items, next }
    }
}

/// Which page: its size and the cursor it starts after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub limit: usize,
    /// The id of the last item of the page before (the cursor is that id, opaque to callers).
    pub after: Option<u64>,
}

impl ListQuery {
    /// The page asked for: `limit` 1 to 1,000 (default 100), `after` a cursor of this list.
    pub fn paging(&self) -> Result<Paging, ValidationError> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    Rule::OutOfRange {
                        min: 1,
                        max: MAX_LIMIT as u64,
                    }
                    .at("limit")
                })?,
        };
        let after = match self.after.as_deref() {
            None => None,
            Some(text) => Some(
                text.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0 && text == n.to_string())
                    .ok_or_else(|| Rule::BadCursor.at("after"))?,
            ),
        };
        Ok(Paging { limit, after })
    }

    /// The filters of an account list: `server_id`, `role`, and `q` (a user name or domain
    /// prefix: letters, digits, `.`, `-`, `_`; compared in lowercase).
    pub fn accounts(&self) -> Result<AccountQuery, ValidationError> {
        self.not_audit()?;
        if self.account_id.is_some() {
            return Err(Rule::UnknownParameter.at("account_id"));
        }
        let server = match self.server_id.as_deref() {
            None => None,
            Some(text) => Some(ServerId(
                text.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Rule::UnknownServer.at("server_id"))?,
            )),
        };
        let role = match self.role.as_deref() {
            None => None,
            Some(text) => Some(text.parse::<Role>().map_err(|r| r.at("role"))?),
        };
        let prefix = match self.q.as_deref() {
            None => None,
            Some("") => return Err(Rule::Empty.at("q")),
            Some(text) if text.chars().count() > MAX_PREFIX => {
                return Err(Rule::TooLong { max: MAX_PREFIX }.at("q"));
            }
            Some(text) => {
                if let Some(c) = text
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
                {
                    return Err(Rule::ForbiddenChar(c).at("q"));
                }
                Some(text.to_ascii_lowercase())
            }
        };
        Ok(AccountQuery {
            server,
            role,
            prefix,
        })
    }

    /// A server list has no filters: one given is refused, named.
    pub fn unfiltered(&self) -> Result<(), ValidationError> {
        self.jobs()?;
        match self.account_id {
            Some(_) => Err(Rule::UnknownParameter.at("account_id")),
            None => Ok(()),
        }
    }

    /// The filter of a job list: `account_id` (any account id, also of a deleted account,
    /// whose jobs stay).
    pub fn jobs(&self) -> Result<Option<crate::domain::AccountId>, ValidationError> {
        self.not_audit()?;
        for (field, value) in [
            ("server_id", &self.server_id),
            ("role", &self.role),
            ("q", &self.q),
        ] {
            if value.is_some() {
                return Err(Rule::UnknownParameter.at(field));
            }
        }
        match self.account_id.as_deref() {
            None => Ok(None),
            Some(text) => text
                .parse::<u64>()
                .ok()
                // Ids are JSON integers: at most 2^63 - 1, as the API document says.
                .filter(|n| (1..=i64::MAX as u64).contains(n) && text == n.to_string())
                .map(|n| Some(crate::domain::AccountId(n)))
                .ok_or_else(|| Rule::AccountIdFormat.at("account_id")),
        }
    }
}

impl ListQuery {
    /// Refuses the audit log's filters in another list.
    fn not_audit(&self) -> Result<(), ValidationError> {
        for (field, value) in [("object", &self.object), ("admin", &self.admin)] {
            if value.is_some() {
                return Err(Rule::UnknownParameter.at(field));
            }
        }
        Ok(())
    }

    /// The filters of the audit log: `object` (`server:3`) and `admin` (an administrator's
    /// id, `0` for the configured admin token).
    pub fn audit(&self) -> Result<crate::store::AuditFilter, ValidationError> {
        for (field, value) in [
            ("server_id", &self.server_id),
            ("role", &self.role),
            ("q", &self.q),
            ("account_id", &self.account_id),
        ] {
            if value.is_some() {
                return Err(Rule::UnknownParameter.at(field));
            }
        }
        let object = match self.object.as_deref() {
            None => None,
            Some(text) => {
                crate::domain::admin::parse_object(text).map_err(|r| r.at("object"))?;
                Some(text.to_owned())
            }
        };
        let admin = match self.admin.as_deref() {
            None => None,
            Some(text) => Some(crate::domain::admin::AdminId(
                text.parse::<u64>()
                    .ok()
                    .filter(|n| *n <= i64::MAX as u64 && text == n.to_string())
                    .ok_or_else(|| Rule::AdminIdFormat.at("admin"))?,
            )),
        };
        Ok(crate::store::AuditFilter { object, admin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> ListQuery {
        let mut q = ListQuery::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "limit" => q.limit = v,
                "after" => q.after = v,
                "server_id" => q.server_id = v,
                "role" => q.role = v,
                "account_id" => q.account_id = v,
                "object" => q.object = v,
                "admin" => q.admin = v,
                _ => q.q = v,
            }
        }
        q
    }

    #[test]
    fn pages_are_bounded_and_cursors_checked() {
        assert_eq!(
            query(&[]).paging().unwrap(),
            Paging {
                limit: 100,
                after: None
            }
        );
        assert_eq!(
            query(&[("limit", "1000"), ("after", "42")])
                .paging()
                .unwrap(),
            Paging {
                limit: 1000,
                after: Some(42)
            }
        );
        for (pairs, field) in [
            (&[("limit", "0")][..], "limit"),
            (&[("limit", "1001")], "limit"),
            (&[("limit", "-1")], "limit"),
            (&[("limit", "ten")], "limit"),
            (&[("after", "0")], "after"),
            (&[("after", "007")], "after"),
            (&[("after", "x")], "after"),
            (&[("after", "18446744073709551616")], "after"),
        ] {
            assert_eq!(query(pairs).paging().unwrap_err().field, field, "{pairs:?}");
        }
    }

    #[test]
    fn filters_are_checked_and_named() {
        let f = query(&[("server_id", "3"), ("role", "mail"), ("q", "Shop.Ex")])
            .accounts()
            .unwrap();
        assert_eq!(
            f,
            AccountQuery {
                server: Some(ServerId(3)),
                role: Some(Role::Mail),
                prefix: Some("shop.ex".into())
            }
        );
        for (pairs, field) in [
            (&[("server_id", "0")][..], "server_id"),
            (&[("server_id", "web1")], "server_id"),
            (&[("role", "smtp")], "role"),
            (&[("q", "")], "q"),
            (&[("q", "a b")], "q"),
            (&[("q", "a%")], "q"),
            (&[("q", "a'--")], "q"),
        ] {
            assert_eq!(
                query(pairs).accounts().unwrap_err().field,
                field,
                "{pairs:?}"
            );
        }
        let long = "a".repeat(254);
        assert_eq!(query(&[("q", &long)]).accounts().unwrap_err().field, "q");
        assert_eq!(
            query(&[("role", "web")]).unfiltered().unwrap_err().field,
            "role"
        );
        // `account_id` filters jobs, and only jobs.
        assert_eq!(
            query(&[("account_id", "7")]).jobs().unwrap(),
            Some(crate::domain::AccountId(7))
        );
        assert_eq!(query(&[]).jobs().unwrap(), None);
        for (pairs, field) in [
            (&[("account_id", "07")][..], "account_id"),
            (&[("account_id", "-1")], "account_id"),
            (&[("account_id", "9223372036854775808")], "account_id"),
            (&[("q", "shop")], "q"),
        ] {
            assert_eq!(query(pairs).jobs().unwrap_err().field, field, "{pairs:?}");
        }
        let q = query(&[("account_id", "7")]);
        assert_eq!(q.unfiltered().unwrap_err().field, "account_id");
        assert_eq!(q.accounts().unwrap_err().field, "account_id");
    }

    #[test]
    fn the_audit_filters_are_its_own() {
        let f = query(&[("object", "server:3"), ("admin", "0")])
            .audit()
            .unwrap();
        assert_eq!(f.object.as_deref(), Some("server:3"));
        assert_eq!(f.admin, Some(crate::domain::admin::AdminId(0)));
        for (pairs, field) in [
            (&[("object", "server")][..], "object"),
            (&[("object", "server:x")], "object"),
            (&[("admin", "x")], "admin"),
            (&[("admin", "01")], "admin"),
            (&[("account_id", "1")], "account_id"),
            (&[("q", "a")], "q"),
        ] {
            assert_eq!(query(pairs).audit().unwrap_err().field, field, "{pairs:?}");
        }
        let q = query(&[("object", "server:3")]);
        assert_eq!(q.jobs().unwrap_err().field, "object");
        assert_eq!(q.accounts().unwrap_err().field, "object");
        assert_eq!(q.unfiltered().unwrap_err().field, "object");
    }
}
