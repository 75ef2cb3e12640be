//! The TOML form of health checks and the real-server lifecycle (docs/CONFIG.md).

use serde::Deserialize;
use toml::Spanned;

/// Seconds as an integer or a fraction.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Seconds {
    Whole(i64),
    Fraction(f64),
}

/// A command: an argv array, or a string split into words as keepalived does.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CommandText {
    Argv(Vec<String>),
    Line(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SorryServer {
    pub address: Spanned<String>,
    #[serde(default)]
    pub port: Option<Spanned<i64>>,
    #[serde(default)]
    pub inhibit: Option<Spanned<bool>>,
}

/// `status_code` entries: `200` or `"300-304"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StatusCode {
    Code(i64),
    Range(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Url {
    pub path: Spanned<String>,
    #[serde(default)]
    pub status_code: Option<Spanned<Vec<Spanned<StatusCode>>>>,
    #[serde(default)]
    pub digest: Option<Spanned<String>>,
    #[serde(default)]
    pub virtualhost: Option<Spanned<String>>,
}

/// `require_reply`: `true` (any reply) or hex bytes the reply must start with.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    Any(bool),
    Prefix(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    #[serde(default)]
    pub connect_ip: Option<Spanned<String>>,
    #[serde(default)]
    pub connect_port: Option<Spanned<i64>>,
    #[serde(default)]
    pub bindto: Option<Spanned<String>>,
    #[serde(default)]
    pub bind_port: Option<Spanned<i64>>,
    #[serde(default)]
    pub connect_timeout: Option<Spanned<Seconds>>,
    #[serde(default)]
    pub retry: Option<Spanned<i64>>,
    #[serde(default)]
    pub delay_before_retry: Option<Spanned<Seconds>>,
    #[serde(default)]
    pub delay_loop: Option<Spanned<Seconds>>,
    #[serde(default)]
    pub warmup: Option<Spanned<Seconds>>,
    #[serde(default)]
    pub fwmark: Option<Spanned<i64>>,
    #[serde(default)]
    pub url: Option<Spanned<Vec<Spanned<Url>>>>,
    #[serde(default)]
    pub virtualhost: Option<Spanned<String>>,
    #[serde(default)]
    pub enable_sni: Option<Spanned<bool>>,
    #[serde(default)]
    pub http_protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub helo_name: Option<Spanned<String>>,
    #[serde(default)]
    pub dns_type: Option<Spanned<String>>,
    #[serde(default)]
    pub dns_name: Option<Spanned<String>>,
    #[serde(default)]
    pub payload: Option<Spanned<String>>,
    #[serde(default)]
    pub require_reply: Option<Spanned<Reply>>,
    #[serde(default)]
    pub misc_path: Option<Spanned<CommandText>>,
    #[serde(default)]
    pub misc_timeout: Option<Spanned<Seconds>>,
    #[serde(default)]
    pub misc_dynamic: Option<Spanned<bool>>,
    #[serde(default)]
    pub user: Option<Spanned<String>>,
    #[serde(default)]
    pub smtp_alert: Option<Spanned<bool>>,
    #[serde(default)]
    pub alpha: Option<Spanned<bool>>,
}
