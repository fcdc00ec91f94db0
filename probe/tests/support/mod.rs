//! Fake services for network check tests: an axum app served on `127.0.0.1:0` over plain
//! HTTP or TLS (certificates from `postflight_probe::testkit::pki`), and an address
//! nobody listens on.

#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::serve::{Listener, ListenerExt};
use postflight_probe::testkit::pki::ServerIdentity;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A running fake service.
pub struct Service {
    /// Where it listens.
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
}

impl Service {
    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `https://localhost:PORT{path}` (the test certificates name `localhost`).
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Serve `app` over plain HTTP on a fresh local port, in the background.
pub async fn serve(app: Router) -> Service {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let listener = listener.tap_io(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Service { addr, connections }
}

/// Serve `app` over TLS with `identity` on a fresh local port, in the background.
pub async fn serve_tls(app: Router, identity: ServerIdentity) -> Service {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(identity.chain, identity.key)
            .unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    Service {
        addr,
        connections: Arc::new(AtomicUsize::new(0)),
    }
}

/// A raw HTTP/1.1 server whose first connection answers one request with keep-alive, then
/// reads the next request and closes without answering — as a server does when its
/// keep-alive timeout fires just as the request arrives. Later connections answer every
/// request with `200 ok`.
pub async fn serve_dropping_kept_alive_connection() -> Service {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
            tokio::spawn(answer_requests(stream, if first { Some(1) } else { None }));
        }
    });
    Service { addr, connections }
}

/// Answer requests (without bodies) on one connection; after `limit` answers, read one
/// more request and close.
async fn answer_requests(mut stream: TcpStream, limit: Option<usize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut answered = 0;
    let mut buffer = Vec::new();
    loop {
        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        buffer.clear();
        if Some(answered) == limit {
            return;
        }
        let response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(response).await.is_err() {
            return;
        }
        answered += 1;
    }
}

/// An address on 127.0.0.1 with nothing listening (bound, then released).
pub fn refused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Accepts TCP connections and completes the TLS handshake; failed handshakes (a client
/// rejecting the certificate) are dropped and the next connection is accepted.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
