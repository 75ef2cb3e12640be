//! The HTTP side: `GET /metrics` (any path, as most exporters) answers the
//! registry in the text format. hyper's HTTP/1 server: one endpoint needs
//! no framework, and hyper is what they build on.
//!
//! The endpoint is bounded so that no client can take what the agent needs
//! (its descriptors, its runtime):
//!
//! - at most `max_connections` connections are served at once. One more is
//!   answered `503` (a write that never waits) and closed straight away,
//!   rather than left in the kernel's backlog: a backlog full of idle
//!   connections would make a scrape wait a header timeout per connection
//!   ahead of it, while refusing lets scrapes in as soon as the idle ones
//!   time out;
//! - hyper's header read timeout (it needs a timer: tokio's) closes a
//!   connection whose request header is not complete in time, counted from
//!   the connection opening or the previous response, so it also ends idle
//!   keep-alive connections;
//! - a connection on which no byte moves either way for `idle_timeout`
//!   while no answer is being rendered is closed (a client that stopped
//!   reading its answer);
//! - rendering runs on tokio's blocking pool, never on the runtime's thread,
//!   and at most once per served connection at a time.

use crate::config::Metrics;
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode, body::Bytes, header::CONTENT_TYPE, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use std::{
    convert::Infallible,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tracing::{debug, warn};

/// What a connection over the cap gets before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n";
/// Refusals are logged at most this often (with how many there were).
const REFUSAL_LOG: Duration = Duration::from_secs(10);

/// Serves scrapes on `listener` within `limits` until the runtime ends.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, limits: Metrics) {
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let mut refusals = Refusals::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                warn!(error = %e, "metrics: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // A fresh socket's send buffer is empty: this write never waits.
            let _ = stream.try_write(BUSY);
            refusals.note(limits.max_connections);
            continue;
        };
        let registry = registry.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            connection(stream, registry, &limits).await;
            drop(slot);
        });
    }
}

/// Counts refused connections and logs them, at most every [`REFUSAL_LOG`].
#[derive(Default)]
struct Refusals {
    unlogged: u64,
    logged: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, cap: u32) {
        self.unlogged += 1;
        if self.logged.is_none_or(|t| t.elapsed() >= REFUSAL_LOG) {
            warn!(
                refused = self.unlogged,
                "metrics: connections over the cap of {cap} refused ([metrics] max_connections)"
            );
            self.unlogged = 0;
            self.logged = Some(Instant::now());
        }
    }
}

/// Serves one connection until it ends, times out or goes idle.
async fn connection(stream: TcpStream, registry: Arc<Registry>, limits: &Metrics) {
    let activity = Arc::new(Activity::new());
    let io = Watched {
        stream,
        activity: activity.clone(),
    };
    let rendering = activity.clone();
    let service = service_fn(move |req| {
        let registry = registry.clone();
        let rendering = rendering.clone();
        async move { Ok::<_, Infallible>(respond(registry, &req, &rendering).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    loop {
        let wait = if activity.rendering() {
            limits.idle_timeout
        } else {
            limits.idle_timeout.saturating_sub(activity.quiet())
        };
        if wait.is_zero() {
            debug!(
                idle_s = limits.idle_timeout.as_secs_f64(),
                "metrics: closing an idle connection"
            );
            return;
        }
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    debug!(error = %e, "metrics: connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn respond<B>(
    registry: Arc<Registry>,
    req: &Request<B>,
    activity: &Activity,
) -> Response<Full<Bytes>> {
    let openmetrics = super::exposition::wants_openmetrics(
        req.headers()
            .get(hyper::header::ACCEPT)
            .and_then(|a| a.to_str().ok()),
    );
    let format = if openmetrics {
        super::exposition::OPENMETRICS
    } else {
        super::exposition::PLAIN
    };
    let reply = |status, body: String| {
        Response::builder()
            .status(status)
            .header(CONTENT_TYPE, format)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    if req.method() != hyper::Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    activity.set_rendering(true);
    // Reading the maps can take a while: off the runtime's thread.
    let text = tokio::task::spawn_blocking(move || super::render(&registry)).await;
    activity.set_rendering(false);
    match text {
        Ok(Ok(text)) if openmetrics => reply(StatusCode::OK, text),
        Ok(Ok(text)) => reply(StatusCode::OK, super::exposition::to_plain(&text)),
        _ => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n".into(),
        ),
    }
}

/// When bytes last moved on a connection, and whether an answer is being rendered.
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last byte read or written.
    last_ms: AtomicU64,
    rendering: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            rendering: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// How long no byte has moved.
    fn quiet(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    fn rendering(&self) -> bool {
        self.rendering.load(Ordering::Relaxed)
    }

    fn set_rendering(&self, on: bool) {
        self.rendering.store(on, Ordering::Relaxed);
        self.touch();
    }
}

/// The client's stream, noting in `activity` each time bytes move.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::{family::Family, gauge::Gauge};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Long enough for anything these tests wait for; never reached when the bound works.
    const BOUND: Duration = Duration::from_secs(20);

    fn limits(max_connections: u32, header: f64, idle: f64) -> Metrics {
        Metrics {
            listen: None,
            max_connections,
            header_timeout: Duration::from_secs_f64(header),
            idle_timeout: Duration::from_secs_f64(idle),
        }
    }

    /// A registry whose answer has `series` lines.
    fn registry(series: usize) -> Arc<Registry> {
        let mut r = Registry::default();
        let family = Family::<Vec<(String, String)>, Gauge>::default();
        for i in 0..series {
            family
                .get_or_create(&vec![("n".into(), i.to_string())])
                .set(1);
        }
        r.register("xlb_test", "test series", family);
        Arc::new(r)
    }

    async fn start(series: usize, limits: Metrics) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, registry(series), limits));
        addr
    }

    /// Everything the server sends until it closes (a reset counts as closing).
    async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let read = async {
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(BOUND, read)
            .await
            .expect("the server did not close the connection");
        got
    }

    async fn scrape(addr: std::net::SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&until_closed(&mut s).await).into_owned()
    }

    /// Whether the server still holds `s` open (nothing to read, no EOF).
    async fn still_open(s: &mut TcpStream) -> bool {
        let mut buf = [0u8; 16];
        tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf))
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_connection_over_the_cap_is_refused_at_once() {
        let addr = start(1, limits(3, 30.0, 30.0)).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        // Accepted in order: the fourth finds every slot taken.
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        let answer = String::from_utf8_lossy(&until_closed(&mut fourth).await).into_owned();
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
            "{answer}"
        );
        for s in &mut held {
            assert!(
                still_open(s).await,
                "a connection within the cap was closed"
            );
        }
        // A freed slot takes the next scrape (the server notices the close first).
        drop(held.pop());
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let answer = scrape(addr).await;
            if answer.starts_with("HTTP/1.1 200") {
                assert!(answer.contains("xlb_test"), "{answer}");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no slot came free");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_header_that_never_ends_is_cut_off() {
        // The idle bound is longer than the test: only the header timeout can end it.
        let addr = start(1, limits(1, 0.5, 60.0)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        let trickle = async {
            // A header line every 100 ms: bytes keep moving, the header never ends.
            for i in 0.. {
                if slow
                    .write_all(format!("X-{i}: y\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return i;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            unreachable!()
        };
        let sent = tokio::time::timeout(BOUND, trickle)
            .await
            .expect("a header that never ends was never cut off");
        assert!(sent >= 2, "cut off after {sent} lines");
        // Its slot is free again.
        assert!(scrape(addr).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_closed() {
        // About 4 MB of answer: far more than the socket buffers take.
        let addr = start(100_000, limits(1, 30.0, 0.5)).await;
        let mut stuck = TcpStream::connect(addr).await.unwrap();
        stuck
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // It never reads; the only slot comes free once the idle bound ends it.
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let answer = scrape(addr).await;
            if answer.starts_with("HTTP/1.1 200") {
                assert!(answer.contains("xlb_test"));
                break;
            }
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
                "{}",
                &answer[..answer.len().min(200)]
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "the stuck connection kept its slot"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(stuck);
    }
}
