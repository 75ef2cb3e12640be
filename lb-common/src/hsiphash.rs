//! The kernel's `hsiphash` of one `u32` as 64-bit kernels compute it
//! (lib/siphash.c, `hsiphash_1u32`): SipHash-1-3 under a 128-bit key, its
//! 64-bit result cut to 32 bits. IPVS's mh scheduler hashes real servers and
//! clients with it, so xlb's mh must hash the same way to pick the same real.
//! Straight-line code: the verifier sees no loop.

/// A key: the kernel's `hsiphash_key_t` on 64-bit, two `u64` words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(pub u64, pub u64);

/// SipHash's initial state ("somepseudorandomlygeneratedbytes").
const INIT: [u64; 4] = [
    0x736f_6d65_7073_6575,
    0x646f_7261_6e64_6f6d,
    0x6c79_6765_6e65_7261,
    0x7465_6462_7974_6573,
];

#[inline(always)]
fn start(key: Key) -> [u64; 4] {
    [
        INIT[0] ^ key.0,
        INIT[1] ^ key.1,
        INIT[2] ^ key.0,
        INIT[3] ^ key.1,
    ]
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// Absorbs the last word `b` (message length in the top byte, the tail
/// bytes below) with one round, then finalises with three.
#[inline(always)]
fn finish(v: &mut [u64; 4], b: u64) -> u32 {
    v[3] ^= b;
    round(v);
    v[0] ^= b;
    v[2] ^= 0xff;
    round(v);
    round(v);
    round(v);
    (v[0] ^ v[1] ^ v[2] ^ v[3]) as u32
}

/// `hsiphash(&value, 4, key)`: the four bytes of `value` in little-endian
/// order, as the kernel reads a `u32` on x86.
#[inline(always)]
pub fn hsiphash_u32(key: Key, value: u32) -> u32 {
    let mut v = start(key);
    finish(&mut v, 4 << 56 | u64::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's own self-test key and vectors (lib/siphash_kunit.c,
    /// `BITS_PER_LONG == 64`): hsiphash of the bytes 0, 1, …, n−1.
    const KEY: Key = Key(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
    const VECTORS: [u32; 64] = [
        0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7,
        0x9bb11140, 0x8d299a8e, 0x6c063de4, 0x92ff097f, 0xf94dc352, 0x57b4d9a2, 0x1229ffa7,
        0xc0f95d34, 0x2a519956, 0x7d908b66, 0x63dbd80c, 0xb473e63e, 0x8d297d1c, 0xa6cce040,
        0x2b45f844, 0xa320872e, 0xdae6c123, 0x67349c8c, 0x705b0979, 0xca9913a5, 0x4ade3b35,
        0xef6cd00d, 0x4ab1e1f4, 0x43c5e663, 0x8c21d1bc, 0x16a7b60d, 0x7a8ff9bf, 0x1f2a753e,
        0xbf186b91, 0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392, 0x99e41531, 0x3f1ad944,
        0xc8138825, 0xc28949a6, 0xfaf8876b, 0x9f042196, 0x68b1d623, 0x8b5114fd, 0xdf074c46,
        0x12cc86b3, 0x0a52098f, 0x9d292f9a, 0xa2f41f12, 0x43a71ed0, 0x73f0bce6, 0x70a7e980,
        0x243c6d75, 0xfdb71513, 0xa67d8a08, 0xb7e8f148, 0xf7a644ee, 0x0f1837f2, 0x4b6694e0,
        0xb7bbb3a8,
    ];

    /// hsiphash of any byte string: whole 8-byte words with one round each,
    /// then the tail. Only here, to run the rounds over every vector.
    fn hsiphash(key: Key, data: &[u8]) -> u32 {
        let mut v = start(key);
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let m = u64::from_le_bytes(w.try_into().unwrap());
            v[3] ^= m;
            round(&mut v);
            v[0] ^= m;
        }
        let mut b = (data.len() as u64) << 56;
        for (i, &byte) in words.remainder().iter().enumerate() {
            b |= u64::from(byte) << (8 * i);
        }
        finish(&mut v, b)
    }

    #[test]
    fn the_rounds_give_the_kernels_vectors() {
        let bytes: [u8; 64] = core::array::from_fn(|i| i as u8);
        for (n, &want) in VECTORS.iter().enumerate() {
            assert_eq!(hsiphash(KEY, &bytes[..n]), want, "{n} bytes");
        }
    }

    #[test]
    fn one_u32_is_its_four_little_endian_bytes() {
        // Vector 4 is the bytes 00 01 02 03, the u32 0x03020100.
        assert_eq!(hsiphash_u32(KEY, 0x0302_0100), VECTORS[4]);
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..1000 {
            assert_eq!(hsiphash_u32(KEY, x), hsiphash(KEY, &x.to_le_bytes()));
            x = x.wrapping_mul(0x0019_660d).wrapping_add(0x3c6e_f35f);
        }
    }
}
