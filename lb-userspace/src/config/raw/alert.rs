//! The TOML form of the alert keys of `[global]` (docs/CONFIG.md), positions
//! kept for errors.

use super::check::Seconds;
use serde::Deserialize;
use toml::Spanned;

type Opt<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    #[serde(default)]
    pub notification_email: Opt<Vec<Spanned<String>>>,
    #[serde(default)]
    pub notification_email_from: Opt<String>,
    #[serde(default)]
    pub smtp_server: Opt<SmtpServer>,
    #[serde(default)]
    pub smtp_helo_name: Opt<String>,
    #[serde(default)]
    pub smtp_connect_timeout: Opt<Seconds>,
    #[serde(default)]
    pub smtp_alert: Opt<bool>,
    #[serde(default)]
    pub smtp_alert_vrrp: Opt<bool>,
    #[serde(default)]
    pub smtp_alert_checker: Opt<bool>,
}

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
