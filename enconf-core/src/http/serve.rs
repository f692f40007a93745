//! Serving a router on a listener so that no client can starve the server of connections.
//!
//! Every accepted connection starts *unauthenticated*. It is promoted once one of its requests
//! presents the right token ([`mark_authenticated`], called by the auth checks of both APIs).
//! Only unauthenticated connections are limited and evicted:
//!
//! - at most [`ConnectionLimits::max_unauthenticated`] at once: a new connection past it
//!   closes the oldest unauthenticated one, so a flood of idle sockets never locks out a client
//!   that sends its request at once;
//! - at most [`ConnectionLimits::max_unauthenticated_per_source`] from one source (an IPv4
//!   address, or an IPv6 /64): past it the source's own oldest connection goes;
//! - a request header must arrive, and an idle keep-alive connection must send its next one,
//!   within [`ConnectionLimits::header_timeout`]; a TLS handshake within
//!   [`ConnectionLimits::handshake_timeout`];
//! - all connections together stay under [`ConnectionLimits::max_connections`], so the
//!   process's file descriptors never run out (see `raise_open_files_limit` in the binaries).
//!
//! Bodies are bounded separately, per operation, by [`super::json_body`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(300);
/// The most a connection buffers of a request it has not finished reading (headers included).
const MAX_BUFFER_BYTES: usize = 64 * 1024;
/// At most one "accept failed" warning this often; the rest are counted into the next one.
const ACCEPT_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Limits on connections; [`ConnectionLimits::default`] gives the documented values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time for a request's header to arrive, and for an idle connection to start its next
    /// request (10 s).
    pub header_timeout: Duration,
    /// Time for a TLS handshake (10 s).
    pub handshake_timeout: Duration,
    /// Connections at once, authenticated or not (10,000).
    pub max_connections: usize,
    /// Connections that have not presented a valid token yet (1,024).
    pub max_unauthenticated: usize,
    /// Of those, from one source address (32).
    pub max_unauthenticated_per_source: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_unauthenticated: 1_024,
            max_unauthenticated_per_source: 32,
        }
    }
}

/// A connection as the request handlers see it (an extension of every request it carries).
#[derive(Debug, Clone)]
pub struct Connection(Arc<Entry>);

#[derive(Debug)]
struct Entry {
    id: u64,
    source: IpAddr,
    authenticated: AtomicBool,
    /// Notified when the connection must close to make room.
    evicted: Notify,
    registry: Arc<Registry>,
}

impl Connection {
    /// The address the connection comes from.
    pub fn source(&self) -> IpAddr {
        self.0.source
    }
}

/// Marks the connection that carried `req` as authenticated: from now on it is neither
/// evicted nor counted against the unauthenticated limits. Requests that did not come through
/// [`serve`] (an in-process transport) carry no connection; nothing happens then.
pub fn mark_authenticated(req: &Request) {
    if let Some(conn) = req.extensions().get::<Connection>() {
        conn.0.registry.promote(&conn.0);
    }
}

/// The connections being served.
#[derive(Debug)]
struct Registry {
    limits: ConnectionLimits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    authenticated: usize,
    /// Unauthenticated connections by id, that is by age.
    pending: BTreeMap<u64, Arc<Entry>>,
    by_source: HashMap<IpAddr, BTreeSet<u64>>,
}

impl State {
    fn remove_pending(&mut self, id: u64) -> Option<Arc<Entry>> {
        let entry = self.pending.remove(&id)?;
        if let Some(ids) = self.by_source.get_mut(&entry.source) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_source.remove(&entry.source);
            }
        }
        Some(entry)
    }

    fn evict(&mut self, id: u64) {
        if let Some(entry) = self.remove_pending(id) {
            entry.evicted.notify_one();
        }
    }
}

/// The address a limit per source counts under: IPv4 addresses as they are (also when mapped
/// into IPv6), IPv6 addresses by their /64 (one host usually has a whole /64).
fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a new connection from `ip`, closing older unauthenticated ones to make room;
    /// `None` when every connection is authenticated and there is no room.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Connection> {
        let source = source_of(ip);
        let mut state = self.lock();
        let total = state.authenticated + state.pending.len();
        if total >= self.limits.max_connections {
            let oldest = state.pending.keys().next().copied()?;
            state.evict(oldest);
        }
        let from_source = state.by_source.get(&source).map_or(0, BTreeSet::len);
        if from_source >= self.limits.max_unauthenticated_per_source.max(1) {
            let oldest = state
                .by_source
                .get(&source)
                .and_then(|ids| ids.first().copied());
            if let Some(oldest) = oldest {
                state.evict(oldest);
            }
        } else if state.pending.len() >= self.limits.max_unauthenticated.max(1)
            && let Some(oldest) = state.pending.keys().next().copied()
        {
            state.evict(oldest);
        }
        let id = state.next_id;
        state.next_id += 1;
        let entry = Arc::new(Entry {
            id,
            source,
            authenticated: AtomicBool::new(false),
            evicted: Notify::new(),
            registry: Arc::clone(self),
        });
        state.pending.insert(id, Arc::clone(&entry));
        state.by_source.entry(source).or_default().insert(id);
        Some(Connection(entry))
    }

    fn promote(&self, entry: &Entry) {
        if entry.authenticated.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        // Not pending any more: evicted meanwhile, and closing.
        if state.remove_pending(entry.id).is_some() {
            state.authenticated += 1;
            entry.authenticated.store(true, Ordering::Release);
        }
    }

    fn release(&self, entry: &Entry) {
        let mut state = self.lock();
        if state.remove_pending(entry.id).is_none() && entry.authenticated.load(Ordering::Acquire) {
            state.authenticated = state.authenticated.saturating_sub(1);
        }
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Admitted(Connection);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.0.registry.release(&self.0.0);
    }
}

/// Logs failed accepts (out of file descriptors, mostly) at most once per
/// [`ACCEPT_WARNING_EVERY`], with how many were not logged since.
#[derive(Debug, Default)]
struct AcceptWarnings {
    last: Option<Instant>,
    unlogged: u64,
}

impl AcceptWarnings {
    fn failed(&mut self, error: &std::io::Error) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < ACCEPT_WARNING_EVERY)
        {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(error = %error, unlogged_since = self.unlogged, "accepting a connection failed");
        self.last = Some(now);
        self.unlogged = 0;
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) within `limits` until `shutdown`
/// resolves, then stops accepting and waits for requests in flight to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let registry = Arc::new(Registry {
        limits,
        state: Mutex::default(),
    });
    let mut warnings = AcceptWarnings::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    warnings.failed(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(conn) = registry.admit(peer.ip()) else {
            tracing::debug!(%peer, "no room for another connection");
            continue;
        };
        let tagged = conn.clone();
        let service =
            TowerToHyperService::new(app.clone().map_request(move |mut req: Request<_>| {
                req.extensions_mut().insert(tagged.clone());
                req
            }));
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let (header_timeout, handshake_timeout) = (
            registry.limits.header_timeout,
            registry.limits.handshake_timeout,
        );
        tokio::spawn(async move {
            let admitted = Admitted(conn);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(MAX_BUFFER_BYTES);
            let served = async {
                // Nothing is allocated for a connection until it sends something: hyper reads
                // into a buffer of its own from the start.
                if !matches!(
                    tokio::time::timeout(header_timeout, stream.readable()).await,
                    Ok(Ok(()))
                ) {
                    return Ok(());
                }
                match tls {
                    None => {
                        watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                        {
                            Ok(Ok(stream)) => {
                                watcher
                                    .watch(http.serve_connection(TokioIo::new(stream), service))
                                    .await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                Ok(())
                            }
                            Err(_) => Ok(()),
                        }
                    }
                }
            };
            tokio::select! {
                result = served => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                () = admitted.0.0.evicted.notified() => {
                    tracing::debug!(%peer, "unauthenticated connection closed to make room");
                }
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for requests in flight");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the grace period");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max_unauthenticated: usize, per_source: usize, max: usize) -> Arc<Registry> {
        Arc::new(Registry {
            limits: ConnectionLimits {
                max_connections: max,
                max_unauthenticated,
                max_unauthenticated_per_source: per_source,
                ..ConnectionLimits::default()
            },
            state: Mutex::default(),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn counts(r: &Registry) -> (usize, usize) {
        let s = r.lock();
        (s.pending.len(), s.authenticated)
    }

    #[test]
    fn the_oldest_unauthenticated_connection_makes_room() {
        let r = registry(3, 10, 100);
        let conns: Vec<_> = (1..=3)
            .map(|i| r.admit(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        let newest = r.admit(ip("10.0.0.9")).unwrap();
        assert_eq!(counts(&r), (3, 0));
        // The first one was told to close, and releasing it changes nothing more.
        assert!(!r.lock().pending.contains_key(&conns[0].0.id));
        drop(Admitted(conns[0].clone()));
        assert_eq!(counts(&r), (3, 0));
        r.promote(&newest.0);
        assert_eq!(counts(&r), (2, 1));
        drop(Admitted(newest));
        assert_eq!(counts(&r), (2, 0));
    }

    #[test]
    fn one_source_only_evicts_its_own() {
        let r = registry(100, 2, 100);
        let other = r.admit(ip("10.0.0.1")).unwrap();
        let a = r.admit(ip("10.0.0.2")).unwrap();
        let _b = r.admit(ip("10.0.0.2")).unwrap();
        let _c = r.admit(ip("10.0.0.2")).unwrap();
        let s = r.lock();
        assert!(s.pending.contains_key(&other.0.id));
        assert!(!s.pending.contains_key(&a.0.id));
        assert_eq!(s.by_source[&ip("10.0.0.2")].len(), 2);
    }

    #[test]
    fn ipv6_sources_count_by_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            source_of(ip("2001:db8:1:2:aaaa::1")),
            source_of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:2::1")),
            source_of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn authenticated_connections_are_kept_and_fill_the_total() {
        let r = registry(10, 10, 2);
        let a = r.admit(ip("10.0.0.1")).unwrap();
        let b = r.admit(ip("10.0.0.1")).unwrap();
        r.promote(&a.0);
        r.promote(&b.0);
        assert!(r.admit(ip("10.0.0.3")).is_none(), "no room, none to evict");
        drop(Admitted(a));
        assert!(r.admit(ip("10.0.0.3")).is_some());
    }
}
