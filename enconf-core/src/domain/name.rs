//! Domain names: server hostnames, mail hostnames and the domains of hosted sites.

use super::rule::{Rule, text_type};

/// Longest domain name in its ASCII form (RFC 1035, without the trailing dot).
const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;
/// Inputs longer than this are refused before IDNA processing, which would only make them longer.
const MAX_INPUT_LEN: usize = 1024;

/// A fully qualified domain name in its lowercase ASCII form (internationalized names are
/// converted to Punycode), without a trailing dot.
///
/// Built only by [`DomainName::parse`], so it holds letters, digits, hyphens and dots and nothing
/// else: it is safe to write into an Nginx `server_name`, a Postfix map or a zone file.
///
/// ```
/// use enconf_core::domain::DomainName;
/// let name = DomainName::parse("Bücher.Example.").unwrap();
/// assert_eq!(name.as_str(), "xn--bcher-kva.example");
/// assert!(DomainName::parse("example.com;\nreturn 301").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainName(String);

impl DomainName {
    /// Parses and normalizes a fully qualified name (at least two labels).
    pub fn parse(input: &str) -> Result<Self, Rule> {
        to_ascii_name(input, 2).map(Self)
    }

    /// The lowercase ASCII form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The labels, left to right.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

text_type!(DomainName);

/// Validates a DNS name with at least `min_labels` labels and returns its lowercase ASCII form.
///
/// ASCII punctuation and white space are refused before IDNA processing so that the error names
/// the character; IDNA (UTS 46 with the STD3 rules) then maps Unicode to Punycode and refuses
/// what it disallows; the result is checked once more against the LDH rules, so nothing the
/// IDNA mapping produces can slip through.
pub(crate) fn to_ascii_name(input: &str, min_labels: usize) -> Result<String, Rule> {
    if input.is_empty() {
        return Err(Rule::Empty);
    }
    if input.len() > MAX_INPUT_LEN {
        return Err(Rule::TooLong { max: MAX_NAME_LEN });
    }
    if let Some(c) = input.chars().find(|c| c.is_control()) {
        return Err(if c == '\0' || c.is_ascii() {
            Rule::ForbiddenChar(c)
        } else {
            Rule::ControlChar
        });
    }
    if let Some(c) = input
        .chars()
        .find(|&c| c.is_whitespace() || (c.is_ascii() && !is_name_char(c)))
    {
        return Err(Rule::ForbiddenChar(c));
    }
    let trimmed = input.strip_suffix('.').unwrap_or(input);
    if trimmed.is_empty() {
        return Err(Rule::EmptyLabel);
    }
    let ascii = idna::domain_to_ascii_cow(trimmed.as_bytes(), idna::AsciiDenyList::STD3)
        .map_err(|_| Rule::Idna)?;
    check_ldh(&ascii, min_labels)?;
    Ok(ascii.into_owned())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.'
}

/// The final check on the ASCII form: length, labels, letters-digits-hyphen.
fn check_ldh(name: &str, min_labels: usize) -> Result<(), Rule> {
    if name.len() > MAX_NAME_LEN {
        return Err(Rule::TooLong { max: MAX_NAME_LEN });
    }
    let mut count = 0;
    let mut last = "";
    for label in name.split('.') {
        count += 1;
        if label.is_empty() {
            return Err(Rule::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(Rule::LabelTooLong);
        }
        if let Some(c) = label
            .chars()
            .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        {
            return Err(Rule::ForbiddenChar(c));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(Rule::LabelHyphenEdge);
        }
        last = label;
    }
    if count < min_labels {
        return Err(Rule::NotFullyQualified);
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rule::NumericTopLevel);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(input: &str) -> Rule {
        DomainName::parse(input).unwrap_err()
    }

    #[test]
    fn accepts_and_normalizes() {
        let ok = |i: &str, want: &str| assert_eq!(DomainName::parse(i).unwrap().as_str(), want);
        ok("example.com", "example.com");
        ok("WWW.Example.COM", "www.example.com");
        ok("web1.example.com.", "web1.example.com");
        ok("a-b.c-d.example", "a-b.c-d.example");
        ok("xn--bcher-kva.example", "xn--bcher-kva.example");
        ok("bücher.example", "xn--bcher-kva.example");
        ok("例え.テスト", "xn--r8jz45g.xn--zckzah");
        // Fullwidth letters and the ideographic full stop map to their ASCII forms (UTS 46).
        ok("ｅｘａｍｐｌｅ。com", "example.com");
        ok("1.2.3.example", "1.2.3.example");
        let longest = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(61));
        assert_eq!(longest.len(), 253);
        ok(&longest, &longest);
    }

    #[test]
    fn refuses_config_injection() {
        for (input, c) in [
            ("example.com\nreturn 301", '\n'),
            ("example.com;", ';'),
            ("example.com{", '{'),
            ("example.com}", '}'),
            ("\"example.com", '"'),
            ("'example.com'", '\''),
            ("$host.example.com", '$'),
            ("exa mple.com", ' '),
            ("example.com\0", '\0'),
            ("example.com\r", '\r'),
            ("../etc/passwd", '/'),
            ("under_score.example", '_'),
            ("back\\slash.example", '\\'),
            ("tab\t.example", '\t'),
        ] {
            assert_eq!(rule(input), Rule::ForbiddenChar(c), "{input:?}");
        }
        // Non-ASCII white space is refused too.
        assert_eq!(rule("a\u{3000}b.example"), Rule::ForbiddenChar('\u{3000}'));
        assert_eq!(rule("a\u{85}b.example"), Rule::ControlChar);
    }

    #[test]
    fn refuses_bad_structure() {
        assert_eq!(rule(""), Rule::Empty);
        assert_eq!(rule("."), Rule::EmptyLabel);
        assert_eq!(rule("example..com"), Rule::EmptyLabel);
        assert_eq!(rule(".example.com"), Rule::EmptyLabel);
        assert_eq!(rule("example.com.."), Rule::EmptyLabel);
        assert_eq!(rule("localhost"), Rule::NotFullyQualified);
        assert_eq!(rule("-web.example.com"), Rule::LabelHyphenEdge);
        assert_eq!(rule("web-.example.com"), Rule::LabelHyphenEdge);
        assert_eq!(rule("10.0.0.1"), Rule::NumericTopLevel);
        assert_eq!(
            rule(&format!("{}.example", "a".repeat(64))),
            Rule::LabelTooLong
        );
        let too_long = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(62));
        assert_eq!(rule(&too_long), Rule::TooLong { max: 253 });
        assert_eq!(rule(&"a.".repeat(2000)), Rule::TooLong { max: 253 });
    }

    #[test]
    fn refuses_what_idna_disallows() {
        // Fullwidth semicolon maps to ';', which STD3 denies.
        assert!(DomainName::parse("example\u{FF1B}com.example").is_err());
        // Bad Punycode.
        assert_eq!(rule("xn--a.example"), Rule::Idna);
        // Zero-width joiner outside its allowed context; right-to-left mark (a format
        // character, not a control one, so it is IDNA that refuses it).
        assert_eq!(rule("a\u{200D}b.example"), Rule::Idna);
        assert_eq!(rule("a\u{200F}b.example"), Rule::Idna);
        // One-dot leader (a dot look-alike) and the division slash are disallowed.
        assert!(DomainName::parse("example\u{2024}com").is_err());
        // The division slash is valid IDNA: it cannot inject anything, because the label only
        // ever reaches a config file as Punycode.
        let spoof = DomainName::parse("example.com\u{2215}evil.example").unwrap();
        assert!(spoof.as_str().starts_with("example.xn--"), "{spoof}");
        // Mixed-direction label (Hebrew then Latin digits-letters) breaks the Bidi rule.
        assert_eq!(rule("\u{05D0}a.example"), Rule::Idna);
    }

    use proptest::prelude::*;

    /// A valid label: LDH, no hyphen at either end, 1 to 63 characters.
    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
    }

    proptest! {
        #[test]
        fn ascii_names_round_trip(labels in proptest::collection::vec(label(), 1..4),
                                  tld in "[a-z]{2,10}", upper in any::<bool>(), dot in any::<bool>()) {
            let mut name = format!("{}.{tld}", labels.join("."));
            prop_assume!(name.len() <= MAX_NAME_LEN);
            // `xn--` starts a Punycode A-label, which must decode (see refuses_what_idna_disallows).
            prop_assume!(labels.iter().all(|l| !l.starts_with("xn--")));
            let canonical = name.clone();
            if upper { name = name.to_uppercase(); }
            if dot { name.push('.'); }
            let parsed = DomainName::parse(&name).unwrap();
            prop_assert_eq!(parsed.as_str(), canonical.as_str());
            // print then parse gives the same value
            prop_assert_eq!(DomainName::parse(&format!("{parsed}")).unwrap(), parsed);
        }

        /// Whatever string is given, an accepted name is LDH-only and parses to itself.
        #[test]
        fn any_accepted_name_is_canonical(input in "\\PC{0,40}") {
            if let Ok(name) = DomainName::parse(&input) {
                prop_assert!(name.as_str().bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit() || b == b'-' || b == b'.'));
                prop_assert_eq!(DomainName::parse(name.as_str()).unwrap(), name.clone());
                let json = serde_json::to_string(&name).unwrap();
                prop_assert_eq!(serde_json::from_str::<DomainName>(&json).unwrap(), name);
            }
        }

        /// Unicode names: Punycode form is stable under a second parse.
        #[test]
        fn unicode_names_round_trip(label in "[a-zà-ÿα-ω]{1,20}", tld in "[a-z]{2,6}") {
            if let Ok(name) = DomainName::parse(&format!("{label}.{tld}")) {
                prop_assert_eq!(DomainName::parse(name.as_str()).unwrap(), name);
            }
        }
    }
}
