//! Partition choice, compatible with the Java client's default partitioner: an explicit
//! partition wins, a key hashes with murmur2, a null key sticks to one partition for a
//! batch's worth of bytes (KIP-480/794) so batches fill up instead of spreading thin.

use rand::Rng;

/// Kafka's murmur2 (MurmurHash2, seed 0x9747b28c), bit-for-bit as `Utils.murmur2` in Java.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java mixes in the length as an int; keys longer than 2^32 are not a concern.
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    // The tail mixes in like Java's fall-through switch on `length % 4`.
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&b) = tail.first() {
        h ^= u32::from(b);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Java picks for a key: `toPositive(murmur2(key)) % numPartitions`.
pub fn partition_for_key(key: &[u8], num_partitions: usize) -> i32 {
    // toPositive masks the sign bit (it is not abs()), so i32::MIN maps to 0.
    let positive = (murmur2(key) & 0x7fff_ffff) as usize;
    (positive % num_partitions.max(1)) as i32
}

/// Sticky choice for records without a key, per topic.
#[derive(Debug, Default)]
pub struct Sticky {
    current: Option<i32>,
    bytes: usize,
}

impl Sticky {
    /// The partition for the next null-key record of `size` bytes; moves on once a batch's
    /// worth (`batch_size`) has gone to the current one.
    pub fn next(&mut self, num_partitions: usize, batch_size: usize, size: usize) -> i32 {
        let n = num_partitions.max(1) as i32;
        let current = match self.current {
            Some(p) if p < n && self.bytes < batch_size => p,
            previous => {
                self.bytes = 0;
                let p = pick_other(previous, n);
                self.current = Some(p);
                p
            }
        };
        self.bytes += size;
        current
    }
}

/// A random partition other than `previous` (when there is a choice).
fn pick_other(previous: Option<i32>, n: i32) -> i32 {
    let mut rng = rand::rng();
    match previous {
        Some(prev) if n > 1 && prev < n => {
            let step = rng.random_range(1..n);
            (prev + step) % n
        }
        _ => rng.random_range(0..n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from an independent transcription of MurmurHash2 with Kafka's seed (a Python
    /// script run while writing this); the non-empty ones also equal the values Kafka's own
    /// `UtilsTest.testMurmur2` asserts, so the two sources cross-check.
    #[test]
    fn murmur2_matches_java() {
        assert_eq!(murmur2(b""), 275_646_681);
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"abc"), 479_470_107);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(&[0, 1, 2, 3]), 1_916_244_640);
    }

    #[test]
    fn key_partition_masks_sign_bit() {
        // -973932308 & 0x7fffffff = 1173551340; % 12 = 0, % 3 = 0.
        assert_eq!(partition_for_key(b"21", 12), 0);
        assert_eq!(partition_for_key(b"foobar", 12), 6);
        assert_eq!(partition_for_key(b"a-little-bit-longer-string", 12), 11);
        assert_eq!(partition_for_key(b"key-0", 3), 1);
        assert_eq!(partition_for_key(b"anything", 1), 0);
    }

    #[test]
    fn sticky_stays_for_a_batch_then_moves() {
        let mut s = Sticky::default();
        let first = s.next(4, 100, 40);
        assert_eq!(s.next(4, 100, 40), first);
        assert_eq!(s.next(4, 100, 40), first);
        // 120 bytes went to `first`: the next record moves to another partition.
        let second = s.next(4, 100, 40);
        assert_ne!(second, first);
        assert!((0..4).contains(&second));
        // Shrinking the partition count never yields an out-of-range partition.
        for _ in 0..50 {
            assert!(s.next(2, 10, 40) < 2);
        }
        assert_eq!(Sticky::default().next(1, 10, 1), 0);
    }
}
