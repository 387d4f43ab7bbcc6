//! Who may call what: one table from gRPC method to the role it needs ([`access`]), and the tower
//! layer ([`AuthLayer`]) that identifies every caller before any handler runs: by the
//! `spiffe://` identity of its client certificate, or by a bearer token in `authorization`.
//! No credentials: `UNAUTHENTICATED`; the wrong role: `PERMISSION_DENIED`. Refusals are logged
//! and counted (`ledger_auth_refused_total`).
//!
//! The identified [`Caller`] travels in the request's extensions, for the `Raft` service's finer
//! checks (the sender named in a message must be the certificate's node).
//!
//! Under `--insecure` nobody is identified and everything is allowed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use ledger_proto::identity::Role;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use crate::node::Node;
use crate::tls::{identity_of, TokenRole};

/// What a method needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone who completes the TLS handshake: health checks and reflection.
    Public,
    /// The client role, or higher: submits, reads, watches, and the cluster's `Status` (the
    /// client library finds the leader with it).
    Client,
    /// The operator role (or a node, forwarding an operator's call to the leader).
    Operator,
    /// A node of this cluster.
    Node,
}

/// The access `path` (`/package.Service/Method`) needs; `None` for a method of one of our
/// services that is not listed, which is refused (a new RPC must be placed here on purpose).
pub fn access(path: &str) -> Option<Access> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    match service {
        "admission.v1.Admission" => match method {
            "CreateDeal" | "CloseDeal" => Some(Access::Operator),
            "GetDeal" | "ListDeals" | "Submit" | "SubmitBatch" | "GetInvestment"
            | "WatchInvestment" | "ListInvestments" | "GetUser" | "Withdraw" => {
                Some(Access::Client)
            }
            _ => None,
        },
        "admission.v1.Cluster" => match method {
            "Status" => Some(Access::Client),
            "Init" | "AddLearner" | "ChangeMembership" | "TransferLeader" | "TriggerSnapshot"
            | "ListSagas" | "CompensateSaga" | "ExportDeal" | "ArchiveDeal" | "SaveSnapshot"
            | "TraceInvestment" => Some(Access::Operator),
            _ => None,
        },
        "admission.v1.Raft" => match method {
            "AppendEntries" | "Vote" | "InstallSnapshot" | "Propose" | "ProposeBatch" => {
                Some(Access::Node)
            }
            _ => None,
        },
        // Unknown services get UNIMPLEMENTED from the router.
        _ => Some(Access::Public),
    }
}

/// Who is calling, once identified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// `--insecure`: nobody is identified, everything is allowed.
    Unchecked,
    /// A node of this cluster (its certificate).
    Node(u64),
    /// An operator (certificate or token).
    Operator,
    /// A client (certificate or token).
    Client,
    /// No credentials.
    Anonymous,
}

impl Caller {
    fn may(&self, access: Access) -> bool {
        matches!(
            (self, access),
            (Caller::Unchecked | Caller::Node(_), _)
                | (_, Access::Public)
                | (Caller::Operator, Access::Client | Access::Operator)
                | (Caller::Client, Access::Client)
        )
    }
}

/// The node of this cluster a `Raft` request comes from, as its certificate says: `Ok(None)`
/// under `--insecure`, an error for any other caller.
pub fn node_caller<T>(request: &tonic::Request<T>) -> Result<Option<u64>, Status> {
    match request.extensions().get::<Caller>() {
        Some(Caller::Unchecked) => Ok(None),
        Some(Caller::Node(id)) => Ok(Some(*id)),
        _ => Err(Status::permission_denied("only nodes of this cluster")),
    }
}

/// Identifies callers and refuses what their role does not allow.
#[derive(Clone)]
pub struct AuthLayer {
    node: Arc<Node>,
    cert_callers: CertCallers,
}

impl AuthLayer {
    /// Checks calls to `node`.
    pub fn new(node: Arc<Node>) -> AuthLayer {
        AuthLayer {
            node,
            cert_callers: CertCallers::default(),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            node: self.node.clone(),
            cert_callers: self.cert_callers.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the router.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    node: Arc<Node>,
    cert_callers: CertCallers,
}

/// Most certificates whose caller is remembered; beyond it the memo starts over.
const CERT_CALLERS_MAX: usize = 1_024;

/// The caller each client certificate names, worked out once per certificate: parsing the DER
/// on every call cost about 2% of the nodes' CPU under load (docs/performance.md). Keyed by the
/// whole certificate, so a hit is the very same certificate, which the TLS handshake verified.
#[derive(Clone, Default)]
struct CertCallers(Arc<Mutex<HashMap<Box<[u8]>, CertCaller>>>);

/// The caller a certificate names, or why it names none that counts here.
type CertCaller = Result<Caller, String>;

impl CertCallers {
    fn caller(&self, der: &[u8], work_out: impl FnOnce() -> CertCaller) -> CertCaller {
        let known = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(der)
            .cloned();
        if let Some(known) = known {
            return known;
        }
        let caller = work_out();
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CERT_CALLERS_MAX {
            map.clear();
        }
        map.insert(der.into(), caller.clone());
        caller
    }
}

impl<S> Auth<S> {
    /// The caller's identity, or why it has none that counts here.
    fn identify<B>(&self, request: &http::Request<B>) -> Result<Caller, Status> {
        if !self.node.security.is_tls() {
            return Ok(Caller::Unchecked);
        }
        let token = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|value| {
                value
                    .to_str()
                    .ok()
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .and_then(|token| self.node.security.token_role(token.trim()))
                    .ok_or_else(|| Status::unauthenticated("the bearer token is not valid"))
            })
            .transpose()?;
        let certs = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.peer_certs());
        let from_cert = match certs.as_deref().and_then(|certs| certs.first()) {
            None => None,
            Some(der) => Some(
                self.cert_callers
                    .caller(der, || {
                        let identity = identity_of(der)?;
                        if identity.cluster_id != self.node.config.cluster_id {
                            return Err(format!(
                                "the certificate is for {identity}, not for cluster {:?}",
                                self.node.config.cluster_id
                            ));
                        }
                        Ok(match identity.role {
                            Role::Node(id) => Caller::Node(id),
                            Role::Operator(_) => Caller::Operator,
                            Role::Client(_) => Caller::Client,
                        })
                    })
                    .map_err(Status::permission_denied)?,
            ),
        };
        // The stronger of the two credentials counts.
        Ok(match (from_cert, token) {
            (Some(Caller::Node(id)), _) => Caller::Node(id),
            (_, Some(TokenRole::Operator)) | (Some(Caller::Operator), _) => Caller::Operator,
            (_, Some(TokenRole::Client)) | (Some(Caller::Client), _) => Caller::Client,
            _ => Caller::Anonymous,
        })
    }

    fn check<B>(&self, request: &http::Request<B>) -> Result<Caller, Status> {
        let path = request.uri().path();
        let Some(access) = access(path) else {
            return Err(Status::permission_denied(format!(
                "{path} is not open to any role"
            )));
        };
        let caller = self.identify(request)?;
        if caller.may(access) {
            return Ok(caller);
        }
        Err(match caller {
            Caller::Anonymous => Status::unauthenticated(format!(
                "{path} needs credentials: a client certificate from the cluster CA or a bearer \
                 token"
            )),
            _ => Status::permission_denied(format!(
                "{path} needs the {access:?} role; this caller is {caller:?}"
            )),
        })
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<ResBody>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.check(&request) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                // The clone is the one that was not made ready; call the ready one.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(request))
            }
            Err(status) => {
                self.node.auth_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    path = request.uri().path(),
                    code = ?status.code(),
                    reason = status.message(),
                    "refused a call"
                );
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Every method of the contract has its place in the table.
    /// A certificate's caller is worked out once, refusals included, and the memo stays bounded.
    #[test]
    fn a_certificate_is_read_once() {
        let callers = CertCallers::default();
        let reads = std::cell::Cell::new(0);
        let read = |caller: Result<Caller, String>| {
            let reads = &reads;
            move || {
                reads.set(reads.get() + 1);
                caller
            }
        };
        for _ in 0..3 {
            assert_eq!(
                callers.caller(b"operator", read(Ok(Caller::Operator))),
                Ok(Caller::Operator)
            );
            assert_eq!(
                callers.caller(b"stranger", read(Err("another cluster".into()))),
                Err("another cluster".into())
            );
        }
        assert_eq!(reads.get(), 2, "one read per certificate");
        for n in 0..CERT_CALLERS_MAX {
            let _ = callers.caller(format!("client {n}").as_bytes(), read(Ok(Caller::Client)));
        }
        let held = callers.0.lock().unwrap().len();
        assert!(held <= CERT_CALLERS_MAX, "{held}");
        let _ = callers.caller(b"operator", read(Ok(Caller::Operator)));
        assert_eq!(
            reads.get(),
            2 + CERT_CALLERS_MAX + 1,
            "forgotten when the memo started over"
        );
    }

    #[test]
    fn every_method_is_placed() {
        let set = prost_types::FileDescriptorSet::decode(ledger_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut count = 0;
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    let access = access(&path);
                    assert!(
                        matches!(access, Some(a) if a != Access::Public),
                        "{path}: {access:?}"
                    );
                    count += 1;
                }
            }
        }
        assert_eq!(count, 28);
        assert_eq!(access("/admission.v1.Admission/Nope"), None);
        assert_eq!(access("/grpc.health.v1.Health/Check"), Some(Access::Public));
    }

    #[test]
    fn roles_nest() {
        use Access::*;
        for (caller, allowed) in [
            (Caller::Node(1), [true, true, true, true]),
            (Caller::Operator, [true, true, true, false]),
            (Caller::Client, [true, true, false, false]),
            (Caller::Anonymous, [true, false, false, false]),
            (Caller::Unchecked, [true, true, true, true]),
        ] {
            let got = [Public, Client, Operator, Node].map(|access| caller.may(access));
            assert_eq!(got, allowed, "{caller:?}");
        }
    }
}
