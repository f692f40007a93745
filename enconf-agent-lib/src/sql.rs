//! Statements for the local MariaDB, and the client that runs them: `mysql_async` (rustls,
//! no OpenSSL) over the unix socket, logged in as the configured administrative user by the
//! socket's peer credentials (no password anywhere).
//!
//! The agent's changes are synchronous (they run on the apply worker's thread), the client is
//! async: each batch runs on a small runtime of its own in a scoped thread, so it works the
//! same whether or not the caller is inside a runtime.

use std::fmt;
use std::path::Path;

use crate::system::SystemError;

/// One statement with its parameters (`?` placeholders; values travel apart from the text).
/// A statement that sets a password hash (which MariaDB takes only in the text) hides it from
/// `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<String>,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            params: Vec::new(),
        }
    }

    pub fn with(text: impl Into<String>, params: impl IntoIterator<Item = String>) -> Self {
        Self {
            text: text.into(),
            params: params.into_iter().collect(),
        }
    }

    /// The text with any `PASSWORD '…'` value hidden, for logs and errors.
    pub fn shown(&self) -> String {
        match self.text.find("PASSWORD '") {
            Some(at) => {
                let start = at + "PASSWORD '".len();
                let end = self.text[start..]
                    .find('\'')
                    .map_or(self.text.len(), |e| start + e);
                format!("{}***{}", &self.text[..start], &self.text[end..])
            }
            None => self.text.clone(),
        }
    }
}

impl fmt::Debug for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sql({:?}, {:?})", self.shown(), self.params)
    }
}

impl fmt::Display for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())?;
        for p in &self.params {
            write!(f, " [{p}]")?;
        }
        Ok(())
    }
}

/// A statement's rows, each value as text (`None`: NULL).
pub type Rows = Vec<Vec<Option<String>>>;

fn sql_error(statement: Option<&Sql>, e: impl fmt::Display) -> SystemError {
    SystemError::Command {
        program: "mariadb".into(),
        status: "error".into(),
        output: match statement {
            Some(s) => format!("{e} (in: {})", s.shown()),
            None => e.to_string(),
        },
    }
}

fn text(value: mysql_async::Value) -> Option<String> {
    use mysql_async::Value;
    match value {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

/// Runs `statements` in order on one connection, stopping at the first error.
pub fn run(socket: &Path, user: &str, statements: &[Sql]) -> Result<Vec<Rows>, SystemError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| sql_error(None, e))?;
                runtime.block_on(run_async(socket, user, statements))
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

async fn run_async(
    socket: &Path,
    user: &str,
    statements: &[Sql],
) -> Result<Vec<Rows>, SystemError> {
    use mysql_async::prelude::Queryable;
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(socket.display().to_string()))
        .user(Some(user));
    let connect = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        mysql_async::Conn::new(opts),
    );
    let mut conn = connect
        .await
        .map_err(|_| sql_error(None, format!("{}: no answer in 10 s", socket.display())))?
        .map_err(|e| sql_error(None, format!("{}: {e}", socket.display())))?;
    let mut out = Vec::with_capacity(statements.len());
    for statement in statements {
        let rows: Vec<mysql_async::Row> = if statement.params.is_empty() {
            conn.query(statement.text.as_str()).await
        } else {
            conn.exec(statement.text.as_str(), statement.params.clone())
                .await
        }
        .map_err(|e| sql_error(Some(statement), e))?;
        out.push(
            rows.into_iter()
                .map(|row| row.unwrap().into_iter().map(text).collect())
                .collect(),
        );
    }
    if let Err(e) = conn.disconnect().await {
        tracing::debug!(error = %e, "closing the MariaDB connection");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_hash_is_never_shown() {
        let s = Sql::new(
            "CREATE USER 'shop_u'@'localhost' IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'",
        );
        assert_eq!(
            s.to_string(),
            "CREATE USER 'shop_u'@'localhost' IDENTIFIED BY PASSWORD '***'"
        );
        assert!(!format!("{s:?}").contains("2470C0"));
        let q = Sql::with("SELECT 1 FROM t WHERE a = ?", ["x".to_owned()]);
        assert_eq!(q.to_string(), "SELECT 1 FROM t WHERE a = ? [x]");
    }
}
