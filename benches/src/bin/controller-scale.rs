//! The controller at scale, measured through its API: a controller process (the release
//! `enconf-controller`) and, in this process, fake agents (HTTP listeners on loopback answering
//! health checks and account puts). For each store asked for (the memory store first: the
//! baseline), it times
//!
//! - registering the servers (`POST /api/v1/servers`, each checked by the controller),
//! - one health round of the controller's monitor: when each agent was first asked, after the
//!   registrations (the spread of the round's starts, and its length),
//! - creating the accounts (`POST /api/v1/accounts`) from concurrent clients, each on its own
//!   keep-alive connection: creates per second, and the p50/p99/max of one create,
//! - the controller's resident memory after the creates and after reading every page,
//! - `GET` of the first and of the last page of accounts (median of 20).
//!
//! Usage: `controller-scale --controller target/release/enconf-controller [--servers 1000]
//! [--accounts 100000] [--clients 8] [--stores memory,redb]`; `benches/scale/controller-scale.sh`
//! builds and runs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const ADMIN: &str = "scale-admin-token-0123456789abcdef";
const AGENT_TOKEN: &str = "scale-agent-token-0123456789";
const HEALTH_INTERVAL_S: u64 = 10;

struct Args {
    controller: PathBuf,
    servers: usize,
    accounts: usize,
    clients: usize,
    stores: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        controller: PathBuf::from("target/release/enconf-controller"),
        servers: 1_000,
        accounts: 100_000,
        clients: 8,
        stores: vec!["memory".into(), "redb".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--controller" => a.controller = value.into(),
            "--servers" => a.servers = value.parse().unwrap(),
            "--accounts" => a.accounts = value.parse().unwrap(),
            "--clients" => a.clients = value.parse().unwrap(),
            "--stores" => a.stores = value.split(',').map(str::to_owned).collect(),
            _ => panic!("unknown flag {flag}"),
        }
    }
    a
}

/// When each agent was asked for its health, by agent.
type Asked = Arc<Mutex<Vec<Vec<Instant>>>>;

/// Starts agent `n`: its URL.
async fn fake_agent(n: usize, asked: Asked) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let health = format!(
        r#"{{"version":"0.1.0","hostname":"agent{n}.scale.test","uptime_s":1,"agent_id":"{n:032x}"}}"#
    );
    let app = axum::Router::new()
        .route(
            "/v1/health",
            axum::routing::get(move || {
                asked.lock().unwrap()[n].push(Instant::now());
                let body = health.clone();
                async move { ([("content-type", "application/json")], body) }
            }),
        )
        .route(
            "/v1/accounts/{user}",
            axum::routing::put(|| async {
                (
                    [("content-type", "application/json")],
                    r#"{"changed":true}"#,
                )
            })
            .delete(|| async {
                (
                    [("content-type", "application/json")],
                    r#"{"changed":true}"#,
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{port}")
}

/// One keep-alive HTTP/1.1 connection to the controller's API.
struct Client {
    port: u16,
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Client {
    async fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self { port, send }
    }

    /// Status, `Link` header and body.
    async fn call(&mut self, method: &str, path: &str, body: Option<String>) -> Response {
        self.send.ready().await.unwrap();
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("127.0.0.1:{}", self.port))
            .header("authorization", format!("Bearer {ADMIN}"));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let resp = self.send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let link = resp
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Response {
            status,
            link,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

struct Response {
    status: u16,
    link: Option<String>,
    body: String,
}

/// The path of a `Link: <path>; rel="next"` header.
fn next_of(link: Option<&str>) -> Option<String> {
    let link = link?;
    let start = link.find('<')? + 1;
    let end = link.find('>')?;
    Some(link[start..end].to_owned())
}

struct Controller {
    child: std::process::Child,
    port: u16,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_controller(bin: &Path, dir: &Path, store: &str) -> Controller {
    let port = free_port();
    let log = std::fs::File::create(dir.join("controller.log")).unwrap();
    // `setpriv --pdeathsig KILL`: the controller dies with this process, also when it is
    // killed (no controller left behind asking the next run's agents for their health).
    let child = std::process::Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(bin)
        .env("ENCONF_BIND", format!("127.0.0.1:{port}"))
        .env("ENCONF_DATA_DIR", dir)
        .env("ENCONF_ADMIN_TOKEN", ADMIN)
        .env("ENCONF_STORE", store)
        .env("ENCONF_HEALTH_INTERVAL_S", HEALTH_INTERVAL_S.to_string())
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let controller = Controller { child, port };
    let started = Instant::now();
    loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await {
            drop(stream);
            return controller;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the controller did not start: see {}",
            dir.join("controller.log").display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A numeric field of a process's `/proc/<pid>/status` (its unit, `kB` for sizes, dropped).
fn status_field(pid: u32, name: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// A size field of a process's `/proc/<pid>/status`, in MiB.
fn status_mib(pid: u32, name: &str) -> f64 {
    status_field(pid, name) / 1024.0
}

/// Resident and peak resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    (status_mib(pid, "VmRSS:"), status_mib(pid, "VmHWM:"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `total` calls of `op(i)` from `clients` connections; every latency, and the wall time.
async fn drive<F, Fut>(port: u16, clients: usize, total: usize, op: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize, Client) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Client> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, op) = (Arc::clone(&next), Arc::clone(&op));
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(port).await;
            let mut times = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return times;
                }
                let t = Instant::now();
                client = op(i, client).await;
                times.push(t.elapsed());
            }
        }));
    }
    let mut times = Vec::with_capacity(total);
    for t in tasks {
        times.extend(t.await.unwrap());
    }
    let wall = started.elapsed();
    times.sort();
    (times, wall)
}

#[derive(Default)]
struct Figures {
    register_s: f64,
    round_spread_ms: f64,
    creates_per_s: f64,
    create_p50_ms: f64,
    create_p99_ms: f64,
    create_max_ms: f64,
    rss_after_creates: f64,
    rss_after_pages: f64,
    peak_rss: f64,
    rss_idle: f64,
    threads: f64,
    rss_anon_idle: f64,
    file_mib: f64,
    walk_s: f64,
    first_page_ms: f64,
    last_page_ms: f64,
}

async fn median_get(port: u16, path: &str) -> f64 {
    let mut client = Client::connect(port).await;
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let r = client.call("GET", path, None).await;
        times.push(t.elapsed());
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    times.sort();
    ms(percentile(&times, 0.5))
}

async fn run(args: &Args, store: &str, urls: &Arc<Vec<String>>, asked: &Asked) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let c = start_controller(&args.controller, dir.path(), store).await;
    let pid = c.child.id();
    let port = c.port;
    let mut f = Figures::default();

    // Register the servers.
    let list = Arc::clone(urls);
    let (_, wall) = drive(port, args.clients, args.servers, move |i, mut client| {
        let list = Arc::clone(&list);
        async move {
            let body = serde_json::json!({
                "name": format!("web{i}"),
                "hostname": format!("agent{i}.scale.test"),
                "agent_url": list[i],
                "agent_token": AGENT_TOKEN,
                "roles": ["web"],
            });
            let r = client
                .call("POST", "/api/v1/servers", Some(body.to_string()))
                .await;
            assert_eq!(r.status, 201, "server {i}: {}", r.body);
            client
        }
    })
    .await;
    f.register_s = wall.as_secs_f64();
    let mut client = Client::connect(port).await;
    let r = client.call("GET", "/api/v1/servers?limit=1000", None).await;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&r.body).unwrap();
    let urls: std::collections::BTreeSet<&str> = listed
        .iter()
        .map(|s| s["agent_url"].as_str().unwrap())
        .collect();
    assert_eq!(
        (listed.len().min(1000), urls.len()),
        (args.servers.min(1000), args.servers.min(1000)),
        "one server per agent"
    );
    eprintln!(
        "[{store}] {} servers registered in {wall:.2?}",
        args.servers
    );

    // The monitor's rounds over two and a half intervals: every ask, split into rounds where
    // no agent was asked for half an interval; the spread of the first round that asked every
    // agent (the one under way at the start may be partial).
    let since = Instant::now();
    tokio::time::sleep(Duration::from_secs(HEALTH_INTERVAL_S) * 5 / 2).await;
    let mut asks: Vec<(Instant, usize)> = asked
        .lock()
        .unwrap()
        .iter()
        .take(args.servers)
        .enumerate()
        .flat_map(|(n, times)| times.iter().filter(|t| **t > since).map(move |t| (*t, n)))
        .collect();
    asks.sort();
    let mut rounds: Vec<Vec<(Instant, usize)>> = Vec::new();
    for ask in asks {
        match rounds.last_mut() {
            Some(round)
                if ask.0 - round.last().unwrap().0 < Duration::from_secs(HEALTH_INTERVAL_S) / 2 =>
            {
                round.push(ask)
            }
            _ => rounds.push(vec![ask]),
        }
    }
    let whole = rounds
        .iter()
        .find(|round| {
            let agents: std::collections::BTreeSet<usize> = round.iter().map(|a| a.1).collect();
            agents.len() == args.servers
        })
        .unwrap_or_else(|| {
            let sizes: Vec<usize> = rounds.iter().map(Vec::len).collect();
            panic!("no round asked every agent: rounds of {sizes:?} asks")
        });
    let (lo, hi) = (whole.first().unwrap().0, whole.last().unwrap().0);
    f.round_spread_ms = ms(hi - lo);
    eprintln!(
        "[{store}] health round: first to last ask {:.0} ms",
        f.round_spread_ms
    );

    // Create the accounts.
    let progress = Arc::new(AtomicUsize::new(0));
    let total = args.accounts;
    let (times, wall) = drive(port, args.clients, total, move |i, mut client| {
        let progress = Arc::clone(&progress);
        async move {
            let body = format!(r#"{{"username":"u{i:07}","domains":["u{i:07}.scale.test"]}}"#);
            let r = client.call("POST", "/api/v1/accounts", Some(body)).await;
            assert_eq!(r.status, 201, "account {i}: {}", r.body);
            let done = progress.fetch_add(1, Ordering::Relaxed) + 1;
            if done.is_multiple_of(10_000) {
                eprintln!("  {done} accounts");
            }
            client
        }
    })
    .await;
    f.creates_per_s = total as f64 / wall.as_secs_f64();
    f.create_p50_ms = ms(percentile(&times, 0.5));
    f.create_p99_ms = ms(percentile(&times, 0.99));
    f.create_max_ms = ms(percentile(&times, 1.0));
    (f.rss_after_creates, _) = rss_mib(pid);
    f.threads = status_field(pid, "Threads:");
    eprintln!(
        "[{store}] {total} accounts in {wall:.1?}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
        f.creates_per_s, f.create_p50_ms, f.create_p99_ms
    );

    // Every page, once; then the first and the last page.
    let mut client = Client::connect(port).await;
    let mut path = "/api/v1/accounts?limit=100".to_owned();
    let mut last = path.clone();
    let mut seen = 0;
    let t = Instant::now();
    loop {
        let r = client.call("GET", &path, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let items: Vec<serde_json::Value> = serde_json::from_str(&r.body).unwrap();
        seen += items.len();
        match next_of(r.link.as_deref()) {
            Some(next) => {
                last = path;
                path = next;
            }
            None => {
                if !items.is_empty() {
                    last = path;
                }
                break;
            }
        }
    }
    f.walk_s = t.elapsed().as_secs_f64();
    assert_eq!(seen, total, "the pages did not hold every account once");
    f.first_page_ms = median_get(port, "/api/v1/accounts?limit=100").await;
    f.last_page_ms = median_get(port, &last).await;
    (f.rss_after_pages, f.peak_rss) = rss_mib(pid);
    // Freed memory goes back to the system after the allocator's decay time (10 s).
    tokio::time::sleep(Duration::from_secs(15)).await;
    f.rss_idle = status_mib(pid, "VmRSS:");
    f.rss_anon_idle = status_mib(pid, "RssAnon:");
    f.file_mib = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".redb"))
        .map(|e| e.metadata().unwrap().len() as f64 / 1048576.0)
        .fold(0.0, |a, b| a + b);
    eprintln!(
        "[{store}] pages walked in {:.2} s; first page {:.2} ms, last page ({last}) {:.2} ms; RSS {:.1} MiB (peak {:.1})",
        f.walk_s, f.first_page_ms, f.last_page_ms, f.rss_after_pages, f.peak_rss
    );
    drop(c);
    f
}

fn main() {
    let args = args();
    enconf_benches::raise_open_files();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let asked: Asked = Arc::new(Mutex::new(vec![Vec::new(); args.servers]));
        let mut urls = Vec::with_capacity(args.servers);
        for n in 0..args.servers {
            urls.push(fake_agent(n, Arc::clone(&asked)).await);
        }
        let urls = Arc::new(urls);
        let mut results = Vec::new();
        for store in &args.stores {
            results.push((store.clone(), run(&args, store, &urls, &asked).await));
        }
        println!(
            "\n{} servers, {} accounts, {} clients",
            args.servers, args.accounts, args.clients
        );
        let base = &results[0].1;
        let row = |name: &str, unit: &str, get: &dyn Fn(&Figures) -> f64| {
            let mut line = format!("{name:<28}");
            for (i, (_, f)) in results.iter().enumerate() {
                let v = get(f);
                line.push_str(&format!(" {v:>12.2} {unit:<5}"));
                if i > 0 {
                    let b = get(base);
                    if b > 0.0 {
                        line.push_str(&format!(" ({:.2}×)", v / b));
                    }
                }
            }
            println!("{line}");
        };
        let mut head = format!("{:<28}", "");
        for (store, _) in &results {
            head.push_str(&format!(" {store:>18}"));
        }
        println!("{head}");
        row("register servers", "s", &|f| f.register_s);
        row("health round: asks spread", "ms", &|f| f.round_spread_ms);
        row("creates per second", "/s", &|f| f.creates_per_s);
        row("one create p50", "ms", &|f| f.create_p50_ms);
        row("one create p99", "ms", &|f| f.create_p99_ms);
        row("one create max", "ms", &|f| f.create_max_ms);
        row("RSS after creates", "MiB", &|f| f.rss_after_creates);
        row("threads after creates", "", &|f| f.threads);
        row("RSS after every page", "MiB", &|f| f.rss_after_pages);
        row("peak RSS", "MiB", &|f| f.peak_rss);
        row("RSS after 15 s idle", "MiB", &|f| f.rss_idle);
        row("  of which anonymous", "MiB", &|f| f.rss_anon_idle);
        row("store file", "MiB", &|f| f.file_mib);
        row("every page (limit 100)", "s", &|f| f.walk_s);
        row("first page", "ms", &|f| f.first_page_ms);
        row("last page", "ms", &|f| f.last_page_ms);
    });
}
