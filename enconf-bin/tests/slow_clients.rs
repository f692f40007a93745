//! Neither server can be starved by connections: with well over a thousand slow or silent
//! connections held open from many addresses, an authenticated request on a new connection is
//! still answered; the connections are closed by the server (made room for, or timed out);
//! a stalled authenticated upload is answered `408`; and the memory they took is given back
//! (the binaries use jemalloc with background purging; glibc's allocator kept it all). Figures
//! are printed (`--nocapture`); the memory bound is loose on purpose.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{ADMIN, WEB_TOKEN, free_port, start_agent, start_controller};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Source addresses the slow connections come from (127.0.0.2 …): under the per-source limit
/// each, over the limit of unauthenticated connections together.
const SOURCES: u8 = 50;
const PER_SOURCE: usize = 30;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Lets this process hold the connections: the soft open-files limit up to the hard one.
fn raise_own_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

async fn connect_from(source: Ipv4Addr, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// Opens `n` slow connections of three kinds: silent, half a header, and a request whose body
/// never comes.
async fn slow_connections(port: u16, n: usize, path: &str) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(SOURCES)) as u8);
        let mut s = connect_from(source, port).await;
        match i % 3 {
            0 => {}
            1 => s
                .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-Slow: ").as_bytes())
                .await
                .unwrap(),
            _ => s
                .write_all(
                    format!(
                        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n{{\"a\":"
                    )
                    .as_bytes(),
                )
                .await
                .unwrap(),
        }
        conns.push(s);
    }
    conns
}

/// How many of `conns` the server has closed (a read sees the end, or an error).
async fn closed_by_server(conns: &mut [TcpStream]) -> usize {
    let mut closed = 0;
    for c in conns.iter_mut() {
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_millis(1), c.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => continue, // an answer (401) before the close
                Err(_) => break,       // still open
            }
        }
    }
    closed
}

/// An authenticated GET on a new connection from 127.0.0.1: the status, within 5 s.
async fn authenticated_get(port: u16, path: &str, token: &str) -> u16 {
    let request = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer[9..12]).parse().unwrap()
    };
    tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .expect("an authenticated request waited more than 5 s")
}

/// An authenticated upload that stops after a few bytes: the status the server answers with.
async fn stalled_upload(port: u16, path: &str, token: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        format!("PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 500000\r\n\r\n{{\"accounts\": [")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut answer))
        .await
        .expect("a stalled upload was held more than 30 s")
        .unwrap();
    (
        String::from_utf8_lossy(&answer[9..12]).parse().unwrap(),
        started.elapsed(),
    )
}

struct Target<'a> {
    what: &'a str,
    port: u16,
    pid: u32,
    token: &'a str,
    get: &'a str,
    upload: &'a str,
}

async fn hold_and_release(t: Target<'_>, n: usize) {
    for _ in 0..20 {
        assert_eq!(authenticated_get(t.port, t.get, t.token).await, 200);
    }
    let before = rss_kib(t.pid);
    let stalled = tokio::spawn({
        let (port, path, token) = (t.port, t.upload.to_owned(), t.token.to_owned());
        async move { stalled_upload(port, &path, &token).await }
    });

    let started = Instant::now();
    let mut conns = slow_connections(t.port, n, t.get).await;
    let opened = started.elapsed();
    let status = authenticated_get(t.port, t.get, t.token).await;
    let answered = started.elapsed() - opened;
    assert_eq!(
        status, 200,
        "{}: answered while {n} connections are held",
        t.what
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = rss_kib(t.pid);
    let evicted = closed_by_server(&mut conns).await;
    // Past the limit of unauthenticated connections (1,024), the oldest were closed.
    assert!(
        evicted >= n - 1024,
        "{}: {evicted} of {n} closed to make room",
        t.what
    );

    let (status, stalled_for) = stalled.await.unwrap();
    assert_eq!(status, 408, "{}: a stalled upload", t.what);
    // Once the 10 s header timeout has passed for the last of them, every slow connection is
    // closed.
    tokio::time::sleep((opened + Duration::from_secs(11)).saturating_sub(started.elapsed())).await;
    let mut open_by_kind = [0usize; 3];
    for (i, c) in conns.iter_mut().enumerate() {
        if closed_by_server(std::slice::from_mut(c)).await == 0 {
            open_by_kind[i % 3] += 1;
        }
    }
    assert_eq!(
        open_by_kind,
        [0, 0, 0],
        "{}: slow connections left open (silent, half a header, a body that never ends) \
         {:?} after the first was opened, {opened:?} after the last",
        t.what,
        started.elapsed()
    );
    drop(conns);
    // The allocator hands freed pages back over its 10 s decay time.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = rss_kib(t.pid);
    println!(
        "{}: {n} slow connections opened in {opened:?}; authenticated request answered {answered:?} later; \
         {evicted} closed at once to make room; stalled upload answered {status} after {stalled_for:?}; \
         RSS {before} KiB before, {during} KiB with them, {after} KiB after",
        t.what
    );
    assert!(
        after < before + 12 * 1024 && after < during,
        "{}: memory not given back: {before} KiB before, {during} KiB with them, {after} KiB after",
        t.what
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_connections_do_not_lock_out_the_servers() {
    let limit = raise_own_limit();
    let n = usize::try_from(limit.saturating_sub(200) / 2)
        .unwrap_or(usize::MAX)
        .min(usize::from(SOURCES) * PER_SOURCE);
    assert!(
        n > 1100,
        "this test needs about 3,200 open files (limit {limit})"
    );
    let dir = tempfile::tempdir().unwrap();
    let (agent_port, controller_port) = (free_port(), free_port());
    let agent = start_agent(dir.path(), "web", agent_port, WEB_TOKEN);
    let controller = start_controller(dir.path(), controller_port);
    let agent_target = Target {
        what: "agent",
        port: agent_port,
        pid: agent.child.id(),
        token: WEB_TOKEN,
        get: "/v1/health",
        upload: "/v1/accounts",
    };
    let controller_target = Target {
        what: "controller",
        port: controller_port,
        pid: controller.child.id(),
        token: ADMIN,
        get: "/api/v1/servers",
        upload: "/api/v1/servers/1/ssl/panel",
    };
    tokio::join!(
        hold_and_release(agent_target, n),
        hold_and_release(controller_target, n)
    );
}
