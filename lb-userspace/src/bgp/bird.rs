//! A client of bird2's control socket (what `birdc` speaks): one command
//! line in, reply lines out, each `CODE-text` (more follow), `CODE text`
//! (the last) or ` text` (continuing the previous code). Codes 8000 and
//! above are errors. Only the commands the agent needs are wrapped.

use anyhow::{Context, Result, bail};
use std::{path::Path, time::Duration};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    net::{
        UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
};

/// How long a command may take before the connection is given up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// One reply line: its code and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub code: u16,
    pub text: String,
}

/// A line as bird writes it: `(code, text, last)`; `None` code for a continuation.
fn parse_line(raw: &str) -> (Option<u16>, &str, bool) {
    let b = raw.as_bytes();
    if b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && matches!(b[4], b' ' | b'-') {
        let code = raw[..4].parse().ok();
        return (code, &raw[5..], b[4] == b' ');
    }
    (None, raw.strip_prefix(' ').unwrap_or(raw), false)
}

/// A connection to bird's control socket.
pub struct Bird {
    lines: Lines<BufReader<OwnedReadHalf>>,
    out: OwnedWriteHalf,
}

impl Bird {
    /// Connects and reads bird's greeting (`0001 BIRD 2.0.12 ready.`).
    pub async fn connect(path: &Path) -> Result<Bird> {
        let stream = tokio::time::timeout(COMMAND_TIMEOUT, UnixStream::connect(path))
            .await
            .context("timed out")?
            .with_context(|| format!("connecting to {}", path.display()))?;
        let (r, out) = stream.into_split();
        let mut bird = Bird {
            lines: BufReader::new(r).lines(),
            out,
        };
        let hello = bird.reply().await?;
        if hello.first().is_none_or(|l| l.code != 1) {
            bail!("{}: not bird's control socket: {hello:?}", path.display());
        }
        Ok(bird)
    }

    /// Sends `command` and returns its reply; an error reply (8000 and
    /// above) is an error with bird's text.
    pub async fn command(&mut self, command: &str) -> Result<Vec<Line>> {
        self.out
            .write_all(format!("{command}\n").as_bytes())
            .await
            .context("writing to bird")?;
        let reply = self.reply().await?;
        if let Some(e) = reply.iter().find(|l| l.code >= 8000) {
            bail!("bird refused `{command}`: {} {}", e.code, e.text.trim());
        }
        Ok(reply)
    }

    /// Reads lines up to the last one of a reply.
    async fn reply(&mut self) -> Result<Vec<Line>> {
        tokio::time::timeout(COMMAND_TIMEOUT, async {
            let mut out: Vec<Line> = Vec::new();
            loop {
                let Some(raw) = self.lines.next_line().await.context("reading from bird")? else {
                    bail!("bird closed the control connection");
                };
                let (code, text, last) = parse_line(&raw);
                let code = code.or(out.last().map(|l| l.code)).unwrap_or(0);
                out.push(Line {
                    code,
                    text: text.to_string(),
                });
                if last {
                    return Ok(out);
                }
            }
        })
        .await
        .context("bird did not answer in time")?
    }

    /// `enable NAME` / `disable NAME` (bird answers 0011 enabled or 0010
    /// already enabled, 0009 disabled or 0008 already disabled).
    pub async fn set_enabled(&mut self, protocol: &str, on: bool) -> Result<()> {
        let verb = if on { "enable" } else { "disable" };
        let reply = self.command(&format!("{verb} {protocol}")).await?;
        let (done, already) = if on { (11, 10) } else { (9, 8) };
        if !reply.iter().any(|l| l.code == done || l.code == already) {
            bail!("bird did not confirm `{verb} {protocol}`: {reply:?}");
        }
        Ok(())
    }

    /// `configure`: bird reads its config (and our include) again; unchanged
    /// protocols, BGP sessions among them, are left running.
    pub async fn configure(&mut self) -> Result<()> {
        let reply = self.command("configure").await?;
        // 0003 Reconfigured; 0004 in progress; 0005 queued; 0006 ignored (shutting down).
        if reply.iter().any(|l| l.code == 6) {
            bail!("bird ignored `configure`: it is shutting down");
        }
        if !reply.iter().any(|l| matches!(l.code, 3..=5)) {
            bail!("bird did not confirm `configure`: {reply:?}");
        }
        Ok(())
    }

    /// `show protocols`: every protocol's row.
    pub async fn protocols(&mut self) -> Result<Vec<Protocol>> {
        let reply = self.command("show protocols").await?;
        Ok(reply
            .iter()
            .filter(|l| l.code == 1002)
            .filter_map(|l| Protocol::parse(&l.text))
            .collect())
    }
}

/// A row of `show protocols`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Protocol {
    pub name: String,
    /// `BGP`, `Static`, `Device`, …
    pub proto: String,
    /// `up`, `start`, `down`, `flush`.
    pub state: String,
    /// When it entered that state, as bird prints it.
    pub since: String,
    /// For BGP the session's state (`Established`, `Active`, `Idle`, …) and
    /// maybe the last error.
    pub info: String,
}

impl Protocol {
    /// `Name Proto Table State Since Info…` (bird's default time format
    /// prints `since` as one word).
    fn parse(row: &str) -> Option<Protocol> {
        let mut w = row.split_whitespace();
        let name = w.next()?.to_string();
        let proto = w.next()?.to_string();
        let _table = w.next()?;
        let state = w.next()?.to_string();
        let since = w.next().unwrap_or_default().to_string();
        let info = w.collect::<Vec<_>>().join(" ");
        Some(Protocol {
            name,
            proto,
            state,
            since,
            info,
        })
    }

    /// A BGP session that exchanges routes.
    pub fn established(&self) -> bool {
        self.state == "up" && self.info.starts_with("Established")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_are_read_as_bird_writes_them() {
        assert_eq!(
            parse_line("0001 BIRD 2.0.12 ready."),
            (Some(1), "BIRD 2.0.12 ready.", true)
        );
        assert_eq!(
            parse_line("1002-device1    Device"),
            (Some(1002), "device1    Device", false)
        );
        assert_eq!(
            parse_line(" router1    BGP"),
            (None, "router1    BGP", false)
        );
        assert_eq!(parse_line("0000 "), (Some(0), "", true));
        assert_eq!(
            parse_line("9001 syntax error"),
            (Some(9001), "syntax error", true)
        );
    }

    #[test]
    fn protocol_rows() {
        let p =
            Protocol::parse("router1    BGP        ---        up     20:18:37.321  Established   ")
                .unwrap();
        assert_eq!(
            (p.name.as_str(), p.proto.as_str(), p.state.as_str()),
            ("router1", "BGP", "up")
        );
        assert!(p.established());
        let p = Protocol::parse("router1    BGP        ---        start  20:18:37.321  Active        Socket: Connection refused").unwrap();
        assert_eq!(p.info, "Active Socket: Connection refused");
        assert!(!p.established());
        let p =
            Protocol::parse("xlb_v4_10_0_0_10 Static     master4    down   20:18:37.321").unwrap();
        assert_eq!((p.state.as_str(), p.info.as_str()), ("down", ""));
    }
}
