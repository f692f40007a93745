//! The agent repository's files (outside data: a mirror may serve anything): the `.sources`
//! file, the signed `Release` text, the `Packages` lists and gpgv's status lines never panic,
//! and a source that parses only names plain suites and components.
#![no_main]

use enconf_core::apt::{gpgv, index, sources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str, &str)| {
    let (a, b, c) = input;
    if let Ok(s) = sources::Source::parse(a) {
        assert!(!s.suite.contains('/') && s.suite != "..");
        assert!(s.components.iter().all(|c| !c.contains('/') && c != ".."));
        assert!(!s.keyring.is_empty());
    }
    let _ = sources::dearmor(a);
    if let Ok(r) = index::Release::parse(b) {
        let main = ["main".to_owned()];
        for e in r.package_lists(&main) {
            let _ = e.check(c.as_bytes());
        }
        let _ = r.check_valid(time::OffsetDateTime::UNIX_EPOCH);
    }
    let _ = index::newest_version(c, "netcell-webpanel-agent");
    let _ = gpgv::judge(b);
});
