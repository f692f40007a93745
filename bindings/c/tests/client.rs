//! The controller client of the C interface, against a controller and a sandboxed agent
//! running in this process: servers and accounts created and listed a page at a time, and each
//! kind of failure answered with its status, code, field and HTTP status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ffi::{CStr, c_char};
use std::ptr;

use enconf::*;
use enconf_bindings_testkit::{ADMIN_TOKEN, AGENT_TOKEN, Stack};
use serde_json::{Value, json};

/// A failure as the C side sees it.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    status: EnconfStatus,
    code: String,
    field: Option<String>,
    http_status: u16,
}

fn client(url: &str, token: &str) -> Result<*mut EnconfClient, Failure> {
    let mut client = ptr::null_mut();
    let mut error = ptr::null_mut();
    // SAFETY: pointer and length of live strings; out-pointers to locals.
    let status = unsafe {
        enconf_client_new(
            url.as_ptr().cast(),
            url.len(),
            token.as_ptr().cast(),
            token.len(),
            ptr::null(),
            0,
            5_000,
            &mut client,
            &mut error,
        )
    };
    // SAFETY: `error` is NULL or the library's, used no more.
    match unsafe { failure(status, error) } {
        None => Ok(client),
        Some(f) => {
            assert!(client.is_null());
            Err(f)
        }
    }
}

/// # Safety
/// `error` is NULL or a live error of the library's, not used after this call.
unsafe fn failure(status: EnconfStatus, error: *mut EnconfError) -> Option<Failure> {
    if status == EnconfStatus::Ok {
        assert!(error.is_null());
        return None;
    }
    // SAFETY: as the caller promises; read before it is freed.
    let http_status = unsafe { enconf_error_http_status(error) };
    // SAFETY: as the caller promises.
    let (code, field) = unsafe { common::take_error(error) }.expect("an error with the status");
    Some(Failure {
        status,
        code,
        field,
        http_status,
    })
}

type Call = unsafe extern "C" fn(
    *const EnconfClient,
    *const c_char,
    usize,
    *mut *mut c_char,
    *mut usize,
    *mut *mut EnconfError,
) -> EnconfStatus;

/// One call with a text argument; the JSON it answered.
fn call(client: *const EnconfClient, f: Call, input: &str) -> Result<Value, Failure> {
    let (mut out, mut out_len, mut error) = (ptr::null_mut(), 0usize, ptr::null_mut());
    // SAFETY: a live client, a live string, out-pointers to locals.
    let status = unsafe {
        f(
            client,
            input.as_ptr().cast(),
            input.len(),
            &mut out,
            &mut out_len,
            &mut error,
        )
    };
    // SAFETY: `error` is NULL or the library's, used no more.
    if let Some(f) = unsafe { failure(status, error) } {
        assert!(out.is_null());
        return Err(f);
    }
    // SAFETY: on success `out` is the library's NUL-terminated string of `out_len` bytes,
    // freed once after it is copied.
    let text = unsafe {
        let text = CStr::from_ptr(out).to_str().unwrap().to_owned();
        enconf_string_free(out);
        text
    };
    assert_eq!(text.len(), out_len);
    Ok(serde_json::from_str(&text).unwrap())
}

fn refused(status: EnconfStatus, code: &str, field: Option<&str>, http_status: u16) -> Failure {
    Failure {
        status,
        code: code.into(),
        field: field.map(Into::into),
        http_status,
    }
}

fn server_body(stack: &Stack, name: &str, hostname: &str) -> String {
    json!({
        "name": name,
        "hostname": hostname,
        "agent_url": stack.agent_url,
        "agent_token": AGENT_TOKEN,
        "roles": ["web", "mail", "dns", "db"],
    })
    .to_string()
}

#[test]
fn servers_and_accounts_are_created_and_listed_through_the_c_client() {
    let stack = Stack::start().unwrap();
    let c = client(&stack.controller_url, ADMIN_TOKEN).unwrap();

    let server = call(
        c,
        enconf_client_create_server,
        &server_body(&stack, "web1", "web1.example.com"),
    )
    .unwrap();
    assert_eq!(server["name"], "web1");
    assert_eq!(server["reachable"], true, "{server}");
    assert!(server.get("agent_token").is_none(), "{server}");

    // The same agent again, and a bad field: the controller's answers, typed.
    assert_eq!(
        call(
            c,
            enconf_client_create_server,
            &server_body(&stack, "web2", "web2.example.com")
        )
        .unwrap_err(),
        refused(EnconfStatus::Refused, "duplicate", Some("agent_url"), 409)
    );
    assert_eq!(
        call(
            c,
            enconf_client_create_server,
            &server_body(&stack, "web2", "web2;.example.com")
        )
        .unwrap_err(),
        refused(EnconfStatus::Invalid, "invalid", Some("hostname"), 422)
    );
    // Not a ServerInput: refused before anything is sent.
    assert_eq!(
        call(c, enconf_client_create_server, "{\"name\": 3}").unwrap_err(),
        refused(EnconfStatus::BadRequest, "bad_request", None, 0)
    );

    let mut ids = Vec::new();
    for (user, domain) in [("shop", "shop.example"), ("blog", "blog.example")] {
        let account = call(
            c,
            enconf_client_create_account,
            &json!({"username": user, "domains": [domain]}).to_string(),
        )
        .unwrap();
        assert_eq!(account["server_id"], server["id"], "{account}");
        assert_eq!(account["status"], "active", "{account}");
        ids.push(account["id"].clone());
    }
    assert_eq!(
        call(
            c,
            enconf_client_create_account,
            &json!({"username": "shop", "domains": ["other.example"]}).to_string()
        )
        .unwrap_err(),
        refused(EnconfStatus::Refused, "duplicate", Some("username"), 409)
    );

    // Pages of one, followed by their cursor.
    let mut seen = Vec::new();
    let mut query = "limit=1".to_owned();
    loop {
        let page = call(c, enconf_client_list_accounts, &query).unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 1, "{page}");
        seen.extend(items.iter().map(|a| a["id"].clone()));
        match page["next"].as_str() {
            Some(next) => query = format!("limit=1&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let found = call(c, enconf_client_list_accounts, "q=bl&role=web").unwrap();
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["items"][0]["username"], "blog");
    let servers = call(c, enconf_client_list_servers, "").unwrap();
    assert_eq!(servers["items"][0]["accounts"], 2, "{servers}");
    assert_eq!(servers["next"], Value::Null);

    // A query the lists do not take, named before anything is sent.
    assert_eq!(
        call(c, enconf_client_list_accounts, "limit=1&color=red").unwrap_err(),
        refused(EnconfStatus::Invalid, "invalid", Some("color"), 0)
    );
    assert_eq!(
        call(c, enconf_client_list_servers, "q=shop").unwrap_err(),
        refused(EnconfStatus::Invalid, "invalid", Some("q"), 0)
    );
    assert_eq!(
        call(c, enconf_client_list_accounts, "limit=5000").unwrap_err(),
        refused(EnconfStatus::Invalid, "invalid", Some("limit"), 0)
    );
    // SAFETY: made above, freed once.
    unsafe { enconf_client_free(c) };

    // A wrong token is the controller's 401.
    let wrong = client(&stack.controller_url, "not-the-admin-token-0123456789").unwrap();
    assert_eq!(
        call(wrong, enconf_client_list_servers, "").unwrap_err(),
        refused(EnconfStatus::Refused, "unauthorized", None, 401)
    );
    // SAFETY: made above, freed once.
    unsafe { enconf_client_free(wrong) };
}

#[test]
fn bad_arguments_and_a_missing_controller_are_told_apart() {
    assert_eq!(
        client("ftp://controller", ADMIN_TOKEN).unwrap_err(),
        refused(EnconfStatus::Invalid, "invalid", Some("url"), 0)
    );
    assert_eq!(
        client("http://127.0.0.1:1", "short").unwrap_err(),
        refused(EnconfStatus::Invalid, "invalid", Some("token"), 0)
    );
    // Nothing listens on port 1 of loopback.
    let c = client("http://127.0.0.1:1", ADMIN_TOKEN).unwrap();
    let down = call(c, enconf_client_list_servers, "").unwrap_err();
    assert_eq!(
        (down.status, down.code.as_str()),
        (EnconfStatus::Unreachable, "unreachable")
    );
    // A NULL client, a NULL string with a length, and NULL out-pointers.
    assert_eq!(
        call(ptr::null(), enconf_client_list_servers, "")
            .unwrap_err()
            .status,
        EnconfStatus::BadArgument
    );
    let (mut out, mut out_len) = (ptr::null_mut(), 0usize);
    // SAFETY: a live client; NULL with a length is what is being refused.
    let status = unsafe {
        enconf_client_list_servers(c, ptr::null(), 4, &mut out, &mut out_len, ptr::null_mut())
    };
    assert_eq!(status, EnconfStatus::BadArgument);
    assert!(out.is_null());
    // SAFETY: a live client; the NULL out-pointers are what is being refused.
    let status = unsafe {
        enconf_client_list_servers(
            c,
            ptr::null(),
            0,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    assert_eq!(status, EnconfStatus::BadArgument);
    // SAFETY: made above, freed once; NULL is allowed.
    unsafe {
        enconf_client_free(c);
        enconf_client_free(ptr::null_mut());
    }
}
