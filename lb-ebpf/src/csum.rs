//! Incremental Internet checksum updates (RFC 1624: HC' = ~(~HC + ~m + m')).
//! Words are used exactly as they sit in memory: one's complement sums do not
//! care about byte order as long as every word is read the same way.

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// `check` after a 32-bit field changed from `old` to `new`.
#[inline(always)]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let sum = (!check) as u32 + (!old & 0xffff) + (!old >> 16) + (new & 0xffff) + (new >> 16);
    !fold(sum)
}

/// `check` after a 16-bit field changed from `old` to `new`.
#[inline(always)]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    !fold((!check) as u32 + (!old) as u32 + new as u32)
}

/// `check` after an address (1 word for IPv4, 4 for IPv6) changed.
#[inline(always)]
pub fn update_addr(mut check: u16, old: &[u32; 4], new: &[u32; 4], words: usize) -> u16 {
    let mut i = 0;
    while i < 4 {
        if i < words {
            check = update32(check, old[i], new[i]);
        }
        i += 1;
    }
    check
}
