//! One value checked alone, with the error naming the field as the API does: what a panel
//! asks of a form field before it sends a whole body (the C and Python bindings' checks).

use super::{DomainName, MailAddress, UserName, ValidationError};

/// A domain name; the field is `domain`.
pub fn domain(input: &str) -> Result<DomainName, ValidationError> {
    DomainName::parse(input).map_err(|r| r.at("domain"))
}

/// An account's user name; the field is `username`.
pub fn username(input: &str) -> Result<UserName, ValidationError> {
    UserName::parse(input).map_err(|r| r.at("username"))
}

/// A mailbox address, `local@domain`; the field is `address`.
pub fn mail_address(input: &str) -> Result<MailAddress, ValidationError> {
    MailAddress::parse(input).map_err(|r| r.at("address"))
}
