//! The domain: typed, validated values. Each value type is built only through its parser, so a
//! value that exists is valid; everything downstream takes the type, never a `String`.

mod account;
pub mod admin;
pub mod backup;
pub mod db;
pub mod dns;
pub mod field;
pub mod job;
mod mail;
mod name;
mod php;
mod role;
mod rule;
mod server;
mod token;
mod url;
mod user;

pub use account::{
    Account, AccountId, AccountSpec, AccountStatus, Domains, NewAccount, RoleServers,
};
pub use mail::{
    Alias, Destinations, ListError, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, MailAddress, MailPassword,
    Mailbox, PasswordHash, QuotaMb, alias_loop,
};
pub use name::DomainName;
pub use php::{PhpSettings, PhpSettingsRaw, PhpVersion};
pub use role::{Role, RoleSet};
pub use rule::{Rule, ValidationError};
pub use server::{Health, OFFLINE_AFTER, Server, ServerId, ServerName, ServerSpec};
pub use token::{AdminToken, AgentToken, RandomError};
pub use url::{AgentUrl, Host, HttpUrl, Scheme, UrlPath};
pub use user::UserName;
