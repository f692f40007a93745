//! `enconf_render_web`, called as C calls it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ffi::{CStr, c_char};

use enconf::{EnconfError, EnconfStatus};

/// The status, the text (on success) and the error's field (on failure).
fn render(account: &str, settings: &str) -> (EnconfStatus, Option<String>, Option<String>) {
    let (mut out, mut len): (*mut c_char, usize) = (std::ptr::null_mut(), 0);
    let mut error: *mut EnconfError = std::ptr::null_mut();
    // SAFETY: both strings are their length of readable bytes; the out places are writable.
    let status = unsafe {
        enconf::enconf_render_web(
            account.as_ptr().cast(),
            account.len(),
            settings.as_ptr().cast(),
            settings.len(),
            &mut out,
            &mut len,
            &mut error,
        )
    };
    assert_eq!(status == EnconfStatus::Ok, !out.is_null());
    // SAFETY: what the library returned, read then freed once.
    unsafe {
        let text = (!out.is_null()).then(|| {
            let t = CStr::from_ptr(out).to_str().unwrap().to_owned();
            assert_eq!(t.len(), len);
            enconf::enconf_string_free(out);
            t
        });
        let field = common::take_error(error).and_then(|(_, field)| field);
        (status, text, field)
    }
}

const SHOP: &str = r#"{"username": "shop", "domains": ["shop.example", "www.shop.example"]}"#;

#[test]
fn the_preview_is_what_the_agent_renders_under_the_servers_settings() {
    let (status, text, _) = render(SHOP, "");
    assert_eq!(status, EnconfStatus::Ok);
    let text = text.unwrap();
    assert!(
        text.starts_with("# /etc/nginx/sites-enabled/enconf-shop.conf\n"),
        "{text}"
    );
    assert!(
        text.contains("server_name shop.example www.shop.example;"),
        "{text}"
    );
    assert!(
        text.contains("\n# /etc/php/8.2/fpm/pool.d/enconf-shop.conf\n"),
        "{text}"
    );
    assert!(text.contains("\n[shop]\nuser = shop\n"), "{text}");
    assert!(text.contains("/var/www/shop/public"), "{text}");

    let (status, text, _) = render(
        SHOP,
        "AGENT_WEB_ROOT_BASE=/srv/sites\nAGENT_PHP_DEFAULT_VERSION=8.3\n",
    );
    assert_eq!(status, EnconfStatus::Ok);
    let text = text.unwrap();
    assert!(text.contains("/srv/sites/shop/public"), "{text}");
    assert!(
        text.contains("# /etc/php/8.3/fpm/pool.d/enconf-shop.conf"),
        "{text}"
    );
}

#[test]
fn bad_accounts_and_settings_are_refused_naming_their_field() {
    let bad = r#"{"username": "shop", "domains": ["shop.example;"]}"#;
    assert_eq!(
        render(bad, ""),
        (EnconfStatus::Invalid, None, Some("domains[0]".into()))
    );
    assert_eq!(render("[", "").0, EnconfStatus::BadRequest);
    for settings in [
        "AGENT_WEB_ROOT_BASE=/srv/x;y\n",
        "AGENT_HTTP_PORT=0\n",
        "not a line\n",
    ] {
        assert_eq!(
            render(SHOP, settings),
            (EnconfStatus::Invalid, None, Some("settings".into())),
            "{settings}"
        );
    }
    // No place for the answer: a bad argument, and nothing written.
    let mut error: *mut EnconfError = std::ptr::null_mut();
    // SAFETY: the strings are readable; a NULL `out` is what is tested.
    let status = unsafe {
        enconf::enconf_render_web(
            SHOP.as_ptr().cast(),
            SHOP.len(),
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut error,
        )
    };
    assert_eq!(status, EnconfStatus::BadArgument);
    // SAFETY: the error the call made.
    unsafe { enconf::enconf_error_free(error) };
}
