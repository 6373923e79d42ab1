//! The listening socket: `inet:HOST:PORT` or `unix:/PATH`, in Postfix's
//! notation, and the listener [`crate::run`] accepts MTA connections on.

use indymilter::EitherStream;
use std::{
    fmt,
    future::Future,
    io,
    os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    pin::Pin,
    str::FromStr,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    time::Sleep,
};

/// Where the milter listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SocketSpec {
    /// A TCP socket: `inet:127.0.0.1:8895`, `inet:[::1]:8895`,
    /// `inet:localhost:8895`.
    Inet {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A UNIX-domain socket: `unix:/run/dmarc-milter/milter.sock`.
    Unix(PathBuf),
}

impl Default for SocketSpec {
    fn default() -> Self {
        SocketSpec::Inet {
            host: "127.0.0.1".to_string(),
            port: 8895,
        }
    }
}

impl FromStr for SocketSpec {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "inet:HOST:PORT or unix:/ABSOLUTE/PATH";
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(EXPECTED);
            }
            return Ok(SocketSpec::Unix(path));
        }
        let rest = s.strip_prefix("inet:").ok_or(EXPECTED)?;
        let (host, port) = rest.rsplit_once(':').ok_or(EXPECTED)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port: u16 = port.parse().map_err(|_| EXPECTED)?;
        if host.is_empty() || host.contains(|c: char| c.is_whitespace()) {
            return Err(EXPECTED);
        }
        Ok(SocketSpec::Inet {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for SocketSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketSpec::Inet { host, port } if host.contains(':') => {
                write!(f, "inet:[{host}]:{port}")
            }
            SocketSpec::Inet { host, port } => write!(f, "inet:{host}:{port}"),
            SocketSpec::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A UNIX-domain socket file we created; removed when dropped, unless
/// something else has replaced it since.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), "cannot remove the socket file: {e}");
                }
            }
        }
    }
}

enum Inner {
    Tcp(TcpListener),
    Unix(UnixListener, SocketFile),
}

/// The milter's listener: TCP (with `TCP_NODELAY` on every connection) or
/// UNIX-domain (the socket file is removed when the listener is dropped).
///
/// Once told to stop, it closes the socket and accepts nothing more.
/// Transient accept errors (a client gone before it was accepted, too many
/// open files) are logged and retried instead of ending the milter.
pub struct MilterListener {
    inner: Option<Inner>,
    stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    backoff: Option<Pin<Box<Sleep>>>,
}

impl fmt::Debug for MilterListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.inner {
            Some(Inner::Tcp(l)) => format!("tcp {:?}", l.local_addr().ok()),
            Some(Inner::Unix(_, file)) => format!("unix {}", file.path.display()),
            None => "closed".to_string(),
        };
        f.debug_struct("MilterListener")
            .field("socket", &kind)
            .finish()
    }
}

impl MilterListener {
    /// Opens the socket `spec` describes.
    ///
    /// For `unix:`, a stale socket file left by a previous run is removed
    /// first; a socket another process still listens on, or a path that is
    /// not a socket, is refused. The file gets permissions `mode`.
    ///
    /// # Errors
    ///
    /// The I/O error of resolving, binding or setting permissions.
    pub async fn bind(spec: &SocketSpec, mode: u32) -> io::Result<MilterListener> {
        match spec {
            SocketSpec::Inet { host, port } => {
                let listener = TcpListener::bind((host.as_str(), *port)).await?;
                Ok(MilterListener::from(listener))
            }
            SocketSpec::Unix(path) => {
                remove_stale_socket(path).await?;
                let listener = UnixListener::bind(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
                let meta = std::fs::symlink_metadata(path)?;
                let file = SocketFile {
                    path: path.clone(),
                    dev: meta.dev(),
                    ino: meta.ino(),
                };
                Ok(MilterListener {
                    inner: Some(Inner::Unix(listener, file)),
                    stop: None,
                    backoff: None,
                })
            }
        }
    }

    /// The TCP address, for a TCP listener (tests bind port 0).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.inner {
            Some(Inner::Tcp(l)) => l.local_addr().ok(),
            _ => None,
        }
    }

    /// Makes the listener close and accept nothing more once `stop`
    /// completes.
    pub(crate) fn stop_on(&mut self, stop: impl Future<Output = ()> + Send + 'static) {
        self.stop = Some(Box::pin(stop));
    }
}

impl From<TcpListener> for MilterListener {
    fn from(listener: TcpListener) -> Self {
        MilterListener {
            inner: Some(Inner::Tcp(listener)),
            stop: None,
            backoff: None,
        }
    }
}

/// Removes a socket file nobody listens on; refuses anything else.
async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; refusing to remove it",
                path.display()
            ),
        ));
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another process is listening on {}", path.display()),
        ));
    }
    tracing::info!(path = %path.display(), "removing a stale socket file");
    std::fs::remove_file(path)
}

/// Errors after which accepting again at once can succeed.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

impl indymilter::Listener for MilterListener {
    type Io = EitherStream<TcpStream, UnixStream>;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        if let Some(stop) = self.stop.as_mut() {
            if stop.as_mut().poll(cx).is_ready() {
                self.stop = None;
                if self.inner.take().is_some() {
                    tracing::info!("stopped accepting connections");
                }
            }
        }
        loop {
            if let Some(backoff) = self.backoff.as_mut() {
                if backoff.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.backoff = None;
            }
            let result = match self.inner.as_mut() {
                // Closed: nothing will ever arrive.
                None => return Poll::Pending,
                Some(Inner::Tcp(listener)) => match TcpListener::poll_accept(listener, cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => result.map(|(stream, _)| {
                        // Milter replies are small and answered at once.
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!("cannot set TCP_NODELAY: {e}");
                        }
                        EitherStream::Tcp(stream)
                    }),
                },
                Some(Inner::Unix(listener, _)) => match UnixListener::poll_accept(listener, cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => result.map(|(stream, _)| EitherStream::Unix(stream)),
                },
            };
            match result {
                Ok(stream) => return Poll::Ready(Ok(stream)),
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!("a connection failed before it was accepted: {e}");
                }
                Err(e) => {
                    // EMFILE and the like: wait a little for descriptors to
                    // be freed instead of ending the milter.
                    tracing::error!("cannot accept connections: {e}");
                    self.backoff = Some(Box::pin(tokio::time::sleep(Duration::from_millis(200))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_specs() {
        let cases: &[(&str, Option<SocketSpec>)] = &[
            (
                "inet:127.0.0.1:8895",
                Some(SocketSpec::Inet {
                    host: "127.0.0.1".into(),
                    port: 8895,
                }),
            ),
            (
                "inet:[::1]:8895",
                Some(SocketSpec::Inet {
                    host: "::1".into(),
                    port: 8895,
                }),
            ),
            (
                "unix:/run/dmarc-milter/milter.sock",
                Some(SocketSpec::Unix("/run/dmarc-milter/milter.sock".into())),
            ),
            ("unix:relative.sock", None),
            ("inet:127.0.0.1", None),
            ("inet:127.0.0.1:99999", None),
            ("tcp:127.0.0.1:8895", None),
            ("127.0.0.1:8895", None),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<SocketSpec>().ok(), *expected, "{text}");
            if let Some(spec) = expected {
                assert_eq!(spec.to_string(), *text);
            }
        }
    }
}
