//! The controller's Management API from C: a client made once with the controller's URL and
//! an administrator token, then servers and accounts created and listed with one call each.
//! Bodies go in and come out as the API's JSON, so a panel decodes them with what it has
//! (`json_decode` in PHP).

use std::ffi::c_char;
use std::time::Duration;

use enconf_core::client::blocking::ControllerClient;
use enconf_core::client::{ClientError, ClientOptions, Failure, FailureKind};
use enconf_core::domain::Rule;
use enconf_core::protocol::list::{ListQuery, Page};
use enconf_core::protocol::{AccountInput, ServerInput};
use serde::Serialize;

use super::{EnconfError, EnconfStatus, Refusal, answer, answer_text, text};

/// A client of one controller: its URL, an administrator token and a connection pool. Opaque:
/// made by [`enconf_client_new`], released by [`enconf_client_free`]. One client may be used
/// from several threads at once.
#[derive(Debug)]
pub struct EnconfClient {
    inner: ControllerClient,
}

impl From<ClientError> for Refusal {
    fn from(e: ClientError) -> Self {
        let f = Failure::from(e);
        let status = match f.kind {
            FailureKind::Invalid => EnconfStatus::Invalid,
            FailureKind::BadRequest => EnconfStatus::BadRequest,
            FailureKind::Refused => EnconfStatus::Refused,
            FailureKind::Unreachable => EnconfStatus::Unreachable,
            FailureKind::Interrupted => EnconfStatus::Interrupted,
            _ => EnconfStatus::Protocol,
        };
        Refusal {
            status,
            code: f.code.into(),
            message: f.message,
            field: f.field,
            http_status: f.http_status,
        }
    }
}

/// A list's query string (`limit=50&after=17&q=shop`) as a [`ListQuery`]; a parameter the
/// lists do not take is refused, named.
fn list_query(text: &str) -> Result<ListQuery, Refusal> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(text).map_err(|e| Refusal::argument(format!("query: {e}")))?;
    let mut query = ListQuery::default();
    for (name, value) in pairs {
        let slot = match name.as_str() {
            "limit" => &mut query.limit,
            "after" => &mut query.after,
            "server_id" => &mut query.server_id,
            "role" => &mut query.role,
            "q" => &mut query.q,
            _ => return Err(Rule::UnknownParameter.at(name).into()),
        };
        *slot = Some(value);
    }
    Ok(query)
}

/// A page as `{"items": [...], "next": "<cursor>" | null}`.
fn page_json<T: Serialize>(page: Page<T>) -> Result<String, Refusal> {
    #[derive(Serialize)]
    struct Out<T> {
        items: Vec<T>,
        next: Option<String>,
    }
    serde_json::to_string(&Out {
        items: page.items,
        next: page.next,
    })
    .map_err(|_| Refusal::internal())
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Refusal> {
    serde_json::to_string(value).map_err(|_| Refusal::internal())
}

/// The client behind `client`.
///
/// # Safety
/// `client` is NULL or a live client of ours.
unsafe fn client_ref<'a>(client: *const EnconfClient) -> Result<&'a ControllerClient, Refusal> {
    // SAFETY: the caller promises NULL or a live client made by enconf_client_new.
    unsafe { client.as_ref() }
        .map(|c| &c.inner)
        .ok_or_else(|| Refusal::argument("client must not be NULL"))
}

/// One call of `client` with the text `input`: the shared half of the four calls below.
///
/// # Safety
/// As [`enconf_client_create_server`], with `input` for `json`.
unsafe fn call(
    client: *const EnconfClient,
    input: (*const c_char, usize),
    out: *mut *mut c_char,
    out_len: *mut usize,
    error: *mut *mut EnconfError,
    f: impl FnOnce(&ControllerClient, &str) -> Result<String, Refusal>,
) -> EnconfStatus {
    // SAFETY: every pointer is as the caller promised.
    unsafe {
        answer_text(out, out_len, error, || {
            f(client_ref(client)?, text(input.0, input.1)?)
        })
    }
}

/// `body` as the JSON of a `T`, or a bad request.
fn body<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, Refusal> {
    serde_json::from_str(body).map_err(|e| Refusal::bad_request(&e))
}

/// Makes a client of the controller at `url` (`http://` or `https://`, as it serves) with the
/// administrator token `token`. `ca_file` (NULL with length 0 for none) is a PEM file of CA
/// certificates to trust besides the system's; `timeout_ms` bounds each request (0: 30 s).
/// Nothing is sent yet: a wrong token shows on the first call.
///
/// On success `*out` is the new client, owned by the caller and released with
/// [`enconf_client_free`]; on failure `*out` is NULL and the error names `url`, `token` or
/// `ca_file`.
///
/// # Safety
/// Each string is NULL with its length 0, or points to that many readable bytes; `out` points
/// to a writable place; `error` is NULL or points to a writable `EnconfError *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_client_new(
    url: *const c_char,
    url_len: usize,
    token: *const c_char,
    token_len: usize,
    ca_file: *const c_char,
    ca_file_len: usize,
    timeout_ms: u32,
    out: *mut *mut EnconfClient,
    error: *mut *mut EnconfError,
) -> EnconfStatus {
    if out.is_null() {
        // SAFETY: `error` is as the caller promised.
        return unsafe { answer(error, || Err(Refusal::argument("out must not be NULL"))) };
    }
    // SAFETY: `out` is non-NULL and writable, as the caller promised.
    unsafe { out.write(std::ptr::null_mut()) };
    let mut made = None;
    // SAFETY: `error` is as the caller promised.
    let status = unsafe {
        answer(error, || {
            // SAFETY: the three strings are as the caller promised.
            let (url, token, ca_file) = (
                text(url, url_len)?,
                text(token, token_len)?,
                text(ca_file, ca_file_len)?,
            );
            let options = ClientOptions {
                timeout: match timeout_ms {
                    0 => ClientOptions::default().timeout,
                    ms => Duration::from_millis(u64::from(ms)),
                },
                extra_ca: (!ca_file.is_empty()).then(|| ca_file.into()),
            };
            made = Some(ControllerClient::new(url, token, &options)?);
            Ok(())
        })
    };
    if let Some(inner) = made {
        // SAFETY: `out` is non-NULL and writable, as the caller promised.
        unsafe { out.write(Box::into_raw(Box::new(EnconfClient { inner }))) };
    }
    status
}

/// Releases a client; NULL does nothing. Calls still running on other threads must have
/// returned.
///
/// # Safety
/// `client` is NULL or a client made by [`enconf_client_new`], not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_client_free(client: *mut EnconfClient) {
    if !client.is_null() {
        // SAFETY: the caller promises a client of ours (made by Box::into_raw in
        // enconf_client_new) that was not freed before and is no longer in use.
        drop(unsafe { Box::from_raw(client) });
    }
}

/// Adds a server: `json` is the body of `POST /api/v1/servers` (`ServerInput`). On success
/// `*out` is the `Server` the controller answered, as JSON (never with the agent token).
/// A body that is not that JSON is refused before anything is sent
/// (`ENCONF_STATUS_BAD_REQUEST`); the controller's refusals come back as
/// `ENCONF_STATUS_INVALID` (naming the field), `ENCONF_STATUS_BAD_REQUEST` or
/// `ENCONF_STATUS_REFUSED`.
///
/// `*out` (and `*out_len`, its length without the NUL) are as `enconf_render_web`'s: released
/// with `enconf_string_free`.
///
/// # Safety
/// `client` is a live client; `json` is NULL with `len` 0 or points to `len` readable bytes;
/// `out` and `out_len` point to writable places; `error` is NULL or points to a writable
/// `EnconfError *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_client_create_server(
    client: *const EnconfClient,
    json: *const c_char,
    len: usize,
    out: *mut *mut c_char,
    out_len: *mut usize,
    error: *mut *mut EnconfError,
) -> EnconfStatus {
    // SAFETY: every pointer is as the caller promised.
    unsafe {
        call(client, (json, len), out, out_len, error, |client, json| {
            to_json(&client.create_server(&body::<ServerInput>(json)?)?)
        })
    }
}

/// Lists one page of the servers. `query` is a URL query string (NULL with length 0: the
/// first page of 100): `limit` (1 to 1,000) and `after` (the `next` of the page before).
/// On success `*out` is `{"items": [Server, …], "next": "<cursor>" or null}`.
///
/// # Safety
/// As [`enconf_client_create_server`], with `query` for `json`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_client_list_servers(
    client: *const EnconfClient,
    query: *const c_char,
    query_len: usize,
    out: *mut *mut c_char,
    out_len: *mut usize,
    error: *mut *mut EnconfError,
) -> EnconfStatus {
    // SAFETY: every pointer is as the caller promised.
    unsafe {
        call(
            client,
            (query, query_len),
            out,
            out_len,
            error,
            |client, query| page_json(client.servers(&list_query(query)?)?),
        )
    }
}

/// Creates an account: `json` is the body of `POST /api/v1/accounts` (`AccountInput`); the
/// controller places it when it names no server and applies it before answering. On success
/// `*out` is the `Account`, as JSON. Errors as [`enconf_client_create_server`]'s
/// (`ENCONF_STATUS_REFUSED` with `duplicate` for a user name or domain taken,
/// `no_server_available` when no server has room).
///
/// # Safety
/// As [`enconf_client_create_server`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_client_create_account(
    client: *const EnconfClient,
    json: *const c_char,
    len: usize,
    out: *mut *mut c_char,
    out_len: *mut usize,
    error: *mut *mut EnconfError,
) -> EnconfStatus {
    // SAFETY: every pointer is as the caller promised.
    unsafe {
        call(client, (json, len), out, out_len, error, |client, json| {
            to_json(&client.create_account(&body::<AccountInput>(json)?)?)
        })
    }
}

/// Lists one page of the accounts: `query` as [`enconf_client_list_servers`]'s, plus the
/// filters `server_id`, `role` (`web`, `mail`, …) and `q` (a user name or domain prefix).
/// On success `*out` is `{"items": [Account, …], "next": "<cursor>" or null}`.
///
/// # Safety
/// As [`enconf_client_list_servers`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn enconf_client_list_accounts(
    client: *const EnconfClient,
    query: *const c_char,
    query_len: usize,
    out: *mut *mut c_char,
    out_len: *mut usize,
    error: *mut *mut EnconfError,
) -> EnconfStatus {
    // SAFETY: every pointer is as the caller promised.
    unsafe {
        call(
            client,
            (query, query_len),
            out,
            out_len,
            error,
            |client, query| page_json(client.accounts(&list_query(query)?)?),
        )
    }
}
