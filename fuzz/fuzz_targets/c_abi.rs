//! Every entry point of the C interface that takes a string (the certificate check, the
//! preview and the controller client too), fed arbitrary bytes: an answer and an error that
//! agree, readable strings, never the library's own failure. The client's calls go to a
//! loopback port where nothing listens, so whatever passes the checks is answered
//! "unreachable".
#![no_main]

use std::ffi::{CStr, c_char};

use enconf::{EnconfError, EnconfStatus};
use libfuzzer_sys::fuzz_target;

type ClientCall = unsafe extern "C" fn(
    *const enconf::EnconfClient,
    *const c_char,
    usize,
    *mut *mut c_char,
    *mut usize,
    *mut *mut EnconfError,
) -> EnconfStatus;

const CLIENT_CALLS: [ClientCall; 4] = [
    enconf::enconf_client_create_server,
    enconf::enconf_client_list_servers,
    enconf::enconf_client_create_account,
    enconf::enconf_client_list_accounts,
];

/// One client for every run (its address as an integer: a pointer is not `Sync`).
static CLIENT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn client() -> *const enconf::EnconfClient {
    *CLIENT.get_or_init(|| {
        let (url, token) = ("http://127.0.0.1:1", "fuzz-admin-token-0123456789");
        let mut client = std::ptr::null_mut();
        // SAFETY: live strings with their lengths; `client` is writable; no error wanted.
        let status = unsafe {
            enconf::enconf_client_new(
                url.as_ptr().cast(),
                url.len(),
                token.as_ptr().cast(),
                token.len(),
                std::ptr::null(),
                0,
                2_000,
                &mut client,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(status, EnconfStatus::Ok);
        client as usize
    }) as *const enconf::EnconfClient
}

type Validator = unsafe extern "C" fn(*const c_char, usize, *mut *mut EnconfError) -> EnconfStatus;

const ENTRY_POINTS: [Validator; 5] = [
    enconf::enconf_validate_domain,
    enconf::enconf_validate_username,
    enconf::enconf_validate_mail_address,
    enconf::enconf_validate_server_input,
    enconf::enconf_validate_account_input,
];

/// Checks what an answer says: the status and the error agree, the error's strings are UTF-8;
/// frees the error.
fn read_answer(status: EnconfStatus, error: *mut EnconfError) {
    assert_ne!(status, EnconfStatus::Internal);
    assert_eq!(status == EnconfStatus::Ok, error.is_null());
    if error.is_null() {
        return;
    }
    // SAFETY: `error` is a live error of the library's; its strings live as long as it.
    unsafe {
        let code = CStr::from_ptr(enconf::enconf_error_code(error));
        assert!(!code.to_bytes().is_empty());
        let message = CStr::from_ptr(enconf::enconf_error_message(error));
        assert!(message.to_str().is_ok());
        let field = enconf::enconf_error_field(error);
        if !field.is_null() {
            assert!(CStr::from_ptr(field).to_str().is_ok());
        }
        enconf::enconf_error_free(error);
    }
}

/// `data` cut in two at its first 0xff byte (a byte that is never UTF-8, so the cut adds
/// nothing a caller could not send).
fn halves(data: &[u8]) -> (&[u8], &[u8]) {
    let mut parts = data.splitn(2, |b| *b == 0xff);
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

fuzz_target!(|data: &[u8]| {
    // The certificate check takes three strings: the input cut in three at its first two 0xff
    // bytes (bytes that are never UTF-8, so the cuts add nothing a caller could not send).
    let mut parts = data.splitn(3, |b| *b == 0xff);
    let (chain, key, host) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut error: *mut EnconfError = std::ptr::null_mut();
    // SAFETY: each part is its length of readable bytes for the call; `error` is writable.
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
    read_answer(status, error);

    // The preview takes an account and the agent's settings: the input cut at its first 0xff.
    let (account, settings) = halves(data);
    let (mut out, mut out_len): (*mut c_char, usize) = (std::ptr::null_mut(), 0);
    let mut error: *mut EnconfError = std::ptr::null_mut();
    // SAFETY: each part is its length of readable bytes; the out places are writable.
    let status = unsafe {
        enconf::enconf_render_web(
            account.as_ptr().cast(),
            account.len(),
            settings.as_ptr().cast(),
            settings.len(),
            &mut out,
            &mut out_len,
            &mut error,
        )
    };
    assert_eq!(status == EnconfStatus::Ok, !out.is_null());
    if !out.is_null() {
        // SAFETY: the string the call returned, read then freed once.
        unsafe {
            assert_eq!(CStr::from_ptr(out).to_bytes().len(), out_len);
            enconf::enconf_string_free(out);
        }
    }
    read_answer(status, error);

    // A client from a URL and a token: the input cut at its first 0xff.
    let (url, token) = halves(data);
    let mut made = std::ptr::null_mut();
    let mut error: *mut EnconfError = std::ptr::null_mut();
    // SAFETY: each part is its length of readable bytes; the out places are writable.
    let status = unsafe {
        enconf::enconf_client_new(
            url.as_ptr().cast(),
            url.len(),
            token.as_ptr().cast(),
            token.len(),
            std::ptr::null(),
            0,
            0,
            &mut made,
            &mut error,
        )
    };
    assert_eq!(status == EnconfStatus::Ok, !made.is_null());
    read_answer(status, error);
    // SAFETY: NULL or the client just made, freed once.
    unsafe { enconf::enconf_client_free(made) };

    for call in CLIENT_CALLS {
        let (mut out, mut out_len): (*mut c_char, usize) = (std::ptr::null_mut(), 0);
        let mut error: *mut EnconfError = std::ptr::null_mut();
        // SAFETY: a live client; `data` is its length of readable bytes; out places writable.
        let status = unsafe {
            call(
                client(),
                data.as_ptr().cast(),
                data.len(),
                &mut out,
                &mut out_len,
                &mut error,
            )
        };
        assert!(out.is_null(), "nothing listens: no call succeeds");
        assert!(
            matches!(
                status,
                EnconfStatus::Invalid
                    | EnconfStatus::BadRequest
                    | EnconfStatus::BadArgument
                    | EnconfStatus::Unreachable
            ),
            "{status:?}"
        );
        read_answer(status, error);
    }

    for validate in ENTRY_POINTS {
        let mut error: *mut EnconfError = std::ptr::null_mut();
        // SAFETY: `data` is `data.len()` readable bytes for the call; `error` is writable.
        let status = unsafe { validate(data.as_ptr().cast(), data.len(), &mut error) };
        read_answer(status, error);
        // SAFETY: as above, with no error wanted.
        let again = unsafe { validate(data.as_ptr().cast(), data.len(), std::ptr::null_mut()) };
        assert_eq!(again, status);
    }
});
