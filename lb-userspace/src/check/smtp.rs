//! SMTP_CHECK: the server's banner must be a 220 greeting and HELO must be
//! answered with 250 (keepalived's dialogue), then QUIT.

use super::{Probe, Target};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub async fn probe(helo_name: Option<&str>, target: &Target) -> Probe {
    match dialogue(helo_name, target).await {
        Ok(()) => Probe::pass(),
        Err(e) => Probe::fail(format!("SMTP {}: {e}", target.addr)),
    }
}

async fn dialogue(helo_name: Option<&str>, target: &Target) -> Result<(), String> {
    let stream = target.connect_tcp().await.map_err(|e| e.to_string())?;
    let mut s = BufReader::new(stream);
    expect(&mut s, 220).await?;
    let name = helo_name.map_or_else(host_name, str::to_string);
    s.write_all(format!("HELO {name}\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    expect(&mut s, 250).await?;
    // The verdict is in; a server that mishandles QUIT is still up.
    let _ = s.write_all(b"QUIT\r\n").await;
    Ok(())
}

/// Reads one (possibly multi-line) reply and checks its code.
async fn expect<R: AsyncBufReadExt + Unpin>(r: &mut R, code: u16) -> Result<(), String> {
    // A reply has at most a few lines; more is not SMTP.
    for _ in 0..64 {
        let mut line = String::new();
        if r.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            return Err(format!("connection closed while waiting for {code}"));
        }
        let got = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        if got != Some(code) {
            return Err(format!("expected {code}, got `{}`", line.trim_end()));
        }
        // `250-…` continues, `250 …` (or a bare code) ends the reply.
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
    Err("reply too long".into())
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn replies() {
        let mut ok: &[u8] = b"250-mail.example\r\n250-SIZE 1000\r\n250 HELP\r\n";
        assert_eq!(run(expect(&mut ok, 250)), Ok(()));
        let mut bad: &[u8] = b"554 no service\r\n";
        assert!(run(expect(&mut bad, 220)).is_err());
        let mut cut: &[u8] = b"220-hello\r\n";
        assert!(run(expect(&mut cut, 220)).is_err());
    }
}
