//! Connections into version 1 messages, as the kernel's Master fills its
//! sync buffers: each connection starts on a 4-byte boundary (the padding
//! counts in the message's size), a message never exceeds `sync_maxlen`
//! unless one connection alone is larger, and a message is sent when the
//! next connection does not fit.

use crate::conn::{
    Addrs, HEADER_LEN, OPT_PE_DATA, OPT_PE_NAME, OPT_SEQ_DATA, SEQ_OPT_LEN, SeqAdjust, SyncConn,
    TYPE_INET6, flags,
};

/// Builds messages for one sync id.
#[derive(Debug)]
pub struct Packer {
    syncid: u8,
    maxlen: usize,
    msg: Vec<u8>,
}

impl Packer {
    /// `maxlen` is the message's `sync_maxlen` (see [`crate::DEFAULT_MAXLEN_V4`]),
    /// kept within the kernel's bounds (1 ..= 65535 less IPv4 and UDP headers).
    pub fn new(syncid: u8, maxlen: usize) -> Packer {
        Packer {
            syncid,
            maxlen: maxlen.clamp(1, 65535 - 28),
            msg: Vec::new(),
        }
    }

    /// Adds `conn`; returns the message it closed, if it did not fit in
    /// the current one. A message also closes at 255 connections, the most
    /// its one-byte count can say (the kernel never reaches it at its sizes).
    pub fn push(&mut self, conn: &SyncConn) -> Option<Vec<u8>> {
        let len = conn.wire_len();
        let mut done = None;
        if !self.msg.is_empty() {
            let pad = (4 - self.msg.len() % 4) % 4;
            if self.msg.len() + pad + len > self.maxlen || self.msg[4] == u8::MAX {
                done = self.take();
            } else {
                self.msg.resize(self.msg.len() + pad, 0);
            }
        }
        if self.msg.is_empty() {
            self.msg.reserve(self.maxlen.max(HEADER_LEN + len));
            self.msg
                .extend_from_slice(&[0, self.syncid, 0, 0, 0, crate::VERSION, 0, 0]);
        }
        write_conn(&mut self.msg, conn, len);
        self.msg[4] += 1;
        let size = u16::try_from(self.msg.len()).unwrap_or(u16::MAX);
        self.msg[2..4].copy_from_slice(&size.to_be_bytes());
        done
    }

    /// The message being filled, if it holds any connection.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        self.take()
    }

    /// Connections in the message being filled.
    pub fn pending(&self) -> usize {
        self.msg.get(4).copied().map_or(0, usize::from)
    }

    fn take(&mut self) -> Option<Vec<u8>> {
        (!self.msg.is_empty()).then(|| std::mem::take(&mut self.msg))
    }
}

fn write_conn(out: &mut Vec<u8>, c: &SyncConn, len: usize) {
    out.push(if c.addrs.is_ipv6() { TYPE_INET6 } else { 0 });
    out.push(c.protocol);
    // The top four bits are the connection format's version, 0.
    out.extend_from_slice(&((len & 0x0fff) as u16).to_be_bytes());
    out.extend_from_slice(&(c.flags & !flags::HASHED).to_be_bytes());
    out.extend_from_slice(&c.state.to_be_bytes());
    for port in [c.cport, c.vport, c.dport] {
        out.extend_from_slice(&port.to_be_bytes());
    }
    out.extend_from_slice(&c.fwmark.to_be_bytes());
    out.extend_from_slice(&c.timeout.to_be_bytes());
    match c.addrs {
        Addrs::V4 { client, virt, real } => {
            for a in [client, virt, real] {
                out.extend_from_slice(&a.octets());
            }
        }
        Addrs::V6 { client, virt, real } => {
            for a in [client, virt, real] {
                out.extend_from_slice(&a.octets());
            }
        }
    }
    if c.flags & flags::SEQ_MASK != 0 {
        out.extend_from_slice(&[OPT_SEQ_DATA, SEQ_OPT_LEN as u8]);
        let (inward, outward) = c.seq.unwrap_or_default();
        for s in [inward, outward] {
            write_seq(out, &s);
        }
    }
    if let Some(pe) = &c.pe {
        // Both lengths fit a byte: `PeData::new` bounds them.
        out.extend_from_slice(&[OPT_PE_DATA, pe.data().len() as u8]);
        out.extend_from_slice(pe.data());
        out.extend_from_slice(&[OPT_PE_NAME, pe.name().len() as u8]);
        out.extend_from_slice(pe.name());
    }
}

fn write_seq(out: &mut Vec<u8>, s: &SeqAdjust) {
    for v in [s.init_seq, s.delta, s.previous_delta] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}
