//! Virtual and static policy rules (`ip rule add|del`).

use super::{Change, request};
use crate::config::vrrp::{Rule, RuleAction};
use anyhow::{Context, Result, bail};
use netlink_packet_route::{
    AddressFamily,
    route::RouteHeader,
    rule::{RuleAction as Action, RuleAttribute, RuleMessage},
};
use rtnetlink::Handle;
use std::{fmt::Write, net::IpAddr};

/// Adds `r`; a rule that already exists is not an error.
pub async fn add(handle: &Handle, r: &Rule) -> Result<()> {
    add_new(handle, r).await.map(drop)
}

/// Removes `r`; a rule already gone is not an error.
pub async fn remove(handle: &Handle, r: &Rule) -> Result<()> {
    let what = || format!("removing rule {}", describe(r));
    let msg = message(r).with_context(what)?;
    request(handle.rule().del(msg).execute(), &[libc::ENOENT])
        .await
        .with_context(what)?;
    Ok(())
}

/// [`add`], telling whether this call added it (for undo on failure).
pub(crate) async fn add_new(handle: &Handle, r: &Rule) -> Result<Change> {
    let what = || format!("adding rule {}", describe(r));
    let msg = message(r).with_context(what)?;
    let mut req = handle.rule().add();
    *req.message_mut() = msg;
    // NLM_F_EXCL: the kernel answers EEXIST for an identical rule.
    request(req.execute(), &[libc::EEXIST])
        .await
        .with_context(what)
}

/// The rule's family: from its addresses, else its `ipv6` flag.
fn family(r: &Rule) -> Result<bool> {
    let v6 = |p: Option<(IpAddr, u8)>| p.map(|(a, _)| a.is_ipv6());
    match (v6(r.from), v6(r.to)) {
        (Some(a), Some(b)) if a != b => bail!("from and to are of different address families"),
        (Some(a), _) | (_, Some(a)) => Ok(a),
        (None, None) => Ok(r.ipv6),
    }
}

/// The RTM_NEWRULE / RTM_DELRULE message for `r`.
fn message(r: &Rule) -> Result<RuleMessage> {
    let ipv6 = family(r)?;
    let max = if ipv6 { 128 } else { 32 };
    let mut msg = RuleMessage::default();
    msg.header.family = if ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    if let Some((ip, len)) = r.from {
        if len > max {
            bail!("from prefix /{len} is longer than {max}");
        }
        msg.header.src_len = len;
        msg.attributes.push(RuleAttribute::Source(ip));
    }
    if let Some((ip, len)) = r.to {
        if len > max {
            bail!("to prefix /{len} is longer than {max}");
        }
        msg.header.dst_len = len;
        msg.attributes.push(RuleAttribute::Destination(ip));
    }
    if let Some((mark, mask)) = r.fwmark {
        msg.attributes.push(RuleAttribute::FwMark(mark));
        if let Some(mask) = mask {
            msg.attributes.push(RuleAttribute::FwMask(mask));
        }
    }
    if let Some(iif) = &r.iif {
        msg.attributes.push(RuleAttribute::Iifname(iif.clone()));
    }
    if let Some(oif) = &r.oif {
        msg.attributes.push(RuleAttribute::Oifname(oif.clone()));
    }
    if let Some(priority) = r.priority {
        msg.attributes.push(RuleAttribute::Priority(priority));
    }
    msg.header.action = match r.action {
        RuleAction::Table(table) => {
            // Tables above 255 only fit the FRA_TABLE attribute.
            msg.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
            msg.attributes.push(RuleAttribute::Table(table));
            Action::ToTable
        }
        RuleAction::Blackhole => Action::Blackhole,
        RuleAction::Unreachable => Action::Unreachable,
        RuleAction::Prohibit => Action::Prohibit,
    };
    Ok(msg)
}

/// `ip rule` style: `from 10.0.0.0/24 fwmark 0x1/0xff priority 100 table 100`.
pub(crate) fn describe(r: &Rule) -> String {
    let mut s = String::new();
    if let Some((ip, len)) = r.from {
        let _ = write!(s, "from {ip}/{len} ");
    }
    if let Some((ip, len)) = r.to {
        let _ = write!(s, "to {ip}/{len} ");
    }
    match r.fwmark {
        Some((mark, Some(mask))) => {
            let _ = write!(s, "fwmark {mark:#x}/{mask:#x} ");
        }
        Some((mark, None)) => {
            let _ = write!(s, "fwmark {mark:#x} ");
        }
        None => {}
    }
    if let Some(iif) = &r.iif {
        let _ = write!(s, "iif {iif} ");
    }
    if let Some(oif) = &r.oif {
        let _ = write!(s, "oif {oif} ");
    }
    if let Some(priority) = r.priority {
        let _ = write!(s, "priority {priority} ");
    }
    match r.action {
        RuleAction::Table(t) => {
            let _ = write!(s, "table {t}");
        }
        RuleAction::Blackhole => s.push_str("blackhole"),
        RuleAction::Unreachable => s.push_str("unreachable"),
        RuleAction::Prohibit => s.push_str("prohibit"),
    }
    if r.from.is_none() && r.to.is_none() && r.ipv6 {
        s.insert_str(0, "-6 ");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: RuleAction) -> Rule {
        Rule {
            ipv6: false,
            from: None,
            to: None,
            fwmark: None,
            iif: None,
            oif: None,
            priority: None,
            action,
        }
    }

    #[test]
    fn family_comes_from_the_addresses() {
        let mut r = rule(RuleAction::Blackhole);
        assert!(!family(&r).unwrap());
        r.ipv6 = true;
        assert!(family(&r).unwrap());
        r.from = Some(("10.0.0.0".parse().unwrap(), 8));
        assert!(!family(&r).unwrap());
        r.to = Some(("fd00::".parse().unwrap(), 8));
        assert!(family(&r).is_err());
    }

    #[test]
    fn big_tables_go_in_the_attribute() {
        let msg = message(&rule(RuleAction::Table(1000))).unwrap();
        assert_eq!(msg.header.table, RouteHeader::RT_TABLE_UNSPEC);
        assert_eq!(msg.header.action, Action::ToTable);
        assert!(msg.attributes.contains(&RuleAttribute::Table(1000)));
        let msg = message(&rule(RuleAction::Prohibit)).unwrap();
        assert_eq!(msg.header.action, Action::Prohibit);
    }

    #[test]
    fn describe_reads_like_ip_rule() {
        let mut r = rule(RuleAction::Table(100));
        r.from = Some(("10.0.0.0".parse().unwrap(), 24));
        r.fwmark = Some((1, Some(0xff)));
        r.priority = Some(100);
        assert_eq!(
            describe(&r),
            "from 10.0.0.0/24 fwmark 0x1/0xff priority 100 table 100"
        );
    }
}
