//! Minimal HTTP/1.1 on std::net: each real server answers with its own name,
//! so a client can tell which real served it.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Socket, Type};

use crate::netns::Netns;

/// How often idle server threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// A server connection with no request for this long is closed.
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// Writes of a small response never take long unless the peer is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HEADER: usize = 16 * 1024;
const MAX_BODY: usize = 1 << 20;
const MAX_CONNS: usize = 256;

/// A server started by [`serve_name`]; its threads stop on Drop.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// The bound address (useful when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stop accepting, close all connections and wait for the threads.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // Threads poll the flag every POLL, so this returns promptly.
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Bind `addr` inside `ns` and answer every request with `"<name>\n"`,
/// keeping connections alive unless the client asks to close.
pub fn serve_name(ns: &Netns, addr: SocketAddr, name: &str) -> Result<HttpServer> {
    let listener = ns
        .enter(|| TcpListener::bind(addr))?
        .with_context(|| format!("bind {addr} in {}", ns.name()))?;
    // Non-blocking accept lets the loop notice the stop flag.
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let body: Arc<str> = format!("{name}\n").into();
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name(format!("http-{name}"))
            .spawn(move || accept_loop(listener, body, stop))?
    };
    Ok(HttpServer {
        addr: local,
        name: name.to_string(),
        stop,
        thread: Some(thread),
    })
}

fn accept_loop(listener: TcpListener, body: Arc<str>, stop: Arc<AtomicBool>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                conns.retain(|h| !h.is_finished());
                if conns.len() >= MAX_CONNS {
                    continue; // dropping the stream refuses it
                }
                let (body, stop) = (body.clone(), stop.clone());
                if let Ok(h) =
                    std::thread::Builder::new()
                        .name("http-conn".into())
                        .spawn(move || {
                            let _ = serve_conn(stream, &body, &stop);
                        })
                {
                    conns.push(h);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // WouldBlock is the idle case; other errors (EMFILE...) also back off.
            Err(_) => std::thread::sleep(POLL),
        }
    }
    drop(listener);
    for h in conns {
        let _ = h.join();
    }
}

fn serve_conn(mut stream: TcpStream, body: &str, stop: &AtomicBool) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut last_activity = Instant::now();
    loop {
        // Answer every complete request already buffered (pipelining works too).
        while let Some(req) = take_request(&mut buf)? {
            let close = req.close;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
                body.len(),
                if close { "close" } else { "keep-alive" },
            );
            stream.write_all(response.as_bytes())?;
            last_activity = Instant::now();
            if close {
                let _ = stream.shutdown(std::net::Shutdown::Write);
                return Ok(());
            }
        }
        if stop.load(Ordering::Relaxed) || last_activity.elapsed() > IDLE_LIMIT {
            return Ok(());
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                last_activity = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// What the server needs from one request.
struct Request {
    close: bool,
}

/// Remove one complete request (headers and body) from `buf`, if there is one.
fn take_request(buf: &mut Vec<u8>) -> io::Result<Option<Request>> {
    let Some(head_len) = header_end(buf) else {
        if buf.len() > MAX_HEADER {
            return Err(invalid("request header too large"));
        }
        return Ok(None);
    };
    let head = parse_head(&buf[..head_len])?;
    let total = head_len + head.content_length;
    if buf.len() < total {
        return Ok(None);
    }
    // HTTP/1.0 closes unless asked not to; HTTP/1.1 keeps alive unless asked to close.
    let close = match &head.connection {
        Some(c) if c.eq_ignore_ascii_case("close") => true,
        Some(c) if c.eq_ignore_ascii_case("keep-alive") => false,
        _ => head.start.ends_with("HTTP/1.0"),
    };
    buf.drain(..total);
    Ok(Some(Request { close }))
}

/// Start line and the headers we care about.
struct Head {
    start: String,
    content_length: usize,
    connection: Option<String>,
}

/// Length of the header block including the blank line, if complete.
fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .take(MAX_HEADER)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

fn parse_head(raw: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(raw).map_err(|_| invalid("header is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or_default().trim().to_string();
    let mut content_length = 0;
    let mut connection = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((key, value)) = line.split_once(':') else {
            return Err(invalid("malformed header line"));
        };
        let value = value.trim();
        if key.trim().eq_ignore_ascii_case("content-length") {
            content_length = value.parse().map_err(|_| invalid("bad Content-Length"))?;
            if content_length > MAX_BODY {
                return Err(invalid("body too large"));
            }
        } else if key.trim().eq_ignore_ascii_case("connection") {
            connection = Some(value.to_string());
        }
    }
    Ok(Head {
        start,
        content_length,
        connection,
    })
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// One fresh connection from inside `ns` to `target`, one `GET /` with
/// `Connection: close`; returns the trimmed body (the server's name).
pub fn get_name(ns: &Netns, target: SocketAddr, timeout: Duration) -> Result<String> {
    let mut conn = HttpConn::open(ns, target, timeout)?;
    conn.request(true)
}

/// As [`get_name`], from `source`, one of `ns`'s addresses.
pub fn get_name_from(
    ns: &Netns,
    source: IpAddr,
    target: SocketAddr,
    timeout: Duration,
) -> Result<String> {
    let mut conn = HttpConn::open_from(ns, source, target, timeout)?;
    conn.request(true)
}

/// A keep-alive client connection made inside a namespace.
#[derive(Debug)]
pub struct HttpConn {
    stream: TcpStream,
    target: SocketAddr,
    local: SocketAddr,
    timeout: Duration,
    buf: Vec<u8>,
}

impl HttpConn {
    /// Connect from inside `ns`; `timeout` bounds the connect and each later `ask`.
    pub fn open(ns: &Netns, target: SocketAddr, timeout: Duration) -> Result<HttpConn> {
        let stream = ns
            .enter(|| TcpStream::connect_timeout(&target, timeout))?
            .with_context(|| format!("connect to {target} from {}", ns.name()))?;
        HttpConn::with_stream(stream, target, timeout)
    }

    /// As [`HttpConn::open`], from `source` (one of `ns`'s addresses), so
    /// one namespace can act as many clients.
    pub fn open_from(
        ns: &Netns,
        source: IpAddr,
        target: SocketAddr,
        timeout: Duration,
    ) -> Result<HttpConn> {
        HttpConn::open_bound(ns, SocketAddr::new(source, 0), target, timeout)
    }

    /// As [`HttpConn::open`], from the address and port `source` (port 0:
    /// the kernel's choice).
    pub fn open_bound(
        ns: &Netns,
        source: SocketAddr,
        target: SocketAddr,
        timeout: Duration,
    ) -> Result<HttpConn> {
        let connect = || -> io::Result<TcpStream> {
            let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
            socket.bind(&source.into())?;
            socket.connect_timeout(&target.into(), timeout)?;
            Ok(socket.into())
        };
        let stream = ns
            .enter(connect)?
            .with_context(|| format!("connect to {target} from {source} in {}", ns.name()))?;
        HttpConn::with_stream(stream, target, timeout)
    }

    fn with_stream(stream: TcpStream, target: SocketAddr, timeout: Duration) -> Result<HttpConn> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout))?;
        let local = stream.local_addr()?;
        Ok(HttpConn {
            stream,
            target,
            local,
            timeout,
            buf: Vec::new(),
        })
    }

    /// Send one `GET /` on this connection and return the trimmed body.
    pub fn ask(&mut self) -> Result<String> {
        self.request(false)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits (bounded by the timeout) for the server to close first, as
    /// after a `Connection: close` request, then closes: the server keeps
    /// the TIME_WAIT, so the client may reuse its port at once.
    pub fn close_after_server(mut self) -> Result<()> {
        self.stream.set_read_timeout(Some(self.timeout))?;
        let mut chunk = [0u8; 512];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("waiting for the server to close"),
            }
        }
    }

    /// Sends one `GET /` (asking the server to close after it with `close`)
    /// and returns the trimmed body.
    pub fn request(&mut self, close: bool) -> Result<String> {
        let deadline = Instant::now() + self.timeout;
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: xlb-testbed\r\nConnection: {}\r\n\r\n",
            self.target,
            if close { "close" } else { "keep-alive" }
        );
        self.stream
            .write_all(req.as_bytes())
            .with_context(|| format!("send request to {}", self.target))?;
        self.read_response(deadline)
            .with_context(|| format!("response from {} (local {})", self.target, self.local))
    }

    fn read_response(&mut self, deadline: Instant) -> Result<String> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(head_len) = header_end(&self.buf) {
                let head = parse_head(&self.buf[..head_len])?;
                let mut status = head.start.split_whitespace();
                let (proto, code) = (status.next(), status.next());
                if !proto.is_some_and(|p| p.starts_with("HTTP/1.")) || code != Some("200") {
                    bail!("unexpected status line {:?}", head.start);
                }
                let total = head_len + head.content_length;
                if self.buf.len() >= total {
                    let body = String::from_utf8_lossy(&self.buf[head_len..total])
                        .trim()
                        .to_string();
                    self.buf.drain(..total);
                    return Ok(body);
                }
            } else if self.buf.len() > MAX_HEADER {
                bail!("response header too large");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("timed out after {:?}", self.timeout);
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => bail!("connection closed before a full response"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    bail!("timed out after {:?}", self.timeout)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Held connections asking again and again on a thread of their own, each
/// checking that its real never changes, while a test disturbs the director.
pub struct Streamer {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    thread: JoinHandle<Result<usize, String>>,
}

impl Streamer {
    /// Starts asking on `conns`, each paired with the real that first answered it.
    pub fn start(mut conns: Vec<(HttpConn, String)>) -> Streamer {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, rounds) = (stop.clone(), rounds.clone());
            std::thread::spawn(move || -> Result<usize, String> {
                let mut asked = 0;
                // Bounded: the test stops it within minutes at most.
                for _ in 0..100_000 {
                    if stop.load(Ordering::SeqCst) {
                        return Ok(asked);
                    }
                    for (c, name) in &mut conns {
                        let got = c
                            .ask()
                            .map_err(|e| format!("{} broke: {e:#}", c.local_addr()))?;
                        if &got != name {
                            return Err(format!("{} moved from {name} to {got}", c.local_addr()));
                        }
                        asked += 1;
                    }
                    rounds.fetch_add(1, Ordering::SeqCst);
                }
                Ok(asked)
            })
        };
        Streamer {
            stop,
            rounds,
            thread,
        }
    }

    /// Waits (bounded) until every connection has asked `n` more times.
    pub fn wait_rounds(&self, n: usize) {
        let target = self.rounds.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.rounds.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "streaming stalled");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops asking: the number of answers, or the first connection that broke or moved.
    pub fn finish(self) -> Result<usize, String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .map_err(|_| "streaming thread panicked".to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_keeps_leftovers() {
        let mut buf = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcGET".to_vec();
        assert!(!take_request(&mut buf).unwrap().unwrap().close);
        assert!(take_request(&mut buf).unwrap().unwrap().close);
        assert_eq!(buf, b"GET");
        assert!(take_request(&mut buf).unwrap().is_none());
    }

    #[test]
    fn serves_keep_alive_in_a_namespace() -> Result<()> {
        crate::require_root()?;
        let _guard = crate::ns_test_guard();
        let ns = Netns::create("ht")?;
        let server = serve_name(&ns, "127.0.0.1:0".parse()?, "alpha")?;
        let t = Duration::from_secs(2);
        assert_eq!(get_name(&ns, server.local_addr(), t)?, "alpha");
        let mut conn = HttpConn::open(&ns, server.local_addr(), t)?;
        assert_eq!(conn.ask()?, "alpha");
        assert_eq!(conn.ask()?, "alpha");
        // Drop must not hang on the open keep-alive connection.
        let started = Instant::now();
        drop(server);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(conn.ask().is_err());
        Ok(())
    }
}
