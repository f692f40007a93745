//! A client of the controller's Management API, for panels and tools written in Rust (and,
//! through `bindings/`, in C, PHP and Python): servers and accounts, created and listed a page
//! at a time, with the API's errors as typed values.
//!
//! ```no_run
//! # async fn run() -> Result<(), enconf_core::client::ClientError> {
//! use enconf_core::client::{ClientOptions, ControllerClient};
//! use enconf_core::protocol::AccountInput;
//! use enconf_core::protocol::list::ListQuery;
//!
//! let token = std::env::var("ENCONF_ADMIN_TOKEN").unwrap_or_default();
//! let panel = ControllerClient::new("https://panel.example.com:8080", &token, &ClientOptions::default())?;
//! let account = panel
//!     .create_account(&AccountInput {
//!         username: Some("shop".into()),
//!         domains: Some(vec!["shop.example".into()]),
//!         ..AccountInput::default()
//!     })
//!     .await?;
//! let mut query = ListQuery { q: Some("shop".into()), ..ListQuery::default() };
//! loop {
//!     let page = panel.accounts(&query).await?;
//!     for a in &page.items {
//!         tracing::info!(id = a.id, user = %a.username, "account");
//!     }
//!     match page.next {
//!         Some(next) => query.after = Some(next),
//!         None => break,
//!     }
//! }
//! # let _ = account; Ok(()) }
//! ```

pub mod blocking;
pub(crate) mod https;

use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use https::TransportSetupError;

use crate::domain::{AdminToken, HttpUrl, ValidationError};
use crate::protocol::list::{ListQuery, Page};
use crate::protocol::{AccountInput, AccountView, ServerInput, ServerView};

/// The largest answer read from the controller (a page of 1,000 accounts is far smaller).
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// How the client connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The longest one request may take, connecting included.
    pub timeout: Duration,
    /// A PEM file of CA certificates to trust besides the system's (a controller whose
    /// certificate comes from a private CA).
    pub extra_ca: Option<PathBuf>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            extra_ca: None,
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// An argument of the call broke a rule before anything was sent (the URL, the token, a
    /// list's query); `field` names it.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// The controller answered with an error: its HTTP status and the API's error
    /// (`code` such as `invalid`, `duplicate`, `unauthorized`; `field` for `invalid`).
    #[error("{message} ({code}, HTTP {status})")]
    Refused {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    /// No connection could be made: nothing was sent.
    #[error("the controller cannot be reached: {0}")]
    Unreachable(String),
    /// The request went out but no whole answer came back in time: it may have been applied.
    #[error("no complete answer from the controller: {0}")]
    Interrupted(String),
    /// The answer is not what the API promises.
    #[error("the controller's answer is not understood: {0}")]
    Protocol(String),
    /// The TLS set-up failed (the CA file).
    #[error(transparent)]
    Setup(#[from] TransportSetupError),
}

/// Which family a [`ClientError`] belongs to: what a caller in another language catches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// A field broke a rule (here or at the controller: the API's `invalid`).
    Invalid,
    /// A body of the wrong shape (the API's `bad_request`).
    BadRequest,
    /// Any other answer of the controller's (`duplicate`, `not_found`, `unauthorized`...).
    Refused,
    /// Nothing was sent.
    Unreachable,
    /// It may have been applied.
    Interrupted,
    /// The answer is not the API's.
    Protocol,
}

/// A [`ClientError`] in the API's terms, as the bindings hand it on: the family, the API's
/// error code, the message, the field at fault and the controller's HTTP status (0 when it
/// did not answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
    pub http_status: u16,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let message = e.to_string();
        let (kind, code, field) = match e {
            ClientError::Invalid(v) => (FailureKind::Invalid, "invalid".to_owned(), Some(v.field)),
            ClientError::Refused {
                status,
                code,
                field,
                message,
            } => {
                let kind = match code.as_str() {
                    "invalid" => FailureKind::Invalid,
                    "bad_request" => FailureKind::BadRequest,
                    _ => FailureKind::Refused,
                };
                return Self {
                    kind,
                    code,
                    message,
                    field,
                    http_status: status,
                };
            }
            ClientError::Unreachable(_) => (FailureKind::Unreachable, "unreachable".into(), None),
            ClientError::Interrupted(_) => (FailureKind::Interrupted, "interrupted".into(), None),
            ClientError::Setup(_) => (
                FailureKind::Invalid,
                "invalid".into(),
                Some("ca_file".into()),
            ),
            ClientError::Protocol(_) => (FailureKind::Protocol, "protocol".into(), None),
        };
        Self {
            kind,
            code,
            message,
            field,
            http_status: 0,
        }
    }
}

/// The Management API of one controller, reached with one administrator token.
///
/// Cheap to clone (one connection pool); every method may be called concurrently.
#[derive(Clone)]
pub struct ControllerClient {
    http: https::HttpsClient,
    /// The URL without a trailing slash: `https://panel.example.com:8080`.
    base: String,
    token: AdminToken,
    timeout: Duration,
}

impl std::fmt::Debug for ControllerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerClient")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ControllerClient {
    /// A client of the controller at `url` (`http` or `https`, as the controller serves; a
    /// path prefix is kept) with the administrator token `token`. Nothing is sent yet.
    pub fn new(url: &str, token: &str, options: &ClientOptions) -> Result<Self, ClientError> {
        let url = HttpUrl::parse(url).map_err(|r| r.at("url"))?;
        let token = AdminToken::parse(token).map_err(|r| r.at("token"))?;
        let http = https::client(options.timeout, options.extra_ca.as_deref())?;
        Ok(Self {
            http,
            base: url.to_string().trim_end_matches('/').to_owned(),
            token,
            timeout: options.timeout,
        })
    }

    /// One page of the servers, in id order (`limit`, `after`; no filters).
    pub async fn servers(&self, query: &ListQuery) -> Result<Page<ServerView>, ClientError> {
        query.paging()?;
        query.unfiltered()?;
        self.page("/api/v1/servers", query).await
    }

    /// The server `id`.
    pub async fn server(&self, id: u64) -> Result<ServerView, ClientError> {
        self.call("GET", &format!("/api/v1/servers/{id}"), None::<&()>, 200)
            .await
    }

    /// Adds a server (`POST /api/v1/servers`); the controller checks its agent at once, and
    /// adds it whether or not the agent answers yet.
    pub async fn create_server(&self, input: &ServerInput) -> Result<ServerView, ClientError> {
        self.call("POST", "/api/v1/servers", Some(input), 201).await
    }

    /// One page of the accounts, in id order, filtered by `server_id`, `role` and `q` (a user
    /// name or domain prefix) when given.
    pub async fn accounts(&self, query: &ListQuery) -> Result<Page<AccountView>, ClientError> {
        query.paging()?;
        query.accounts()?;
        self.page("/api/v1/accounts", query).await
    }

    /// The account `id`.
    pub async fn account(&self, id: u64) -> Result<AccountView, ClientError> {
        self.call("GET", &format!("/api/v1/accounts/{id}"), None::<&()>, 200)
            .await
    }

    /// Creates an account (`POST /api/v1/accounts`), placed by the controller when it names
    /// no server, and applied on its servers before the answer.
    pub async fn create_account(&self, input: &AccountInput) -> Result<AccountView, ClientError> {
        self.call("POST", "/api/v1/accounts", Some(input), 201)
            .await
    }

    async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &ListQuery,
    ) -> Result<Page<T>, ClientError> {
        let pairs: Vec<(&str, &str)> = [
            ("limit", &query.limit),
            ("after", &query.after),
            ("server_id", &query.server_id),
            ("role", &query.role),
            ("q", &query.q),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
        .collect();
        let path = match pairs.is_empty() {
            true => path.to_owned(),
            false => format!(
                "{path}?{}",
                serde_urlencoded::to_string(&pairs)
                    .map_err(|e| ClientError::Protocol(format!("cannot encode the query: {e}")))?
            ),
        };
        let (status, link, body) = self.exchange("GET", &path, None).await?;
        let items = expect(status, 200, &body)?;
        let next = link.as_deref().map(next_cursor).transpose()?.flatten();
        Ok(Page { items, next })
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
        success: u16,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Protocol(format!("cannot encode the body: {e}")))?;
        let (status, _, answer) = self.exchange(method, path, body).await?;
        expect(status, success, &answer)
    }

    /// Sends one request; answers its status, `Link` header and body.
    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Option<String>, Vec<u8>), ClientError> {
        let request = async {
            let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.token.expose_secret()))
                .map_err(|_| ClientError::Protocol("the token cannot travel".into()))?;
            auth.set_sensitive(true);
            let mut builder = hyper::Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.base))
                .header(header::AUTHORIZATION, auth)
                .header(header::ACCEPT, "application/json");
            if body.is_some() {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
            }
            let request = builder
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| ClientError::Protocol(format!("cannot build the request: {e}")))?;
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    ClientError::Unreachable(https::chain(&e))
                } else {
                    ClientError::Interrupted(https::chain(&e))
                }
            })?;
            let status = response.status().as_u16();
            let link = response
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| ClientError::Interrupted(format!("reading the answer: {e}")))?
                .to_bytes()
                .to_vec();
            Ok((status, link, body))
        };
        match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Interrupted(format!(
                "no answer within {} s",
                self.timeout.as_secs_f64()
            ))),
        }
    }
}

/// The answer as `T` when its status is `success`, else the API's error.
fn expect<T: DeserializeOwned>(status: u16, success: u16, body: &[u8]) -> Result<T, ClientError> {
    if status == success {
        return serde_json::from_slice(body).map_err(|e| {
            ClientError::Protocol(format!("HTTP {status} with an unexpected body: {e}"))
        });
    }
    /// The error body, read leniently: a newer controller may answer a code this client
    /// does not know.
    #[derive(serde::Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        code: String,
        message: String,
        field: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(Body { error }) => Err(ClientError::Refused {
            status,
            code: error.code,
            message: error.message,
            field: error.field,
        }),
        Err(_) => Err(ClientError::Protocol(format!(
            "HTTP {status} without an API error body"
        ))),
    }
}

/// The cursor of the next page from a `Link: <path?limit=…&after=…>; rel="next"` header.
fn next_cursor(link: &str) -> Result<Option<String>, ClientError> {
    let bad = || ClientError::Protocol(format!("a Link header that is not understood: {link}"));
    let Some((target, params)) = link.split_once(';') else {
        return Err(bad());
    };
    if params.trim() != "rel=\"next\"" {
        return Ok(None);
    }
    let target = target
        .trim()
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .ok_or_else(bad)?;
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|_| bad())?;
    pairs
        .into_iter()
        .find(|(name, _)| name == "after")
        .map(|(_, value)| Some(value))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_cursor_comes_from_the_link_header() {
        let link = "</api/v1/accounts?limit=2&after=17&q=sh%C3%B6p>; rel=\"next\"";
        assert_eq!(next_cursor(link).unwrap().as_deref(), Some("17"));
        assert_eq!(next_cursor("</x?after=3>; rel=\"prev\"").unwrap(), None);
        for bad in ["", "</x?limit=2>; rel=\"next\"", "/x?after=3; rel=\"next\""] {
            assert!(
                matches!(next_cursor(bad), Err(ClientError::Protocol(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_error_body_keeps_its_code_even_an_unknown_one() {
        let body = br#"{"error": {"code": "brand_new", "message": "no", "field": "name"}}"#;
        match expect::<()>(418, 200, body) {
            Err(ClientError::Refused {
                status,
                code,
                field,
                ..
            }) => {
                assert_eq!((status, code.as_str()), (418, "brand_new"));
                assert_eq!(field.as_deref(), Some("name"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            expect::<()>(502, 200, b"<html>bad gateway</html>"),
            Err(ClientError::Protocol(_))
        ));
    }

    #[test]
    fn bad_arguments_are_refused_before_anything_is_sent() {
        let options = ClientOptions::default();
        let url = ControllerClient::new("ftp://x", "0123456789abcdef", &options).unwrap_err();
        assert!(
            matches!(url, ClientError::Invalid(ref e) if e.field == "url"),
            "{url:?}"
        );
        let token = ControllerClient::new("http://127.0.0.1:1", "short", &options).unwrap_err();
        assert!(matches!(token, ClientError::Invalid(ref e) if e.field == "token"));
    }
}
