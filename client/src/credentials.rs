//! How a client proves who it is: TLS with the cluster CA (and a client or operator certificate),
//! and/or a bearer token. [`Credentials`] makes every endpoint and adds the token to every call.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::ClientError;

/// TLS settings and a token, shared by every connection of a client.
#[derive(Clone, Default)]
pub struct Credentials {
    tls: Option<ClientTlsConfig>,
    token: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token itself.
        f.debug_struct("Credentials")
            .field("tls", &self.tls.is_some())
            .field("token", &self.token.is_some())
            .finish()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| ClientError::Config(format!("{what} {}: {e}", path.display())))
}

impl Credentials {
    /// Plaintext and no token: for a cluster run with `--insecure`.
    pub fn insecure() -> Credentials {
        Credentials::default()
    }

    /// TLS trusting the cluster CA in `ca` (PEM), presenting `cert` and `key` if given.
    pub fn tls(
        ca: &Path,
        cert_and_key: Option<(&Path, &Path)>,
    ) -> Result<Credentials, ClientError> {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "CA")?));
        if let Some((cert, key)) = cert_and_key {
            tls = tls.identity(Identity::from_pem(
                read(cert, "certificate")?,
                read(key, "key")?,
            ));
        }
        Ok(Credentials {
            tls: Some(tls),
            token: None,
        })
    }

    /// The same, sending `token` as `authorization: Bearer <token>` on every call.
    pub fn with_token(self, token: &str) -> Result<Credentials, ClientError> {
        let token = token.trim();
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::Config("the token is not printable ASCII".into()))?;
        if token.is_empty() {
            return Err(ClientError::Config("the token is empty".into()));
        }
        Ok(Credentials {
            token: Some(value),
            ..self
        })
    }

    /// The same, with the token read from the first line of `path`.
    pub fn with_token_file(self, path: &Path) -> Result<Credentials, ClientError> {
        let text = String::from_utf8(read(path, "token file")?)
            .map_err(|_| ClientError::Config(format!("{}: not UTF-8", path.display())))?;
        self.with_token(text.lines().next().unwrap_or(""))
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// An endpoint for `addr` (`host:port`; a scheme given in it is replaced by the one these
    /// credentials need).
    pub fn endpoint(&self, addr: &str, connect_timeout: Duration) -> Result<Endpoint, ClientError> {
        let host_port = addr
            .strip_prefix("http://")
            .or_else(|| addr.strip_prefix("https://"))
            .unwrap_or(addr);
        let scheme = if self.is_tls() { "https" } else { "http" };
        let bad =
            |e: tonic::transport::Error| ClientError::Config(format!("endpoint {addr:?}: {e}"));
        let endpoint = Endpoint::from_shared(format!("{scheme}://{host_port}"))
            .map_err(bad)?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        match &self.tls {
            Some(tls) => endpoint.tls_config(tls.clone()).map_err(bad),
            None => Ok(endpoint),
        }
    }
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}
