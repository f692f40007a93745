//! `enconf._enconf`: the native half of the Python package `enconf` (PyO3, stable ABI).
//!
//! It takes and answers text (inputs and results as the API's JSON); the package's Python half
//! (`python/enconf/__init__.py`) turns dictionaries into that JSON and the answers into
//! dataclasses. Every refusal is an exception of [`EnconfError`]'s family with the attributes
//! `code`, `field` and `http_status`; no Rust panic reaches Python as anything but PyO3's
//! `PanicException`. Calls that wait on the network release the GIL.

use std::time::Duration;

use enconf_core::client::blocking::ControllerClient;
use enconf_core::client::{ClientError, ClientOptions, Failure, FailureKind};
use enconf_core::domain::{ValidationError as Invalid, field};
use enconf_core::protocol::list::{ListQuery, Page};
use enconf_core::protocol::{AccountInput, ServerInput};
use enconf_core::ssl::cert;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use serde::Serialize;

// Named as the package `enconf` exports them (`enconf.ValidationError` in tracebacks).
pyo3::create_exception!(
    enconf,
    EnconfError,
    PyException,
    "Anything enconf refused: `code` (the API's error code), `field` (the field at fault, or None) and `http_status` (the controller's answer, 0 when nothing was asked of it)."
);
pyo3::create_exception!(
    enconf,
    ValidationError,
    EnconfError,
    "A field breaks a rule (the API's 422 `invalid`); `field` names it as the API does (`domains[1]`)."
);
pyo3::create_exception!(
    enconf,
    BadRequestError,
    EnconfError,
    "The input is not JSON of the expected shape (the API's 400 `bad_request`)."
);
pyo3::create_exception!(
    enconf,
    RefusedError,
    EnconfError,
    "The controller refused the request with another API error (`duplicate`, `unauthorized`, `no_server_available`, ...)."
);
pyo3::create_exception!(
    enconf,
    UnreachableError,
    EnconfError,
    "The controller could not be reached: nothing was sent."
);
pyo3::create_exception!(
    enconf,
    InterruptedRequestError,
    EnconfError,
    "The request went out but no whole answer came back in time: it may have been applied."
);
pyo3::create_exception!(
    enconf,
    ProtocolError,
    EnconfError,
    "The controller's answer is not what the API promises (another service at that URL?)."
);

/// What went wrong, before it becomes a Python exception: the client's [`Failure`], in a type
/// of this crate's so that it may turn into a `PyErr`.
struct Refusal(Failure);

impl Refusal {
    fn new(kind: FailureKind, code: &str, message: String, field: Option<String>) -> Self {
        Self(Failure {
            kind,
            code: code.to_owned(),
            message,
            field,
            http_status: 0,
        })
    }

    fn bad_request(e: &serde_json::Error) -> Self {
        let message = format!("the body is not the expected JSON: {e}");
        Self::new(FailureKind::BadRequest, "bad_request", message, None)
    }

    fn protocol(message: String) -> Self {
        Self::new(FailureKind::Protocol, "protocol", message, None)
    }

    fn invalid(message: String, field: Option<String>) -> Self {
        Self::new(FailureKind::Invalid, "invalid", message, field)
    }
}

impl From<Invalid> for Refusal {
    fn from(e: Invalid) -> Self {
        let message = e.to_string();
        Self::invalid(message, Some(e.field))
    }
}

impl From<cert::CertError> for Refusal {
    fn from(e: cert::CertError) -> Self {
        let field = e.field().map(str::to_owned);
        Self::invalid(e.to_string(), field)
    }
}

impl From<ClientError> for Refusal {
    fn from(e: ClientError) -> Self {
        Self(e.into())
    }
}

impl From<Refusal> for PyErr {
    fn from(Refusal(f): Refusal) -> Self {
        let message = f.message.clone();
        let err = match f.kind {
            FailureKind::Invalid => ValidationError::new_err(message),
            FailureKind::BadRequest => BadRequestError::new_err(message),
            FailureKind::Refused => RefusedError::new_err(message),
            FailureKind::Unreachable => UnreachableError::new_err(message),
            FailureKind::Interrupted => InterruptedRequestError::new_err(message),
            _ => ProtocolError::new_err(message),
        };
        Python::attach(|py| {
            let value = err.value(py);
            // Setting attributes on a new exception instance only fails when memory runs
            // out; the exception still carries its message then.
            let _ = value.setattr("code", f.code);
            let _ = value.setattr("message", f.message);
            let _ = value.setattr("field", f.field);
            let _ = value.setattr("http_status", f.http_status);
        });
        err
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Refusal> {
    serde_json::to_string(value).map_err(|e| Refusal::protocol(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Refusal> {
    serde_json::from_str(text).map_err(|e| Refusal::bad_request(&e))
}

/// The library's version.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Checks a domain name as the API does (`ValidationError` with field `domain`).
#[pyfunction]
fn validate_domain(domain: &str) -> Result<(), Refusal> {
    field::domain(domain)?;
    Ok(())
}

/// Checks an account's user name (`ValidationError` with field `username`).
#[pyfunction]
fn validate_username(username: &str) -> Result<(), Refusal> {
    field::username(username)?;
    Ok(())
}

/// Checks a mailbox address (`ValidationError` with field `address`).
#[pyfunction]
fn validate_mail_address(address: &str) -> Result<(), Refusal> {
    field::mail_address(address)?;
    Ok(())
}

/// Checks the JSON body of `POST /api/v1/servers`.
#[pyfunction]
fn validate_server_input(json: &str) -> Result<(), Refusal> {
    from_json::<ServerInput>(json)?.validate()?;
    Ok(())
}

/// Checks the JSON body of `POST /api/v1/accounts`.
#[pyfunction]
fn validate_account_input(json: &str) -> Result<(), Refusal> {
    from_json::<AccountInput>(json)?.validate()?;
    Ok(())
}

/// Checks a certificate chain and key (PEM) for `domain`, now, as the controller checks an
/// upload; answers the leaf's details as JSON.
#[pyfunction]
fn check_certificate(chain_pem: &str, key_pem: &str, domain: &str) -> Result<String, Refusal> {
    let host = field::domain(domain)?;
    let info = cert::check(chain_pem, key_pem, &host, time::OffsetDateTime::now_utc())?;
    to_json(&info)
}

/// The nginx server block and PHP-FPM pool the agent would write for the account in
/// `account_json`, under the layout of the agent settings `settings` (a `config.env` text).
#[pyfunction]
#[pyo3(signature = (account_json, settings = ""))]
fn render_web(account_json: &str, settings: &str) -> Result<String, Refusal> {
    let spec = from_json::<AccountInput>(account_json)?.validate()?.spec;
    enconf_agent_lib::preview::web(&spec, settings)
        .map_err(|e| Refusal::invalid(e.to_string(), Some("settings".into())))
}

/// A page as `{"items": [...], "next": "<cursor>" | null}`.
fn page_json<T: Serialize>(page: Page<T>) -> Result<String, Refusal> {
    #[derive(Serialize)]
    struct Out<T> {
        items: Vec<T>,
        next: Option<String>,
    }
    to_json(&Out {
        items: page.items,
        next: page.next,
    })
}

/// A blocking client of one controller's Management API; safe to share between threads.
#[pyclass(frozen, module = "enconf._enconf")]
struct Client {
    inner: ControllerClient,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (url, token, ca_file = None, timeout = 30.0))]
    fn new(url: &str, token: &str, ca_file: Option<&str>, timeout: f64) -> Result<Self, Refusal> {
        let timeout = Duration::try_from_secs_f64(timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                Refusal::invalid(
                    "timeout must be a positive number of seconds".into(),
                    Some("timeout".into()),
                )
            })?;
        let options = ClientOptions {
            timeout,
            extra_ca: ca_file.map(Into::into),
        };
        Ok(Self {
            inner: ControllerClient::new(url, token, &options)?,
        })
    }

    fn create_server(&self, py: Python<'_>, json: &str) -> Result<String, Refusal> {
        let input: ServerInput = from_json(json)?;
        py.detach(|| to_json(&self.inner.create_server(&input)?))
    }

    fn server(&self, py: Python<'_>, id: u64) -> Result<String, Refusal> {
        py.detach(|| to_json(&self.inner.server(id)?))
    }

    #[pyo3(signature = (limit = None, after = None))]
    fn servers(
        &self,
        py: Python<'_>,
        limit: Option<i64>,
        after: Option<String>,
    ) -> Result<String, Refusal> {
        let query = ListQuery {
            limit: limit.map(|l| l.to_string()),
            after,
            ..ListQuery::default()
        };
        py.detach(|| page_json(self.inner.servers(&query)?))
    }

    fn create_account(&self, py: Python<'_>, json: &str) -> Result<String, Refusal> {
        let input: AccountInput = from_json(json)?;
        py.detach(|| to_json(&self.inner.create_account(&input)?))
    }

    fn account(&self, py: Python<'_>, id: u64) -> Result<String, Refusal> {
        py.detach(|| to_json(&self.inner.account(id)?))
    }

    #[pyo3(signature = (limit = None, after = None, server_id = None, role = None, q = None))]
    #[allow(clippy::too_many_arguments)]
    fn accounts(
        &self,
        py: Python<'_>,
        limit: Option<i64>,
        after: Option<String>,
        server_id: Option<i64>,
        role: Option<String>,
        q: Option<String>,
    ) -> Result<String, Refusal> {
        let query = ListQuery {
            limit: limit.map(|l| l.to_string()),
            after,
            server_id: server_id.map(|s| s.to_string()),
            role,
            q,
            ..ListQuery::default()
        };
        py.detach(|| page_json(self.inner.accounts(&query)?))
    }
}

#[pymodule]
fn _enconf(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("EnconfError", py.get_type::<EnconfError>())?;
    m.add("ValidationError", py.get_type::<ValidationError>())?;
    m.add("BadRequestError", py.get_type::<BadRequestError>())?;
    m.add("RefusedError", py.get_type::<RefusedError>())?;
    m.add("UnreachableError", py.get_type::<UnreachableError>())?;
    m.add(
        "InterruptedRequestError",
        py.get_type::<InterruptedRequestError>(),
    )?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(validate_domain, m)?)?;
    m.add_function(wrap_pyfunction!(validate_username, m)?)?;
    m.add_function(wrap_pyfunction!(validate_mail_address, m)?)?;
    m.add_function(wrap_pyfunction!(validate_server_input, m)?)?;
    m.add_function(wrap_pyfunction!(validate_account_input, m)?)?;
    m.add_function(wrap_pyfunction!(check_certificate, m)?)?;
    m.add_function(wrap_pyfunction!(render_web, m)?)?;
    m.add_class::<Client>()?;
    Ok(())
}
