//! The dns role end to end: the controller (in process) drives two dns agents, each with its
//! own real PowerDNS on a loopback port, and a web+mail agent on the sandbox. Answers are read
//! with `dig` from each PowerDNS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::TOKEN;
use common::dnshost::DnsHost;
use enconf_agent_lib::apply::Applier;
use enconf_agent_lib::server::{Agent, router};
use enconf_agent_lib::system::RealSystem;
use enconf_agent_lib::transport::InProcess;
use enconf_core::controller::{Controller, ControllerConfig, ControllerError};
use enconf_core::domain::dns::ZoneName;
use enconf_core::domain::{AccountId, AgentToken, AgentUrl, ServerId};
use enconf_core::protocol::ErrorBody;
use enconf_core::protocol::dns::{RecordInput, ZonePatch};
use serde_json::json;

struct Cluster {
    controller: Controller,
    transport: Arc<InProcess>,
    runtime: tokio::runtime::Runtime,
    dns: Vec<(DnsHost, AgentUrl, ServerId, tempfile::TempDir)>,
    _web: tempfile::TempDir,
}

fn cluster() -> Option<Cluster> {
    let hosts = [DnsHost::start()?, DnsHost::start()?];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let transport = Arc::new(InProcess::new());
    let controller = Controller::new(
        Arc::new(enconf_core::store::MemoryStore::new_in_memory()),
        transport.clone(),
        ControllerConfig::default(),
    );
    // Web and mail on a sandbox agent (their real services have tests of their own).
    let web = tempfile::tempdir().unwrap();
    let applier = common::sandbox_applier(web.path()).with_roles("web,mail".parse().unwrap());
    let agent =
        runtime.block_on(async { Agent::new(AgentToken::parse(TOKEN).unwrap(), applier, 1 << 22) });
    let url: AgentUrl = "http://127.0.0.1:50090".parse().unwrap();
    transport.add(url.clone(), router(agent));
    let input = serde_json::from_value(json!({
        "name": "web1", "hostname": "web1.host.example", "mail_hostname": "mx1.host.example",
        "agent_url": url.to_string(), "agent_token": TOKEN, "roles": ["web", "mail"],
        "ipv4": "192.0.2.10", "ipv6": "2001:db8::10",
    }))
    .unwrap();
    runtime.block_on(controller.add_server(&input)).unwrap();

    let mut c = Cluster {
        controller,
        transport,
        runtime,
        dns: Vec::new(),
        _web: web,
    };
    for host in hosts {
        c.add_dns_server(host);
    }
    Some(c)
}

fn record(value: serde_json::Value) -> RecordInput {
    serde_json::from_value(value).unwrap()
}

impl Cluster {
    /// A dns agent driving `host`, registered as the next dns server.
    fn add_dns_server(&mut self, host: DnsHost) -> ServerId {
        let i = self.dns.len() + 1;
        let root = tempfile::tempdir().unwrap();
        let settings = host.agent_settings(&root.path().join("zones"));
        let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let config = common::config(root.path(), &extra);
        let applier = Applier::new(config.layout, RealSystem::new()).with_roles(config.roles);
        applier.start().unwrap();
        let agent = self
            .runtime
            .block_on(async { Agent::new(AgentToken::parse(TOKEN).unwrap(), applier, 1 << 22) });
        let url: AgentUrl = format!("http://127.0.0.1:{}", 50090 + i).parse().unwrap();
        self.transport.add(url.clone(), router(agent));
        let input = serde_json::from_value(json!({
            "name": format!("dns{i}"), "hostname": format!("ns{i}.host.example"),
            "agent_url": url.to_string(), "agent_token": TOKEN, "roles": ["dns"],
        }))
        .unwrap();
        let server = self
            .runtime
            .block_on(self.controller.add_server(&input))
            .unwrap();
        assert!(server.reachable, "{server:?}");
        self.dns.push((host, url, server.id, root));
        server.id
    }

    fn account(&self, user: &str, domains: &[&str]) -> AccountId {
        let input = serde_json::from_value(json!({
            "username": user, "domains": domains, "roles": ["web", "mail", "dns"],
        }))
        .unwrap();
        let account = self
            .runtime
            .block_on(self.controller.create_account(&input))
            .unwrap();
        AccountId(account.id)
    }

    /// Each PowerDNS's answer to `name` `kind`, which must be the same on all.
    fn dig(&self, name: &str, kind: &str) -> Vec<String> {
        let answers: Vec<Vec<String>> = self.dns.iter().map(|(h, ..)| h.dig(name, kind)).collect();
        assert_eq!(
            answers[0], answers[1],
            "{name} {kind} differs between the servers"
        );
        answers[0].clone()
    }

    fn serials(&self, zone: &str) -> Vec<Option<u32>> {
        self.dns.iter().map(|(h, ..)| h.serial(zone)).collect()
    }

    fn add(&self, id: AccountId, zone: &str, value: serde_json::Value) -> Result<u64, ErrorBody> {
        let zone = ZoneName::parse(zone).unwrap();
        self.runtime
            .block_on(self.controller.add_dns_record(id, &zone, &record(value)))
            .map(|r| r.id)
            .map_err(ErrorBody::from)
    }

    fn serial_of(&self, id: AccountId, zone: &str) -> u32 {
        let zone = ZoneName::parse(zone).unwrap();
        self.runtime
            .block_on(self.controller.dns_zone(id, &zone))
            .unwrap()
            .serial
    }
}

#[test]
fn an_account_resolves_the_same_on_every_dns_server() {
    let Some(c) = cluster() else { return };
    let id = c.account("shop", &["shop.example", "www.shop.example"]);
    let zone = "shop.example";

    // One zone for both names, the same serial on both servers and in the API.
    let zones = c.runtime.block_on(c.controller.dns_zones(id)).unwrap();
    assert_eq!(zones.len(), 1);
    assert_eq!(zones[0].name, zone);
    assert!(zones[0].in_sync, "{zones:?}");
    let serial = zones[0].serial;
    assert_eq!(c.serials(zone), [Some(serial), Some(serial)]);

    // The records a hosting customer expects.
    assert_eq!(c.dig("www.shop.example", "A"), ["192.0.2.10"]);
    assert_eq!(c.dig("shop.example", "AAAA"), ["2001:db8::10"]);
    assert_eq!(c.dig("shop.example", "MX"), ["10 mx1.host.example."]);
    assert_eq!(
        c.dig("shop.example", "NS"),
        ["ns1.host.example.", "ns2.host.example."]
    );
    assert_eq!(c.dig("shop.example", "TXT"), ["\"v=spf1 a mx ~all\""]);
    assert_eq!(
        c.dig("_dmarc.shop.example", "TXT"),
        ["\"v=DMARC1; p=none\""]
    );
    let dkim = c.dig("enconf._domainkey.shop.example", "TXT").concat();
    assert!(dkim.starts_with("\"v=DKIM1; k=rsa; p="), "{dkim}");
    let api_dkim = c.runtime.block_on(c.controller.dkim(id)).unwrap();
    let want = api_dkim
        .iter()
        .find(|d| d.domain == "shop.example")
        .unwrap();
    assert_eq!(dkim.replace("\" \"", "").trim_matches('"'), want.value);

    // A record of the account's own is live on both servers, with a newer serial.
    let blog = c
        .add(
            id,
            zone,
            json!({"name": "blog", "type": "A", "content": "192.0.2.20", "ttl": 300}),
        )
        .unwrap();
    assert_eq!(c.dig("blog.shop.example", "A"), ["192.0.2.20"]);
    let after = c.serial_of(id, zone);
    assert!(after > serial);
    assert_eq!(c.serials(zone), [Some(after), Some(after)]);
    c.add(id, zone, json!({"name": "_sip._tcp", "type": "SRV", "content": "5 5060 sip.shop.example.", "priority": 10}))
        .unwrap();
    assert_eq!(
        c.dig("_sip._tcp.shop.example", "SRV"),
        ["10 5 5060 sip.shop.example."]
    );
    c.add(
        id,
        zone,
        json!({"name": "@", "type": "CAA", "content": "0 issue \"letsencrypt.org\""}),
    )
    .unwrap();
    assert_eq!(
        c.dig("shop.example", "CAA"),
        ["0 issue \"letsencrypt.org\""]
    );

    // Hostile or broken records are refused naming the field; both servers answer as before.
    let before = c.serial_of(id, zone);
    let refused = [
        (
            json!({"name": "www", "type": "CNAME", "content": "elsewhere.example."}),
            "name",
        ),
        (
            json!({"name": "@", "type": "CNAME", "content": "elsewhere.example."}),
            "name",
        ),
        (
            json!({"name": "x", "type": "TXT", "content": "a\nb"}),
            "content",
        ),
        (
            json!({"name": "x", "type": "TXT", "content": "x".repeat(256)}),
            "content",
        ),
        (
            json!({"name": "x", "type": "MX", "content": "192.0.2.1", "priority": 10}),
            "content",
        ),
        (
            json!({"name": "x.other.example.", "type": "A", "content": "192.0.2.1"}),
            "name",
        ),
        (
            json!({"name": "x", "type": "A", "content": "192.0.2.1", "ttl": 10}),
            "ttl",
        ),
        (
            json!({"name": "x;y", "type": "A", "content": "192.0.2.1"}),
            "name",
        ),
        (
            json!({"name": "x", "type": "NS", "content": "ns.evil.example."}),
            "type",
        ),
        (
            json!({"name": "x", "type": "TXT", "content": "\"a\" ; $INCLUDE /etc/shadow"}),
            "content",
        ),
    ];
    for (input, field) in refused {
        let e = c.add(id, zone, input.clone()).unwrap_err();
        assert_eq!(e.error.field.as_deref(), Some(field), "{input} → {e:?}");
        assert_eq!(e.error.code.status(), 422, "{input}");
    }
    assert_eq!(c.serials(zone), [Some(before), Some(before)]);
    assert_eq!(c.dig("www.shop.example", "A"), ["192.0.2.10"]);

    // A changed and a deleted record.
    let z = ZoneName::parse(zone).unwrap();
    c.runtime
        .block_on(c.controller.change_dns_record(
            id,
            &z,
            blog,
            Some(&record(
                json!({"name": "blog", "type": "CNAME", "content": "www.shop.example."}),
            )),
        ))
        .unwrap();
    assert_eq!(c.dig("blog.shop.example", "CNAME"), ["www.shop.example."]);
    c.runtime
        .block_on(c.controller.change_dns_record(id, &z, blog, None))
        .unwrap();
    assert!(c.dig("blog.shop.example", "CNAME").is_empty());
    let managed = c
        .runtime
        .block_on(c.controller.change_dns_record(id, &z, 0, None))
        .unwrap_err();
    assert!(
        matches!(managed, ControllerError::Invalid(ref v) if v.field == "record_id"),
        "{managed:?}"
    );

    // Signed: the DS from the API, RRSIGs from both servers, one key on both.
    let signed = c
        .runtime
        .block_on(
            c.controller
                .patch_dns_zone(id, &z, &ZonePatch { dnssec: Some(true) }),
        )
        .unwrap();
    assert!(signed.dnssec && signed.in_sync, "{signed:?}");
    assert_eq!(signed.ds.len(), 1);
    for (host, ..) in &c.dns {
        let answer = host.dig_dnssec("www.shop.example", "A");
        assert!(answer.contains("RRSIG\tA 13 "), "{answer}");
        let ds = host.pdnsutil(&["export-zone-ds", zone]);
        let sha256 = ds.lines().find(|l| l.contains(" 13 2 ")).unwrap();
        assert!(
            sha256.starts_with(&signed.ds[0]),
            "{sha256} vs {}",
            signed.ds[0]
        );
        let check = host.pdnsutil(&["check-zone", zone]);
        assert!(check.contains("0 errors"), "{check}");
    }
    assert_eq!(c.dig("shop.example", "DNSKEY").len(), 1);

    // The web server's address changes: the A records follow on both servers.
    let web = c
        .runtime
        .block_on(c.controller.servers())
        .unwrap()
        .into_iter()
        .find(|s| s.name == "web1")
        .unwrap();
    let patch = serde_json::from_value(json!({"ipv4": "192.0.2.99"})).unwrap();
    c.runtime
        .block_on(c.controller.patch_server(web.id, &patch))
        .unwrap();
    common::services::wait_for("the A records following the web server", || {
        c.dns
            .iter()
            .all(|(h, ..)| h.dig("www.shop.example", "A") == ["192.0.2.99"])
    });

    // A second account cannot take the zone, nor a name inside it.
    let input = serde_json::from_value(json!({
        "username": "other", "domains": ["blog.shop.example"], "roles": ["web", "dns"],
    }))
    .unwrap();
    let e = ErrorBody::from(
        c.runtime
            .block_on(c.controller.create_account(&input))
            .unwrap_err(),
    );
    assert_eq!(e.error.code.status(), 409, "{e:?}");
    assert_eq!(e.error.field.as_deref(), Some("domains[0]"));

    // Deleting the account takes the zone off both servers.
    c.runtime.block_on(c.controller.delete_account(id)).unwrap();
    for (host, ..) in &c.dns {
        assert!(host.serial(zone).is_none());
        assert!(!host.pdnsutil(&["list-all-zones"]).contains(zone));
    }
}

#[test]
fn a_change_reaches_every_dns_server_or_none() {
    let Some(mut c) = cluster() else { return };
    let id = c.account("blog", &["blog.example"]);
    let zone = "blog.example";
    let serial = c.serial_of(id, zone);

    // The second dns server is offline: the change is refused naming it, and nothing changes.
    let (_, url2, id2, _) = &c.dns[1];
    c.transport.set_offline(url2, true);
    for _ in 0..enconf_core::domain::OFFLINE_AFTER {
        c.runtime.block_on(c.controller.check_all());
    }
    let e = c
        .add(
            id,
            zone,
            json!({"name": "www", "type": "A", "content": "192.0.2.30"}),
        )
        .unwrap_err();
    assert_eq!(e.error.code.status(), 503, "{e:?}");
    assert!(e.error.message.contains(&id2.to_string()), "{e:?}");
    assert_eq!(c.serial_of(id, zone), serial);
    assert_eq!(c.dns[0].0.serial(zone), Some(serial));
    assert!(c.dns[0].0.dig("www.blog.example", "A").is_empty());

    // Back online: the change goes to both.
    c.transport.set_offline(url2, false);
    c.runtime.block_on(c.controller.check_all());
    c.add(
        id,
        zone,
        json!({"name": "www", "type": "A", "content": "192.0.2.30"}),
    )
    .unwrap();
    assert_eq!(c.dig("www.blog.example", "A"), ["192.0.2.30"]);

    // A dns server that lost what it had (set up again from scratch: its agent's state, zone
    // files and PowerDNS's data gone) is brought up to date by a reconciliation.
    let (host2, _, id2, root2) = &c.dns[1];
    host2.pdnsutil(&["delete-zone", zone]);
    host2.control(&["rediscover"]);
    host2.control(&["purge", "blog.example$"]);
    std::fs::remove_dir_all(root2.path().join("state/accounts")).unwrap();
    std::fs::remove_dir_all(root2.path().join("zones")).unwrap();
    assert!(host2.serial(zone).is_none());
    let report = c.runtime.block_on(c.controller.reconcile(*id2)).unwrap();
    assert_eq!(report.repaired, ["blog"], "{report:?}");
    assert_eq!(report.in_sync, ["blog"], "{report:?}");
    let now = c.serial_of(id, zone);
    assert_eq!(c.serials(zone), [Some(now), Some(now)]);
    assert_eq!(c.dig("www.blog.example", "A"), ["192.0.2.30"]);

    // A dns server added later serves the zone too (its reconciliation joins it to the
    // account, the NS records name it, and every server has the new serial).
    let Some(third) = DnsHost::start() else {
        return;
    };
    let id3 = c.add_dns_server(third);
    let report = c.runtime.block_on(c.controller.reconcile(id3)).unwrap();
    assert_eq!(report.in_sync, ["blog"], "{report:?}");
    let account = c.runtime.block_on(c.controller.account(id)).unwrap();
    assert_eq!(
        account.servers.of(enconf_core::domain::Role::Dns).len(),
        3,
        "{account:?}"
    );
    let latest = c.serial_of(id, zone);
    assert!(latest > now);
    for (host, ..) in &c.dns {
        assert_eq!(host.serial(zone), Some(latest));
        assert_eq!(
            host.dig("blog.example", "NS"),
            [
                "ns1.host.example.",
                "ns2.host.example.",
                "ns3.host.example."
            ]
        );
        assert_eq!(host.dig("www.blog.example", "A"), ["192.0.2.30"]);
    }
}
