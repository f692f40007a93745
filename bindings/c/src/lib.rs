//! enconf from C: the rules the controller's API applies, callable from any language with a C
//! foreign-function interface (PHP's FFI, Python's ctypes, Go's cgo), so a panel checks its
//! inputs exactly as enconf will.
//!
//! The header, `include/enconf.h` (which includes the generated `include/enconf_api.h`), is
//! made from this file by cbindgen; the crate's `header` test fails when the committed one
//! differs.
//!
//! # Rules of the interface
//!
//! - **Strings in** are a pointer and a length in bytes, UTF-8, not NUL-terminated (a NUL
//!   byte is part of the text, and refused by every rule). The pointer may be NULL only when
//!   the length is 0. The library reads them during the call only.
//! - **Answers** are an [`EnconfStatus`]. On anything but `ENCONF_STATUS_OK`, and when the
//!   caller passed a non-NULL `error`, `*error` is set to a new [`EnconfError`], which the
//!   caller owns and releases with [`enconf_error_free`]; on success `*error` is set to NULL.
//! - **Strings out** (an error's code, message and field) are NUL-terminated UTF-8 owned by
//!   their error: valid until it is freed. [`enconf_version`]'s string is static.
//! - **No panic crosses the boundary**: one inside the library is caught and answered with
//!   `ENCONF_STATUS_INTERNAL`.
//! - Every function may be called from any thread; nothing is shared between calls.

use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use enconf_core::domain::{ValidationError, field};
use enconf_core::protocol::{AccountInput, ServerInput};
use enconf_core::ssl::cert;

/// What a call answered.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnconfStatus {
    /// The input is valid.
    Ok = 0,
    /// A field breaks a rule (the API's `422 invalid`); the error names the field.
    Invalid = 1,
    /// The JSON is not JSON, or not the right shape (the API's `400 bad_request`).
    BadRequest = 2,
    /// The call itself is wrong: a NULL pointer with a length, or text that is not UTF-8.
    BadArgument = 3,
    /// The library failed (a bug): nothing about the input is known.
    Internal = 4,
    /// The controller refused the request with another API error (`duplicate`,
    /// `unauthorized`, `no_server_available`, …): the error's code is the API's, and
    /// [`enconf_error_http_status`] its HTTP status.
    Refused = 5,
    /// The controller could not be reached: nothing was sent.
    Unreachable = 6,
    /// The request went out but no whole answer came back in time: it may have been applied
    /// (list to find out before trying again).
    Interrupted = 7,
    /// The controller's answer is not what the API promises (another service at that URL?).
    Protocol = 8,
}

/// Why an input was refused: a code (`invalid`, `bad_request`, `bad_argument`, `internal`,
/// as the API's error codes), a message for people, and the field at fault (when there is
/// one, as the API names it: `domains[1]`). Opaque: read it with the accessors below.
#[derive(Debug)]
pub struct EnconfError {
    code: CString,
    message: CString,
    field: Option<CString>,
    http_status: u16,
}

mod client;
pub use client::*;

/// A refusal, before it becomes an [`EnconfError`].
struct Refusal {
    status: EnconfStatus,
    code: std::borrow::Cow<'static, str>,
    message: String,
    field: Option<String>,
    /// The controller's HTTP status, when the refusal is its answer.
    http_status: u16,
}

impl Refusal {
    fn argument(message: impl Into<String>) -> Self {
        Self {
            status: EnconfStatus::BadArgument,
            code: "bad_argument".into(),
            message: message.into(),
            field: None,
            http_status: 0,
        }
    }

    fn internal() -> Self {
        Self {
            status: EnconfStatus::Internal,
            code: "internal".into(),
            message: "the library failed; the input was not checked".to_owned(),
            field: None,
            http_status: 0,
        }
    }

    fn bad_request(e: &serde_json::Error) -> Self {
        Self {
            status: EnconfStatus::BadRequest,
            code: "bad_request".into(),
            message: format!("the body is not the expected JSON: {e}"),
            field: None,
            http_status: 0,
        }
    }

    fn into_error(self) -> EnconfError {
        EnconfError {
            code: c_string(&self.code),
            message: c_string(&self.message),
            field: self.field.as_deref().map(c_string),
            http_status: self.http_status,
        }
    }
}

impl From<cert::CertError> for Refusal {
    fn from(e: cert::CertError) -> Self {
        Self {
            status: EnconfStatus::Invalid,
            code: "invalid".into(),
            message: e.to_string(),
            field: e.field().map(str::to_owned),
            http_status: 0,
        }
    }
}

impl From<ValidationError> for Refusal {
    fn from(e: ValidationError) -> Self {
        Self {
            status: EnconfStatus::Invalid,
            code: "invalid".into(),
            message: e.to_string(),
            field: Some(e.field),
            http_status: 0,
        }
    }
}

/// `s` as a C string; a NUL inside (never in our messages, which quote characters escaped)
/// is written as `\0` rather than cutting the text.
fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

/// The text at `ptr`, `len` bytes of UTF-8.
///
/// # Safety
/// `ptr` is NULL with `len` 0, or points to `len` readable bytes that stay unchanged during
/// the call.
unsafe fn text<'a>(ptr: *const c_char, len: usize) -> Result<&'a str, Refusal> {
    if ptr.is_null() {
        return if len == 0 {
            Ok("")
        } else {
            Err(Refusal::argument("a NULL string with a non-zero length"))
        };
    }
    if isize::try_from(len).is_err() {
        return Err(Refusal::argument("a length larger than memory"));
    }
    // SAFETY: the caller promises `len` readable bytes at the non-NULL `ptr`, unchanged during
    // the call; `len` fits in an isize (checked above), as from_raw_parts requires.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    std::str::from_utf8(bytes).map_err(|e| Refusal::argument(format!("not UTF-8: {e}")))
}

/// Runs `check` with panics caught, and answers as the module documentation says.
///
/// # Safety
/// `error` is NULL or points to a writable `EnconfError *`.
unsafe fn answer(
    error: *mut *mut EnconfError,
    check: impl FnOnce() -> Result<(), Refusal>,
) -> EnconfStatus {
    let outcome =
        catch_unwind(AssertUnwindSafe(check)).unwrap_or_else(|_| Err(Refusal::internal()));
    let (status, made) = match outcome {
        Ok(()) => (EnconfStatus::Ok, std::ptr::null_mut()),
        Err(refusal) => (
            refusal.status,
            Box::into_raw(Box::new(refusal.into_error())),
        ),
    };
    if error.is_null() {
        if !made.is_null() {
            // SAFETY: `made` came from Box::into_raw just above and was given to no one.
            drop(unsafe { Box::from_raw(made) });
        }
    } else {
        // SAFETY: the caller promises a non-NULL `error` points to a writable pointer.
        unsafe { error.write(made) };
    }
    status
}

/// Runs `make` as [`answer`] does; on success `*out` is the text made (NUL-terminated, owned by
/// the caller, released with [`enconf_string_free`]) and `*out_len` its length in bytes
/// without the NUL; on failure `*out` is NULL.
///
/// # Safety
/// `out` and `out_len` are NULL or writable (NULL is answered `ENCONF_STATUS_BAD_ARGUMENT`);
/// `error` as [`answer`] wants.
unsafe fn answer_text(
    out: *mut *mut c_char,
    out_len: *mut usize,
    error: *mut *mut EnconfError,
    make: impl FnOnce() -> Result<String, Refusal>,
) -> EnconfStatus {
    if out.is_null() || out_len.is_null() {
        // SAFETY: `error` is as the caller promised.
        return unsafe {
            answer(error, || {
                Err(Refusal::argument("out and out_len must not be NULL"))
            })
        };
    }
    // SAFETY: `out` is non-NULL and writable, as the caller promised.
    unsafe { out.write(std::ptr::null_mut()) };
    let mut made = None;
    // SAFETY: `error` is as the caller promised.
    let status = unsafe {
        answer(error, || {
            made = Some(make()?);
            Ok(())
        })
    };
    if let Some(text) = made {
        let len = text.len();
        // SAFETY: `out` and `out_len` are non-NULL and writable, as the caller promised.
        unsafe {
            out.write(c_string(&text).into_raw());
            out_len.write(len);
        }
    }
    status
}

/// Checks one string with `rule`, naming `field` when it is refused.
///
/// # Safety
/// As [`text`] for `ptr` and `len`, and as [`answer`] for `error`.
unsafe fn check_text(
    ptr: *const c_char,
    len: usize,
    error: *mut *mut EnconfError,
    rule: impl FnOnce(&str) -> Result<(), ValidationError>,
) -> EnconfStatus {
    // SAFETY: `error` is as the caller promised.
    unsafe {
        answer(error, || {
            // SAFETY: `ptr` and `len` are as the caller promised.
            let input = text(ptr, len)?;
            rule(input).map_err(Refusal::from)
        })
    }
}

/// Reads a JSON body as `T` (a `bad_request` when it is not one) and checks it with `rule`.
///
/// # Safety
/// As [`text`] for `json` and `len`, and as [`answer`] for `error`.
unsafe fn check_json<T: serde::de::DeserializeOwned>(
    json: *const c_char,
    len: usize,
    error: *mut *mut EnconfError,
    rule: impl FnOnce(T) -> Result<(), ValidationError>,
) -> EnconfStatus {
    // SAFETY: `error` is as the caller promised.
    unsafe {
        answer(error, || {
            // SAFETY: `json` and `len` are as the caller promised.
            let body = text(json, len)?;
            let input = serde_json::from_str(body).map_err(|e| Refusal::bad_request(&e))?;
            rule(input).map_err(Refusal::from)
        })
    }
}

/// The library's version (`0.1.0`): a static NUL-terminated string, never freed.
#[unsafe(no_mangle)]
pub extern "C" fn enconf_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

/// Checks a domain name as the API does for an account's `domains` (the field is named
/// `domain`).
///
/// # Safety
/// `input` is NULL with `len` 0, or points to `len` readable bytes; `error` is NULL or points
/// to a writable `EnconfError *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_validate_domain(
    input: *const c_char,
    len: usize,
    error: *mut *mut EnconfError,
) -> EnconfStatus {
    // SAFETY: passed on as the caller promised.
    unsafe { check_text(input, len, error, |s| field::domain(s).map(drop)) }
}

/// Checks an account's user name (the field is named `username`).
///
/// # Safety
/// As [`enconf_validate_domain`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_validate_username(
    input: *const c_char,
    len: usize,
    error: *mut *mut EnconfError,
) -> EnconfStatus {
    // SAFETY: passed on as the caller promised.
    unsafe { check_text(input, len, error, |s| field::username(s).map(drop)) }
}

/// Checks a mailbox address, `local@domain` (the field is named `address`).
///
/// # Safety
/// As [`enconf_validate_domain`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_validate_mail_address(
    input: *const c_char,
    len: usize,
    error: *mut *mut EnconfError,
) -> EnconfStatus {
    // SAFETY: passed on as the caller promised.
    unsafe { check_text(input, len, error, |s| field::mail_address(s).map(drop)) }
}

/// Checks a new server, the JSON body of `POST /api/v1/servers` (`ServerInput`), as the
/// controller does before it asks the agent: `ENCONF_STATUS_BAD_REQUEST` when it is not that
/// JSON, `ENCONF_STATUS_INVALID` naming the field at fault.
///
/// # Safety
/// As [`enconf_validate_domain`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_validate_server_input(
    json: *const c_char,
    len: usize,
    error: *mut *mut EnconfError,
) -> EnconfStatus {
    // SAFETY: passed on as the caller promised.
    unsafe { check_json(json, len, error, |i: ServerInput| i.validate().map(drop)) }
}

/// Checks a new account, the JSON body of `POST /api/v1/accounts` (`AccountInput`), as
/// [`enconf_validate_server_input`] does for a server. What only the controller knows (a
/// name already taken, a server without room) is not checked.
///
/// # Safety
/// As [`enconf_validate_domain`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_validate_account_input(
    json: *const c_char,
    len: usize,
    error: *mut *mut EnconfError,
) -> EnconfStatus {
    // SAFETY: passed on as the caller promised.
    unsafe { check_json(json, len, error, |i: AccountInput| i.validate().map(drop)) }
}

/// Checks an uploaded certificate chain and private key (PEM) for the domain `host`, now, as
/// the controller does before it installs them: both parse, the key is supported and belongs
/// to the first certificate, which is valid now and covers `host` (exactly or by a wildcard),
/// and each certificate is issued by the one after it. A refusal names `certificate_pem`,
/// `private_key_pem` or `domain`.
///
/// # Safety
/// Each of `chain`, `key` and `host` is NULL with its length 0, or points to that many
/// readable bytes; `error` is NULL or points to a writable `EnconfError *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_check_certificate(
    chain: *const c_char,
    chain_len: usize,
    key: *const c_char,
    key_len: usize,
    host: *const c_char,
    host_len: usize,
    error: *mut *mut EnconfError,
) -> EnconfStatus {
    // SAFETY: `error` is as the caller promised.
    unsafe {
        answer(error, || {
            // SAFETY: the three strings are as the caller promised.
            let (chain, key, host) = (
                text(chain, chain_len)?,
                text(key, key_len)?,
                text(host, host_len)?,
            );
            let host = field::domain(host)?;
            cert::check(chain, key, &host, time::OffsetDateTime::now_utc())
                .map(drop)
                .map_err(Refusal::from)
        })
    }
}

/// Renders what the agent would write for a new account's web role, for a preview: the nginx
/// server block and the PHP-FPM pool of the account in `account_json` (the body of
/// `POST /api/v1/accounts`, checked as [`enconf_validate_account_input`] does), each after a
/// `# <path>` line. `settings` is the text of the server's agent `config.env` (its paths, port
/// and default PHP version; empty: the Debian defaults); its token, if any, is not used.
///
/// On success `*out` is a new NUL-terminated string of `*out_len` bytes (without the NUL),
/// owned by the caller and released with [`enconf_string_free`]; on failure `*out` is NULL.
///
/// # Safety
/// `account_json` and `settings` are NULL with their length 0, or point to that many readable
/// bytes; `out` and `out_len` point to writable places; `error` is NULL or points to a
/// writable `EnconfError *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_render_web(
    account_json: *const c_char,
    account_len: usize,
    settings: *const c_char,
    settings_len: usize,
    out: *mut *mut c_char,
    out_len: *mut usize,
    error: *mut *mut EnconfError,
) -> EnconfStatus {
    // SAFETY: `out`, `out_len` and `error` are as the caller promised.
    unsafe {
        answer_text(out, out_len, error, || {
            // SAFETY: both strings are as the caller promised.
            let (body, settings) = (
                text(account_json, account_len)?,
                text(settings, settings_len)?,
            );
            let input: AccountInput =
                serde_json::from_str(body).map_err(|e| Refusal::bad_request(&e))?;
            let spec = input.validate().map_err(Refusal::from)?.spec;
            enconf_agent_lib::preview::web(&spec, settings).map_err(|e| Refusal {
                status: EnconfStatus::Invalid,
                code: "invalid".into(),
                message: e.to_string(),
                field: Some("settings".to_owned()),
                http_status: 0,
            })
        })
    }
}

/// Releases a string this library returned (from [`enconf_render_web`] and the client's
/// calls); NULL does nothing.
///
/// # Safety
/// `s` is NULL or a string this library returned, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: the caller promises a string of ours (made by CString::into_raw) that was
        // not freed before.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// The error's code (`invalid`, `bad_request`, `bad_argument`, `internal`); NULL for a NULL
/// error. Owned by the error.
///
/// # Safety
/// `error` is NULL or an error this library made and that is not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_error_code(error: *const EnconfError) -> *const c_char {
    // SAFETY: the caller promises NULL or a live error of ours.
    unsafe { error.as_ref() }.map_or(std::ptr::null(), |e| e.code.as_ptr())
}

/// The error's message, for people; NULL for a NULL error. Owned by the error.
///
/// # Safety
/// As [`enconf_error_code`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_error_message(error: *const EnconfError) -> *const c_char {
    // SAFETY: the caller promises NULL or a live error of ours.
    unsafe { error.as_ref() }.map_or(std::ptr::null(), |e| e.message.as_ptr())
}

/// The field at fault (`hostname`, `domains[1]`), or NULL when no single field is (or for a
/// NULL error). Owned by the error.
///
/// # Safety
/// As [`enconf_error_code`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_error_field(error: *const EnconfError) -> *const c_char {
    // SAFETY: the caller promises NULL or a live error of ours.
    unsafe { error.as_ref() }
        .and_then(|e| e.field.as_ref())
        .map_or(std::ptr::null(), |f| f.as_ptr())
}

/// The HTTP status of the controller's answer when the error is one (`409`, `401`, `422`…),
/// else 0 (also for a NULL error).
///
/// # Safety
/// As [`enconf_error_code`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_error_http_status(error: *const EnconfError) -> u16 {
    // SAFETY: the caller promises NULL or a live error of ours.
    unsafe { error.as_ref() }.map_or(0, |e| e.http_status)
}

/// Releases an error; NULL is allowed and does nothing. Its strings are gone with it.
///
/// # Safety
/// `error` is NULL or an error this library made, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_error_free(error: *mut EnconfError) {
    if !error.is_null() {
        // SAFETY: the caller promises an error of ours (made by Box::into_raw in `answer`)
        // that was not freed before.
        drop(unsafe { Box::from_raw(error) });
    }
}
