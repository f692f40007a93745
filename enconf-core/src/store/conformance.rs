//! The behaviour every [`Store`] backend must have. Each check takes a new, empty store.
//!
//! A backend in another crate runs the whole suite with the `conformance` feature:
//! `for check in CHECKS { check.1(new_store()).await }`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;

use time::OffsetDateTime;
use time::macros::datetime;

use super::{Kind, Store, StoreError};
use crate::domain::{
    AccountId, AccountSpec, AccountStatus, AgentToken, Domains, Health, NewAccount, Role, RoleSet,
    ServerId, ServerSpec, UserName,
};
use crate::placement::{PlacementError, Unfit};

type Check = fn(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every check, by name.
pub const CHECKS: &[(&str, Check)] = &[
    ("servers_round_trip", |s| Box::pin(servers_round_trip(s))),
    ("server_names_and_hostnames_are_unique", |s| {
        Box::pin(server_names_and_hostnames_are_unique(s))
    }),
    ("update_keeps_token_and_health", |s| {
        Box::pin(update_keeps_token_and_health(s))
    }),
    ("missing_objects_are_not_found", |s| {
        Box::pin(missing_objects_are_not_found(s))
    }),
    ("accounts_round_trip_and_counts", |s| {
        Box::pin(accounts_round_trip_and_counts(s))
    }),
    ("account_names_and_domains_are_unique", |s| {
        Box::pin(account_names_and_domains_are_unique(s))
    }),
    ("placement_happens_in_the_store", |s| {
        Box::pin(placement_happens_in_the_store(s))
    }),
    ("servers_with_accounts_are_kept", |s| {
        Box::pin(servers_with_accounts_are_kept(s))
    }),
    ("accounts_move_between_servers", |s| {
        Box::pin(accounts_move_between_servers(s))
    }),
    ("settings_round_trip", |s| Box::pin(settings_round_trip(s))),
    ("lists_are_paged_from_indexes", |s| {
        Box::pin(lists_are_paged_from_indexes(s))
    }),
    ("concurrent_creates_respect_limits", |s| {
        Box::pin(concurrent_creates_respect_limits(s))
    }),
    ("one_name_has_one_owner", |s| {
        Box::pin(one_name_has_one_owner(s))
    }),
    ("mail_belongs_to_its_account", |s| {
        Box::pin(mail_belongs_to_its_account(s))
    }),
    ("one_agent_is_one_server", |s| {
        Box::pin(one_agent_is_one_server(s))
    }),
    ("zones_belong_to_their_account", |s| {
        Box::pin(zones_belong_to_their_account(s))
    }),
    ("one_job_per_account_and_backup_keys_kept", |s| {
        Box::pin(one_job_per_account_and_backup_keys_kept(s))
    }),
    ("databases_belong_to_their_account", |s| {
        Box::pin(databases_belong_to_their_account(s))
    }),
    ("admins_by_token_and_an_append_only_audit_log", |s| {
        Box::pin(admins_by_token_and_an_append_only_audit_log(s))
    }),
];

const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

/// A valid server spec named `name`, with hostname `<name>.example.com`.
pub fn spec(name: &str, roles: &str) -> ServerSpec {
    ServerSpec {
        name: name.parse().unwrap(),
        hostname: format!("{name}.example.com").parse().unwrap(),
        mail_hostname: None,
        agent_url: format!("http://{name}.example.com:50000").parse().unwrap(),
        roles: roles.parse().unwrap(),
        max_accounts: None,
        panel_url: None,
        phpmyadmin_path: None,
        roundcube_path: None,
        active: true,
        ipv4: None,
        ipv6: None,
    }
}

pub fn token(s: &str) -> AgentToken {
    AgentToken::parse(&format!("token-{s:0>16}")).unwrap()
}

pub fn account(user: &str, domains: &[&str], server: Option<ServerId>) -> NewAccount {
    account_with(
        user,
        domains,
        "web",
        server.map(|s| (Role::Web, s)).into_iter().collect(),
    )
}

/// An account using `roles`, with `pins`.
pub fn account_with(
    user: &str,
    domains: &[&str],
    roles: &str,
    pins: std::collections::BTreeMap<Role, ServerId>,
) -> NewAccount {
    NewAccount {
        spec: AccountSpec {
            username: UserName::parse(user).unwrap(),
            domains: Domains::parse("domains", domains).unwrap(),
            php_version: Some("8.2".parse().unwrap()),
            php: Default::default(),
            roles: roles.parse().unwrap(),
            zones: Vec::new(),
            db: Default::default(),
            backup: None,
        },
        pins,
    }
}

fn online() -> Health {
    Health {
        agent_version: Some(semver::Version::new(0, 1, 0)),
        reachable: true,
        last_seen: Some(NOW),
        last_error: None,
        agent_id: None,
        agent_roles: None,
        php_versions: None,
        addresses: Vec::new(),
        failures: 0,
        tls_not_after: None,
    }
}

/// Adds a server that is reachable, so placement may pick it.
pub async fn online_server(store: &dyn Store, name: &str, roles: &str) -> ServerId {
    let s = store
        .insert_server(spec(name, roles), token(name), Health::default())
        .await
        .unwrap();
    store.record_health(&s, online()).await.unwrap();
    s.id
}

fn assert_duplicate(result: Result<impl std::fmt::Debug, StoreError>, want_field: &str) {
    match result {
        Err(StoreError::Duplicate { field, .. }) => assert_eq!(field, want_field),
        other => panic!("expected a duplicate {want_field}, got {other:?}"),
    }
}

pub async fn servers_round_trip(store: Arc<dyn Store>) {
    assert!(store.servers().await.unwrap().is_empty());
    let a = store
        .insert_server(spec("web1", "web,db"), token("a"), Health::default())
        .await
        .unwrap();
    let b = store
        .insert_server(spec("mail1", "mail,dns"), token("b"), Health::default())
        .await
        .unwrap();
    assert!(a.id < b.id);
    assert_eq!(a.accounts, 0);
    assert_eq!(a.health, Health::default());
    assert!(
        !a.health.reachable,
        "unreachable until the first health check"
    );
    let got = store.server(a.id).await.unwrap();
    assert_eq!(got, a);
    assert_eq!(got.token, token("a"));
    let secret = token("a").expose_secret().to_owned();
    assert!(
        !format!("{got:?}").contains(&secret),
        "Debug of a server shows its token"
    );
    let view = crate::protocol::ServerView::new(&got, &crate::version::release());
    let json = serde_json::to_string(&view).unwrap();
    assert!(!json.contains(&secret) && !json.contains("token"), "{json}");
    let all = store.servers().await.unwrap();
    assert_eq!(
        all.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
    store.delete_server(a.id).await.unwrap();
    assert_eq!(store.servers().await.unwrap(), vec![b.clone()]);
    let c = store
        .insert_server(spec("web2", "web"), token("c"), Health::default())
        .await
        .unwrap();
    assert!(c.id > b.id, "ids are never reused");
}

pub async fn server_names_and_hostnames_are_unique(store: Arc<dyn Store>) {
    let a = store
        .insert_server(spec("web1", "web"), token("a"), Health::default())
        .await
        .unwrap();
    let b = store
        .insert_server(spec("web2", "web"), token("b"), Health::default())
        .await
        .unwrap();

    let mut same_name = spec("other", "web");
    same_name.name = "WEB1".parse().unwrap();
    assert_duplicate(
        store
            .insert_server(same_name, token("c"), Health::default())
            .await,
        "name",
    );
    let mut same_host = spec("other", "web");
    same_host.hostname = "web1.example.com".parse().unwrap();
    assert_duplicate(
        store
            .insert_server(same_host, token("c"), Health::default())
            .await,
        "hostname",
    );

    // Renaming onto another server's name or hostname is refused; keeping one's own is fine.
    let mut rename = spec("web2", "web");
    rename.name = "web1".parse().unwrap();
    assert_duplicate(store.update_server(b.id, rename, None).await, "name");
    let mut rehost = spec("web2", "web");
    rehost.hostname = "web1.example.com".parse().unwrap();
    assert_duplicate(store.update_server(b.id, rehost, None).await, "hostname");
    store
        .update_server(a.id, spec("web1", "web,db"), None)
        .await
        .unwrap();

    // After a rename the old name and hostname are free.
    store
        .update_server(a.id, spec("web9", "web"), None)
        .await
        .unwrap();
    store
        .insert_server(spec("web1", "web"), token("d"), Health::default())
        .await
        .unwrap();
    assert_eq!(store.servers().await.unwrap().len(), 3);
}

pub async fn update_keeps_token_and_health(store: Arc<dyn Store>) {
    let id = online_server(&*store, "web1", "web").await;
    let mut changed = spec("web1", "web,db");
    changed.max_accounts = NonZeroU32::new(10);
    let s = store
        .update_server(id, changed.clone(), None)
        .await
        .unwrap();
    assert_eq!(s.spec, changed);
    assert_eq!(s.token, token("web1"));
    assert_eq!(s.health, online());
    let s = store
        .update_server(id, changed, Some(token("new")))
        .await
        .unwrap();
    assert_eq!(s.token, token("new"));
    assert_eq!(store.server(id).await.unwrap().token, token("new"));

    let offline = Health {
        reachable: false,
        last_error: Some("connection refused".into()),
        ..online()
    };
    store.record_health(&s, offline.clone()).await.unwrap();
    assert_eq!(store.server(id).await.unwrap().health, offline);

    // A check that began before the URL or token changed is not recorded.
    let mut moved = s.spec.clone();
    moved.agent_url = "http://web1.example.com:50001".parse().unwrap();
    let after = store.update_server(id, moved, None).await.unwrap();
    let kept = store.record_health(&s, online()).await.unwrap();
    assert_eq!(kept.health, offline, "stale URL");
    let stale_token = store
        .update_server(id, after.spec.clone(), Some(token("newer")))
        .await
        .unwrap();
    assert_eq!(
        store.record_health(&after, online()).await.unwrap().health,
        offline,
        "stale token"
    );
    assert_eq!(
        store
            .record_health(&stale_token, online())
            .await
            .unwrap()
            .health,
        online()
    );
}

pub async fn missing_objects_are_not_found(store: Arc<dyn Store>) {
    let server = |r: Result<_, StoreError>| match r {
        Err(StoreError::NotFound {
            kind: Kind::Server,
            id: 42,
        }) => {}
        other => panic!("expected server 42 not found, got {other:?}"),
    };
    server(store.server(ServerId(42)).await.map(drop));
    server(
        store
            .update_server(ServerId(42), spec("x", "web"), None)
            .await
            .map(drop),
    );
    let mut ghost = store
        .insert_server(spec("ghost", "web"), token("ghost"), Health::default())
        .await
        .unwrap();
    ghost.id = ServerId(42);
    server(store.record_health(&ghost, online()).await.map(drop));
    server(store.delete_server(ServerId(42)).await);
    server(store.accounts_on(ServerId(42)).await.map(drop));
    server(
        store
            .create_account(account("shop", &["shop.example"], Some(ServerId(42))), NOW)
            .await
            .map(drop),
    );
    let acct = |r: Result<_, StoreError>| match r {
        Err(StoreError::NotFound {
            kind: Kind::Account,
            id: 7,
        }) => {}
        other => panic!("expected account 7 not found, got {other:?}"),
    };
    acct(store.account(AccountId(7)).await.map(drop));
    acct(
        store
            .set_account_status(AccountId(7), AccountStatus::Active)
            .await
            .map(drop),
    );
    acct(store.delete_account(AccountId(7)).await.map(drop));
}

pub async fn accounts_round_trip_and_counts(store: Arc<dyn Store>) {
    let web = online_server(&*store, "web1", "web,db").await;
    let a = store
        .create_account(
            account("shop", &["shop.example", "www.shop.example"], None),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(a.web_server(), Some(web));
    assert_eq!(a.status, AccountStatus::Provisioning);
    assert_eq!(a.created_at, NOW);
    assert_eq!(store.account(a.id).await.unwrap(), a);
    assert_eq!(store.server(web).await.unwrap().accounts, 1);

    let b = store
        .create_account(account("blog", &["blog.example"], Some(web)), NOW)
        .await
        .unwrap();
    assert_eq!(store.accounts().await.unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(
        store.accounts_on(web).await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(store.servers().await.unwrap()[0].accounts, 2);

    let active = store
        .set_account_status(a.id, AccountStatus::Active)
        .await
        .unwrap();
    assert_eq!(active.status, AccountStatus::Active);
    assert_eq!(
        store.account(a.id).await.unwrap().status,
        AccountStatus::Active
    );

    let deleted = store.delete_account(a.id).await.unwrap();
    assert_eq!(deleted.id, a.id);
    assert_eq!(store.server(web).await.unwrap().accounts, 1);
    assert_eq!(store.accounts().await.unwrap(), vec![b]);
    // Its user name and domains are free again.
    store
        .create_account(account("shop", &["www.shop.example"], None), NOW)
        .await
        .unwrap();
}

pub async fn account_names_and_domains_are_unique(store: Arc<dyn Store>) {
    online_server(&*store, "web1", "web").await;
    let first = store
        .create_account(
            account("shop", &["shop.example", "www.shop.example"], None),
            NOW,
        )
        .await
        .unwrap();
    assert_duplicate(
        store
            .create_account(account("shop", &["other.example"], None), NOW)
            .await,
        "username",
    );
    assert_duplicate(
        store
            .create_account(
                account("other", &["new.example", "www.shop.example"], None),
                NOW,
            )
            .await,
        "domains[1]",
    );
    // The refused creations left nothing behind: no account, no claimed name, no id used.
    assert_eq!(store.accounts().await.unwrap().len(), 1);
    let next = store
        .create_account(account("other", &["new.example"], None), NOW)
        .await
        .unwrap();
    assert_eq!(next.id.0, first.id.0 + 1);
    assert_eq!(
        store
            .server(first.web_server().unwrap())
            .await
            .unwrap()
            .accounts,
        2
    );
}

pub async fn placement_happens_in_the_store(store: Arc<dyn Store>) {
    let none = store
        .create_account(account("a1", &["a1.example"], None), NOW)
        .await;
    assert!(
        matches!(none, Err(StoreError::Placement(PlacementError::NoServers))),
        "{none:?}"
    );

    let mail = online_server(&*store, "mail1", "mail,dns").await;
    let web1 = online_server(&*store, "web1", "web,db").await;
    let web2 = online_server(&*store, "web2", "web").await;
    // A server never checked is not reachable; an inactive one takes no accounts.
    store
        .insert_server(spec("fresh", "web"), token("f"), Health::default())
        .await
        .unwrap();
    let mut inactive = spec("web2", "web");
    inactive.active = false;

    // Least loaded first, ties to the lowest id.
    let placed = |n: &str| account(n, &[&format!("{n}.example")], None);
    let a = store.create_account(placed("a1"), NOW).await.unwrap();
    let b = store.create_account(placed("a2"), NOW).await.unwrap();
    let c = store.create_account(placed("a3"), NOW).await.unwrap();
    assert_eq!(
        (a.web_server(), b.web_server(), c.web_server()),
        (Some(web1), Some(web2), Some(web1))
    );

    store.update_server(web2, inactive, None).await.unwrap();
    let d = store.create_account(placed("a4"), NOW).await.unwrap();
    assert_eq!(d.web_server(), Some(web1));
    let named = store
        .create_account(account("a5", &["a5.example"], Some(web2)), NOW)
        .await;
    match named {
        Err(StoreError::Placement(PlacementError::Unfit {
            server,
            reason: Unfit::Inactive,
            ..
        })) => {
            assert_eq!(server, web2)
        }
        other => panic!("expected inactive, got {other:?}"),
    }
    let named = store
        .create_account(account("a5", &["a5.example"], Some(mail)), NOW)
        .await;
    assert!(
        matches!(
            named,
            Err(StoreError::Placement(PlacementError::Unfit { reason: Unfit::MissingRoles(r), .. }))
                if r == RoleSet::EMPTY.with(Role::Web)
        ),
        "{named:?}"
    );

    // Full: web1 holds 3; a limit of 3 leaves no room anywhere.
    let mut full = spec("web1", "web,db");
    full.max_accounts = NonZeroU32::new(3);
    store.update_server(web1, full, None).await.unwrap();
    match store.create_account(placed("a6"), NOW).await {
        Err(StoreError::Placement(PlacementError::NoneFits { rejected, .. })) => {
            assert_eq!(
                (
                    rejected.full,
                    rejected.inactive,
                    rejected.missing_roles,
                    rejected.unreachable
                ),
                (1, 1, 1, 1)
            );
        }
        other => panic!("expected no server, got {other:?}"),
    }
    assert_eq!(store.accounts().await.unwrap().len(), 4);
}

pub async fn servers_with_accounts_are_kept(store: Arc<dyn Store>) {
    let web = online_server(&*store, "web1", "web,db").await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let n = format!("user{i:02}");
        let a = store.create_account(account(&n, &[&format!("{n}.example")], None), NOW);
        ids.push(a.await.unwrap().id);
    }
    match store.delete_server(web).await {
        Err(e @ StoreError::ServerHasAccounts { .. }) => {
            let StoreError::ServerHasAccounts {
                count,
                ref accounts,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(count, 25);
            assert_eq!(accounts.len(), super::LISTED_ACCOUNTS);
            assert_eq!(accounts[0].0.as_str(), "user00");
            let msg = e.to_string();
            assert!(
                msg.starts_with("the server hosts 25 account(s) (user00: web; user01: web"),
                "{msg}"
            );
            assert!(msg.ends_with(", …): migrate or delete them first"), "{msg}");
        }
        other => panic!("expected server_has_accounts, got {other:?}"),
    }
    // Dropping the role its accounts need is refused too; other role changes are fine.
    match store.update_server(web, spec("web1", "db"), None).await {
        Err(StoreError::RolesInUse {
            missing,
            accounts: 25,
        }) => {
            assert_eq!(missing, RoleSet::EMPTY.with(Role::Web))
        }
        other => panic!("expected roles_in_use, got {other:?}"),
    }
    store
        .update_server(web, spec("web1", "web"), None)
        .await
        .unwrap();

    for id in ids {
        store.delete_account(id).await.unwrap();
    }
    assert_eq!(store.server(web).await.unwrap().accounts, 0);
    store.delete_server(web).await.unwrap();
    // Name and hostname can be used again.
    store
        .insert_server(spec("web1", "web"), token("x"), Health::default())
        .await
        .unwrap();
}

fn web_to(server: ServerId) -> std::collections::BTreeMap<Role, ServerId> {
    std::collections::BTreeMap::from([(Role::Web, server)])
}

pub async fn accounts_move_between_servers(store: Arc<dyn Store>) {
    let a = online_server(&*store, "web1", "web").await;
    let b = online_server(&*store, "web2", "web").await;
    let dns = online_server(&*store, "dns1", "dns").await;
    let acc = store
        .create_account(account("shop", &["shop.example"], Some(a)), NOW)
        .await
        .unwrap();
    let moved = store.move_roles(acc.id, &web_to(b)).await.unwrap();
    assert_eq!(moved.web_server(), Some(b));
    assert_eq!(store.account(acc.id).await.unwrap().web_server(), Some(b));
    assert_eq!(store.server(a).await.unwrap().accounts, 0);
    assert_eq!(store.server(b).await.unwrap().accounts, 1);
    assert!(store.accounts_on(a).await.unwrap().is_empty());
    assert_eq!(store.accounts_on(b).await.unwrap()[0].id, acc.id);
    // The source can now be deleted; the target cannot.
    store.delete_server(a).await.unwrap();
    assert!(matches!(
        store.delete_server(b).await,
        Err(StoreError::ServerHasAccounts { count: 1, .. })
    ));
    // A target without the role, full, or missing is refused and nothing moves.
    match store.move_roles(acc.id, &web_to(dns)).await {
        Err(StoreError::Placement(PlacementError::Unfit {
            reason: Unfit::MissingRoles(_),
            ..
        })) => {}
        other => panic!("expected missing roles, got {other:?}"),
    }
    assert!(matches!(
        store.move_roles(acc.id, &web_to(ServerId(999))).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.server(b).await.unwrap().accounts, 1);
    assert_eq!(store.account(acc.id).await.unwrap().web_server(), Some(b));
    // Moving to where it is changes nothing.
    assert_eq!(
        store
            .move_roles(acc.id, &web_to(b))
            .await
            .unwrap()
            .web_server(),
        Some(b)
    );
    assert_eq!(store.server(b).await.unwrap().accounts, 1);

    // Several roles at once: all of them or none.
    let m1 = online_server(&*store, "mail1", "mail").await;
    let m2 = online_server(&*store, "mail2", "mail").await;
    let input = account_with(
        "post",
        &["post.example"],
        "web,mail",
        std::collections::BTreeMap::from([(Role::Web, b), (Role::Mail, m1)]),
    );
    let post = store.create_account(input, NOW).await.unwrap();
    let both = std::collections::BTreeMap::from([(Role::Web, dns), (Role::Mail, m2)]);
    assert!(store.move_roles(post.id, &both).await.is_err());
    assert_eq!(
        store
            .account(post.id)
            .await
            .unwrap()
            .servers
            .one(Role::Mail),
        Some(m1)
    );
    assert_eq!(store.server(m2).await.unwrap().accounts, 0);
    let c = online_server(&*store, "web3", "web").await;
    let both = std::collections::BTreeMap::from([(Role::Web, c), (Role::Mail, m2)]);
    let moved = store.move_roles(post.id, &both).await.unwrap();
    assert_eq!(
        (moved.web_server(), moved.servers.one(Role::Mail)),
        (Some(c), Some(m2))
    );
    for (server, count) in [(m1, 0), (m2, 1), (c, 1), (b, 1)] {
        assert_eq!(store.server(server).await.unwrap().accounts, count);
    }
}

/// Every page of `query`, `limit` at a time: the ids, in the order seen.
async fn every_page(store: &dyn Store, query: &super::AccountQuery, limit: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.accounts_page(query, after, limit).await.unwrap();
        assert!(page.len() <= limit);
        seen.extend(page.iter().map(|a| a.id.0));
        match page.last() {
            Some(last) if page.len() == limit => after = Some(last.id),
            _ => return seen,
        }
    }
}

pub async fn lists_are_paged_from_indexes(store: Arc<dyn Store>) {
    use super::AccountQuery;
    let w1 = online_server(&*store, "web1", "web").await;
    let w2 = online_server(&*store, "web2", "web").await;
    let m1 = online_server(&*store, "mail1", "mail").await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let (roles, mut pins) = match i % 2 {
            0 => (
                "web,mail",
                std::collections::BTreeMap::from([(Role::Mail, m1)]),
            ),
            _ => ("web", std::collections::BTreeMap::new()),
        };
        pins.insert(Role::Web, if i % 3 == 0 { w1 } else { w2 });
        let name = format!("p{i:02}");
        let input = account_with(&name, &[&format!("{name}.example")], roles, pins);
        ids.push(store.create_account(input, NOW).await.unwrap().id);
    }

    // Pages of 5 while accounts come and go between the requests: each account that stays is
    // seen exactly once, one deleted before its page is not, one created later may be.
    let all = AccountQuery::default();
    let first = store.accounts_page(&all, None, 5).await.unwrap();
    assert_eq!(first.iter().map(|a| a.id).collect::<Vec<_>>(), ids[..5]);
    store.delete_account(ids[7]).await.unwrap();
    store.delete_account(ids[1]).await.unwrap();
    let late = store
        .create_account(account("q20", &["q20.example"], Some(w1)), NOW)
        .await
        .unwrap();
    let mut seen: Vec<u64> = first.iter().map(|a| a.id.0).collect();
    let mut after = first.last().map(|a| a.id);
    loop {
        let page = store.accounts_page(&all, after, 5).await.unwrap();
        seen.extend(page.iter().map(|a| a.id.0));
        match page.last() {
            Some(last) if page.len() == 5 => after = Some(last.id),
            _ => break,
        }
    }
    // ids[1] was deleted after its page was read: it was seen once.
    let mut want: Vec<u64> = ids
        .iter()
        .map(|a| a.0)
        .filter(|id| *id != ids[7].0)
        .collect();
    want.push(late.id.0);
    assert_eq!(seen, want, "each once, in id order");

    // Filters answer exactly the matching accounts, at any page size.
    let everyone = store.accounts().await.unwrap();
    let matching = |f: &dyn Fn(&crate::domain::Account) -> bool| -> Vec<u64> {
        everyone.iter().filter(|a| f(a)).map(|a| a.id.0).collect()
    };
    let cases: Vec<(AccountQuery, Vec<u64>)> = vec![
        (
            AccountQuery {
                server: Some(w1),
                ..Default::default()
            },
            matching(&|a| a.servers.servers().contains(&w1)),
        ),
        (
            AccountQuery {
                role: Some(Role::Mail),
                ..Default::default()
            },
            matching(&|a| a.spec.roles.contains(Role::Mail)),
        ),
        (
            AccountQuery {
                server: Some(m1),
                role: Some(Role::Mail),
                ..Default::default()
            },
            matching(&|a| a.servers.of(Role::Mail).contains(&m1)),
        ),
        (
            AccountQuery {
                server: Some(m1),
                role: Some(Role::Web),
                ..Default::default()
            },
            Vec::new(),
        ),
        (
            AccountQuery {
                prefix: Some("p0".into()),
                ..Default::default()
            },
            matching(&|a| a.spec.username.as_str().starts_with("p0")),
        ),
        (
            AccountQuery {
                prefix: Some("p03.ex".into()),
                ..Default::default()
            },
            vec![ids[3].0],
        ),
        (
            AccountQuery {
                prefix: Some("p0".into()),
                role: Some(Role::Web),
                server: Some(w1),
            },
            matching(&|a| {
                a.spec.username.as_str().starts_with("p0") && a.servers.of(Role::Web).contains(&w1)
            }),
        ),
    ];
    for (query, want) in cases {
        for limit in [1, 2, 5, 1000] {
            assert_eq!(
                every_page(&*store, &query, limit).await,
                want,
                "{query:?} by {limit}"
            );
        }
    }
    assert!(matching(&|a| a.servers.servers().contains(&w1)).len() >= 3);

    // Servers, by id, a page at a time.
    let first = store.servers_page(None, 2).await.unwrap();
    assert_eq!(first.iter().map(|s| s.id).collect::<Vec<_>>(), [w1, w2]);
    let rest = store.servers_page(Some(w2), 2).await.unwrap();
    assert_eq!(rest.iter().map(|s| s.id).collect::<Vec<_>>(), [m1]);
    assert_eq!(rest[0].accounts, 6);
    assert!(
        store
            .servers_page(Some(ServerId(u64::MAX)), 2)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn settings_round_trip(store: Arc<dyn Store>) {
    assert_eq!(store.setting("acme_account").await.unwrap(), None);
    let v = serde_json::json!({"kid": "https://ca.example/acct/1", "key": "…"});
    store.put_setting("acme_account", v.clone()).await.unwrap();
    assert_eq!(store.setting("acme_account").await.unwrap(), Some(v));
    store
        .put_setting("acme_account", serde_json::json!(2))
        .await
        .unwrap();
    assert_eq!(
        store.setting("acme_account").await.unwrap(),
        Some(serde_json::json!(2))
    );
    assert_eq!(store.setting("other").await.unwrap(), None);

    // Prefixes: only the keys that start with it, in key order, and nothing else.
    for (k, v) in [
        ("ssl:2:panel", 1),
        ("ssl:1:mail", 2),
        ("ssl:1:panel", 3),
        ("ssl", 4),
    ] {
        store.put_setting(k, serde_json::json!(v)).await.unwrap();
    }
    let listed = store.settings_with_prefix("ssl:").await.unwrap();
    let keys: Vec<_> = listed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["ssl:1:mail", "ssl:1:panel", "ssl:2:panel"]);
    assert_eq!(listed[0].1, serde_json::json!(2));
    assert!(
        store
            .settings_with_prefix("nothing:")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.settings_with_prefix("").await.unwrap().len(), 5);

    store.delete_setting("ssl:1:mail").await.unwrap();
    assert_eq!(store.setting("ssl:1:mail").await.unwrap(), None);
    store.delete_setting("ssl:1:mail").await.unwrap(); // not there: no error
    let keys: Vec<_> = store
        .settings_with_prefix("ssl:")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["ssl:1:panel", "ssl:2:panel"]);
}

pub async fn concurrent_creates_respect_limits(store: Arc<dyn Store>) {
    let web = online_server(&*store, "web1", "web").await;
    let mut limited = spec("web1", "web");
    limited.max_accounts = NonZeroU32::new(5);
    store.update_server(web, limited, None).await.unwrap();

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let n = format!("c{i}");
                store
                    .create_account(account(&n, &[&format!("{n}.example")], None), NOW)
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Placement(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 5, "exactly the limit, never more");
    assert_eq!(store.server(web).await.unwrap().accounts, 5);

    // Ten racing claims of one domain: one wins.
    let mut room = spec("web1", "web");
    room.max_accounts = None;
    store.update_server(web, room, None).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .create_account(account(&format!("d{i}"), &["contested.example"], None), NOW)
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => winners += 1,
            Err(StoreError::Duplicate { field, .. }) => assert_eq!(field, "domains[0]"),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(winners, 1);
}

/// Server hostnames, mail hostnames and account domains are one name space: each name has one
/// owner (a server may use one name as both of its own).
pub async fn one_name_has_one_owner(store: Arc<dyn Store>) {
    let mut web = spec("web1", "web");
    web.mail_hostname = Some("mail.example.com".parse().unwrap());
    let web = store
        .insert_server(web, token("a"), Health::default())
        .await
        .unwrap();
    let mut both = spec("solo", "web,mail");
    both.mail_hostname = Some(both.hostname.clone());
    let solo = store
        .insert_server(both, token("b"), Health::default())
        .await
        .unwrap();
    store.record_health(&web, online()).await.unwrap();
    store.record_health(&solo, online()).await.unwrap();

    // A tenant cannot take a server's hostname or mail hostname.
    for name in ["web1.example.com", "mail.example.com", "solo.example.com"] {
        let taken = store
            .create_account(account("shop", &["shop.example", name], None), NOW)
            .await;
        assert_duplicate(taken.map(drop), "domains[1]");
    }
    let shop = store
        .create_account(account("shop", &["shop.example"], Some(web.id)), NOW)
        .await
        .unwrap();

    // A server cannot take a tenant's domain, nor another server's mail hostname, as either
    // of its names, added or renamed.
    let mut onto_domain = spec("web2", "web");
    onto_domain.hostname = "shop.example".parse().unwrap();
    assert_duplicate(
        store
            .insert_server(onto_domain.clone(), token("c"), Health::default())
            .await
            .map(drop),
        "hostname",
    );
    let mut mail_onto_domain = spec("web2", "web");
    mail_onto_domain.mail_hostname = Some("shop.example".parse().unwrap());
    assert_duplicate(
        store
            .insert_server(mail_onto_domain, token("c"), Health::default())
            .await
            .map(drop),
        "mail_hostname",
    );
    let mut onto_mail = spec("web2", "web");
    onto_mail.hostname = "mail.example.com".parse().unwrap();
    assert_duplicate(
        store
            .insert_server(onto_mail, token("c"), Health::default())
            .await
            .map(drop),
        "hostname",
    );
    let mut rename = spec("solo", "web,mail");
    rename.mail_hostname = Some("web1.example.com".parse().unwrap());
    assert_duplicate(
        store.update_server(solo.id, rename, None).await.map(drop),
        "mail_hostname",
    );
    assert_duplicate(
        store
            .update_server(solo.id, onto_domain, None)
            .await
            .map(drop),
        "hostname",
    );

    // Names given up are free again: a server's old mail hostname, a deleted account's domain.
    store
        .update_server(web.id, spec("web1", "web"), None)
        .await
        .unwrap();
    store
        .create_account(account("blog", &["mail.example.com"], None), NOW)
        .await
        .unwrap();
    store.delete_account(shop.id).await.unwrap();
    let mut reuse = spec("web3", "web");
    reuse.hostname = "shop.example".parse().unwrap();
    store
        .insert_server(reuse, token("d"), Health::default())
        .await
        .unwrap();
}

fn seen_as(agent: &str) -> Health {
    Health {
        agent_id: Some(agent.to_owned()),
        ..online()
    }
}

/// An agent (by the identity it reports) is one server, however its URL is spelled.
pub async fn one_agent_is_one_server(store: Arc<dyn Store>) {
    let agent = "0123456789abcdef0123456789abcdef";
    let first = store
        .insert_server(spec("web1", "web"), token("a"), seen_as(agent))
        .await
        .unwrap();
    let mut again = spec("web2", "web");
    again.agent_url = "http://127.0.0.1:50000".parse().unwrap();
    match store
        .insert_server(again.clone(), token("a"), seen_as(agent))
        .await
    {
        Err(StoreError::SameAgent { server }) => assert_eq!(server, first.id),
        other => panic!("expected SameAgent, got {other:?}"),
    }
    // Not seen yet (unreachable): added; once seen to be the same agent, it is marked so and
    // cannot take accounts.
    let second = store
        .insert_server(again, token("a"), Health::default())
        .await
        .unwrap();
    let second = store.record_health(&second, seen_as(agent)).await.unwrap();
    assert!(!second.health.reachable);
    assert!(
        second
            .health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains(&format!("server {}", first.id))),
        "{:?}",
        second.health
    );
    let placed = store
        .create_account(account("shop", &["shop.example"], Some(second.id)), NOW)
        .await;
    assert!(placed.is_err(), "an account on the duplicate: {placed:?}");
    // The first keeps its identity through an outage.
    let down = Health {
        reachable: false,
        agent_id: None,
        ..online()
    };
    let first = store.record_health(&first, down).await.unwrap();
    assert_eq!(first.health.agent_id.as_deref(), Some(agent));
    // Once the first is deleted, its agent may be registered again.
    store.delete_server(first.id).await.unwrap();
    let second = store.record_health(&second, seen_as(agent)).await.unwrap();
    assert!(second.health.reachable, "{:?}", second.health);
    assert_eq!(second.health.agent_id.as_deref(), Some(agent));
}

fn mailbox(address: &str) -> crate::domain::Mailbox {
    crate::domain::Mailbox {
        address: address.parse().unwrap(),
        password_hash: "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"
            .parse()
            .unwrap(),
        quota: Some(crate::domain::QuotaMb::new(100).unwrap()),
        created_at: NOW,
    }
}

fn alias(address: &str, to: &[&str]) -> crate::domain::Alias {
    crate::domain::Alias {
        address: address.parse().unwrap(),
        destinations: crate::domain::Destinations::parse("destinations", to).unwrap(),
    }
}

/// Mailboxes and aliases live on the account's domains, an address is one of them once, the
/// aliases make no loop, a domain with mail stays with its account, and the mail goes with
/// the account.
pub async fn mail_belongs_to_its_account(store: Arc<dyn Store>) {
    use crate::domain::Rule;
    let server = online_server(&*store, "mx1", "web,mail").await;
    let acc = store
        .create_account(
            account_with(
                "shop",
                &["shop.example", "shop.example.net"],
                "web,mail",
                Default::default(),
            ),
            NOW,
        )
        .await
        .unwrap();
    let other = store
        .create_account(account("other", &["other.example"], Some(server)), NOW)
        .await
        .unwrap();
    fn invalid<T: std::fmt::Debug>(r: Result<T, StoreError>) -> Rule {
        match r {
            Err(StoreError::Invalid(v)) => v.rule,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    store
        .add_mailbox(acc.id, mailbox("info@shop.example"))
        .await
        .unwrap();
    store
        .add_mailbox(acc.id, mailbox("b@shop.example"))
        .await
        .unwrap();
    let list = store.mailboxes(acc.id).await.unwrap();
    assert_eq!(
        list.iter()
            .map(|m| m.address.to_string())
            .collect::<Vec<_>>(),
        ["b@shop.example", "info@shop.example"]
    );
    assert_eq!(list[1], mailbox("info@shop.example"));
    assert!(matches!(
        store.add_mailbox(acc.id, mailbox("info@shop.example")).await,
        Err(StoreError::Duplicate { ref field, .. }) if field == "address"
    ));
    // Another account's domain, or nobody's.
    assert_eq!(
        invalid(store.add_mailbox(acc.id, mailbox("x@other.example")).await),
        Rule::NotAccountDomain
    );
    assert_eq!(
        invalid(store.add_mailbox(other.id, mailbox("x@shop.example")).await),
        Rule::NotAccountDomain
    );
    assert!(store.mailboxes(other.id).await.unwrap().is_empty());

    // Aliases: not over a mailbox, no loops, replaced by put.
    assert!(matches!(
        store
            .put_alias(
                acc.id,
                alias("info@shop.example", &["x@elsewhere.example"]),
                false
            )
            .await,
        Err(StoreError::Duplicate { .. })
    ));
    assert!(matches!(
        store
            .add_mailbox(acc.id, mailbox("sales@shop.example"))
            .await,
        Ok(())
    ));
    store
        .delete_mailbox(acc.id, &"sales@shop.example".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        store
            .put_alias(
                acc.id,
                alias("sales@shop.example", &["info@shop.example"]),
                true
            )
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store
            .add_mailbox(acc.id, mailbox("sales@shop.example"))
            .await,
        Err(StoreError::Duplicate { .. })
    ));
    assert!(matches!(
        store
            .put_alias(
                acc.id,
                alias("sales@shop.example", &["b@shop.example"]),
                true
            )
            .await,
        Err(StoreError::Duplicate { .. })
    ));
    store
        .put_alias(
            acc.id,
            alias("a@shop.example.net", &["c@shop.example.net"]),
            true,
        )
        .await
        .unwrap();
    assert!(matches!(
        invalid(
            store
                .put_alias(acc.id, alias("c@shop.example.net", &["a@shop.example.net"]), true)
                .await
        ),
        Rule::AliasLoop(path) if path == "a@shop.example.net -> c@shop.example.net -> a@shop.example.net"
            || path == "c@shop.example.net -> a@shop.example.net -> c@shop.example.net"
    ));
    let previous = store
        .put_alias(
            acc.id,
            alias("sales@shop.example", &["b@shop.example", "out@x.example"]),
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        previous,
        Some(alias("sales@shop.example", &["info@shop.example"]))
    );
    assert_eq!(store.aliases(acc.id).await.unwrap().len(), 2);

    // Changes and deletes.
    let mut changed = mailbox("info@shop.example");
    changed.quota = None;
    let old = store
        .replace_mailbox(acc.id, changed.clone())
        .await
        .unwrap();
    assert_eq!(old, mailbox("info@shop.example"));
    assert!(store.mailboxes(acc.id).await.unwrap().contains(&changed));
    assert!(matches!(
        store
            .replace_mailbox(acc.id, mailbox("nobody@shop.example"))
            .await,
        Err(StoreError::AddressNotFound {
            kind: Kind::Mailbox,
            ..
        })
    ));
    assert!(matches!(
        store
            .delete_alias(acc.id, &"nobody@shop.example".parse().unwrap())
            .await,
        Err(StoreError::AddressNotFound {
            kind: Kind::Alias,
            ..
        })
    ));
    assert!(matches!(
        store.mailboxes(AccountId(999)).await,
        Err(StoreError::NotFound {
            kind: Kind::Account,
            ..
        })
    ));

    // A domain with mail stays; one without goes.
    let mut spec = acc.spec.clone();
    spec.domains = Domains::parse("domains", &["shop.example"]).unwrap();
    assert!(matches!(
        store.update_account(acc.id, spec.clone()).await,
        Err(StoreError::DomainInUse { ref domain, count: 1 }) if domain == "shop.example.net"
    ));
    store
        .delete_alias(acc.id, &"a@shop.example.net".parse().unwrap())
        .await
        .unwrap();
    store.update_account(acc.id, spec).await.unwrap();

    // The mail goes with the account: the domain's next owner starts with none.
    store.delete_account(acc.id).await.unwrap();
    let next = store
        .create_account(account("next", &["shop.example"], Some(server)), NOW)
        .await
        .unwrap();
    assert!(store.mailboxes(next.id).await.unwrap().is_empty());
    assert!(store.aliases(next.id).await.unwrap().is_empty());
    assert!(store.mailboxes(acc.id).await.is_err());
}

pub async fn zones_belong_to_their_account(store: Arc<dyn Store>) {
    use crate::domain::Rule;
    use crate::domain::dns::{RecordData, RecordName, RecordSpec, RecordType, ZoneName};
    online_server(&*store, "ns1", "web,dns").await;
    let zone = ZoneName::parse("shop.example").unwrap();
    let rec = |name: &str, kind: RecordType, content: &str| RecordSpec {
        name: RecordName::parse(name, &zone).unwrap(),
        ttl: 3600,
        data: RecordData::parse(kind, content, kind.has_priority().then_some(10)).unwrap(),
    };
    let shop = store
        .create_account(
            account_with(
                "shop",
                &["shop.example", "www.shop.example"],
                "web,dns",
                Default::default(),
            ),
            NOW,
        )
        .await
        .unwrap();
    // One zone for both names; made with the account.
    let zones = store.zones(shop.id).await.unwrap();
    assert_eq!(zones.len(), 1);
    assert_eq!(zones[0].zone.name, zone);
    assert!(zones[0].key_pem.is_none());
    let first = zones[0].zone.serial;

    // A name in that zone is another account's zone: refused, nothing recorded.
    let taken = store
        .create_account(
            account_with(
                "blog",
                &["blog.shop.example"],
                "web,dns",
                Default::default(),
            ),
            NOW,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&taken, StoreError::Duplicate { field, value } if field == "domains[0]" && value == "shop.example"),
        "{taken:?}"
    );
    assert_eq!(store.accounts().await.unwrap().len(), 1);
    // Without the dns role the same name is an ordinary domain.
    store
        .create_account(
            account_with("blog", &["blog.shop.example"], "web", Default::default()),
            NOW,
        )
        .await
        .unwrap();
    // A public suffix has no zone.
    let suffix = store
        .create_account(
            account_with("uk", &["co.uk"], "web,dns", Default::default()),
            NOW,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&suffix, StoreError::Invalid(v) if v.rule == Rule::PublicSuffix),
        "{suffix:?}"
    );

    // enconf's records: the serial moves only when they change.
    let managed = vec![
        rec("@", RecordType::A, "192.0.2.10"),
        rec("www", RecordType::A, "192.0.2.10"),
    ];
    let row = store
        .set_managed(shop.id, &zone, managed.clone(), 20261202)
        .await
        .unwrap();
    assert!(row.serial > first);
    let again = store
        .set_managed(shop.id, &zone, managed, 20261202)
        .await
        .unwrap();
    assert_eq!(again.serial, row.serial);

    // The account's own records: checked against the zone, ids never reused.
    let (row, id1) = store
        .add_record(
            shop.id,
            &zone,
            rec("blog", RecordType::Cname, "www.shop.example"),
            20261202,
        )
        .await
        .unwrap();
    assert!(row.serial > again.serial);
    let conflict = store
        .add_record(
            shop.id,
            &zone,
            rec("www", RecordType::Cname, "x.example"),
            20261202,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&conflict, StoreError::Invalid(v) if v.rule == Rule::CnameConflict),
        "{conflict:?}"
    );
    let duplicate = store
        .add_record(
            shop.id,
            &zone,
            rec("blog", RecordType::Cname, "www.shop.example"),
            20261202,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&duplicate, StoreError::Invalid(v) if v.field == "name"),
        "{duplicate:?}"
    );
    let row = store
        .change_record(shop.id, &zone, id1, None, 20261202)
        .await
        .unwrap();
    assert!(row.records.is_empty());
    let (_, id2) = store
        .add_record(
            shop.id,
            &zone,
            rec("mail", RecordType::Mx, "mx.example.net"),
            20261202,
        )
        .await
        .unwrap();
    assert!(id2 > id1);
    let missing = store
        .change_record(shop.id, &zone, id1, None, 20261202)
        .await
        .unwrap_err();
    assert!(matches!(
        missing,
        StoreError::NotFound {
            kind: Kind::Record,
            ..
        }
    ));
    // Another account's zone is not found through this one.
    let blog = store.accounts().await.unwrap()[1].id;
    assert!(
        store
            .set_managed(blog, &zone, Vec::new(), 20261202)
            .await
            .is_err()
    );

    // The key is sealed and opened again.
    let pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_owned();
    store
        .set_zone_key(shop.id, &zone, Some(pem.clone()), 20261202)
        .await
        .unwrap();
    let zones = store.zones(shop.id).await.unwrap();
    assert!(zones[0].zone.dnssec());
    assert_eq!(zones[0].key_pem.as_deref(), Some(pem.as_str()));

    // A restored zone has its old records and a newer serial.
    let before = zones[0].clone();
    store
        .add_record(
            shop.id,
            &zone,
            rec("x", RecordType::A, "192.0.2.1"),
            20261202,
        )
        .await
        .unwrap();
    let serial = store.zones(shop.id).await.unwrap()[0].zone.serial;
    store.restore_zone(before.clone(), 20261202).await.unwrap();
    let restored = store.zones(shop.id).await.unwrap()[0].clone();
    assert_eq!(restored.zone.records, before.zone.records);
    assert!(restored.zone.serial > serial);

    // The zone goes with its last domain, and with the account.
    let mut spec = shop.spec.clone();
    spec.domains = Domains::parse("domains", &["shop2.example"]).unwrap();
    store.update_account(shop.id, spec).await.unwrap();
    let zones = store.zones(shop.id).await.unwrap();
    assert_eq!(zones.len(), 1);
    assert_eq!(zones[0].zone.name.as_str(), "shop2.example");
    // A dns server added later joins every account with the dns role, once.
    let ns2 = online_server(&*store, "ns2", "dns").await;
    let joined = store.join_dns(ns2).await.unwrap();
    assert_eq!(joined.iter().map(|a| a.id).collect::<Vec<_>>(), [shop.id]);
    assert_eq!(joined[0].servers.of(Role::Dns).len(), 2);
    assert!(store.join_dns(ns2).await.unwrap().is_empty());
    assert_eq!(store.accounts_on(ns2).await.unwrap().len(), 1);
    store.delete_account(shop.id).await.unwrap();
    store
        .create_account(
            account_with("shop3", &["shop.example"], "web,dns", Default::default()),
            NOW,
        )
        .await
        .unwrap();
}

/// Databases and their users: only with the db role, one owner per name across accounts
/// (prefixes overlap: `shop` and `shop_x`), grants only on the account's own databases, the
/// hash kept (sealed) and given back, a deleted database leaves every grant, and the account's
/// delete forgets them and frees the names.
pub async fn databases_belong_to_their_account(store: Arc<dyn Store>) {
    use crate::domain::Rule;
    use crate::domain::db::{DbName, DbUserName, NativeHash};
    use crate::store::DbUser;
    online_server(&*store, "db1", "web,db").await;
    let shop = store
        .create_account(
            account_with("shop", &["shop.example"], "web,db", Default::default()),
            NOW,
        )
        .await
        .unwrap();
    let shop_x = store
        .create_account(
            account_with("shop_x", &["x.example"], "web,db", Default::default()),
            NOW,
        )
        .await
        .unwrap();
    let web_only = store
        .create_account(account("plain", &["plain.example"], None), NOW)
        .await
        .unwrap();
    let db = |s: &str| DbName::parse_full(s).unwrap();
    let user = |s: &str, dbs: &[&str]| DbUser {
        name: DbUserName::parse_full(s).unwrap(),
        hash: NativeHash::of("password"),
        databases: dbs.iter().map(|d| db(d)).collect(),
        created_at: NOW,
    };

    assert!(store.db(shop.id).await.unwrap().databases.is_empty());
    store
        .add_database(shop.id, db("shop_x_a"), NOW)
        .await
        .unwrap();
    // The same name from the account whose prefix also fits it is a duplicate.
    let err = store
        .add_database(shop_x.id, db("shop_x_a"), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err:?}");
    let err = store
        .add_database(shop.id, db("shop_x_a"), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err:?}");
    let err = store
        .add_database(web_only.id, db("plain_a"), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(v) if v.rule == Rule::NoDbRole),
        "{err:?}"
    );

    store
        .add_database(shop.id, db("shop_b"), NOW)
        .await
        .unwrap();
    let err = store
        .add_db_user(shop.id, user("shop_u", &["shop_b", "shop_x_z"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(v) if v.field == "databases[1]"),
        "{err:?}"
    );
    let record = store
        .add_db_user(shop.id, user("shop_u", &["shop_x_a", "shop_b"]))
        .await
        .unwrap();
    assert_eq!(record.users[0].hash, NativeHash::of("password"));
    store
        .add_db_user(shop.id, user("shop_x_v", &[]))
        .await
        .unwrap();
    let err = store
        .add_db_user(shop_x.id, user("shop_x_v", &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err:?}");
    // A name without the account's prefix is refused.
    let err = store
        .add_db_user(shop_x.id, user("shop_u2", &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    // A new hash, then the database taken from the user's grants when deleted.
    let name = DbUserName::parse_full("shop_u").unwrap();
    store
        .change_db_user(shop.id, &name, Some(NativeHash::of("other")), None)
        .await
        .unwrap();
    let record = store.delete_database(shop.id, &db("shop_b")).await.unwrap();
    assert_eq!(record.users[0].databases, [db("shop_x_a")]);
    assert_eq!(record.users[0].hash, NativeHash::of("other"));
    assert_eq!(store.db(shop.id).await.unwrap(), record);
    let err = store
        .delete_database(shop.id, &db("shop_b"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AddressNotFound { .. }), "{err:?}");

    // An undo puts the record back whole, names included.
    let before = store.db(shop.id).await.unwrap();
    store.delete_db_user(shop.id, &name).await.unwrap();
    store.restore_db(shop.id, before.clone()).await.unwrap();
    assert_eq!(store.db(shop.id).await.unwrap(), before);
    let err = store
        .add_db_user(shop_x.id, user("shop_x_v", &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err:?}");

    // The account's delete forgets them and frees the names.
    store.delete_account(shop.id).await.unwrap();
    store
        .add_database(shop_x.id, db("shop_x_a"), NOW)
        .await
        .unwrap();
    store
        .add_db_user(shop_x.id, user("shop_u", &["shop_x_a"]))
        .await
        .map(drop)
        .unwrap_err();
    store
        .add_db_user(shop_x.id, user("shop_x_v", &["shop_x_a"]))
        .await
        .unwrap();
}

/// Jobs: at most one queued or running per account (checked in the write), freed when it
/// finishes; backup keys made once, sealed, and kept after the account is deleted; backup sets
/// listed and pruned.
pub async fn one_job_per_account_and_backup_keys_kept(store: Arc<dyn Store>) {
    use crate::domain::job::{BackupCause, BackupSet, JobId, JobStatus, JobWork, NewJob};
    online_server(&*store, "b1", "web,backup").await;
    let shop = store
        .create_account(
            account_with("shop", &["shop.example"], "web,backup", Default::default()),
            NOW,
        )
        .await
        .unwrap();
    let new = |account| NewJob {
        account_id: Some(account),
        server_id: None,
        work: JobWork::Backup {
            cause: BackupCause::Asked,
        },
    };
    assert_eq!(store.last_backups(vec![shop.id]).await.unwrap(), [None]);
    let first = store.insert_job(new(shop.id), NOW).await.unwrap();
    assert_eq!(first.status, JobStatus::Queued);
    // When each account was last backed up comes from an index kept with the jobs.
    assert_eq!(
        store
            .last_backups(vec![shop.id, AccountId(999)])
            .await
            .unwrap(),
        [Some(NOW), None]
    );
    match store.insert_job(new(shop.id), NOW).await {
        Err(StoreError::JobRunning { job }) => assert_eq!(job, first.id),
        other => panic!("a second job: {other:?}"),
    }
    // Concurrent inserts: exactly one wins.
    let other = store
        .create_account(
            account_with("blog", &["blog.example"], "web,backup", Default::default()),
            NOW,
        )
        .await
        .unwrap();
    let tries: Vec<_> = (0..8)
        .map(|_| {
            let s = Arc::clone(&store);
            tokio::spawn(async move { s.insert_job(new(other.id), NOW).await })
        })
        .collect();
    let mut won = 0;
    for t in tries {
        if t.await.unwrap().is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    let mut running = first.clone();
    running.status = JobStatus::Running;
    store.update_job(running.clone()).await.unwrap();
    assert!(store.insert_job(new(shop.id), NOW).await.is_err());
    running.status = JobStatus::Failed;
    running.error = Some("why".into());
    store.update_job(running.clone()).await.unwrap();
    assert_eq!(store.job(first.id).await.unwrap(), running);
    let second = store.insert_job(new(shop.id), NOW).await.unwrap();
    assert!(second.id > first.id);
    let all = store.jobs_page(None, None, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].id, second.id, "newest first");
    // Paged back from the newest; only the unfinished ones are in their index.
    let ids: Vec<JobId> = all.iter().map(|j| j.id).collect();
    let page_of = |account: Option<AccountId>, before: Option<JobId>, limit| {
        let store = Arc::clone(&store);
        async move {
            store
                .jobs_page(account, before, limit)
                .await
                .unwrap()
                .iter()
                .map(|j| j.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page_of(None, None, 2).await, ids[..2]);
    assert_eq!(page_of(None, Some(ids[1]), 2).await, ids[2..]);
    assert!(page_of(None, Some(ids[2]), 2).await.is_empty());
    // One account's jobs, from their index.
    assert_eq!(
        page_of(Some(shop.id), None, 10).await,
        [second.id, first.id]
    );
    assert_eq!(page_of(Some(shop.id), Some(second.id), 1).await, [first.id]);
    assert_eq!(page_of(Some(other.id), None, 10).await, [ids[1]]);
    assert!(page_of(Some(AccountId(999)), None, 10).await.is_empty());
    let unfinished: Vec<JobId> = store
        .unfinished_jobs()
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    let active: Vec<JobId> = all
        .iter()
        .rev()
        .filter(|j| j.status.is_active())
        .map(|j| j.id)
        .collect();
    assert_eq!(unfinished, active);
    assert!(unfinished.contains(&second.id) && !unfinished.contains(&first.id));
    assert!(matches!(
        store.job(JobId(9999)).await,
        Err(StoreError::NotFound {
            kind: Kind::Job,
            ..
        })
    ));

    let keys = store.backup_keys(shop.id).await.unwrap();
    assert_eq!(store.backup_keys(shop.id).await.unwrap(), keys);
    assert_ne!(store.backup_keys(other.id).await.unwrap(), keys);
    for set in [1, 2, 3] {
        store
            .record_backup_set(
                shop.id,
                BackupSet {
                    set,
                    time: NOW,
                    size_bytes: set * 10,
                    contents: vec![crate::domain::backup::Part::Files],
                    databases: Vec::new(),
                },
            )
            .await
            .unwrap();
    }
    store.keep_backup_sets(shop.id, vec![2, 3]).await.unwrap();
    let sets: Vec<u64> = store
        .backup_sets(shop.id)
        .await
        .unwrap()
        .iter()
        .map(|s| s.set)
        .collect();
    assert_eq!(sets, [2, 3]);
    assert!(store.backup_sets(other.id).await.unwrap().is_empty());
    // The account goes; its keys and sets stay (its final backup stays readable).
    let mut done = second.clone();
    done.status = JobStatus::Succeeded;
    store.update_job(done).await.unwrap();
    store.delete_account(shop.id).await.unwrap();
    assert_eq!(store.backup_keys(shop.id).await.unwrap(), keys);
    assert_eq!(store.backup_sets(shop.id).await.unwrap().len(), 2);
}

/// Administrators are found by their token's digest until they are deleted; names are unique
/// ignoring case; the audit log pages newest first, filtered by object, administrator or both.
pub async fn admins_by_token_and_an_append_only_audit_log(store: Arc<dyn Store>) {
    use crate::domain::admin::{AdminId, AdminName, AdminRole, NewAuditEntry, TokenDigest};
    use crate::store::AuditFilter;
    let name = |n: &str| AdminName::parse(n).unwrap();
    let ana = store
        .insert_admin(
            name("Ana"),
            AdminRole::Operator,
            TokenDigest::of(b"t1"),
            NOW,
        )
        .await
        .unwrap();
    let bo = store
        .insert_admin(name("Bo"), AdminRole::Viewer, TokenDigest::of(b"t2"), NOW)
        .await
        .unwrap();
    assert_ne!(ana.id, bo.id);
    assert!(matches!(
        store
            .insert_admin(name("ANA"), AdminRole::Owner, TokenDigest::of(b"t3"), NOW)
            .await,
        Err(StoreError::Duplicate { ref field, .. }) if field == "name"
    ));
    let found = store.admin_by_token(TokenDigest::of(b"t1")).await.unwrap();
    assert_eq!(found.as_ref().map(|a| a.id), Some(ana.id));
    assert_eq!(
        store.admin_by_token(TokenDigest::of(b"t9")).await.unwrap(),
        None
    );
    let promoted = store
        .set_admin_role(ana.id, AdminRole::Admin)
        .await
        .unwrap();
    assert_eq!(promoted.role, AdminRole::Admin);
    assert_eq!(store.admin(ana.id).await.unwrap().role, AdminRole::Admin);
    store.delete_admin(ana.id).await.unwrap();
    assert_eq!(
        store.admin_by_token(TokenDigest::of(b"t1")).await.unwrap(),
        None
    );
    assert!(matches!(
        store.delete_admin(ana.id).await,
        Err(StoreError::NotFound {
            kind: Kind::Admin,
            ..
        })
    ));
    assert_eq!(store.admins().await.unwrap().len(), 1);

    for (admin, object) in [
        (0, "server:1"),
        (bo.id.0, "server:1"),
        (bo.id.0, "account:2"),
        (0, ""),
        (bo.id.0, "server:1"),
    ] {
        store
            .append_audit(NewAuditEntry {
                time: NOW,
                admin: AdminId(admin),
                admin_name: "x".into(),
                action: "server.patch".into(),
                object: object.into(),
                changes: Default::default(),
                result: "ok".into(),
                status: 200,
            })
            .await
            .unwrap();
    }
    let ids = |entries: Vec<crate::domain::admin::AuditEntry>| -> Vec<u64> {
        entries.into_iter().map(|e| e.id).collect()
    };
    let all = AuditFilter::default();
    assert_eq!(
        ids(store.audit_page(all.clone(), None, 10).await.unwrap()),
        [5, 4, 3, 2, 1]
    );
    assert_eq!(
        ids(store.audit_page(all, Some(4), 2).await.unwrap()),
        [3, 2]
    );
    let server = AuditFilter {
        object: Some("server:1".into()),
        admin: None,
    };
    assert_eq!(
        ids(store.audit_page(server, None, 10).await.unwrap()),
        [5, 2, 1]
    );
    let of_bo = AuditFilter {
        object: None,
        admin: Some(bo.id),
    };
    assert_eq!(
        ids(store.audit_page(of_bo, Some(5), 10).await.unwrap()),
        [3, 2]
    );
    let both = AuditFilter {
        object: Some("server:1".into()),
        admin: Some(bo.id),
    };
    assert_eq!(ids(store.audit_page(both, None, 1).await.unwrap()), [5]);
    // "server:1" does not find "server:10".
    let ten = AuditFilter {
        object: Some("server:10".into()),
        admin: None,
    };
    assert!(store.audit_page(ten, None, 10).await.unwrap().is_empty());
}
