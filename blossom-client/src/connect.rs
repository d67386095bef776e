//! Opening byte streams: TCP with nodelay, TLS by rustls with ALPN, or anything injected.
//!
//! The pool asks a [`Connect`] for a stream to a [`Target`]; the default [`TcpConnector`] does
//! TCP + rustls (webpki roots). The simulation injects one that dials over turmoil; tests may
//! inject one that fails on purpose.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream the client can speak HTTP over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `true` for https (TLS), `false` for plain http.
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Offer HTTP/2 in ALPN (TLS only).
    pub offer_h2: bool,
}

/// An opened stream and what it negotiated.
pub struct Connection {
    /// The stream.
    pub io: Box<dyn Io>,
    /// ALPN chose `h2`.
    pub negotiated_h2: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("negotiated_h2", &self.negotiated_h2).finish_non_exhaustive()
    }
}

/// The future a connector returns.
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<Connection>> + Send>>;

/// Opens streams. Implement it to run the client over another network (turmoil, a proxy).
pub trait Connect: Send + Sync + 'static {
    /// Opens a stream to `target`. The client applies the connect timeout around this call.
    fn connect(&self, target: &Target) -> ConnectFuture;
}

/// TCP (nodelay) and, for https, rustls with the webpki roots.
#[derive(Clone)]
pub struct TcpConnector {
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    tls_h1: Arc<tokio_rustls::rustls::ClientConfig>,
}

impl std::fmt::Debug for TcpConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TcpConnector")
    }
}

impl Default for TcpConnector {
    fn default() -> Self {
        TcpConnector::new()
    }
}

impl TcpConnector {
    /// A connector trusting the webpki root certificates.
    pub fn new() -> Self {
        let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        TcpConnector::with_roots(roots)
    }

    /// A connector trusting `roots` only (e.g. a test CA).
    pub fn with_roots(roots: rustls::RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let build = |alpn: Vec<Vec<u8>>| {
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = alpn;
            Arc::new(config)
        };
        TcpConnector {
            tls: build(vec![b"h2".to_vec(), b"http/1.1".to_vec()]),
            tls_h1: build(vec![b"http/1.1".to_vec()]),
        }
    }
}

impl Connect for TcpConnector {
    fn connect(&self, target: &Target) -> ConnectFuture {
        let target = target.clone();
        let tls = if target.offer_h2 { self.tls.clone() } else { self.tls_h1.clone() };
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await?;
            tcp.set_nodelay(true)?;
            if !target.tls {
                return Ok(Connection { io: Box::new(tcp), negotiated_h2: false });
            }
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
            let negotiated_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok(Connection { io: Box::new(stream), negotiated_h2 })
        })
    }
}
