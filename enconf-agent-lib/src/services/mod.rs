//! What the agent knows of each service it drives, shared by the modules that change them: how
//! to validate a change on staged copies (a [`Check`](crate::executor::Check)) and how to make
//! the service read it ([`Reload`](crate::executor::Reload)).

pub mod dovecot;
pub mod mariadb;
pub mod nginx;
pub mod opendkim;
pub mod pdns;
pub mod php_fpm;
pub mod postfix;
pub mod sample;
