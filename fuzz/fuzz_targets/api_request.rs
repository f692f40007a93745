//! Management API request bodies (servers, server patches, accounts, migrations,
//! administrators) and list query strings (the audit log's filters included): decoding and
//! validation never panic, and every refusal names a field.
#![no_main]

use enconf_core::protocol::{AccountInput, MigrateInput, ServerInput, ServerPatch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = serde_json::from_slice::<ServerInput>(data)
        && let Err(e) = input.validate()
    {
        assert!(!e.field.is_empty());
    }
    if let Ok(patch) = serde_json::from_slice::<ServerPatch>(data) {
        let current = enconf_core::store::conformance::spec("web1", "web,db");
        match patch.apply(&current) {
            Ok((spec, _)) => assert!(!spec.roles.is_empty()),
            Err(e) => assert!(!e.field.is_empty()),
        }
    }
    if let Ok(input) = serde_json::from_slice::<MigrateInput>(data)
        && let Err(e) = input.validate()
    {
        assert!(
            e.field == "target_server_id"
                || e.field == "targets"
                || e.field.starts_with("targets."),
            "{e:?}"
        );
    }
    if let Ok(query) = serde_urlencoded::from_bytes::<enconf_core::protocol::list::ListQuery>(data)
    {
        for result in [
            query.paging().map(drop),
            query.accounts().map(drop),
            query.unfiltered(),
            query.jobs().map(drop),
            query.audit().map(drop),
        ] {
            if let Err(e) = result {
                assert!(!e.field.is_empty());
            }
        }
        if let (Ok(paging), Ok(filter)) = (query.paging(), query.accounts()) {
            assert!((1..=1000).contains(&paging.limit));
            assert!(
                filter.prefix.is_none_or(|p| p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() && !b.is_ascii_uppercase()
                        || b".-_".contains(&b)))
            );
        }
        if let Ok(Some(account)) = query.jobs() {
            assert!(account.0 >= 1 && account.0 <= i64::MAX as u64);
        }
    }
    if let Ok(input) = serde_json::from_slice::<enconf_core::protocol::admin::AdminInput>(data) {
        match input.validate() {
            Ok((name, _)) => assert!(!name.as_str().is_empty() && !name.as_str().contains('\n')),
            Err(e) => assert!(e.field == "name" || e.field == "role", "{e:?}"),
        }
    }
    if let Ok(patch) = serde_json::from_slice::<enconf_core::protocol::admin::AdminPatch>(data)
        && let Err(e) = patch.validate()
    {
        assert_eq!(e.field, "role");
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok((kind, id)) = enconf_core::domain::admin::parse_object(text)
    {
        assert_eq!(format!("{kind}:{id}"), text);
    }
    if let Ok(input) = serde_json::from_slice::<AccountInput>(data)
        && let Err(e) = input.validate()
    {
        assert!(!e.field.is_empty());
    }
});
