//! `enconf_check_certificate`, called as C calls it, on certificates made here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use enconf::{EnconfError, EnconfStatus};
use enconf_core::domain::DomainName;
use enconf_core::ssl::cert;

/// The status, and the error's code and field.
fn check(chain: &str, key: &str, host: &str) -> (EnconfStatus, Option<(String, Option<String>)>) {
    let mut error: *mut EnconfError = std::ptr::null_mut();
    // SAFETY: each string is its length of readable bytes for the call; `error` is writable.
    let status = unsafe {
        enconf::enconf_check_certificate(
            chain.as_ptr().cast(),
            chain.len(),
            key.as_ptr().cast(),
            key.len(),
            host.as_ptr().cast(),
            host.len(),
            &mut error,
        )
    };
    // SAFETY: the error the call made, not used again.
    (status, unsafe { common::take_error(error) })
}

fn bundle(names: &[&str]) -> cert::CertBundle {
    let names: Vec<DomainName> = names
        .iter()
        .map(|n| DomainName::parse(n).unwrap())
        .collect();
    cert::self_signed(&names, time::OffsetDateTime::now_utc()).unwrap()
}

fn invalid(field: &str) -> (EnconfStatus, Option<(String, Option<String>)>) {
    (
        EnconfStatus::Invalid,
        Some(("invalid".into(), Some(field.into()))),
    )
}

#[test]
fn a_matching_pair_for_a_covered_name_is_accepted_and_anything_else_names_its_field() {
    let shop = bundle(&["shop.example", "www.shop.example"]);
    let other = bundle(&["other.example"]);
    let (chain, key) = (&shop.chain_pem, &shop.key_pem);
    assert_eq!(
        check(chain, key, "www.shop.example"),
        (EnconfStatus::Ok, None)
    );
    assert_eq!(
        check(chain, key, "blog.example"),
        invalid("certificate_pem")
    );
    assert_eq!(
        check(chain, &other.key_pem, "shop.example"),
        invalid("private_key_pem")
    );
    assert_eq!(check("", key, "shop.example"), invalid("certificate_pem"));
    assert_eq!(check(key, key, "shop.example"), invalid("certificate_pem"));
    assert_eq!(
        check(chain, "garbage", "shop.example"),
        invalid("private_key_pem")
    );
    assert_eq!(check(chain, key, "shop.example\n"), invalid("domain"));
    let (status, error) = check(chain, key, "\u{0}");
    assert_eq!(
        (status, error.unwrap().1),
        (EnconfStatus::Invalid, Some("domain".into()))
    );
}
