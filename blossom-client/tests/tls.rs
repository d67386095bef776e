//! TLS: rustls with ALPN picks HTTP/2 or HTTP/1.1, a test root is trusted, an unknown one is a
//! typed connect error.
//!
//! Each test starts a loopback TLS server with a fresh self-signed certificate for `localhost`,
//! offering the ALPN protocols the test names, and points a client at it through
//! `TcpConnector::with_roots`. Accepted streams are served by the mock server (which counts
//! connections and speaks whichever protocol ALPN chose) or by a tiny recording service.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blossom_client::{BlossomClient, Error, SessionConfig, TcpConnector};
use blossom_mock::{Behavior, MockServer};
use bytes::Bytes;
use futures_util::future::join_all;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

const H2: &[u8] = b"h2";
const H1: &[u8] = b"http/1.1";

/// A loopback TLS server and the root that trusts its certificate.
struct TlsServer {
    port: u16,
    roots: RootCertStore,
}

/// Listens on `127.0.0.1:0` with a new certificate for `localhost`, offers `alpn`, and hands each
/// completed handshake to `serve` (failed handshakes are dropped).
async fn tls_server<F, Fut>(alpn: &[&[u8]], serve: F) -> TlsServer
where
    F: Fn(TlsStream<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();

    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, serve) = (acceptor.clone(), serve.clone());
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await {
                    serve(stream).await;
                }
            });
        }
    });
    TlsServer { port, roots }
}

/// The mock region behind TLS offering `alpn`; each request takes `latency`, so the requests of a
/// concurrent batch overlap.
async fn mock_tls(alpn: &[&[u8]], latency: Duration) -> (MockServer, TlsServer) {
    let mock = MockServer::new(7);
    mock.set_behavior(Behavior::Healthy { base: latency, jitter: Duration::ZERO });
    let serving = mock.clone();
    let server = tls_server(alpn, move |stream| {
        let mock = serving.clone();
        async move { mock.serve_io(stream).await }
    })
    .await;
    (mock, server)
}

/// A client of `https://localhost:{port}` trusting `roots`, with the test key and fast settings,
/// then `change`.
fn client(port: u16, roots: RootCertStore, change: impl FnOnce(&mut SessionConfig)) -> BlossomClient {
    BlossomClient::builder()
        .base_url(format!("https://localhost:{port}"))
        .api_key(common::KEY)
        .connector(TcpConnector::with_roots(roots))
        .session_with(|s| {
            common::fast(s);
            change(s);
        })
        .build()
        .unwrap()
}

/// Sends `n` text generations at once; panics unless all succeed.
async fn burst(client: &BlossomClient, n: usize) {
    let calls = (0..n).map(|i| {
        let client = client.clone();
        async move { client.text().generate(&format!("prompt {i}")).await }
    });
    for result in common::within(Duration::from_secs(10), join_all(calls)).await {
        result.unwrap();
    }
}

#[tokio::test]
async fn alpn_h2_multiplexes_everything_on_one_connection() {
    let (mock, server) = mock_tls(&[H2, H1], Duration::from_millis(100)).await;
    let client = client(server.port, server.roots, |_| {});
    burst(&client, 50).await;
    assert_eq!(mock.stats().connections, 1, "ALPN chose h2, so every request shared one connection");
    assert_eq!(client.stats().connections_created, 1);
    // Later requests keep using it.
    burst(&client, 5).await;
    assert_eq!(mock.stats().connections, 1);
}

#[tokio::test]
async fn alpn_http1_opens_a_connection_per_concurrent_request() {
    let (mock, server) = mock_tls(&[H1], Duration::from_millis(100)).await;
    let client = client(server.port, server.roots, |s| s.async_limit_per_host = 8);
    burst(&client, 8).await;
    assert_eq!(mock.stats().connections, 8, "HTTP/1.1 runs one request per connection");
    assert_eq!(client.stats().connections_created, 8);
    // The idle connections are reused.
    burst(&client, 8).await;
    assert_eq!(mock.stats().connections, 8);
    assert_eq!(mock.stats().generations, 16);
}

#[tokio::test]
async fn http2_off_offers_only_http1_to_an_h2_server() {
    let (mock, server) = mock_tls(&[H2, H1], Duration::from_millis(100)).await;
    let client = client(server.port, server.roots, |s| {
        s.http2 = false;
        s.async_limit_per_host = 8;
    });
    burst(&client, 8).await;
    assert_eq!(mock.stats().connections, 8, "ALPN settled on http/1.1: one request per connection");
    assert_eq!(client.stats().connections_created, 8);
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_connect_error() {
    let (mock, server) = mock_tls(&[H2, H1], Duration::ZERO).await;
    let connectors =
        [("no roots", TcpConnector::with_roots(RootCertStore::empty())), ("webpki roots", TcpConnector::new())];
    for (what, connector) in connectors {
        let client = BlossomClient::builder()
            .base_url(format!("https://localhost:{}", server.port))
            .api_key(common::KEY)
            .connector(connector)
            .session_with(|s| {
                common::fast(s);
                s.retry.max_retries = 0;
            })
            .build()
            .unwrap();
        let err = common::within(Duration::from_secs(5), client.text().generate("hi")).await.unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{what}: {err:?}");
        let chain: Vec<String> = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
            .map(|e| e.to_string())
            .collect();
        let text = format!("{} {err:?}", chain.join(": "));
        assert!(text.contains("certificate"), "{what}: the cause names the certificate: {text}");
        assert!(!text.contains(common::KEY), "{what}: the error never shows the key: {text}");
    }
    assert_eq!(mock.stats().connections, 0, "no handshake completed");
    assert_eq!(mock.stats().requests, 0);
}

/// What the recording server saw of one request.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    version: http::Version,
    authorization: Option<String>,
}

#[tokio::test]
async fn the_api_key_arrives_over_tls_on_either_protocol() {
    for (alpn, version) in [(H2, http::Version::HTTP_2), (H1, http::Version::HTTP_11)] {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let server = tls_server(&[alpn], move |stream| {
            let record = record.clone();
            async move {
                let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let authorization =
                        request.headers().get(http::header::AUTHORIZATION).map(|v| v.to_str().unwrap().to_string());
                    record.lock().unwrap().push(Seen { version: request.version(), authorization });
                    async {
                        let response = http::Response::builder()
                            .header(http::header::CONTENT_TYPE, "text/plain")
                            .body(Full::new(Bytes::from_static(b"ok")))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            }
        })
        .await;
        let client = client(server.port, server.roots, |_| {});
        let text = common::within(Duration::from_secs(5), client.text().generate("hi")).await.unwrap();
        assert_eq!(text, "ok");
        let expected = Seen { version, authorization: Some(format!("Bearer {}", common::KEY)) };
        assert_eq!(*seen.lock().unwrap(), vec![expected]);
    }
}
