//! The TOML form of `smtp_server` (the other alert keys of `[global]` are
//! plain values in `raw::vrrp::Global`).

use serde::Deserialize;

/// `smtp_server`: `"HOST"` (port 25) or `{ host = "HOST", port = N }`
/// (no positions inside: toml cannot keep them through an untagged enum).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SmtpServer {
    Host(String),
    Table(SmtpServerTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpServerTable {
    pub host: String,
    #[serde(default)]
    pub port: Option<i64>,
}
