//! The client and the mock regions over turmoil's simulated network.

use blossom_client::{Connect, ConnectFuture, Connection, Target};
use blossom_mock::MockServer;

/// Dials over turmoil (plain HTTP; the simulation has no TLS).
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilConnector;

impl Connect for TurmoilConnector {
    fn connect(&self, target: &Target) -> ConnectFuture {
        let address = (target.host.clone(), target.port);
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(address).await?;
            Ok(Connection { io: Box::new(stream), negotiated_h2: false })
        })
    }
}

/// Serves a mock region on port 80 of the current turmoil host, until the host is crashed.
pub async fn serve_region(server: MockServer) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind("0.0.0.0:80").await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let server = server.clone();
        tokio::spawn(async move { server.serve_io(stream).await });
    }
}
