//! Transport security: the node's TLS configuration (server side for everyone who calls it,
//! client side for its own calls to peers), the identities certificates speak for
//! ([`ledger_proto::identity`]), and the bearer tokens of operators and clients.
//!
//! Loaded once at start-up ([`Security::load`]); a node whose own certificate does not name it
//! (`spiffe://<cluster-id>/node/<id>`) refuses to start.

use std::path::Path;

use ledger_proto::identity::{Identity, Role};
use subtle::ConstantTimeEq;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, ServerTlsConfig};

use crate::config::{SecurityFiles, TlsFiles};
use crate::error::StartError;

/// Shortest token accepted from a token file: 32 characters (`ledgerctl certs token` writes 43).
pub const TOKEN_LEN_MIN: usize = 32;

/// What a bearer token grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRole {
    /// The operators' token.
    Operator,
    /// The clients' token.
    Client,
}

/// The node's TLS settings and tokens.
pub struct Security {
    tls: Option<Tls>,
    /// BLAKE3 hashes of the tokens: comparing fixed-size hashes in constant time leaks neither
    /// the token's bytes nor its length through timing.
    admin_token: Option<[u8; 32]>,
    client_token: Option<[u8; 32]>,
}

struct Tls {
    server: ServerTlsConfig,
    client: ClientTlsConfig,
}

impl Security {
    /// `--insecure`: plaintext, no identities.
    pub fn insecure() -> Security {
        Security {
            tls: None,
            admin_token: None,
            client_token: None,
        }
    }

    /// Reads and checks the files named by the flags: the certificate must be a PEM certificate
    /// naming this node of this cluster, the key must be PEM, the token files must hold a token
    /// of at least [`TOKEN_LEN_MIN`] characters.
    pub fn load(
        files: &SecurityFiles,
        cluster_id: &str,
        node_id: u64,
    ) -> Result<Security, StartError> {
        let tls = match &files.tls {
            None => None,
            Some(tls) => Some(load_tls(tls, cluster_id, node_id)?),
        };
        Ok(Security {
            tls,
            admin_token: load_token(files.admin_token_file.as_deref(), "--admin-token-file")?,
            client_token: load_token(files.client_token_file.as_deref(), "--client-token-file")?,
        })
    }

    /// Whether connections are TLS (and identities checked).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The server's TLS acceptor settings, if TLS is on.
    pub fn server_tls(&self) -> Option<ServerTlsConfig> {
        self.tls.as_ref().map(|tls| tls.server.clone())
    }

    /// An endpoint for this node's own calls to `addr` (a peer): `https://` with this node's
    /// certificate when TLS is on, `http://` otherwise. The peer's certificate must be signed by
    /// the cluster CA and name `addr`'s host.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        let scheme = if self.is_tls() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("peer address {addr:?}: {e}"))?;
        match &self.tls {
            Some(tls) => endpoint
                .tls_config(tls.client.clone())
                .map_err(|e| format!("TLS for {addr:?}: {e}")),
            None => Ok(endpoint),
        }
    }

    /// The role a bearer token grants, if it is one of the configured tokens.
    pub fn token_role(&self, token: &str) -> Option<TokenRole> {
        let hash = *blake3::hash(token.as_bytes()).as_bytes();
        let matches = |expected: &Option<[u8; 32]>| {
            expected.is_some_and(|expected| bool::from(expected.ct_eq(&hash)))
        };
        if matches(&self.admin_token) {
            Some(TokenRole::Operator)
        } else if matches(&self.client_token) {
            Some(TokenRole::Client)
        } else {
            None
        }
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, StartError> {
    std::fs::read(path)
        .map_err(|error| StartError::Config(format!("{what} {}: {error}", path.display())))
}

fn load_tls(files: &TlsFiles, cluster_id: &str, node_id: u64) -> Result<Tls, StartError> {
    let cert = read(&files.cert, "--tls-cert")?;
    let key = read(&files.key, "--tls-key")?;
    let ca = read(&files.ca, "--tls-ca")?;
    let bad = |msg: String| StartError::Config(msg);
    let own = pem_identity(&cert).map_err(|e| bad(format!("--tls-cert: {e}")))?;
    let expected = Identity::node(cluster_id, node_id);
    if own != expected {
        return Err(bad(format!(
            "--tls-cert {} is for {own}, but this is {expected} (--id, --cluster-id)",
            files.cert.display()
        )));
    }
    pem_identity(&ca).err().ok_or_else(|| {
        bad("--tls-ca is a certificate issued for an identity, not the cluster CA".into())
    })?;
    if !String::from_utf8_lossy(&key).contains("PRIVATE KEY-----") {
        return Err(bad(format!(
            "--tls-key {} holds no PEM private key",
            files.key.display()
        )));
    }
    let identity = tonic::transport::Identity::from_pem(&cert, &key);
    let ca = Certificate::from_pem(&ca);
    Ok(Tls {
        // Clients may come without a certificate and present a token instead; a certificate
        // that is presented must chain to the CA, or the handshake fails.
        server: ServerTlsConfig::new()
            .identity(identity.clone())
            .client_ca_root(ca.clone())
            .client_auth_optional(true),
        client: ClientTlsConfig::new().identity(identity).ca_certificate(ca),
    })
}

fn load_token(path: Option<&Path>, flag: &str) -> Result<Option<[u8; 32]>, StartError> {
    let Some(path) = path else { return Ok(None) };
    let text = read(path, flag)?;
    let token = String::from_utf8(text)
        .map_err(|_| StartError::Config(format!("{flag} {}: not UTF-8", path.display())))?;
    let token = token.trim();
    if token.len() < TOKEN_LEN_MIN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(StartError::Config(format!(
            "{flag} {}: a token is one line of at least {TOKEN_LEN_MIN} characters without \
             spaces (`ledgerctl certs token FILE` writes one)",
            path.display()
        )));
    }
    Ok(Some(*blake3::hash(token.as_bytes()).as_bytes()))
}

/// The identity named by the first certificate of a PEM file.
fn pem_identity(pem: &[u8]) -> Result<Identity, String> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    identity_of(&pem.contents)
}

/// The identity a DER certificate speaks for: its one `spiffe://` URI subject alternative name.
/// A certificate with none, or with several, speaks for no one.
pub fn identity_of(der: &[u8]) -> Result<Identity, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    let names = cert
        .subject_alternative_name()
        .map_err(|e| format!("unreadable subject alternative names: {e}"))?;
    let mut uris = names.into_iter().flat_map(|names| {
        names
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
                    Some(*uri)
                }
                _ => None,
            })
    });
    match (uris.next(), uris.next()) {
        (Some(uri), None) => Identity::parse_uri(uri).map_err(|e| e.to_string()),
        (None, _) => Err("the certificate names no spiffe:// identity".into()),
        (Some(_), Some(_)) => Err("the certificate names several identities".into()),
    }
}

/// Whether `identity` is a node (and which) of `cluster_id`.
pub fn node_of(identity: &Identity, cluster_id: &str) -> Option<u64> {
    match identity.role {
        Role::Node(id) if identity.cluster_id == cluster_id => Some(id),
        _ => None,
    }
}
