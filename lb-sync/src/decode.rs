//! A received datagram back into connections, with the kernel receiver's
//! judgement (`ip_vs_process_message`): a message whose header is wrong is
//! refused whole; a connection that cannot be parsed cuts the message there
//! (the ones before it stand, as in the kernel); a connection that parses
//! but cannot be used (unknown mandatory option, protocol, state) is
//! skipped and the rest read on.

use crate::conn::{
    Addrs, HEADER_LEN, OPT_F_PARAM, OPT_PE_DATA, OPT_PE_NAME, OPT_SEQ_DATA, PE_NAME_MAX, PeData,
    SEQ_OPT_LEN, SeqAdjust, SyncConn, TYPE_INET6, V4_LEN, V6_LEN, flags,
};
use lb_common::{PROTO_TCP, PROTO_UDP, conn};
use std::net::{Ipv4Addr, Ipv6Addr};

/// What a datagram held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub syncid: u8,
    /// 0 or 1.
    pub version: u8,
    /// The usable connections, flags as a Backup keeps them
    /// ([`flags::BACKUP_MASK`] and [`flags::SYNC`]).
    pub conns: Vec<SyncConn>,
    /// Connections left out, with why.
    pub skipped: Vec<Skipped>,
    /// Why the rest of the message after `conns` and `skipped` was not read.
    pub cut: Option<Dropped>,
}

/// A connection left out while the rest of the message is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// An option the sender marked mandatory that this receiver does not know.
    UnknownOption(u8),
    /// A protocol xlb does not balance (IPVS also has SCTP, AH and ESP).
    Protocol(u8),
    /// A state number the protocol does not have.
    State { protocol: u8, state: u16 },
    /// Persistence-engine data without the engine's name.
    PeWithoutName,
}

/// Why a message, or its rest, was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Shorter than any header.
    Short(usize),
    /// The header's size is not the datagram's.
    Size { said: u16, got: usize },
    /// From another sync id than ours (and ours is not 0, "any").
    SyncId(u8),
    /// Connection `n` runs past the end of the message.
    Truncated(usize),
    /// Connection `n` declares a format version other than 0.
    ConnVersion(usize, u16),
    /// Connection `n` has a type byte that is neither IPv4 nor IPv6.
    Type(usize, u8),
    /// Connection `n` has a malformed option.
    Option(usize, &'static str),
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dropped::Short(n) => write!(f, "{n} bytes is shorter than a sync header"),
            Dropped::Size { said, got } => {
                write!(f, "header says {said} bytes, the datagram has {got}")
            }
            Dropped::SyncId(id) => write!(f, "sync id {id} is not ours"),
            Dropped::Truncated(n) => write!(f, "connection {n} runs past the message's end"),
            Dropped::ConnVersion(n, v) => write!(f, "connection {n} has format version {v}"),
            Dropped::Type(n, t) => write!(f, "connection {n} has type {t}"),
            Dropped::Option(n, why) => write!(f, "connection {n}: {why}"),
        }
    }
}

/// Reads `buf` as a Backup with sync id `ours` (0 accepts every id).
pub fn decode(buf: &[u8], ours: u8) -> Result<Decoded, Dropped> {
    if buf.len() < 4 {
        return Err(Dropped::Short(buf.len()));
    }
    let said = u16::from_be_bytes([buf[2], buf[3]]);
    if usize::from(said) != buf.len() {
        return Err(Dropped::Size {
            said,
            got: buf.len(),
        });
    }
    let syncid = buf[1];
    if ours != 0 && syncid != ours {
        return Err(Dropped::SyncId(syncid));
    }
    let v1 = buf.len() >= HEADER_LEN && buf[0] == 0 && buf[5] == 1 && buf[6..8] == [0, 0];
    let mut out = Decoded {
        syncid,
        version: u8::from(v1),
        ..Decoded::default()
    };
    let result = if v1 {
        read_v1(buf, &mut out)
    } else {
        read_v0(buf, &mut out)
    };
    out.cut = result.err();
    Ok(out)
}

fn read_v1(buf: &[u8], out: &mut Decoded) -> Result<(), Dropped> {
    let mut at = HEADER_LEN;
    for n in 0..usize::from(buf[4]) {
        if at + V4_LEN > buf.len() {
            return Err(Dropped::Truncated(n));
        }
        let ver_size = u16::from_be_bytes([buf[at + 2], buf[at + 3]]);
        let size = usize::from(ver_size & 0x0fff);
        let end = at + size;
        if end > buf.len() {
            return Err(Dropped::Truncated(n));
        }
        if ver_size >> 12 != 0 {
            return Err(Dropped::ConnVersion(n, ver_size >> 12));
        }
        match conn_v1(&buf[at..end], n)? {
            Ok(c) => out.conns.push(c),
            Err(s) => out.skipped.push(s),
        }
        // The next connection starts on a 4-byte boundary.
        at += size.div_ceil(4) * 4;
    }
    Ok(())
}

/// One version 1 connection: `Err` cuts the message, `Ok(Err)` skips it.
fn conn_v1(b: &[u8], n: usize) -> Result<Result<SyncConn, Skipped>, Dropped> {
    let ty = b[0];
    let fixed = match ty {
        0 => V4_LEN,
        TYPE_INET6 => V6_LEN,
        _ => return Err(Dropped::Type(n, ty)),
    };
    if fixed > b.len() {
        return Err(Dropped::Truncated(n));
    }
    let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let addrs = if ty == 0 {
        let a = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
        Addrs::V4 {
            client: a(24),
            virt: a(28),
            real: a(32),
        }
    } else {
        let a = |i: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&b[i..i + 16]).expect("16 bytes"));
        Addrs::V6 {
            client: a(24),
            virt: a(40),
            real: a(56),
        }
    };
    let (mut seq, mut pe_data, mut pe_name) = (None, None, None);
    let mut unknown = None;
    let mut p = fixed;
    while p < b.len() {
        if p + 2 > b.len() {
            return Err(Dropped::Option(n, "option header past the end"));
        }
        let (ptype, plen) = (b[p], usize::from(b[p + 1]));
        p += 2;
        if plen == 0 || p + plen > b.len() {
            return Err(Dropped::Option(n, "option length zero or past the end"));
        }
        let data = &b[p..p + plen];
        match ptype & !OPT_F_PARAM {
            OPT_SEQ_DATA => {
                if plen != SEQ_OPT_LEN || seq.is_some() {
                    return Err(Dropped::Option(n, "sequence option malformed or twice"));
                }
                let s = |i: usize| SeqAdjust {
                    init_seq: be32_of(data, i),
                    delta: be32_of(data, i + 4),
                    previous_delta: be32_of(data, i + 8),
                };
                seq = Some((s(0), s(12)));
            }
            OPT_PE_DATA => {
                if pe_data.is_some() {
                    return Err(Dropped::Option(n, "persistence data twice"));
                }
                pe_data = Some(data.to_vec());
            }
            OPT_PE_NAME => {
                if plen > PE_NAME_MAX || pe_name.is_some() {
                    return Err(Dropped::Option(
                        n,
                        "persistence engine name too long or twice",
                    ));
                }
                pe_name = Some(data.to_vec());
            }
            other if ptype & OPT_F_PARAM == 0 => unknown = unknown.or(Some(other)),
            _ => {}
        }
        p += plen;
    }
    if let Some(o) = unknown {
        return Ok(Err(Skipped::UnknownOption(o)));
    }
    let pe = match (pe_data, pe_name) {
        (None, _) => None,
        (Some(_), None) => return Ok(Err(Skipped::PeWithoutName)),
        (Some(d), Some(name)) => PeData::new(d, name),
    };
    let conn = SyncConn {
        protocol: b[1],
        addrs,
        cport: be16(10),
        vport: be16(12),
        dport: be16(14),
        flags: be32(4) & flags::BACKUP_MASK | flags::SYNC,
        state: be16(8),
        fwmark: be32(16),
        timeout: be32(20),
        seq,
        pe,
    };
    Ok(usable(conn))
}

fn be32_of(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The receiver's protocol and state checks (templates skip them).
fn usable(c: SyncConn) -> Result<SyncConn, Skipped> {
    if c.is_template() {
        return Ok(c);
    }
    // IPVS numbers TCP's states from NONE to SYNACK; UDP has one, 0.
    let last = match c.protocol {
        PROTO_TCP => conn::SYNACK,
        PROTO_UDP => 0,
        p => return Err(Skipped::Protocol(p)),
    };
    if u32::from(c.state) > last {
        return Err(Skipped::State {
            protocol: c.protocol,
            state: c.state,
        });
    }
    Ok(c)
}

/// Version 0 (`sync_version = 0`): IPv4 only, 24 bytes a connection plus
/// 24 of sequence data when a SEQ flag is set, no timeout (0: the
/// receiver's default) and no fwmark.
fn read_v0(buf: &[u8], out: &mut Decoded) -> Result<(), Dropped> {
    const SIMPLE: usize = 24;
    let mut at = 4;
    for n in 0..usize::from(buf[0]) {
        if at + SIMPLE > buf.len() {
            return Err(Dropped::Truncated(n));
        }
        let b = &buf[at..];
        let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let a = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
        let raw_flags = u32::from(be16(20));
        let mut seq = None;
        at += SIMPLE;
        if raw_flags & flags::SEQ_MASK != 0 {
            if at + SEQ_OPT_LEN > buf.len() {
                return Err(Dropped::Truncated(n));
            }
            // Version 0 copies the kernel's struct as it is in memory:
            // host order, which on every IPVS host this reads is little-endian.
            let le = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            let s = |i: usize| SeqAdjust {
                init_seq: le(i),
                delta: le(i + 4),
                previous_delta: le(i + 8),
            };
            seq = Some((s(SIMPLE), s(SIMPLE + 12)));
            at += SEQ_OPT_LEN;
        }
        let conn = SyncConn {
            protocol: b[1],
            addrs: Addrs::V4 {
                client: a(8),
                virt: a(12),
                real: a(16),
            },
            cport: be16(2),
            vport: be16(4),
            dport: be16(6),
            flags: (raw_flags | flags::SYNC) & !flags::HASHED,
            state: be16(22),
            fwmark: 0,
            timeout: 0,
            seq,
            pe: None,
        };
        match usable(conn) {
            Ok(c) => out.conns.push(c),
            Err(s) => out.skipped.push(s),
        }
    }
    Ok(())
}
