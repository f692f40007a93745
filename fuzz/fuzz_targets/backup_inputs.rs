//! What the backup role reads from outside: a restore body (API), a repository and its URL
//! (agent), the retention setting (controller configuration) and restic's `--json` lines
//! (agent). Parsing never panics; an accepted repository URL gets the credentials right after
//! its scheme and carries nothing that could end a quoted value or a line; an accepted
//! retention reads back as itself; restic's figures are never invented.
#![no_main]

use enconf_agent_lib::backup::{ResticLine, restic_line};
use enconf_core::domain::UserName;
use enconf_core::domain::backup::{RepoKeys, Retention};
use enconf_core::protocol::backup::{Repository, RestoreInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let user = UserName::parse("shop").unwrap();

    if let Ok(input) = serde_json::from_str::<RestoreInput>(text)
        && let Ok(restore) = input.validate(&user)
    {
        assert!(!restore.parts.is_empty());
        if let Some(db) = &restore.database {
            assert!(db.starts_with("shop_"), "{db:?}");
        }
    }

    let keys = RepoKeys::generate().unwrap();
    let repo = Repository {
        url: text.to_owned(),
        access: keys.access.clone(),
        key: keys.key,
    };
    if repo.check(&user).is_ok() {
        let full = repo.url_with_access(&user);
        let secret = keys.access.expose_secret();
        assert!(
            full.starts_with(&format!("rest:http://shop:{secret}@"))
                || full.starts_with(&format!("rest:https://shop:{secret}@")),
            "{full:?}"
        );
        assert!(
            !full
                .chars()
                .any(|c| c.is_control() || c == '\'' || c == '"'),
            "{full:?}"
        );
        assert!(full.ends_with("/shop/"));
    }

    if let Ok(r) = Retention::parse(text) {
        assert_eq!(Retention::parse(&r.to_string()), Ok(r));
        assert!(r.daily + r.weekly + r.monthly > 0);
    }

    for line in text.lines() {
        match restic_line(line) {
            Some(ResticLine::Status { done, total, .. }) => {
                // Figures come only from the line itself.
                if done > 0 || total > 0 {
                    assert!(line.contains("bytes"), "{line:?}");
                }
            }
            Some(ResticLine::Summary(s)) => {
                if s.size > 0 {
                    assert!(line.contains("total_bytes_processed"), "{line:?}");
                }
            }
            None => {}
        }
    }
});
