//! Editing settings files the agent shares with the administrator (Postfix's `main.cf`,
//! OpenDKIM's `opendkim.conf`): each setting the agent manages replaces its earlier definition
//! in place (with that definition's continuation lines), or is appended under a comment; every
//! other line is kept byte for byte.

/// How a settings file writes a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `key = value`; lines starting with white space continue the setting before (Postfix).
    Postfix,
    /// `Key value`, keys in any case, no continuations (OpenDKIM).
    Opendkim,
}

impl Syntax {
    /// Whether `line` defines `key`.
    fn defines(self, line: &str, key: &str) -> bool {
        match self {
            Syntax::Postfix => line
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('=')),
            Syntax::Opendkim => {
                let mut words = line.split_whitespace();
                words.next().is_some_and(|w| w.eq_ignore_ascii_case(key))
                    && !line.starts_with([' ', '\t'])
            }
        }
    }

    fn line(self, key: &str, value: &str) -> String {
        match self {
            Syntax::Postfix => format!("{key} = {value}\n"),
            Syntax::Opendkim => format!("{key} {value}\n"),
        }
    }
}

/// `text` with each of `settings` set (see the module documentation); `about` says, in the
/// comment over appended settings, what they are for.
pub fn set(text: &str, syntax: Syntax, settings: &[(&str, String)], about: &str) -> String {
    let mut out = String::with_capacity(text.len() + 512);
    let mut written = vec![false; settings.len()];
    let mut skipping = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if skipping
            && syntax == Syntax::Postfix
            && line.starts_with([' ', '\t'])
            && !trimmed.is_empty()
            && !trimmed.starts_with('#')
        {
            continue; // a continuation of a replaced setting (comments and blanks are not)
        }
        skipping = false;
        match settings.iter().position(|(k, _)| syntax.defines(line, k)) {
            Some(i) => {
                skipping = true;
                if !written[i] {
                    written[i] = true;
                    out.push_str(&syntax.line(settings[i].0, &settings[i].1));
                }
            }
            None => out.push_str(line),
        }
    }
    if written.iter().any(|w| !w) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("# Managed by enconf: {about}.\n"));
        for ((key, value), done) in settings.iter().zip(&written) {
            if !done {
                out.push_str(&syntax.line(key, value));
            }
        }
    }
    out
}

/// The value `text` gives `key` (the last definition wins, as in both programs).
pub fn get(text: &str, syntax: Syntax, key: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        if syntax.defines(line, key) {
            let value = match syntax {
                Syntax::Postfix => line.split_once('=').map(|(_, v)| v.trim()),
                Syntax::Opendkim => line
                    .trim()
                    .split_once(char::is_whitespace)
                    .map(|(_, v)| v.trim()),
            };
            found = value.map(str::to_owned);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_settings_replace_in_place_with_their_continuations() {
        let text = "# a comment\nmyhostname = mx\nvirtual_alias_maps = hash:/a,\n    hash:/b\n# kept\nrelayhost =\n";
        let out = set(
            text,
            Syntax::Postfix,
            &[
                ("virtual_alias_maps", "lmdb:/x".into()),
                ("virtual_transport", "lmtp:inet:127.0.0.1:24".into()),
            ],
            "the mail role",
        );
        assert_eq!(
            out,
            "# a comment\nmyhostname = mx\nvirtual_alias_maps = lmdb:/x\n# kept\nrelayhost =\n\
             # Managed by enconf: the mail role.\nvirtual_transport = lmtp:inet:127.0.0.1:24\n"
        );
        // Setting the same again changes nothing.
        assert_eq!(
            set(
                &out,
                Syntax::Postfix,
                &[("virtual_alias_maps", "lmdb:/x".into())],
                "x"
            ),
            out
        );
        // A key that only starts like a managed one is not it.
        let out = set(
            "virtual_alias_maps_x = 1\n",
            Syntax::Postfix,
            &[("virtual_alias_maps", "y".into())],
            "z",
        );
        assert!(out.starts_with("virtual_alias_maps_x = 1\n"));
        assert_eq!(
            get(&out, Syntax::Postfix, "virtual_alias_maps").as_deref(),
            Some("y")
        );
    }

    #[test]
    fn opendkim_settings_are_words_in_any_case() {
        let text = "Syslog yes\nkeytable file:/old\nSocket  inet:8891@127.0.0.1\n";
        let out = set(
            text,
            Syntax::Opendkim,
            &[
                ("KeyTable", "file:/new".into()),
                ("SigningTable", "refile:/s".into()),
            ],
            "DKIM keys",
        );
        assert_eq!(
            out,
            "Syslog yes\nKeyTable file:/new\nSocket  inet:8891@127.0.0.1\n\
             # Managed by enconf: DKIM keys.\nSigningTable refile:/s\n"
        );
        assert_eq!(
            get(&out, Syntax::Opendkim, "socket").as_deref(),
            Some("inet:8891@127.0.0.1")
        );
    }
}
