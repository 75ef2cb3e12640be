//! A client of the kernel's IPVS over generic netlink (family "IPVS"):
//! resolve the family, add/change/remove services and destinations, dump
//! them with their 64-bit counters, timeouts, sync daemons, flush.
//!
//! Framing comes from netlink-packet-core / netlink-packet-generic and the
//! socket from netlink-sys, the crates rtnetlink already brings in; the
//! IPVS messages themselves are typed in [`attr`].

pub mod attr;
pub mod types;

use anyhow::{Context, Result, bail};
use attr::{Attr, IpvsMessage, cmd};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable,
};
use netlink_packet_generic::{
    GenlFamily, GenlMessage,
    ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};
use std::fmt::Debug;
pub use types::{Daemon, DestEntry, ServiceEntry, Stats, Timeouts};

use crate::config::ServiceId;

/// IPVS refusing a request over generic netlink (its errno says whether
/// a retry can help: EBUSY or ENOMEM pass, EEXIST or EINVAL do not).
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    #[error(transparent)]
    Refused(std::io::Error),
}

impl crate::fault::Classify for IpvsError {
    fn kind(&self) -> crate::fault::Kind {
        match self {
            IpvsError::Refused(e) => crate::fault::of_io(e),
        }
    }
}

/// An open generic netlink socket with the IPVS family resolved.
pub struct Ipvs {
    socket: Socket,
    family: u16,
    seq: u32,
}

/// What `GET_INFO` reports: the IPVS version and the connection table size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    pub version: u32,
    pub conn_tab_size: u32,
}

impl Ipvs {
    /// Opens a socket and resolves the "IPVS" family; fails with a clear
    /// message where the kernel has no IPVS (module not loaded).
    pub fn connect() -> Result<Ipvs> {
        let mut socket =
            Socket::new(NETLINK_GENERIC).context("opening a generic netlink socket")?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let mut ipvs = Ipvs {
            socket,
            family: 0,
            seq: 0,
        };
        let ask = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(
                IpvsMessage::family_name().to_string(),
            )],
        });
        let replies = ipvs
            .transact(ask, NLM_F_REQUEST | NLM_F_ACK)
            .context("the kernel has no IPVS (is the ip_vs module loaded?)")?;
        ipvs.family = replies
            .iter()
            .flat_map(|r| &r.payload.nlas)
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .context("the generic netlink controller did not report IPVS's family id")?;
        Ok(ipvs)
    }

    /// Sends `msg` and collects the replies up to the acknowledgement or
    /// the end of the dump; a negative acknowledgement is an error.
    fn transact<F>(&mut self, msg: GenlMessage<F>, flags: u16) -> Result<Vec<GenlMessage<F>>>
    where
        F: GenlFamily + Debug + Clone + PartialEq + Eq,
        GenlMessage<F>: NetlinkSerializable + NetlinkDeserializable,
    {
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        self.socket.send(&buf, 0).context("sending to netlink")?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self
                .socket
                .recv_from_full()
                .context("receiving from netlink")?;
            let mut at = 0;
            while at < data.len() {
                let reply = NetlinkMessage::<GenlMessage<F>>::deserialize(&data[at..])
                    .context("parsing a netlink reply")?;
                let len = reply.header.length as usize;
                if len == 0 {
                    bail!("a netlink reply of length 0");
                }
                at += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(out),
                        Some(_) => return Err(IpvsError::Refused(e.to_io()).into()),
                    },
                    _ => {}
                }
            }
        }
    }

    fn ipvs(&mut self, cmd: u8, attrs: Vec<Attr>, flags: u16) -> Result<Vec<IpvsMessage>> {
        let msg = GenlMessage::new(
            netlink_packet_generic::GenlHeader { cmd, version: 1 },
            IpvsMessage { cmd, attrs },
            self.family,
        );
        Ok(self
            .transact(msg, flags)?
            .into_iter()
            .map(|m| m.payload)
            .collect())
    }

    fn act(&mut self, cmd: u8, attrs: Vec<Attr>) -> Result<()> {
        self.ipvs(cmd, attrs, NLM_F_REQUEST | NLM_F_ACK).map(drop)
    }

    pub fn info(&mut self) -> Result<Info> {
        let replies = self.ipvs(cmd::GET_INFO, vec![], NLM_F_REQUEST | NLM_F_ACK)?;
        let mut info = Info {
            version: 0,
            conn_tab_size: 0,
        };
        for a in replies.iter().flat_map(|r| &r.attrs) {
            match a {
                Attr::InfoVersion(v) => info.version = *v,
                Attr::InfoConnTabSize(v) => info.conn_tab_size = *v,
                _ => {}
            }
        }
        Ok(info)
    }

    /// Every service xlb can configure (TCP, UDP, fwmark), with counters.
    pub fn services(&mut self) -> Result<Vec<ServiceEntry>> {
        let replies = self.ipvs(cmd::GET_SERVICE, vec![], NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = Vec::new();
        for a in replies.iter().flat_map(|r| &r.attrs) {
            if let Attr::Service(s) = a
                && let Some(e) = ServiceEntry::from_attrs(s)?
            {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Every service with its destinations, as the kernel has them.
    pub fn listing(&mut self) -> Result<Vec<(ServiceEntry, Vec<DestEntry>)>> {
        let mut out = Vec::new();
        for s in self.services()? {
            let dests = self.dests(&s.id)?;
            out.push((s, dests));
        }
        Ok(out)
    }

    /// The destinations of service `id`, with counters.
    pub fn dests(&mut self, id: &ServiceId) -> Result<Vec<DestEntry>> {
        let svc = Attr::Service(types::key_attrs(id));
        let replies = self.ipvs(cmd::GET_DEST, vec![svc], NLM_F_REQUEST | NLM_F_DUMP)?;
        let af = if id.is_ipv6() {
            types::AF_INET6
        } else {
            types::AF_INET
        };
        Ok(replies
            .iter()
            .flat_map(|r| &r.attrs)
            .filter_map(|a| match a {
                Attr::Dest(d) => Some(DestEntry::from_attrs(af, d)),
                _ => None,
            })
            .collect())
    }

    pub fn add_service(&mut self, s: &ServiceEntry) -> Result<()> {
        self.act(cmd::NEW_SERVICE, vec![Attr::Service(s.to_attrs())])
    }

    pub fn edit_service(&mut self, s: &ServiceEntry) -> Result<()> {
        self.act(cmd::SET_SERVICE, vec![Attr::Service(s.to_attrs())])
    }

    pub fn del_service(&mut self, id: &ServiceId) -> Result<()> {
        self.act(cmd::DEL_SERVICE, vec![Attr::Service(types::key_attrs(id))])
    }

    pub fn add_dest(&mut self, id: &ServiceId, d: &DestEntry) -> Result<()> {
        let attrs = vec![
            Attr::Service(types::key_attrs(id)),
            Attr::Dest(d.to_attrs()),
        ];
        self.act(cmd::NEW_DEST, attrs)
    }

    pub fn edit_dest(&mut self, id: &ServiceId, d: &DestEntry) -> Result<()> {
        let attrs = vec![
            Attr::Service(types::key_attrs(id)),
            Attr::Dest(d.to_attrs()),
        ];
        self.act(cmd::SET_DEST, attrs)
    }

    pub fn del_dest(&mut self, id: &ServiceId, d: &DestEntry) -> Result<()> {
        let attrs = vec![
            Attr::Service(types::key_attrs(id)),
            Attr::Dest(d.key_attrs()),
        ];
        self.act(cmd::DEL_DEST, attrs)
    }

    /// Removes every service.
    /// Zeroes the counters of service `only`, or of every service.
    pub fn zero(&mut self, only: Option<&ServiceId>) -> Result<()> {
        let attrs = only.map_or_else(Vec::new, |id| vec![Attr::Service(types::key_attrs(id))]);
        self.act(cmd::ZERO, attrs)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.act(cmd::FLUSH, vec![])
    }

    pub fn timeouts(&mut self) -> Result<Timeouts> {
        let replies = self.ipvs(cmd::GET_CONFIG, vec![], NLM_F_REQUEST | NLM_F_ACK)?;
        let mut t = Timeouts {
            tcp: 0,
            tcp_fin: 0,
            udp: 0,
        };
        for a in replies.iter().flat_map(|r| &r.attrs) {
            match a {
                Attr::TimeoutTcp(v) => t.tcp = *v,
                Attr::TimeoutTcpFin(v) => t.tcp_fin = *v,
                Attr::TimeoutUdp(v) => t.udp = *v,
                _ => {}
            }
        }
        Ok(t)
    }

    pub fn set_timeouts(&mut self, t: Timeouts) -> Result<()> {
        self.act(
            cmd::SET_CONFIG,
            vec![
                Attr::TimeoutTcp(t.tcp),
                Attr::TimeoutTcpFin(t.tcp_fin),
                Attr::TimeoutUdp(t.udp),
            ],
        )
    }

    pub fn daemons(&mut self) -> Result<Vec<Daemon>> {
        let replies = self.ipvs(cmd::GET_DAEMON, vec![], NLM_F_REQUEST | NLM_F_DUMP)?;
        Ok(replies
            .iter()
            .flat_map(|r| &r.attrs)
            .filter_map(|a| match a {
                Attr::Daemon(d) => Some(Daemon::from_attrs(d)),
                _ => None,
            })
            .collect())
    }

    pub fn add_daemon(&mut self, d: &Daemon) -> Result<()> {
        self.act(cmd::NEW_DAEMON, vec![Attr::Daemon(d.to_attrs())])
    }

    /// Stops the master (`true`) or backup daemon.
    pub fn del_daemon(&mut self, master: bool) -> Result<()> {
        let state = attr::DaemonAttr::State(if master { 1 } else { 2 });
        self.act(cmd::DEL_DAEMON, vec![Attr::Daemon(vec![state])])
    }
}
