//! The cluster's certificates, made with `rcgen` (`ledgerctl certs init|issue|token`): one CA
//! per cluster, and certificates it signs for nodes, operators and clients, each naming its
//! `spiffe://<cluster-id>/<role>/<name>` identity ([`ledger_proto::identity`]).
//!
//! A folder of certificates holds `ca.pem`, `ca-key.pem`, `cluster-id`, and one
//! `<role>-<name>.pem` / `<role>-<name>-key.pem` pair per identity. Keys are written readable by
//! their owner only.

use std::io::Write;
use std::path::{Path, PathBuf};

use ledger_proto::identity::{is_valid_name, Identity, Role};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// rcgen refused.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
}

/// How long issued certificates are valid, in days (the CA: ten times this).
pub const VALID_DAYS: i64 = 365;

/// The paths of one identity's certificate and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// The certificate files of `identity` in `dir`.
pub fn paths(dir: &Path, role: &Role) -> Issued {
    let stem = match role {
        Role::Node(id) => format!("node-{id}"),
        Role::Operator(name) => format!("operator-{name}"),
        Role::Client(name) => format!("client-{name}"),
    };
    Issued {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}-key.pem")),
    }
}

/// The CA certificate's path in `dir`.
pub fn ca_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), CertsError> {
    let io = |error| CertsError::Io {
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
    let _ = private;
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

fn read(path: &Path) -> Result<String, CertsError> {
    std::fs::read_to_string(path).map_err(|error| CertsError::Io {
        path: path.to_owned(),
        error,
    })
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back, so that a peer whose clock is a little behind accepts it at once.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

/// Creates the cluster CA for `cluster_id` in `dir` (created if missing). Refuses to overwrite
/// an existing CA: every certificate it signed would stop working.
pub fn init(dir: &Path, cluster_id: &str) -> Result<PathBuf, CertsError> {
    if !is_valid_name(cluster_id) {
        return Err(CertsError::Invalid(
            "the cluster id is 1 to 64 of A-Z a-z 0-9 . _ -".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|error| CertsError::Io {
        path: dir.to_owned(),
        error,
    })?;
    let ca = ca_path(dir);
    if ca.exists() {
        return Err(CertsError::Invalid(format!(
            "{} exists: a new CA would invalidate every certificate the old one signed",
            ca.display()
        )));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        format!("admission-ledger CA {cluster_id}"),
    );
    params.distinguished_name = name;
    validity(&mut params, VALID_DAYS * 10);
    let cert = params.self_signed(&key)?;
    write(&dir.join("ca-key.pem"), &key.serialize_pem(), true)?;
    write(&dir.join("cluster-id"), &format!("{cluster_id}\n"), false)?;
    write(&ca, &cert.pem(), false)?;
    Ok(ca)
}

/// The cluster id of the CA in `dir`.
pub fn cluster_id(dir: &Path) -> Result<String, CertsError> {
    Ok(read(&dir.join("cluster-id"))?.trim().to_owned())
}

/// Issues a certificate for `role` with the CA in `dir`. `hosts` are the DNS names and IP
/// addresses a node is reached at (its certificate must name the host in every address peers
/// and clients use); they do not matter for operators and clients.
pub fn issue(dir: &Path, role: Role, hosts: &[String]) -> Result<Issued, CertsError> {
    let cluster_id = cluster_id(dir)?;
    let identity = Identity { cluster_id, role };
    let uri = identity.to_uri();
    Identity::parse_uri(&uri).map_err(|e| CertsError::Invalid(e.to_string()))?;
    let ca_key = KeyPair::from_pem(&read(&dir.join("ca-key.pem"))?)?;
    let issuer = Issuer::from_ca_cert_pem(&read(&ca_path(dir))?, ca_key)?;

    let mut params = CertificateParams::new(hosts.to_vec())?;
    params
        .subject_alt_names
        .push(SanType::URI(uri.as_str().try_into()?));
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, uri.clone());
    params.distinguished_name = name;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match identity.role {
        // A node both serves and calls its peers.
        Role::Node(_) => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, VALID_DAYS);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let issued = paths(dir, &identity.role);
    write(&issued.key, &key.serialize_pem(), true)?;
    write(&issued.cert, &cert.pem(), false)?;
    Ok(issued)
}

/// The hosts a node on this machine is reached at by default.
pub fn local_hosts() -> Vec<String> {
    vec!["127.0.0.1".into(), "::1".into(), "localhost".into()]
}

/// Writes a new random bearer token (43 URL-safe characters, 256 bits) to `path`, readable by
/// its owner only.
pub fn token(path: &Path) -> Result<(), CertsError> {
    use rand::RngCore;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 43];
    rand::rng().fill_bytes(&mut bytes);
    // 64 symbols: each byte's low 6 bits pick one, uniformly.
    let token: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(b & 63)] as char)
        .collect();
    write(path, &format!("{token}\n"), true)
}
