//! `no_accept` (RFC 9568 Accept_Mode false): a Master that does not own its
//! virtual addresses holds them but the host does not accept packets sent to
//! them. As keepalived does, an nftables input chain at priority -1 drops
//! them; the addresses are elements of two sets, so instances come and go
//! without touching the rules. VRRP itself and IPv6 neighbour discovery (a
//! neighbour must still resolve the VIP) pass. Service traffic is forwarded
//! by XDP before any of this, so only the rest (ping, other ports) is
//! refused.
//!
//! The table `inet xlb` exists while at least one address is held: it is
//! created afresh with the first and deleted with the last; one a killed
//! agent left goes when a `no_accept` instance starts. Changes go through
//! `nft -f -`, one atomic transaction each.

use anyhow::{Context, Result, bail};
use std::{collections::BTreeSet, fmt::Write as _, net::IpAddr, process::Stdio};
use tokio::{io::AsyncWriteExt, process::Command, sync::Mutex};

/// The table's family and name, as `nft list table` takes them.
pub const TABLE: &str = "inet xlb";
/// IP protocol number of VRRP, accepted even when addressed to a VIP.
const IPPROTO_VRRP: u8 = 112;

/// The addresses this agent refuses local delivery to.
#[derive(Default)]
pub struct NoAccept {
    held: Mutex<BTreeSet<IpAddr>>,
}

impl NoAccept {
    /// Refuses packets to `addrs` from now on (before they are added to an interface).
    pub async fn hold(&self, addrs: &[IpAddr]) -> Result<()> {
        let mut held = self.held.lock().await;
        let mut script = String::new();
        if held.is_empty() {
            script.push_str(&create_table());
        }
        script.push_str(&elements("add", addrs));
        nft(&script).await?;
        held.extend(addrs);
        Ok(())
    }

    /// Removes a table a killed agent left, unless this agent already holds
    /// addresses in it (so a Backup has no stale drop rules either).
    pub async fn clear_stale(&self) -> Result<()> {
        let held = self.held.lock().await;
        if held.is_empty() {
            nft(&delete_table()).await?;
        }
        Ok(())
    }

    /// Stops refusing `addrs` (after they left the interface); the last one takes the table along.
    pub async fn release(&self, addrs: &[IpAddr]) -> Result<()> {
        let mut held = self.held.lock().await;
        for a in addrs {
            held.remove(a);
        }
        let script = if held.is_empty() {
            delete_table()
        } else {
            // Adding first makes the delete succeed when an element is already gone.
            elements("add", addrs) + &elements("delete", addrs)
        };
        nft(&script).await
    }
}

/// Fails with what to install when the `nft` program cannot run.
pub async fn check_nft() -> Result<()> {
    let out = Command::new("nft")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!("no_accept needs the `nft` program (Debian package nftables)"),
    }
}

/// The table with empty sets and the drop rules, replacing any earlier one.
fn create_table() -> String {
    format!(
        "table {TABLE} {{}}
delete table {TABLE}
table {TABLE} {{
  set vips4 {{ type ipv4_addr; }}
  set vips6 {{ type ipv6_addr; }}
  chain no_accept {{
    type filter hook input priority -1; policy accept;
    meta l4proto {IPPROTO_VRRP} accept
    ip6 daddr @vips6 icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
    ip daddr @vips4 drop
    ip6 daddr @vips6 drop
  }}
}}
"
    )
}

/// Removes the table whether or not it exists.
fn delete_table() -> String {
    format!("table {TABLE} {{}}\ndelete table {TABLE}\n")
}

/// `verb` (add or delete) `addrs` in the set of their family.
fn elements(verb: &str, addrs: &[IpAddr]) -> String {
    let mut s = String::new();
    for (set, v6) in [("vips4", false), ("vips6", true)] {
        let list: Vec<String> = addrs
            .iter()
            .filter(|a| a.is_ipv6() == v6)
            .map(IpAddr::to_string)
            .collect();
        if !list.is_empty() {
            let _ = writeln!(s, "{verb} element {TABLE} {set} {{ {} }}", list.join(", "));
        }
    }
    s
}

/// Runs `script` as one nftables transaction.
async fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running nft (Debian package nftables) for no_accept")?;
    let mut stdin = child.stdin.take().context("nft's stdin")?;
    stdin.write_all(script.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await.context("waiting for nft")?;
    if !out.status.success() {
        bail!(
            "nft refused the no_accept rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_go_to_the_set_of_their_family() {
        let addrs: Vec<IpAddr> = ["10.0.0.1", "fd00::1", "10.0.0.2"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(
            elements("add", &addrs),
            "add element inet xlb vips4 { 10.0.0.1, 10.0.0.2 }\n\
             add element inet xlb vips6 { fd00::1 }\n"
        );
        assert_eq!(
            elements("delete", &addrs[..1]),
            "delete element inet xlb vips4 { 10.0.0.1 }\n"
        );
        assert_eq!(elements("add", &[]), "");
    }

    #[test]
    fn table_is_replaced_and_removed_idempotently() {
        let t = create_table();
        // The empty declaration makes the delete succeed on a host without the table.
        assert!(t.starts_with("table inet xlb {}\ndelete table inet xlb\ntable inet xlb {"));
        assert!(t.contains("type filter hook input priority -1; policy accept;"));
        // VRRP and neighbour discovery are accepted before the drops.
        let pos = |s: &str| t.find(s).unwrap();
        assert!(pos("meta l4proto 112 accept") < pos("ip daddr @vips4 drop"));
        assert!(pos("nd-neighbor-solicit") < pos("ip6 daddr @vips6 drop"));
        assert_eq!(delete_table(), "table inet xlb {}\ndelete table inet xlb\n");
    }
}
