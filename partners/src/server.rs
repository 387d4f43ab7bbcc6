//! Shared state ([`Partners`]), [`serve`] (and [`serve_partners_tls`] for
//! HTTPS), and an in-process test helper ([`SpawnedPartners`]).

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::serve::{Listener, ListenerExt};
use axum::Router;
use rustls::ServerConfig;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::books::{AuditLog, Books, PaymentView};
use crate::faults::{FaultConfig, FaultConfigError, FaultState, Plan, Service};
use crate::tls::{self, TlsListener};

/// Handle to the partners' shared state: books, live fault config, and the
/// shutdown flag. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Partners {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    books: Mutex<Books>,
    faults: Mutex<FaultState>,
    /// Flipped to `true` once shutdown starts, so long sleeps (latency,
    /// unknown-outcome delays) end at once instead of holding up the
    /// graceful shutdown for up to two minutes.
    stopping: watch::Sender<bool>,
    /// Number of audit events, so tests can wait for an effect to land
    /// instead of polling.
    recorded: watch::Sender<usize>,
    /// TLS handshakes that failed (HTTPS only).
    tls_failures: watch::Sender<TlsFailures>,
    /// The latest requests that carried a W3C `traceparent` header, oldest first.
    traced: Mutex<std::collections::VecDeque<TracedRequest>>,
}

/// How many traced requests [`Partners::traced`] keeps (the oldest go first).
pub const TRACED_KEPT: usize = 10_000;

/// A request that carried a `traceparent` header, as `GET /v1/traces` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TracedRequest {
    /// `POST`, …
    pub method: String,
    /// The request's path (`/v1/payments`, …).
    pub path: String,
    /// The header's value, as received.
    pub traceparent: String,
}

/// TLS handshakes that failed since the server started: a client that does
/// not trust the certificate, speaks plaintext, or stalls past the
/// handshake timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFailures {
    /// How many.
    pub count: u64,
    /// The latest one: `PEER: ERROR`.
    pub last: Option<String>,
}

/// Poisoning only means another request panicked mid-update; the books have
/// no multi-step invariants that a panic could half-apply, so keep serving.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Partners {
    /// Empty books with a validated fault config.
    pub fn new(config: FaultConfig) -> Result<Self, FaultConfigError> {
        Ok(Self {
            inner: Arc::new(Inner {
                books: Mutex::new(Books::new()),
                faults: Mutex::new(FaultState::new(config)?),
                stopping: watch::Sender::new(false),
                recorded: watch::Sender::new(0),
                tls_failures: watch::Sender::new(TlsFailures::default()),
                traced: Mutex::new(std::collections::VecDeque::new()),
            }),
        })
    }

    /// The axum router serving this state.
    pub fn router(&self) -> Router {
        crate::http::router(self.clone())
    }

    /// The live fault config.
    pub fn faults(&self) -> FaultConfig {
        lock(&self.inner.faults).config().clone()
    }

    /// Replaces the fault config and reseeds the dice (from `config.seed`,
    /// or OS entropy).
    pub fn set_faults(&self, config: FaultConfig) -> Result<(), FaultConfigError> {
        lock(&self.inner.faults).replace(config, true)
    }

    /// Applies a JSON merge patch to the live config (atomically) and returns
    /// the result. The dice are reseeded only if the patch mentions `seed`.
    pub fn patch_faults(&self, patch: Value) -> Result<FaultConfig, FaultConfigError> {
        let reseed = patch.get("seed").is_some();
        let mut faults = lock(&self.inner.faults);
        let config = faults.config().patched(patch)?;
        faults.replace(config.clone(), reseed)?;
        Ok(config)
    }

    /// A copy of the audit trail.
    pub fn audit(&self) -> AuditLog {
        lock(&self.inner.books).audit()
    }

    /// Notes a request that carried a `traceparent` header (the last [`TRACED_KEPT`] are kept).
    pub fn note_traced(&self, method: &str, path: &str, traceparent: &str) {
        let mut traced = lock(&self.inner.traced);
        if traced.len() == TRACED_KEPT {
            traced.pop_front();
        }
        traced.push_back(TracedRequest {
            method: method.to_owned(),
            path: path.chars().take(256).collect(),
            traceparent: traceparent.chars().take(256).collect(),
        });
    }

    /// The latest requests that carried a `traceparent` header, oldest first.
    pub fn traced(&self) -> Vec<TracedRequest> {
        lock(&self.inner.traced).iter().cloned().collect()
    }

    /// Current state of a payment key.
    pub fn payment(&self, key: &str) -> Option<PaymentView> {
        lock(&self.inner.books).payment(key)
    }

    /// Makes pending sleeps end early; called by [`serve`] when its shutdown
    /// future completes.
    pub fn begin_shutdown(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// Rolls every fault decision for one request to `service` (the first thing a route does;
    /// in-process callers do the same before [`Partners::answer`]).
    pub fn plan(&self, service: Service, is_charge: bool) -> Plan {
        lock(&self.inner.faults).plan(service, is_charge)
    }

    pub(crate) fn with_books<R>(&self, f: impl FnOnce(&mut Books) -> R) -> R {
        let mut books = lock(&self.inner.books);
        let result = f(&mut books);
        let len = books.events().len();
        // Under the books lock, so the counter never goes backwards.
        self.inner.recorded.send_if_modified(|recorded| {
            let changed = *recorded != len;
            *recorded = len;
            changed
        });
        result
    }

    /// Waits until the audit holds at least `len` events, at most `timeout`;
    /// `true` if it does.
    pub async fn wait_for_audit_len(&self, len: usize, timeout: Duration) -> bool {
        let mut recorded = self.inner.recorded.subscribe();
        tokio::time::timeout(timeout, recorded.wait_for(|n| *n >= len))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The failed TLS handshakes so far.
    pub fn tls_failures(&self) -> TlsFailures {
        self.inner.tls_failures.borrow().clone()
    }

    /// Waits until at least `count` TLS handshakes have failed, at most
    /// `timeout`; the failures then, or `None` on timeout.
    pub async fn wait_for_tls_failures(
        &self,
        count: u64,
        timeout: Duration,
    ) -> Option<TlsFailures> {
        let mut failures = self.inner.tls_failures.subscribe();
        let waited = tokio::time::timeout(timeout, failures.wait_for(|f| f.count >= count)).await;
        match waited {
            Ok(Ok(failures)) => Some(failures.clone()),
            _ => None,
        }
    }

    pub(crate) fn record_tls_failure(&self, error: String) {
        self.inner.tls_failures.send_modify(|failures| {
            failures.count += 1;
            failures.last = Some(error);
        });
    }

    /// Sleeps for `duration` unless shutdown starts first; `true` if the
    /// full sleep happened.
    pub(crate) async fn pause(&self, duration: Duration) -> bool {
        let mut stopping = self.inner.stopping.subscribe();
        if *stopping.borrow_and_update() {
            return false;
        }
        if duration.is_zero() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            _ = stopping.wait_for(|stopping| *stopping) => false,
        }
    }
}

/// Serves the partners on `listener` until `shutdown` completes, then stops
/// gracefully (in-flight delayed replies are cut short).
pub async fn serve(
    listener: TcpListener,
    config: FaultConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let partners =
        Partners::new(config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    serve_partners(listener, partners, shutdown).await
}

/// Like [`serve`], over existing state (so a caller can keep a handle).
pub async fn serve_partners(
    listener: TcpListener,
    partners: Partners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_on(without_nagle(listener), partners, shutdown).await
}

/// `listener`, with Nagle's algorithm off on every connection it accepts ([`no_delay`]).
fn without_nagle(listener: TcpListener) -> impl Listener<Io = TcpStream, Addr = SocketAddr> {
    listener.tap_io(|tcp| no_delay(tcp))
}

/// Turns Nagle's algorithm off on an accepted connection: an HTTP/2 reply leaves in several
/// small writes, and Nagle would hold each one behind the client's delayed ACK (up to 40 ms on
/// Linux). A socket that refuses is served as it is.
pub(crate) fn no_delay(tcp: &TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY not set");
    }
}

/// Like [`serve_partners`], over HTTPS with `tls` (see [`tls::server_config`]):
/// each connection's handshake is done (within [`tls::HANDSHAKE_TIMEOUT`])
/// before it is served; a failed one is logged, counted
/// ([`Partners::tls_failures`]) and dropped.
pub async fn serve_partners_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    partners: Partners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = TlsListener::new(listener, tls, partners.clone());
    serve_on(listener, partners, shutdown).await
}

async fn serve_on<L>(
    listener: L,
    partners: Partners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let app = partners.router();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            partners.begin_shutdown();
        })
        .await
}

/// A partners server running on a task of the current tokio runtime, bound
/// to `127.0.0.1:0`, over HTTP ([`SpawnedPartners::start`]) or HTTPS
/// ([`SpawnedPartners::start_tls`]). Dropping it starts shutdown;
/// [`SpawnedPartners::shutdown`] also waits for it.
#[derive(Debug)]
pub struct SpawnedPartners {
    addr: SocketAddr,
    /// The CA's certificate, when serving HTTPS.
    ca: Option<PathBuf>,
    partners: Partners,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl SpawnedPartners {
    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(config: FaultConfig) -> io::Result<Self> {
        let partners =
            Partners::new(config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_partners(listener, partners.clone(), async move {
            // A dropped sender counts as a stop request too.
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            ca: None,
            partners,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Generates a throwaway CA and a server certificate in `dir`
    /// ([`tls::generate`]: `partners-ca.pem`, `partners.pem`,
    /// `partners-key.pem`), binds `127.0.0.1:0` and serves HTTPS with them.
    /// Clients trust [`SpawnedPartners::ca_path`].
    pub async fn start_tls(config: FaultConfig, dir: &Path) -> io::Result<Self> {
        let partners =
            Partners::new(config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let files = tls::generate(dir)?;
        let tls = tls::server_config(&files.cert, &files.key)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_partners_tls(
            listener,
            tls,
            partners.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            addr,
            ca: Some(files.ca),
            partners,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` when serving
    /// HTTPS; no trailing slash.
    pub fn base_url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA certificate (PEM) that clients must trust, when serving HTTPS.
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// Direct handle to the state (audit, faults) without HTTP.
    pub fn partners(&self) -> &Partners {
        &self.partners
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for SpawnedPartners {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = without_nagle(tcp);
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .unwrap();
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is off");
    }
}
