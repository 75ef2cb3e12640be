//! The IPVS generic netlink family's messages and attributes
//! (include/uapi/linux/ip_vs.h), typed: each level of nesting is an enum
//! that emits and parses itself through netlink-packet-core's [`Nla`].

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NLA_F_NESTED, Nla, NlaBuffer, NlasIterator,
    ParseableParametrized, emit_u16, emit_u16_be, emit_u32, emit_u64, parse_string, parse_u8,
    parse_u16, parse_u16_be, parse_u32, parse_u64,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

/// `IPVS_CMD_*`.
pub mod cmd {
    pub const NEW_SERVICE: u8 = 1;
    pub const SET_SERVICE: u8 = 2;
    pub const DEL_SERVICE: u8 = 3;
    pub const GET_SERVICE: u8 = 4;
    pub const NEW_DEST: u8 = 5;
    pub const SET_DEST: u8 = 6;
    pub const DEL_DEST: u8 = 7;
    pub const GET_DEST: u8 = 8;
    pub const NEW_DAEMON: u8 = 9;
    pub const DEL_DAEMON: u8 = 10;
    pub const GET_DAEMON: u8 = 11;
    pub const SET_CONFIG: u8 = 12;
    pub const GET_CONFIG: u8 = 13;
    pub const SET_INFO: u8 = 14;
    pub const GET_INFO: u8 = 15;
    pub const ZERO: u8 = 16;
    pub const FLUSH: u8 = 17;
}

/// One IPVS request or reply: a command and its top-level attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMessage {
    pub cmd: u8,
    pub attrs: Vec<Attr>,
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        "IPVS"
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        1
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        // Info messages reuse the top-level numbers 1 and 2 for the version
        // and the connection table size; the kernel answers GET_INFO with SET_INFO.
        let info = header.cmd == cmd::GET_INFO || header.cmd == cmd::SET_INFO;
        let attrs = parse_all(buf, |nla| Attr::parse(nla, info))?;
        Ok(IpvsMessage {
            cmd: header.cmd,
            attrs,
        })
    }
}

fn parse_all<T>(
    buf: &[u8],
    one: impl Fn(&NlaBuffer<&[u8]>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    NlasIterator::new(buf)
        .map(|nla| nla.and_then(|n| one(&n)))
        .collect()
}

fn emit_nested<T: Nla>(attrs: &[T], buffer: &mut [u8]) {
    attrs.emit(buffer)
}

fn other(nla: &NlaBuffer<&[u8]>) -> DefaultNla {
    DefaultNla::new(nla.kind(), nla.value().to_vec())
}

/// 16 bytes as the kernel keeps any address (`union nf_inet_addr`).
fn parse_addr16(v: &[u8]) -> Result<[u8; 16], DecodeError> {
    let mut a = [0u8; 16];
    match v.len() {
        4 | 16 => {
            a[..v.len()].copy_from_slice(v);
            Ok(a)
        }
        n => Err(DecodeError::from(format!("address of {n} bytes"))),
    }
}

/// Top-level attributes (`IPVS_CMD_ATTR_*`, or `IPVS_INFO_ATTR_*` in GET_INFO replies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attr {
    Service(Vec<SvcAttr>),
    Dest(Vec<DestAttr>),
    Daemon(Vec<DaemonAttr>),
    TimeoutTcp(u32),
    TimeoutTcpFin(u32),
    TimeoutUdp(u32),
    InfoVersion(u32),
    InfoConnTabSize(u32),
    Other(DefaultNla),
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::Service(a) => a.as_slice().buffer_len(),
            Attr::Dest(a) => a.as_slice().buffer_len(),
            Attr::Daemon(a) => a.as_slice().buffer_len(),
            Attr::TimeoutTcp(_)
            | Attr::TimeoutTcpFin(_)
            | Attr::TimeoutUdp(_)
            | Attr::InfoVersion(_)
            | Attr::InfoConnTabSize(_) => 4,
            Attr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Attr::Service(_) => 1 | NLA_F_NESTED,
            Attr::Dest(_) => 2 | NLA_F_NESTED,
            Attr::Daemon(_) => 3 | NLA_F_NESTED,
            Attr::TimeoutTcp(_) => 4,
            Attr::TimeoutTcpFin(_) => 5,
            Attr::TimeoutUdp(_) => 6,
            Attr::InfoVersion(_) => 1,
            Attr::InfoConnTabSize(_) => 2,
            Attr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Attr::Service(a) => emit_nested(a, buffer),
            Attr::Dest(a) => emit_nested(a, buffer),
            Attr::Daemon(a) => emit_nested(a, buffer),
            Attr::TimeoutTcp(v)
            | Attr::TimeoutTcpFin(v)
            | Attr::TimeoutUdp(v)
            | Attr::InfoVersion(v)
            | Attr::InfoConnTabSize(v) => emit_u32(buffer, *v).expect("4-byte buffer"),
            Attr::Other(n) => n.emit_value(buffer),
        }
    }
}

impl Attr {
    fn parse(nla: &NlaBuffer<&[u8]>, info: bool) -> Result<Attr, DecodeError> {
        let v = nla.value();
        Ok(match (nla.kind(), info) {
            (1, true) => Attr::InfoVersion(parse_u32(v)?),
            (2, true) => Attr::InfoConnTabSize(parse_u32(v)?),
            (1, false) => Attr::Service(parse_all(v, SvcAttr::parse)?),
            (2, false) => Attr::Dest(parse_all(v, DestAttr::parse)?),
            (3, _) => Attr::Daemon(parse_all(v, DaemonAttr::parse)?),
            (4, _) => Attr::TimeoutTcp(parse_u32(v)?),
            (5, _) => Attr::TimeoutTcpFin(parse_u32(v)?),
            (6, _) => Attr::TimeoutUdp(parse_u32(v)?),
            _ => Attr::Other(other(nla)),
        })
    }
}

/// `IPVS_SVC_ATTR_*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SvcAttr {
    Af(u16),
    Protocol(u16),
    Addr([u8; 16]),
    /// Network byte order on the wire; host order here.
    Port(u16),
    Fwmark(u32),
    SchedName(String),
    Flags {
        flags: u32,
        mask: u32,
    },
    Timeout(u32),
    /// IPv4: the netmask's bytes in network order; IPv6: a prefix length.
    Netmask(u32),
    PeName(String),
    Stats64(Vec<StatsAttr>),
    Other(DefaultNla),
}

impl Nla for SvcAttr {
    fn value_len(&self) -> usize {
        match self {
            SvcAttr::Af(_) | SvcAttr::Protocol(_) | SvcAttr::Port(_) => 2,
            SvcAttr::Fwmark(_) | SvcAttr::Timeout(_) | SvcAttr::Netmask(_) => 4,
            SvcAttr::Addr(_) => 16,
            SvcAttr::SchedName(s) | SvcAttr::PeName(s) => s.len() + 1,
            SvcAttr::Flags { .. } => 8,
            SvcAttr::Stats64(s) => s.as_slice().buffer_len(),
            SvcAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            SvcAttr::Af(_) => 1,
            SvcAttr::Protocol(_) => 2,
            SvcAttr::Addr(_) => 3,
            SvcAttr::Port(_) => 4,
            SvcAttr::Fwmark(_) => 5,
            SvcAttr::SchedName(_) => 6,
            SvcAttr::Flags { .. } => 7,
            SvcAttr::Timeout(_) => 8,
            SvcAttr::Netmask(_) => 9,
            SvcAttr::PeName(_) => 11,
            SvcAttr::Stats64(_) => 12 | NLA_F_NESTED,
            SvcAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, b: &mut [u8]) {
        match self {
            SvcAttr::Af(v) | SvcAttr::Protocol(v) => emit_u16(b, *v).expect("2 bytes"),
            SvcAttr::Port(v) => emit_u16_be(b, *v).expect("2 bytes"),
            SvcAttr::Fwmark(v) | SvcAttr::Timeout(v) | SvcAttr::Netmask(v) => {
                emit_u32(b, *v).expect("4 bytes")
            }
            SvcAttr::Addr(a) => b.copy_from_slice(a),
            SvcAttr::SchedName(s) | SvcAttr::PeName(s) => emit_cstr(b, s),
            SvcAttr::Flags { flags, mask } => {
                emit_u32(&mut b[..4], *flags).expect("4 bytes");
                emit_u32(&mut b[4..], *mask).expect("4 bytes");
            }
            SvcAttr::Stats64(s) => emit_nested(s, b),
            SvcAttr::Other(n) => n.emit_value(b),
        }
    }
}

impl SvcAttr {
    fn parse(nla: &NlaBuffer<&[u8]>) -> Result<SvcAttr, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            1 => SvcAttr::Af(parse_u16(v)?),
            2 => SvcAttr::Protocol(parse_u16(v)?),
            3 => SvcAttr::Addr(parse_addr16(v)?),
            4 => SvcAttr::Port(parse_u16_be(v)?),
            5 => SvcAttr::Fwmark(parse_u32(v)?),
            6 => SvcAttr::SchedName(parse_string(v)?),
            7 if v.len() >= 8 => SvcAttr::Flags {
                flags: parse_u32(&v[..4])?,
                mask: parse_u32(&v[4..8])?,
            },
            8 => SvcAttr::Timeout(parse_u32(v)?),
            9 => SvcAttr::Netmask(parse_u32(v)?),
            11 => SvcAttr::PeName(parse_string(v)?),
            12 => SvcAttr::Stats64(parse_all(v, StatsAttr::parse)?),
            _ => SvcAttr::Other(other(nla)),
        })
    }
}

/// `IPVS_DEST_ATTR_*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestAttr {
    Addr([u8; 16]),
    /// Network byte order on the wire; host order here.
    Port(u16),
    FwdMethod(u32),
    Weight(u32),
    UThresh(u32),
    LThresh(u32),
    ActiveConns(u32),
    InactConns(u32),
    PersistConns(u32),
    AddrFamily(u16),
    Stats64(Vec<StatsAttr>),
    TunType(u8),
    /// Network byte order on the wire; host order here.
    TunPort(u16),
    TunFlags(u16),
    Other(DefaultNla),
}

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        match self {
            DestAttr::Addr(_) => 16,
            DestAttr::Port(_)
            | DestAttr::AddrFamily(_)
            | DestAttr::TunPort(_)
            | DestAttr::TunFlags(_) => 2,
            DestAttr::TunType(_) => 1,
            DestAttr::FwdMethod(_)
            | DestAttr::Weight(_)
            | DestAttr::UThresh(_)
            | DestAttr::LThresh(_)
            | DestAttr::ActiveConns(_)
            | DestAttr::InactConns(_)
            | DestAttr::PersistConns(_) => 4,
            DestAttr::Stats64(s) => s.as_slice().buffer_len(),
            DestAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DestAttr::Addr(_) => 1,
            DestAttr::Port(_) => 2,
            DestAttr::FwdMethod(_) => 3,
            DestAttr::Weight(_) => 4,
            DestAttr::UThresh(_) => 5,
            DestAttr::LThresh(_) => 6,
            DestAttr::ActiveConns(_) => 7,
            DestAttr::InactConns(_) => 8,
            DestAttr::PersistConns(_) => 9,
            DestAttr::AddrFamily(_) => 11,
            DestAttr::Stats64(_) => 12 | NLA_F_NESTED,
            DestAttr::TunType(_) => 13,
            DestAttr::TunPort(_) => 14,
            DestAttr::TunFlags(_) => 15,
            DestAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, b: &mut [u8]) {
        match self {
            DestAttr::Addr(a) => b.copy_from_slice(a),
            DestAttr::Port(v) | DestAttr::TunPort(v) => emit_u16_be(b, *v).expect("2 bytes"),
            DestAttr::AddrFamily(v) | DestAttr::TunFlags(v) => emit_u16(b, *v).expect("2 bytes"),
            DestAttr::TunType(v) => b[0] = *v,
            DestAttr::FwdMethod(v)
            | DestAttr::Weight(v)
            | DestAttr::UThresh(v)
            | DestAttr::LThresh(v)
            | DestAttr::ActiveConns(v)
            | DestAttr::InactConns(v)
            | DestAttr::PersistConns(v) => emit_u32(b, *v).expect("4 bytes"),
            DestAttr::Stats64(s) => emit_nested(s, b),
            DestAttr::Other(n) => n.emit_value(b),
        }
    }
}

impl DestAttr {
    fn parse(nla: &NlaBuffer<&[u8]>) -> Result<DestAttr, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            1 => DestAttr::Addr(parse_addr16(v)?),
            2 => DestAttr::Port(parse_u16_be(v)?),
            3 => DestAttr::FwdMethod(parse_u32(v)?),
            4 => DestAttr::Weight(parse_u32(v)?),
            5 => DestAttr::UThresh(parse_u32(v)?),
            6 => DestAttr::LThresh(parse_u32(v)?),
            7 => DestAttr::ActiveConns(parse_u32(v)?),
            8 => DestAttr::InactConns(parse_u32(v)?),
            9 => DestAttr::PersistConns(parse_u32(v)?),
            11 => DestAttr::AddrFamily(parse_u16(v)?),
            12 => DestAttr::Stats64(parse_all(v, StatsAttr::parse)?),
            13 => DestAttr::TunType(parse_u8(v)?),
            14 => DestAttr::TunPort(parse_u16_be(v)?),
            15 => DestAttr::TunFlags(parse_u16(v)?),
            _ => DestAttr::Other(other(nla)),
        })
    }
}

/// `IPVS_STATS_ATTR_*` inside STATS64: every counter a u64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsAttr {
    /// 1 CONNS, 2 INPKTS, 3 OUTPKTS, 4 INBYTES, 5 OUTBYTES, 6 CPS, 7 INPPS,
    /// 8 OUTPPS, 9 INBPS, 10 OUTBPS.
    pub kind: u16,
    pub value: u64,
}

impl Nla for StatsAttr {
    fn value_len(&self) -> usize {
        8
    }

    fn kind(&self) -> u16 {
        self.kind
    }

    fn emit_value(&self, b: &mut [u8]) {
        emit_u64(b, self.value).expect("8 bytes")
    }
}

impl StatsAttr {
    fn parse(nla: &NlaBuffer<&[u8]>) -> Result<StatsAttr, DecodeError> {
        // IPVS_STATS_ATTR_PAD (11) carries no counter.
        let value = if nla.value().len() == 8 {
            parse_u64(nla.value())?
        } else {
            0
        };
        Ok(StatsAttr {
            kind: nla.kind(),
            value,
        })
    }
}

/// `IPVS_DAEMON_ATTR_*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaemonAttr {
    /// `IP_VS_STATE_MASTER` 1 or `IP_VS_STATE_BACKUP` 2.
    State(u32),
    McastIfn(String),
    SyncId(u32),
    SyncMaxlen(u16),
    /// An IPv4 group's bytes in network order.
    McastGroup([u8; 4]),
    McastGroup6([u8; 16]),
    McastPort(u16),
    McastTtl(u8),
    Other(DefaultNla),
}

impl Nla for DaemonAttr {
    fn value_len(&self) -> usize {
        match self {
            DaemonAttr::State(_) | DaemonAttr::SyncId(_) | DaemonAttr::McastGroup(_) => 4,
            DaemonAttr::McastIfn(s) => s.len() + 1,
            DaemonAttr::SyncMaxlen(_) | DaemonAttr::McastPort(_) => 2,
            DaemonAttr::McastGroup6(_) => 16,
            DaemonAttr::McastTtl(_) => 1,
            DaemonAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DaemonAttr::State(_) => 1,
            DaemonAttr::McastIfn(_) => 2,
            DaemonAttr::SyncId(_) => 3,
            DaemonAttr::SyncMaxlen(_) => 4,
            DaemonAttr::McastGroup(_) => 5,
            DaemonAttr::McastGroup6(_) => 6,
            DaemonAttr::McastPort(_) => 7,
            DaemonAttr::McastTtl(_) => 8,
            DaemonAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, b: &mut [u8]) {
        match self {
            DaemonAttr::State(v) | DaemonAttr::SyncId(v) => emit_u32(b, *v).expect("4 bytes"),
            DaemonAttr::McastIfn(s) => emit_cstr(b, s),
            // The kernel keeps the port in host order here (unlike service ports).
            DaemonAttr::SyncMaxlen(v) | DaemonAttr::McastPort(v) => {
                emit_u16(b, *v).expect("2 bytes")
            }
            DaemonAttr::McastGroup(a) => b.copy_from_slice(a),
            DaemonAttr::McastGroup6(a) => b.copy_from_slice(a),
            DaemonAttr::McastTtl(v) => b[0] = *v,
            DaemonAttr::Other(n) => n.emit_value(b),
        }
    }
}

impl DaemonAttr {
    fn parse(nla: &NlaBuffer<&[u8]>) -> Result<DaemonAttr, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            1 => DaemonAttr::State(parse_u32(v)?),
            2 => DaemonAttr::McastIfn(parse_string(v)?),
            3 => DaemonAttr::SyncId(parse_u32(v)?),
            4 => DaemonAttr::SyncMaxlen(parse_u16(v)?),
            5 if v.len() == 4 => DaemonAttr::McastGroup([v[0], v[1], v[2], v[3]]),
            6 => DaemonAttr::McastGroup6(parse_addr16(v)?),
            7 => DaemonAttr::McastPort(parse_u16(v)?),
            8 => DaemonAttr::McastTtl(parse_u8(v)?),
            _ => DaemonAttr::Other(other(nla)),
        })
    }
}

fn emit_cstr(b: &mut [u8], s: &str) {
    b[..s.len()].copy_from_slice(s.as_bytes());
    b[s.len()] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(msg: &IpvsMessage) -> IpvsMessage {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        IpvsMessage::parse_with_param(
            &buf,
            GenlHeader {
                cmd: msg.cmd,
                version: 1,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_service_with_its_dest_survives_emit_and_parse() {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        let msg = IpvsMessage {
            cmd: cmd::NEW_DEST,
            attrs: vec![
                Attr::Service(vec![
                    SvcAttr::Af(2),
                    SvcAttr::Protocol(6),
                    SvcAttr::Addr(addr),
                    SvcAttr::Port(80),
                    SvcAttr::SchedName("wrr".into()),
                    SvcAttr::Flags {
                        flags: 0x9,
                        mask: u32::MAX,
                    },
                ]),
                Attr::Dest(vec![
                    DestAttr::Addr(addr),
                    DestAttr::Port(8080),
                    DestAttr::TunType(1),
                    DestAttr::TunPort(6080),
                ]),
            ],
        };
        assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn ports_and_strings_have_the_kernels_layout() {
        // Port 80 big-endian; "rr" NUL-terminated and padded to 4 bytes.
        let attrs = [SvcAttr::Port(80), SvcAttr::SchedName("rr".into())];
        let mut buf = vec![0u8; attrs.as_slice().buffer_len()];
        attrs.as_slice().emit(&mut buf);
        assert_eq!(buf, [6, 0, 4, 0, 0, 80, 0, 0, 7, 0, 6, 0, b'r', b'r', 0, 0]);
    }

    #[test]
    fn info_replies_read_attributes_1_and_2_as_version_and_size() {
        for cmd in [cmd::GET_INFO, cmd::SET_INFO] {
            let msg = IpvsMessage {
                cmd,
                attrs: vec![Attr::InfoVersion(0x010201), Attr::InfoConnTabSize(4096)],
            };
            assert_eq!(round_trip(&msg), msg);
        }
    }
}
