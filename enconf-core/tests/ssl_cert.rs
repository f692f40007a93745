//! Custom certificate uploads are checked before anything is installed: each failure is a
//! typed error naming the field, and valid chains and keys in every accepted form pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use enconf_core::domain::DomainName;
use enconf_core::ssl::cert::{self, CertError};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use time::{Duration, OffsetDateTime, macros::datetime};

const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

fn host(s: &str) -> DomainName {
    s.parse().unwrap()
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca(name: &str, parent: Option<&Ca>) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = NOW - Duration::days(30);
    params.not_after = NOW + Duration::days(3650);
    let key = KeyPair::generate().unwrap();
    let cert = match parent {
        None => params.self_signed(&key).unwrap(),
        Some(p) => params
            .signed_by(&key, &Issuer::from_params(&p.params, &p.key))
            .unwrap(),
    };
    Ca {
        pem: cert.pem(),
        params,
        key,
    }
}

/// A leaf for `names` signed by `issuer`, valid from `from` to `to`: (certificate PEM, key PEM).
fn leaf(names: &[&str], issuer: &Ca, from: OffsetDateTime, to: OffsetDateTime) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.not_before = from;
    params.not_after = to;
    let key = KeyPair::generate().unwrap();
    let cert = params
        .signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key))
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn valid() -> (String, String, Ca, Ca) {
    let root = ca("Test Root", None);
    let inter = ca("Test Intermediate", Some(&root));
    let (leaf_pem, key) = leaf(
        &["web1.example.com", "www.example.com"],
        &inter,
        NOW - Duration::days(1),
        NOW + Duration::days(89),
    );
    (format!("{leaf_pem}{}", inter.pem), key, root, inter)
}

fn field(e: &CertError) -> &'static str {
    e.field().unwrap()
}

#[test]
fn a_valid_chain_is_accepted_and_described() {
    let (chain, key, root, _) = valid();
    let info = cert::check(&chain, &key, &host("web1.example.com"), NOW).unwrap();
    assert_eq!(info.subject_names, ["web1.example.com", "www.example.com"]);
    assert!(info.issuer.contains("Test Intermediate"), "{}", info.issuer);
    assert_eq!(info.not_after, NOW + Duration::days(89));
    // The root may come along too.
    let with_root = format!("{chain}{}", root.pem);
    cert::check(&with_root, &key, &host("www.example.com"), NOW).unwrap();
    // A wildcard covers one label.
    let inter = ca("I", None);
    let (w, wk) = leaf(
        &["*.example.com"],
        &inter,
        NOW - Duration::days(1),
        NOW + Duration::days(1),
    );
    cert::check(&w, &wk, &host("mail.example.com"), NOW).unwrap();
    let e = cert::check(&w, &wk, &host("a.b.example.com"), NOW).unwrap_err();
    assert!(matches!(e, CertError::NameNotCovered { .. }));
}

#[test]
fn every_key_form_is_accepted() {
    for (crt, key, name) in [
        (
            "tests/data/rsa.crt",
            "tests/data/rsa.pkcs1.key",
            "rsa.example.com",
        ),
        (
            "tests/data/ec.crt",
            "tests/data/ec.sec1.key",
            "ec.example.com",
        ),
    ] {
        let crt = std::fs::read_to_string(crt).unwrap();
        let key = std::fs::read_to_string(key).unwrap();
        cert::check(&crt, &key, &host(name), NOW).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // PKCS#8 (rcgen's form) is covered by the other tests.
}

#[test]
fn each_fault_is_refused_naming_its_field() {
    let (chain, key, _root, inter) = valid();
    let h = host("web1.example.com");

    let (_, other_key) = leaf(&["web1.example.com"], &inter, NOW, NOW + Duration::days(1));
    let e = cert::check(&chain, &other_key, &h, NOW).unwrap_err();
    assert_eq!(
        (e.clone(), field(&e)),
        (CertError::KeyMismatch, "private_key_pem")
    );

    let (expired, ek) = leaf(
        &["web1.example.com"],
        &inter,
        NOW - Duration::days(90),
        NOW - Duration::days(1),
    );
    let e = cert::check(&expired, &ek, &h, NOW).unwrap_err();
    assert!(matches!(e, CertError::Expired(_)), "{e}");
    assert_eq!(field(&e), "certificate_pem");

    let (future, fk) = leaf(
        &["web1.example.com"],
        &inter,
        NOW + Duration::days(1),
        NOW + Duration::days(90),
    );
    let e = cert::check(&future, &fk, &h, NOW).unwrap_err();
    assert!(matches!(e, CertError::NotYetValid(_)), "{e}");

    let e = cert::check(&chain, &key, &host("other.example.com"), NOW).unwrap_err();
    assert!(matches!(e, CertError::NameNotCovered { .. }), "{e}");
    assert!(
        e.to_string().contains("web1.example.com, www.example.com"),
        "{e}"
    );

    let garbage = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n";
    let e = cert::check(garbage, &key, &h, NOW).unwrap_err();
    assert_eq!(field(&e), "certificate_pem", "{e}");
    let e = cert::check("hello", &key, &h, NOW).unwrap_err();
    assert!(
        matches!(
            e,
            CertError::Missing {
                field: "certificate_pem",
                ..
            }
        ),
        "{e}"
    );
    let e = cert::check(&chain, "", &h, NOW).unwrap_err();
    assert!(
        matches!(
            e,
            CertError::Missing {
                field: "private_key_pem",
                ..
            }
        ),
        "{e}"
    );
    let e = cert::check(&chain, &chain, &h, NOW).unwrap_err();
    assert!(
        matches!(
            e,
            CertError::ForeignBlock {
                field: "private_key_pem",
                ..
            }
        ),
        "a certificate is not a key: {e}"
    );
    let e = cert::check(
        &chain,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        &h,
        NOW,
    )
    .unwrap_err();
    assert_eq!(field(&e), "private_key_pem", "{e}");

    // Out of order: the intermediate first.
    let leaf_only = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect::<Vec<_>>();
    let swapped = format!("{}{}", leaf_only[1], leaf_only[0]);
    let e = cert::check(&swapped, &key, &h, NOW).unwrap_err();
    assert!(
        matches!(e, CertError::KeyMismatch | CertError::ChainOrder { .. }),
        "{e}"
    );
    // The wrong intermediate after the leaf.
    let stranger = ca("Stranger", None);
    let wrong = format!("{}{}", leaf_only[0], stranger.pem);
    let e = cert::check(&wrong, &key, &h, NOW).unwrap_err();
    assert_eq!(e, CertError::ChainOrder { index: 0 });
}

#[test]
fn self_signed_certificates_cover_their_names() {
    let names = [host("web1.example.com"), host("mail.example.com")];
    let bundle = cert::self_signed(&names, NOW).unwrap();
    let info = cert::check(&bundle.chain_pem, &bundle.key_pem, &names[1], NOW).unwrap();
    assert_eq!(info.subject_names, ["web1.example.com", "mail.example.com"]);
    assert!(info.issuer.contains("testing only"), "{}", info.issuer);
    assert!(
        !format!("{bundle:?}").contains("PRIVATE KEY"),
        "Debug redacts the key"
    );
}

#[test]
fn only_certificates_go_into_the_chain_and_only_one_key_into_the_key() {
    let (chain, key, _, inter) = valid();
    let refused = |chain: &str, key: &str| cert::normalize(chain, key).unwrap_err();
    // A private key pasted into the chain (before, between or after the certificates).
    for bad in [
        format!("{key}{chain}"),
        format!("{chain}{key}"),
        chain.replacen(
            "-----END CERTIFICATE-----\n",
            &format!("-----END CERTIFICATE-----\n{key}"),
            1,
        ),
    ] {
        let e = refused(&bad, &key);
        assert_eq!(field(&e), "certificate_pem");
        assert!(
            matches!(&e, CertError::ForeignBlock { found, .. } if found == "PRIVATE KEY"),
            "{e}"
        );
    }
    // Any other block, known to PEM parsers or not.
    for label in [
        "OPENSSH PRIVATE KEY",
        "CERTIFICATE REQUEST",
        "X509 CRL",
        "TRUSTED CERTIFICATE",
    ] {
        let bad = format!("{chain}-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");
        let e = refused(&bad, &key);
        assert!(
            matches!(&e, CertError::ForeignBlock { found, .. } if found == label),
            "{e}"
        );
    }
    // The key field holds one key and nothing else.
    let e = refused(&chain, &format!("{key}{key}"));
    assert_eq!(
        (field(&e), matches!(e, CertError::SeveralKeys { .. })),
        ("private_key_pem", true)
    );
    let e = refused(&chain, &format!("{key}{}", inter.pem));
    assert_eq!(field(&e), "private_key_pem");
    assert!(matches!(e, CertError::ForeignBlock { .. }));

    // Text around the blocks is not carried over: what is written is the parsed pair, encoded
    // again, and it is what was checked.
    let noisy_chain = format!(
        "Subject: web1\r\n{}\r\ntrailing words\n",
        chain.replace('\n', "\r\n")
    );
    let noisy_key = format!("my key:\n{key}\n# end\n");
    let bundle = cert::normalize(&noisy_chain, &noisy_key).unwrap();
    assert_eq!(bundle.chain_pem, chain);
    assert!(!bundle.key_pem.contains("my key") && !bundle.key_pem.contains("# end"));
    assert_eq!(
        cert::parse_key(&bundle.key_pem).unwrap(),
        cert::parse_key(&key).unwrap()
    );
    cert::check(
        &bundle.chain_pem,
        &bundle.key_pem,
        &host("web1.example.com"),
        NOW,
    )
    .unwrap();
}
