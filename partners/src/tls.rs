//! HTTPS for the simulator: a rustls server config (ring provider only) from PEM files,
//! throwaway certificates made with `rcgen` ([`generate`]), and [`TlsListener`], an
//! [`axum::serve::Listener`] that performs each TLS handshake before axum sees the connection.
//!
//! Handshakes run concurrently (a slow client does not hold up the others), each bounded by
//! [`HANDSHAKE_TIMEOUT`]; one that fails or times out is logged, counted
//! ([`Partners::tls_failures`]) and dropped, and the server keeps serving.

use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::server::Partners;

/// Longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most handshakes in progress at once; beyond it, new connections wait in the kernel's backlog.
const HANDSHAKES_MAX: usize = 1_024;

/// How long generated certificates are valid, in days.
const VALID_DAYS: i64 = 365;

/// The hosts a generated server certificate names.
pub const GENERATED_HOSTS: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rcgen refused to make a certificate.
    #[error("generating certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("TLS config: {0}")]
    Rustls(#[from] rustls::Error),
}

impl From<TlsError> for io::Error {
    fn from(error: TlsError) -> Self {
        let kind = match &error {
            TlsError::Io { error, .. } => error.kind(),
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, error.to_string())
    }
}

/// The files [`generate`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedCerts {
    /// The throwaway CA's certificate (PEM): what clients trust (`--partners-ca`).
    pub ca: PathBuf,
    /// The server certificate (PEM), signed by the CA, for [`GENERATED_HOSTS`].
    pub cert: PathBuf,
    /// The server certificate's private key (PEM), readable by its owner only.
    pub key: PathBuf,
}

impl GeneratedCerts {
    /// The paths [`generate`] uses in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("partners-ca.pem"),
            cert: dir.join("partners.pem"),
            key: dir.join("partners-key.pem"),
        }
    }
}

/// Makes a throwaway CA and a server certificate it signs for 127.0.0.1, ::1 and localhost, and
/// writes them to `dir` (created if missing; existing files are replaced): `partners-ca.pem`,
/// `partners.pem`, `partners-key.pem` (mode 0600). The CA's key is never written: nothing else
/// can be signed with it.
pub fn generate(dir: &Path) -> Result<GeneratedCerts, TlsError> {
    std::fs::create_dir_all(dir).map_err(|error| TlsError::Io {
        path: dir.to_owned(),
        error,
    })?;
    let files = GeneratedCerts::in_dir(dir);

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut name = DistinguishedName::new();
    // A name of its own, so that a client trusting several throwaway CAs finds the right one.
    let serial = uuid::Uuid::new_v4().simple().to_string();
    name.push(
        DnType::CommonName,
        format!("ledger-partners throwaway CA {}", &serial[..12]),
    );
    ca_params.distinguished_name = name;
    validity(&mut ca_params);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let hosts: Vec<String> = GENERATED_HOSTS.iter().map(|h| (*h).to_owned()).collect();
    let mut params = CertificateParams::new(hosts)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "ledger-partners");
    params.distinguished_name = name;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    // The key first, and the CA last: a script that waits for the CA finds all three.
    write(&files.key, &key.serialize_pem(), true)?;
    write(&files.cert, &cert.pem(), false)?;
    write(&files.ca, &ca_cert.pem(), false)?;
    Ok(files)
}

fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back, so that a client whose clock is a little behind accepts it at once.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(VALID_DAYS);
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let io = |error| TlsError::Io {
        path: path.to_owned(),
        error,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(io)?;
    #[cfg(unix)]
    if private {
        // `mode` applies to new files only; an older file keeps its mode unless set here.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    let _ = private;
    let mut file = file;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// A server config serving the certificate chain in `cert` (PEM, leaf first) with the key in
/// `key` (PEM: PKCS#8, PKCS#1 or SEC1), on the ring provider, offering HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let pem_error = |path: &Path, error: rustls::pki_types::pem::Error| match error {
        rustls::pki_types::pem::Error::Io(error) => TlsError::Io {
            path: path.to_owned(),
            error,
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            message: other.to_string(),
        },
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.to_owned(),
            message: "no CERTIFICATE in this PEM file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Pem {
            path: key.to_owned(),
            message: "no private key in this PEM file".into(),
        },
        other => pem_error(key, other),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // axum serves HTTP/1.1 only (its http2 feature is off).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

type Handshake = Option<(TlsStream<TcpStream>, SocketAddr)>;

/// A TCP listener whose connections are TLS, handshake done, for [`axum::serve`].
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Handshake>,
    partners: Partners,
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("tcp", &self.tcp)
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Serves TLS with `config` on `tcp`; failed handshakes are counted in `partners`.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>, partners: Partners) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
            partners,
        }
    }

    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        crate::server::no_delay(&stream);
        let acceptor = self.acceptor.clone();
        let partners = self.partners.clone();
        self.handshakes.spawn(async move {
            let error = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            {
                Ok(Ok(tls)) => return Some((tls, peer)),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
            };
            tracing::warn!(%peer, %error, "TLS handshake failed; connection dropped");
            partners.record_tls_failure(format!("{peer}: {error}"));
            None
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    // Cancel safe (axum drops this future on shutdown): the handshakes in progress live in
    // `self`, and both `TcpListener::accept` and `JoinSet::join_next` are cancel safe.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let room = self.handshakes.len() < HANDSHAKES_MAX;
            tokio::select! {
                accepted = self.tcp.accept(), if room => match accepted {
                    Ok((stream, peer)) => self.start_handshake(stream, peer),
                    Err(error) => accept_failed(error).await,
                },
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// As axum's own TCP listener: a connection reset before `accept` is nobody's problem; anything
/// else (out of file descriptors) is logged, then the loop pauses a second.
async fn accept_failed(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_load_and_the_key_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let files = generate(&dir).unwrap();
        assert_eq!(files, GeneratedCerts::in_dir(&dir));
        server_config(&files.cert, &files.key).unwrap();
        let ca = std::fs::read_to_string(&files.ca).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        // A second run replaces the files.
        generate(&dir).unwrap();
        assert_ne!(std::fs::read_to_string(&files.ca).unwrap(), ca);
    }

    #[test]
    fn missing_or_empty_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.join("missing.pem");
        let err = server_config(&missing, &empty).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let err = server_config(&empty, &empty).unwrap_err();
        assert!(
            err.to_string().contains("empty.pem") && err.to_string().contains("no CERTIFICATE"),
            "{err}"
        );
    }
}
