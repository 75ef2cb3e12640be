//! Internet checksums for the model: incremental updates of a rewritten
//! field (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')), and full computations
//! that check an output frame on their own.

use xlb_testbed::frames::checksum;

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn word(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// The checksum at `check` after the 16-bit words `old` became `new` (one
/// field of 2 or 4 bytes, updated at once as the program updates a 32-bit
/// field; longer fields in 4-byte steps).
pub fn update(check: u16, old: &[u8], new: &[u8]) -> u16 {
    old.chunks(4).zip(new.chunks(4)).fold(check, |c, (o, n)| {
        let mut sum = u32::from(!c);
        for i in (0..o.len()).step_by(2) {
            sum += u32::from(!word(o, i)) + u32::from(word(n, i));
        }
        !fold(sum)
    })
}

/// Writes `new` at `at` in `f`, updating the checksum stored at `check_at`.
pub fn rewrite(f: &mut [u8], at: usize, new: &[u8], check_at: usize) {
    let c = update(word(f, check_at), &f[at..at + new.len()], new);
    f[at..at + new.len()].copy_from_slice(new);
    f[check_at..check_at + 2].copy_from_slice(&c.to_be_bytes());
}

/// The checksum at `check_at` after `old` became `new` elsewhere (a field
/// covered by it that the caller rewrites itself).
pub fn account(f: &mut [u8], check_at: usize, old: &[u8], new: &[u8]) {
    let c = update(word(f, check_at), old, new);
    f[check_at..check_at + 2].copy_from_slice(&c.to_be_bytes());
}

/// A 20-byte IPv4 header's checksum, computed over its bytes.
pub fn ipv4_header(h: &[u8]) -> u16 {
    let mut h = h[..20].to_vec();
    h[10] = 0;
    h[11] = 0;
    checksum(0, &h)
}

/// The TCP/UDP/ICMP/ICMPv6 checksum of `seg` (checksum field zeroed first)
/// sent from `src` to `dst` (address bytes; their length gives the family).
pub fn upper(proto: u8, src: &[u8], dst: &[u8], seg: &[u8], check_at: usize) -> u16 {
    let mut seg = seg.to_vec();
    seg[check_at] = 0;
    seg[check_at + 1] = 0;
    // ICMP (v4) has no pseudo-header.
    if proto == 1 {
        return checksum(0, &seg);
    }
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(src);
    pseudo.extend_from_slice(dst);
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    let sum = pseudo
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    checksum(sum, &seg)
}

/// Where the checksum of `proto` sits in its header.
pub fn check_offset(proto: u8) -> usize {
    match proto {
        6 => 16,
        17 => 6,
        _ => 2,
    }
}

/// Whether the IP packet at `l3` (upper layer `proto` at `l4`) carries a
/// correct IPv4 header checksum and a correct upper-layer checksum over the
/// length its IP header declares (an IPv4 UDP checksum of 0 means none).
pub fn valid(f: &[u8], l3: usize, l4: usize, proto: u8) -> bool {
    let v6 = f[l3] >> 4 == 6;
    let (end, src, dst) = if v6 {
        (
            l3 + 40 + usize::from(word(f, l3 + 4)),
            &f[l3 + 8..l3 + 24],
            &f[l3 + 24..l3 + 40],
        )
    } else {
        if ipv4_header(&f[l3..]) != word(f, l3 + 10) {
            return false;
        }
        (
            l3 + usize::from(word(f, l3 + 2)),
            &f[l3 + 12..l3 + 16],
            &f[l3 + 16..l3 + 20],
        )
    };
    let at = check_offset(proto);
    if end > f.len() || l4 + at + 2 > end {
        return false;
    }
    let stored = word(f, l4 + at);
    if proto == 17 && !v6 && stored == 0 {
        return true;
    }
    let want = upper(proto, src, dst, &f[l4..end], at);
    // A computed UDP checksum of 0 is sent as 0xffff.
    stored == want || (proto == 17 && want == 0 && stored == 0xffff)
}
