//! [`ControllerClient`](super::ControllerClient) for callers without an async runtime: the C
//! and Python bindings, scripts. Each call blocks the calling thread until the answer.

use crate::protocol::list::{ListQuery, Page};
use crate::protocol::{AccountInput, AccountView, ServerInput, ServerView};

use super::{ClientError, ClientOptions};

/// The blocking client: the async one and a single-threaded runtime that drives it only
/// during a call. May be shared between threads; calls made at once wait for each other's
/// turn at the runtime, each on its own connection.
#[derive(Debug)]
pub struct ControllerClient {
    runtime: tokio::runtime::Runtime,
    client: super::ControllerClient,
}

impl ControllerClient {
    /// As [`super::ControllerClient::new`].
    pub fn new(url: &str, token: &str, options: &ClientOptions) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Setup(super::TransportSetupError::Runtime(e.to_string())))?;
        // The connector spawns its connections' tasks, which needs the runtime entered.
        let client = {
            let _entered = runtime.enter();
            super::ControllerClient::new(url, token, options)?
        };
        Ok(Self { runtime, client })
    }

    /// As [`super::ControllerClient::servers`].
    pub fn servers(&self, query: &ListQuery) -> Result<Page<ServerView>, ClientError> {
        self.runtime.block_on(self.client.servers(query))
    }

    /// As [`super::ControllerClient::server`].
    pub fn server(&self, id: u64) -> Result<ServerView, ClientError> {
        self.runtime.block_on(self.client.server(id))
    }

    /// As [`super::ControllerClient::create_server`].
    pub fn create_server(&self, input: &ServerInput) -> Result<ServerView, ClientError> {
        self.runtime.block_on(self.client.create_server(input))
    }

    /// As [`super::ControllerClient::accounts`].
    pub fn accounts(&self, query: &ListQuery) -> Result<Page<AccountView>, ClientError> {
        self.runtime.block_on(self.client.accounts(query))
    }

    /// As [`super::ControllerClient::account`].
    pub fn account(&self, id: u64) -> Result<AccountView, ClientError> {
        self.runtime.block_on(self.client.account(id))
    }

    /// As [`super::ControllerClient::create_account`].
    pub fn create_account(&self, input: &AccountInput) -> Result<AccountView, ClientError> {
        self.runtime.block_on(self.client.create_account(input))
    }
}
