//! Outbound stream connections for sinks: plain TCP or TLS (OpenSSL through native-tls, with
//! the server's certificate checked against system roots or a configured CA, and an optional
//! client certificate). A reader drains what the receiver sends (TLS session tickets, alerts)
//! and notices when it closes, so a lost receiver is known before the next write.
use super::SinkError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A receiver that takes no bytes for this long is treated as lost (its window is full).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest time sent bytes may stay unacknowledged by the receiver's host (TCP_USER_TIMEOUT).
pub const USER_TIMEOUT: Duration = Duration::from_secs(10);

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Where a sink connects.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: Option<tokio_native_tls::TlsConnector>,
}

/// TLS settings from files named in a sink's configuration.
pub struct TlsFiles<'a> {
    pub ca: Option<&'a std::path::Path>,
    pub cert: Option<&'a std::path::Path>,
    pub key: Option<&'a std::path::Path>,
}

impl TlsFiles<'_> {
    /// A connector that verifies the receiver (never optional) and offers a client
    /// certificate when one is configured. TLS 1.2 at least.
    pub fn connector(&self) -> Result<tokio_native_tls::TlsConnector, SinkError> {
        let read =
            |p: &std::path::Path| std::fs::read(p).map_err(|e| SinkError::Config(format!("{}: {e}", p.display())));
        let mut b = native_tls::TlsConnector::builder();
        b.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
        if let Some(ca) = self.ca {
            let cert = native_tls::Certificate::from_pem(&read(ca)?)
                .map_err(|e| SinkError::Config(format!("{}: {e}", ca.display())))?;
            b.add_root_certificate(cert);
        }
        match (self.cert, self.key) {
            (Some(cert), Some(key)) => {
                let id = native_tls::Identity::from_pkcs8(&read(cert)?, &read(key)?)
                    .map_err(|e| SinkError::Config(format!("client certificate {}: {e}", cert.display())))?;
                b.identity(id);
            }
            (None, None) => {}
            _ => return Err(SinkError::Config("a client certificate needs both cert and key".into())),
        }
        let c = b.build().map_err(|e| SinkError::Config(e.to_string()))?;
        Ok(tokio_native_tls::TlsConnector::from(c))
    }
}

impl Endpoint {
    pub async fn connect(&self) -> Result<Connection, SinkError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
            .await
            .map_err(|_| SinkError::Unreachable(format!("{addr}: connect timed out")))?
            .map_err(|e| SinkError::Unreachable(format!("{addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        // A receiver host that vanishes without closing (crash, network cut) would leave our
        // writes succeeding into the send buffer; unacknowledged data or silent keepalives
        // fail the connection after USER_TIMEOUT instead, within the syslog settle time.
        let sock = socket2::SockRef::from(&tcp);
        let _ = sock.set_tcp_user_timeout(Some(USER_TIMEOUT));
        let _ = sock.set_tcp_keepalive(
            &socket2::TcpKeepalive::new().with_time(Duration::from_secs(5)).with_interval(Duration::from_secs(2)),
        );
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let s = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(&self.host, tcp))
                    .await
                    .map_err(|_| SinkError::Unreachable(format!("{addr}: TLS handshake timed out")))?
                    .map_err(|e| SinkError::Unreachable(format!("{addr}: TLS: {e}")))?;
                Box::new(s)
            }
        };
        let (mut read, write) = tokio::io::split(io);
        let open = Arc::new(AtomicBool::new(true));
        let flag = open.clone();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = read.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            flag.store(false, Ordering::Release);
        });
        Ok(Connection { write, open, reader })
    }
}

/// One open connection; dropping it closes it.
pub struct Connection {
    write: WriteHalf<Box<dyn Io>>,
    open: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Writes and flushes all of `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        if !self.open() {
            return Err(SinkError::Unreachable("the receiver closed the connection".into()));
        }
        let io = async {
            self.write.write_all(bytes).await?;
            self.write.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SinkError::Unreachable(e.to_string())),
            Err(_) => Err(SinkError::Unreachable("the receiver took no data for 30 s".into())),
        }
    }

    /// False once the receiver closed its side or the connection failed.
    pub fn open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
