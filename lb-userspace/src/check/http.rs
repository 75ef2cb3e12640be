//! HTTP_GET and SSL_GET: a small HTTP/1.0 or 1.1 GET per `url`, over TCP or
//! TLS; every url must answer with an accepted status and, when a digest is
//! configured, a body whose MD5 matches (what keepalived's genhash prints).
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

/// Larger bodies are cut here (the digest then cannot match): keeps a
/// misbehaving real from filling the agent's memory.
const MAX_RESPONSE: usize = 16 << 20;

pub async fn probe(check: &HttpCheck, target: &Target, env: &Env) -> Probe {
    let host = check
        .virtualhost
        .clone()
        .or_else(|| env.virtualhost.clone());
    for url in &check.urls {
        // keepalived: the url's virtualhost, else the check's, else the service's.
        let host = url.virtualhost.as_deref().or(host.as_deref());
        let response = match fetch(check, url, host, target).await {
            Ok(r) => r,
            Err(e) => return Probe::fail(format!("GET {}: {e}", url.path)),
        };
        if let Err(why) = judge(url, &response) {
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
) -> std::io::Result<Vec<u8>> {
    let request = request(check.protocol, &url.path, host, target, check.tls);
    let tcp = target.connect_tcp().await?;
    if !check.tls {
        return exchange(tcp, &request).await;
    }
    let name = match (check.sni, host) {
        (true, Some(h)) => ServerName::try_from(h.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        // An address is never sent as SNI.
        _ => ServerName::IpAddress(target.addr.ip().into()),
    };
    let tls = TlsConnector::from(tls_config()).connect(name, tcp).await?;
    exchange(tls, &request).await
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

/// Sends the request and reads the response until the server closes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
) -> std::io::Result<Vec<u8>> {
    s.write_all(request.as_bytes()).await?;
    s.flush().await?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify still delivered its answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => 0,
            Err(e) => return Err(e),
        };
        if n == 0 || out.len() >= MAX_RESPONSE {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Whether the response satisfies `url`.
fn judge(url: &Url, response: &[u8]) -> Result<(), String> {
    let (status, chunked, body) = parse(response)?;
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
    if let Some(want) = url.digest {
        let body = if chunked {
            dechunk(body).ok_or("malformed chunked body")?
        } else {
            body.to_vec()
        };
        let got: [u8; 16] = Md5::digest(&body).into();
        if got != want {
            return Err(format!("body digest {} differs", hex(&got)));
        }
    }
    Ok(())
}

/// Status code, whether the body is chunked, and the body.
fn parse(response: &[u8]) -> Result<(u16, bool, &[u8]), String> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete response header")?;
    let head = std::str::from_utf8(&response[..end]).map_err(|_| "response header is not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let version = words.next().unwrap_or_default();
    let status = words
        .next()
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/"))
        .ok_or_else(|| format!("bad status line `{status_line}`"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    Ok((status, chunked, &response[end + 4..]))
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..eol]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        body = &body[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
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

    #[test]
    fn status_ranges_and_digest() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\n";
        assert_eq!(judge(&url(vec![], None), ok), Ok(()));
        let err = b"HTTP/1.1 500 Internal Server Error\r\n\r\n";
        assert!(judge(&url(vec![], None), err).is_err());
        assert_eq!(judge(&url(vec![(500, 503)], None), err), Ok(()));
        // md5("hello\n") as `genhash` and `md5sum` print it.
        let mut d = [0u8; 16];
        for (i, b) in d.iter_mut().enumerate() {
            *b = u8::from_str_radix(&"b1946ac92492d2347c6235b4d2611184"[2 * i..2 * i + 2], 16)
                .unwrap();
        }
        assert_eq!(judge(&url(vec![], Some(d)), ok), Ok(()));
        let other = b"HTTP/1.0 200 OK\r\n\r\nhello!\n";
        assert!(judge(&url(vec![], Some(d)), other).is_err());
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n3;x=y\r\nlo\n\r\n0\r\n\r\n";
        assert_eq!(judge(&url(vec![], Some(d)), chunked), Ok(()));
    }

    #[test]
    fn malformed_responses_fail() {
        for bad in [
            &b""[..],
            b"HTTP/1.0 200 OK\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.0 abc OK\r\n\r\n",
        ] {
            assert!(judge(&url(vec![], None), bad).is_err(), "{bad:?}");
        }
        let truncated = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nhel";
        assert!(judge(&url(vec![], Some([0; 16])), truncated).is_err());
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
