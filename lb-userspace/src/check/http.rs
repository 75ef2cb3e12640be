//! HTTP_GET and SSL_GET: a small HTTP/1.0 or 1.1 GET per `url`, over TCP or
//! TLS; every url must answer with an accepted status and, when a digest is
//! configured, a body whose MD5 matches (what keepalived's genhash prints).
//! The body streams into MD5 as it arrives (nothing is buffered beyond the
//! header, [`MAX_HEAD`]), up to [`MAX_BODY`].
//!
//! SSL_GET does not verify the server's certificate, as keepalived does not:
//! real servers commonly use self-signed or internal certificates, and the
//! check is about the service answering, not about authenticating it. The
//! handshake's signatures are still checked.

use super::{Env, Probe, Target};
use crate::config::check::{HttpCheck, HttpProtocol, Url};
use md5::{Digest, Md5};
use rustls::{
    ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// Longest response header read: keepalived's buffer holds 4 KiB; real
/// servers send a few hundred bytes.
const MAX_HEAD: usize = 64 << 10;
/// Longest chunk-size line of a chunked body.
const MAX_CHUNK_LINE: usize = 1024;
/// Body bytes digested at most; a longer body fails the check. keepalived
/// digests a body of any size as it arrives, bounded only by the check's
/// timeout; the body streams into MD5 here too (memory stays a read
/// buffer), and this bound keeps a real that never stops sending from
/// costing more than a fraction of a second of MD5 per attempt.
const MAX_BODY: u64 = 64 << 20;

pub async fn probe(check: &HttpCheck, target: &Target, env: &Env) -> Probe {
    let host = check
        .virtualhost
        .clone()
        .or_else(|| env.virtualhost.clone());
    for url in &check.urls {
        // keepalived: the url's virtualhost, else the check's, else the service's.
        let host = url.virtualhost.as_deref().or(host.as_deref());
        let answer = match fetch(check, url, host, target).await {
            Ok(a) => a,
            Err(e) => return Probe::fail(format!("GET {}: {e}", url.path)),
        };
        if let Err(why) = judge(url, &answer) {
            return Probe::fail(format!("GET {}: {why}", url.path));
        }
    }
    Probe::pass()
}

async fn fetch(
    check: &HttpCheck,
    url: &Url,
    host: Option<&str>,
    target: &Target,
) -> std::io::Result<Answer> {
    let request = request(check.protocol, &url.path, host, target, check.tls);
    let digest = url.digest.is_some();
    let tcp = target.connect_tcp().await?;
    if !check.tls {
        return exchange(tcp, &request, digest).await;
    }
    let name = match (check.sni, host) {
        (true, Some(h)) => ServerName::try_from(h.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        // An address is never sent as SNI.
        _ => ServerName::IpAddress(target.addr.ip().into()),
    };
    let tls = TlsConnector::from(tls_config()).connect(name, tcp).await?;
    exchange(tls, &request, digest).await
}

/// The request keepalived sends.
fn request(
    protocol: HttpProtocol,
    path: &str,
    host: Option<&str>,
    target: &Target,
    tls: bool,
) -> String {
    let default_port = if tls { 443 } else { 80 };
    let host = match host {
        Some(h) => h.to_string(),
        None => match target.addr.ip() {
            std::net::IpAddr::V4(a) => a.to_string(),
            std::net::IpAddr::V6(a) => format!("[{a}]"),
        },
    };
    let port = if target.addr.port() == default_port {
        String::new()
    } else {
        format!(":{}", target.addr.port())
    };
    let (version, close) = match protocol {
        HttpProtocol::Http10 => ("1.0", ""),
        HttpProtocol::Http10Close => ("1.0", "Connection: close\r\n"),
        HttpProtocol::Http11 => ("1.1", "Connection: close\r\n"),
    };
    format!(
        "GET {path} HTTP/{version}\r\nUser-Agent: xlb-check\r\nHost: {host}{port}\r\n{close}\r\n"
    )
}

/// Sends the request and reads the response as it arrives, until it is
/// complete or the server closes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
    digest: bool,
) -> std::io::Result<Answer> {
    s.write_all(request.as_bytes()).await?;
    s.flush().await?;
    let mut response = Response::new(digest);
    let mut buf = [0u8; 16384];
    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    loop {
        let n = match s.read(&mut buf).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify still delivered its answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && response.started() => 0,
            Err(e) => return Err(e),
        };
        if n == 0 || response.feed(&buf[..n]).map_err(bad)? {
            return response.finish().map_err(bad);
        }
    }
}

/// What a response said, as far as a check needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    /// MD5 of the body (decoded when chunked), when asked for.
    digest: Option<[u8; 16]>,
}

/// Whether the answer satisfies `url`.
fn judge(url: &Url, answer: &Answer) -> Result<(), String> {
    let status = answer.status;
    let accepted = if url.status_codes.is_empty() {
        (200..300).contains(&status)
    } else {
        url.status_codes
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    };
    if !accepted {
        return Err(format!("status {status} is not accepted"));
    }
    if let (Some(want), Some(got)) = (url.digest, answer.digest)
        && got != want
    {
        return Err(format!("body digest {} differs", hex(&got)));
    }
    Ok(())
}

/// A response read as it arrives: the header into a bounded buffer, then
/// (when a digest is wanted) the body straight into MD5, up to its
/// Content-Length or the end of the stream, or decoded from chunks.
struct Response {
    digest: bool,
    stage: Stage,
}

enum Stage {
    Head(Vec<u8>),
    Body {
        status: u16,
        framing: Framing,
        md5: Md5,
        len: u64,
    },
    Done(Answer),
}

enum Framing {
    /// Until the end of the stream, or this many bytes (Content-Length).
    Plain(Option<u64>),
    Chunked(Chunks),
}

/// Where a chunked body's decoder is.
enum Chunks {
    /// Reading a chunk-size line (kept to [`MAX_CHUNK_LINE`]).
    Size(Vec<u8>),
    /// This many data bytes to go.
    Data(u64),
    /// The CRLF after a chunk's data: this many bytes to skip.
    End(u8),
}

impl Response {
    fn new(digest: bool) -> Response {
        Response {
            digest,
            stage: Stage::Head(Vec::new()),
        }
    }

    /// Whether any byte has arrived.
    fn started(&self) -> bool {
        !matches!(&self.stage, Stage::Head(h) if h.is_empty())
    }

    /// Takes the next bytes; true once the response is complete (the rest
    /// of the stream is not needed).
    fn feed(&mut self, mut bytes: &[u8]) -> Result<bool, String> {
        if let Stage::Head(head) = &mut self.stage {
            let from = head.len().saturating_sub(3);
            head.extend_from_slice(bytes);
            let Some(end) = head[from..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| from + i)
            else {
                if head.len() > MAX_HEAD {
                    return Err(format!(
                        "no complete response header in {} KiB",
                        MAX_HEAD >> 10
                    ));
                }
                return Ok(false);
            };
            let (status, framing) = parse_head(&head[..end])?;
            let rest = head.split_off(end + 4);
            if !self.digest {
                self.stage = Stage::Done(Answer {
                    status,
                    digest: None,
                });
                return Ok(true);
            }
            self.stage = Stage::Body {
                status,
                framing,
                md5: Md5::new(),
                len: 0,
            };
            return self.feed(&rest);
        }
        let Stage::Body {
            status,
            framing,
            md5,
            len,
        } = &mut self.stage
        else {
            return Ok(true);
        };
        let mut take = |data: &[u8]| -> Result<(), String> {
            *len += data.len() as u64;
            if *len > MAX_BODY {
                return Err(format!("body longer than {} MiB", MAX_BODY >> 20));
            }
            md5.update(data);
            Ok(())
        };
        let complete = match framing {
            Framing::Plain(None) => {
                take(bytes)?;
                false
            }
            Framing::Plain(Some(left)) => {
                let n = bytes
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                take(&bytes[..n])?;
                *left -= n as u64;
                *left == 0
            }
            Framing::Chunked(chunks) => loop {
                if bytes.is_empty() {
                    break false;
                }
                match chunks {
                    Chunks::Size(line) => {
                        let Some(eol) = bytes.iter().position(|&b| b == b'\n') else {
                            line.extend_from_slice(bytes);
                            if line.len() > MAX_CHUNK_LINE {
                                return Err("malformed chunked body".into());
                            }
                            break false;
                        };
                        line.extend_from_slice(&bytes[..eol]);
                        bytes = &bytes[eol + 1..];
                        let size = chunk_size(line).ok_or("malformed chunked body")?;
                        if size == 0 {
                            // Trailers, if any, are not needed.
                            break true;
                        }
                        *chunks = Chunks::Data(size);
                    }
                    Chunks::Data(left) => {
                        let n = bytes
                            .len()
                            .min(usize::try_from(*left).unwrap_or(usize::MAX));
                        take(&bytes[..n])?;
                        bytes = &bytes[n..];
                        *left -= n as u64;
                        if *left == 0 {
                            *chunks = Chunks::End(2);
                        }
                    }
                    Chunks::End(skip) => {
                        let n = bytes.len().min(usize::from(*skip));
                        bytes = &bytes[n..];
                        *skip -= n as u8;
                        if *skip == 0 {
                            *chunks = Chunks::Size(Vec::new());
                        }
                    }
                }
            },
        };
        if complete {
            let answer = Answer {
                status: *status,
                digest: Some(std::mem::take(md5).finalize().into()),
            };
            self.stage = Stage::Done(answer);
        }
        Ok(complete)
    }

    /// The answer, once the stream ended or the response was complete. A
    /// plain body shorter than its Content-Length is digested as received
    /// (as keepalived); a chunked one cut short is an error.
    fn finish(self) -> Result<Answer, String> {
        match self.stage {
            Stage::Head(_) => Err("no complete response header".into()),
            Stage::Body {
                framing: Framing::Chunked(_),
                ..
            } => Err("malformed chunked body".into()),
            Stage::Body { status, md5, .. } => Ok(Answer {
                status,
                digest: Some(md5.finalize().into()),
            }),
            Stage::Done(answer) => Ok(answer),
        }
    }
}

/// Status code and body framing of a response header (without its blank line).
fn parse_head(head: &[u8]) -> Result<(u16, Framing), String> {
    let head = std::str::from_utf8(head).map_err(|_| "response header is not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let version = words.next().unwrap_or_default();
    let status = words
        .next()
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/"))
        .ok_or_else(|| format!("bad status line `{status_line}`"))?;
    let mut framing = Framing::Plain(None);
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            framing = Framing::Chunked(Chunks::Size(Vec::new()));
        } else if k.eq_ignore_ascii_case("content-length")
            && matches!(framing, Framing::Plain(_))
            && let Ok(n) = v.parse()
        {
            framing = Framing::Plain(Some(n));
        }
    }
    Ok((status, framing))
}

/// The size of a chunk from its line (`1a;ext=x\r`).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let text = text.split(';').next()?.trim();
    u64::from_str_radix(text, 16).ok()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Accepts any certificate (see the module comment), checking signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(codes: Vec<(u16, u16)>, digest: Option<[u8; 16]>) -> Url {
        Url {
            path: "/".into(),
            status_codes: codes,
            digest,
            virtualhost: None,
        }
    }

    /// The answer to `response` fed whole, and fed a byte at a time.
    fn read(response: &[u8], digest: bool) -> Result<Answer, String> {
        let whole = {
            let mut r = Response::new(digest);
            r.feed(response)?;
            r.finish()
        };
        let mut r = Response::new(digest);
        let mut split = Ok(());
        for b in response {
            match r.feed(std::slice::from_ref(b)) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    split = Err(e);
                    break;
                }
            }
        }
        let split = split.and_then(|()| r.finish());
        assert_eq!(whole, split, "fed whole and byte by byte differ");
        whole
    }

    fn judged(u: &Url, response: &[u8]) -> Result<(), String> {
        judge(u, &read(response, u.digest.is_some())?)
    }

    #[test]
    fn status_ranges_and_digest() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\n";
        assert_eq!(judged(&url(vec![], None), ok), Ok(()));
        let err = b"HTTP/1.1 500 Internal Server Error\r\n\r\n";
        assert!(judged(&url(vec![], None), err).is_err());
        assert_eq!(judged(&url(vec![(500, 503)], None), err), Ok(()));
        // md5("hello\n") as `genhash` and `md5sum` print it.
        let mut d = [0u8; 16];
        for (i, b) in d.iter_mut().enumerate() {
            *b = u8::from_str_radix(&"b1946ac92492d2347c6235b4d2611184"[2 * i..2 * i + 2], 16)
                .unwrap();
        }
        assert_eq!(judged(&url(vec![], Some(d)), ok), Ok(()));
        let other = b"HTTP/1.0 200 OK\r\n\r\nhello!\n";
        assert!(judged(&url(vec![], Some(d)), other).is_err());
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n3;x=y\r\nlo\n\r\n0\r\n\r\n";
        assert_eq!(judged(&url(vec![], Some(d)), chunked), Ok(()));
        // Content-Length ends the body: what follows is not digested.
        let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\ntrailing junk";
        assert_eq!(judged(&url(vec![], Some(d)), sized), Ok(()));
    }

    #[test]
    fn bodies_stream_into_the_digest_within_the_bound() {
        // 3 MiB in 1000-byte chunks, digested as the bytes go by.
        let piece = [b'x'; 1000];
        let mut body = Vec::new();
        let mut framed = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 * 1024 {
            body.extend_from_slice(&piece);
            framed.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            framed.extend_from_slice(&piece);
            framed.extend_from_slice(b"\r\n");
        }
        framed.extend_from_slice(b"0\r\n\r\n");
        let want: [u8; 16] = Md5::digest(&body).into();
        let mut r = Response::new(true);
        let mut done = false;
        for part in framed.chunks(4093) {
            done = r.feed(part).unwrap();
        }
        assert!(done);
        assert_eq!(r.finish().unwrap().digest, Some(want));
        // Past MAX_BODY the check fails, whatever the digest.
        let mut r = Response::new(true);
        r.feed(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
        let block = vec![0u8; 1 << 20];
        let err = (0..=MAX_BODY >> 20)
            .find_map(|_| r.feed(&block).err())
            .expect("no bound");
        assert_eq!(err, "body longer than 64 MiB");
        // Without a digest the body is not read at all.
        let mut r = Response::new(false);
        assert!(r.feed(b"HTTP/1.0 204 No Content\r\n\r\nanything").unwrap());
    }

    #[test]
    fn malformed_responses_fail() {
        for bad in [
            &b""[..],
            b"HTTP/1.0 200 OK\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.0 abc OK\r\n\r\n",
        ] {
            assert!(judged(&url(vec![], None), bad).is_err(), "{bad:?}");
        }
        let truncated = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nhel";
        assert!(judged(&url(vec![], Some([0; 16])), truncated).is_err());
        let mut endless = Response::new(false);
        let err = (0..100)
            .find_map(|_| endless.feed(&[b'a'; 1024]).err())
            .expect("no header bound");
        assert_eq!(err, "no complete response header in 64 KiB");
    }

    #[test]
    fn request_lines() {
        let t = Target {
            addr: "10.0.0.1:8080".parse().unwrap(),
            bind: None,
            fwmark: None,
        };
        assert_eq!(
            request(HttpProtocol::Http10, "/h", None, &t, false),
            "GET /h HTTP/1.0\r\nUser-Agent: xlb-check\r\nHost: 10.0.0.1:8080\r\n\r\n"
        );
        assert_eq!(
            request(HttpProtocol::Http11, "/", Some("www"), &t, false),
            "GET / HTTP/1.1\r\nUser-Agent: xlb-check\r\nHost: www:8080\r\nConnection: close\r\n\r\n"
        );
    }
}
