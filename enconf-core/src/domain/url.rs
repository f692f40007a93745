//! URLs and URL paths: agent URLs, panel URLs, phpMyAdmin and Roundcube paths.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::name::to_ascii_name;
use super::rule::{Rule, string_serde, text_type};

const MAX_PATH_LEN: usize = 255;
const MAX_URL_LEN: usize = 2048;

/// An absolute URL path below the root such as `/phpmyadmin`: segments of letters, digits and
/// `-._~`, no `.` or `..` segment, no empty segment. A trailing slash is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UrlPath(String);

impl UrlPath {
    pub fn parse(input: &str) -> Result<Self, Rule> {
        let path = parse_path(input)?;
        if path == "/" {
            return Err(Rule::RootPath);
        }
        Ok(Self(path))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Validates an absolute path (`/` alone allowed) and drops one trailing slash.
fn parse_path(input: &str) -> Result<String, Rule> {
    if input.is_empty() {
        return Err(Rule::Empty);
    }
    if input.len() > MAX_PATH_LEN {
        return Err(Rule::TooLong { max: MAX_PATH_LEN });
    }
    if let Some(c) = input.chars().find(|&c| !is_path_char(c)) {
        return Err(Rule::ForbiddenChar(c));
    }
    let Some(rest) = input.strip_prefix('/') else {
        return Err(Rule::NotAbsolute);
    };
    if rest.is_empty() {
        return Ok("/".to_owned());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    for segment in rest.split('/') {
        match segment {
            "" => return Err(Rule::EmptySegment),
            "." | ".." => return Err(Rule::DotSegment),
            _ => {}
        }
    }
    Ok(format!("/{rest}"))
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '.' | '_' | '~')
}

text_type!(UrlPath);

/// The scheme of an [`HttpUrl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// The host of an [`HttpUrl`]: a DNS name (one label allowed, as in `localhost`) or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ipv4(addr) => write!(f, "{addr}"),
            Host::Ipv6(addr) => write!(f, "[{addr}]"),
        }
    }
}

/// An `http` or `https` URL with a host, an optional port and an optional path; no user info,
/// query or fragment. Parsed strictly: white space and control characters are refused rather
/// than stripped as browsers do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl {
    scheme: Scheme,
    host: Host,
    port: Option<u16>,
    /// `/` or an absolute path without a trailing slash.
    path: String,
}

impl HttpUrl {
    pub fn parse(input: &str) -> Result<Self, Rule> {
        if input.is_empty() {
            return Err(Rule::Empty);
        }
        if input.len() > MAX_URL_LEN {
            return Err(Rule::TooLong { max: MAX_URL_LEN });
        }
        if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(Rule::ForbiddenChar(c));
        }
        let (scheme, rest) = input.split_once("://").ok_or(Rule::Scheme)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(Rule::Scheme),
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(Rule::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        if tail.contains(['?', '#']) {
            return Err(Rule::QueryOrFragment);
        }
        let path = if tail.is_empty() {
            "/".to_owned()
        } else {
            parse_path(tail)?
        };
        Ok(Self {
            scheme,
            host,
            port,
            path,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port written in the URL, if any.
    pub fn explicit_port(&self) -> Option<u16> {
        self.port
    }

    /// The port written in the URL, or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.scheme.default_port())
    }

    /// `/` or an absolute path without a trailing slash.
    pub fn path(&self) -> &str {
        &self.path
    }
}

fn split_host_port(authority: &str) -> Result<(Host, Option<u16>), Rule> {
    if authority.is_empty() {
        return Err(Rule::MissingHost);
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (addr, after) = bracketed.split_once(']').ok_or(Rule::BadAddress)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| Rule::BadAddress)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(Rule::BadPort)?),
        };
        (Host::Ipv6(addr), port)
    } else {
        let (name, port) = match authority.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        };
        if name.is_empty() {
            return Err(Rule::MissingHost);
        }
        let host = if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            Host::Ipv4(name.parse().map_err(|_| Rule::BadAddress)?)
        } else {
            Host::Name(to_ascii_name(name, 1)?)
        };
        (host, port)
    };
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(Rule::BadPort),
            Ok(port) => Ok(port),
        })
        .transpose()?;
    Ok((host, port))
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if self.path != "/" {
            f.write_str(&self.path)?;
        }
        Ok(())
    }
}

impl FromStr for HttpUrl {
    type Err = Rule;
    fn from_str(s: &str) -> Result<Self, Rule> {
        Self::parse(s)
    }
}

string_serde!(HttpUrl);

/// Where the controller reaches an agent: `http(s)://host:port`, with the port written out (it
/// becomes `AGENT_PORT` in the install script) and no path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentUrl(HttpUrl);

impl AgentUrl {
    pub fn parse(input: &str) -> Result<Self, Rule> {
        let url = HttpUrl::parse(input)?;
        if url.explicit_port().is_none() {
            return Err(Rule::MissingPort);
        }
        if url.path() != "/" {
            return Err(Rule::UnexpectedPath);
        }
        Ok(Self(url))
    }

    pub fn url(&self) -> &HttpUrl {
        &self.0
    }

    pub fn port(&self) -> u16 {
        self.0.port()
    }

    /// Whether the agent is on the controller's machine (`localhost` or a loopback address).
    pub fn is_loopback(&self) -> bool {
        match self.0.host() {
            Host::Name(n) => n.as_str() == "localhost",
            Host::Ipv4(a) => a.is_loopback(),
            Host::Ipv6(a) => a.is_loopback(),
        }
    }

    /// Whether requests to the agent, its token with them, cross a network in clear.
    pub fn is_plain_over_network(&self) -> bool {
        self.0.scheme().as_str() == "http" && !self.is_loopback()
    }
}

impl fmt::Display for AgentUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for AgentUrl {
    type Err = Rule;
    fn from_str(s: &str) -> Result<Self, Rule> {
        Self::parse(s)
    }
}

string_serde!(AgentUrl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths() {
        assert_eq!(
            UrlPath::parse("/phpmyadmin").unwrap().as_str(),
            "/phpmyadmin"
        );
        assert_eq!(UrlPath::parse("/webmail/").unwrap().as_str(), "/webmail");
        assert_eq!(
            UrlPath::parse("/a/b-c_d.e~f").unwrap().as_str(),
            "/a/b-c_d.e~f"
        );
        let rule = |s: &str| UrlPath::parse(s).unwrap_err();
        assert_eq!(rule(""), Rule::Empty);
        assert_eq!(rule("/"), Rule::RootPath);
        assert_eq!(rule("phpmyadmin"), Rule::NotAbsolute);
        assert_eq!(rule("/a/../etc"), Rule::DotSegment);
        assert_eq!(rule("/.."), Rule::DotSegment);
        assert_eq!(rule("/./a"), Rule::DotSegment);
        assert_eq!(rule("//a"), Rule::EmptySegment);
        assert_eq!(rule("/a//b"), Rule::EmptySegment);
        assert_eq!(rule("/a;"), Rule::ForbiddenChar(';'));
        assert_eq!(rule("/a\n"), Rule::ForbiddenChar('\n'));
        assert_eq!(rule("/a{b}"), Rule::ForbiddenChar('{'));
        assert_eq!(rule("/a\"b"), Rule::ForbiddenChar('"'));
        assert_eq!(rule("/a'b"), Rule::ForbiddenChar('\''));
        assert_eq!(rule("/$uri"), Rule::ForbiddenChar('$'));
        assert_eq!(rule("/a b"), Rule::ForbiddenChar(' '));
        assert_eq!(rule("/a\0"), Rule::ForbiddenChar('\0'));
        assert_eq!(rule("/a?x=1"), Rule::ForbiddenChar('?'));
        assert_eq!(rule("/%2e%2e"), Rule::ForbiddenChar('%'));
        assert_eq!(rule("/a\\b"), Rule::ForbiddenChar('\\'));
        assert_eq!(
            rule(&format!("/{}", "a".repeat(255))),
            Rule::TooLong { max: 255 }
        );
    }

    #[test]
    fn agent_urls() {
        let ok = |s: &str, host: Host, port: u16| {
            let url = AgentUrl::parse(s).unwrap();
            assert_eq!(url.url().host(), &host);
            assert_eq!(url.port(), port);
            url
        };
        let url = ok(
            "http://localhost:50000",
            Host::Name("localhost".into()),
            50000,
        );
        assert_eq!(url.to_string(), "http://localhost:50000");
        let url = ok(
            "HTTPS://Web1.Example.com:50000/",
            Host::Name("web1.example.com".into()),
            50000,
        );
        assert_eq!(url.to_string(), "https://web1.example.com:50000");
        ok("http://127.0.0.1:1", Host::Ipv4(Ipv4Addr::LOCALHOST), 1);
        let url = ok("http://[::1]:50000", Host::Ipv6(Ipv6Addr::LOCALHOST), 50000);
        assert_eq!(url.to_string(), "http://[::1]:50000");

        let rule = |s: &str| AgentUrl::parse(s).unwrap_err();
        assert_eq!(rule(""), Rule::Empty);
        assert_eq!(rule("ftp://host:21"), Rule::Scheme);
        assert_eq!(rule("localhost:50000"), Rule::Scheme);
        assert_eq!(rule("http://localhost"), Rule::MissingPort);
        assert_eq!(rule("http://localhost:"), Rule::BadPort);
        assert_eq!(rule("http://localhost:0"), Rule::BadPort);
        assert_eq!(rule("http://localhost:65536"), Rule::BadPort);
        assert_eq!(rule("http://localhost:5x"), Rule::BadPort);
        assert_eq!(rule("http://:50000"), Rule::MissingHost);
        assert_eq!(rule("http://"), Rule::MissingHost);
        assert_eq!(rule("http://u:p@host:50000"), Rule::UserInfo);
        assert_eq!(rule("http://host:50000/api"), Rule::UnexpectedPath);
        assert_eq!(rule("http://host:50000?x"), Rule::QueryOrFragment);
        assert_eq!(rule("http://host:50000#x"), Rule::QueryOrFragment);
        assert_eq!(rule("http://ho\nst:50000"), Rule::ForbiddenChar('\n'));
        assert_eq!(rule("http://ho st:50000"), Rule::ForbiddenChar(' '));
        assert_eq!(rule("http://host\0:50000"), Rule::ForbiddenChar('\0'));
        assert_eq!(rule("http://ho;st:50000"), Rule::ForbiddenChar(';'));
        assert_eq!(rule("http://ho\"st:50000"), Rule::ForbiddenChar('"'));
        assert_eq!(rule("http://$host:50000"), Rule::ForbiddenChar('$'));
        assert_eq!(rule("http://{host}:50000"), Rule::ForbiddenChar('{'));
        assert_eq!(rule("http://999.1.1.1:50000"), Rule::BadAddress);
        assert_eq!(rule("http://[::g]:50000"), Rule::BadAddress);
        assert_eq!(rule("http://[::1]x:50000"), Rule::BadPort);
    }

    #[test]
    fn panel_urls_keep_their_path() {
        let url = HttpUrl::parse("https://panel.example.com/admin/").unwrap();
        assert_eq!(url.path(), "/admin");
        assert_eq!(url.port(), 443);
        assert_eq!(url.to_string(), "https://panel.example.com/admin");
        assert_eq!(
            HttpUrl::parse("https://panel.example.com/../x").unwrap_err(),
            Rule::DotSegment
        );
    }
}
