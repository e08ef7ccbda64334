//! TLS for MQTT, terminated in the node (`../shared/research/mqtt-auth.md`: rumqttd 0.20's own
//! TLS listener handshakes inside its accept loop with no timeout, so one idle connection
//! stalls every other handshake). Each connection gets its own task and a handshake deadline;
//! once through, its bytes are relayed to the embedded broker on loopback, where logins and
//! the ACL apply as to any other client. Also the node's own client side (`mqtts://`).
//!
//! Crypto: rustls with the `ring` provider, chosen explicitly (no process-wide default).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is unreadable or holds no certificate / key.
    #[error("{what} {path}: {message}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("tls configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The listener could not bind.
    #[error("tls listener {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |message: String| TlsError::Pem {
        what,
        path: path.display().to_string(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("no certificate".into()));
    }
    Ok(certs)
}

/// Server side: certificate chain and key (PEM) for the broker's TLS listener.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certs(cert_file, "tls certificate")?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::Pem {
        what: "tls key",
        path: key_file.display().to_string(),
        message: e.to_string(),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Client side: trust the CA certificates in `ca_file` (PEM).
pub fn client_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(ca_file, "tls ca")? {
        roots.add(cert)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Limits of the TLS front.
#[derive(Debug, Clone, Copy)]
pub struct TlsFrontConfig {
    /// Where TLS clients connect.
    pub listen: SocketAddr,
    /// The embedded broker's plain listener (loopback).
    pub broker: SocketAddr,
    /// A handshake not finished by then is dropped.
    pub handshake_timeout: Duration,
    /// Most simultaneous TLS connections.
    pub max_connections: usize,
}

/// Binds the TLS listener and serves it on the current tokio runtime until the process ends.
pub async fn serve(config: TlsFrontConfig, tls: Arc<rustls::ServerConfig>) -> Result<(), TlsError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| TlsError::Bind {
            addr: config.listen,
            source,
        })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(target: "node::broker", error = %e, "tls accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(target: "node::broker", %peer, "tls connection refused: at the connection limit");
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let tls = match tokio::time::timeout(config.handshake_timeout, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(target: "node::broker", %peer, error = %e, "tls handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(target: "node::broker", %peer, "tls handshake timed out");
                        return;
                    }
                };
                let Ok(plain) = tokio::net::TcpStream::connect(config.broker).await else {
                    tracing::warn!(target: "node::broker", "embedded broker unreachable from the tls front");
                    return;
                };
                let (mut a, mut b) = (tls, plain);
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            });
        }
    });
    Ok(())
}
