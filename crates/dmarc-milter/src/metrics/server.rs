//! The `/metrics` endpoint: HTTP/1.1 (hyper) on `metrics_listen`.
//!
//! `GET /metrics` (or `HEAD`) answers the registry in the Prometheus text
//! format; any other path is 404, any other method 405. At most
//! [`MAX_SCRAPERS`] connections are served at once (more wait to be
//! accepted), each must send its request head within
//! [`HEADER_TIMEOUT`], and a connection ends after its response: the
//! endpoint is for a Prometheus server, not for the public.

use super::Outbox;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{encoding::prometheus_text, registry::Registry};
use std::{convert::Infallible, io, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::Semaphore};

/// Connections served at once.
pub const MAX_SCRAPERS: usize = 8;

/// Time a client has to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The listening socket of `/metrics`, opened before the milter starts (so
/// that an address in use is reported at start, and a test can bind port
/// 0 and learn the port).
#[derive(Debug)]
pub struct MetricsListener {
    listener: TcpListener,
}

impl MetricsListener {
    /// Listens on `addr`.
    ///
    /// # Errors
    ///
    /// The socket cannot be opened (address in use, not ours).
    pub async fn bind(addr: SocketAddr) -> io::Result<MetricsListener> {
        Ok(MetricsListener {
            listener: TcpListener::bind(addr).await?,
        })
    }

    /// The address it listens on.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Serves `registry` on `listener` until the task is dropped or aborted;
/// `outbox` is counted again (when due) before each scrape.
pub(crate) async fn serve(
    listener: MetricsListener,
    registry: Registry,
    outbox: Option<Arc<Outbox>>,
) {
    let registry = Arc::new(registry);
    let permits = Arc::new(Semaphore::new(MAX_SCRAPERS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let stream = match listener.listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: the milter goes on.
                tracing::warn!(error = %e, "metrics endpoint: cannot accept a connection");
                continue;
            }
        };
        let registry = Arc::clone(&registry);
        let outbox = outbox.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let registry = Arc::clone(&registry);
                let outbox = outbox.clone();
                async move {
                    if let Some(outbox) = &outbox {
                        if request.uri().path() == "/metrics" {
                            outbox.refresh().await;
                        }
                    }
                    Ok::<_, Infallible>(respond(&request, &registry))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

/// The response to one request.
fn respond(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut body = String::with_capacity(16 * 1024);
    if prometheus_text::encode(&mut body, registry).is_err() {
        tracing::error!("metrics endpoint: the metrics could not be encoded");
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        );
    }
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    response
}
