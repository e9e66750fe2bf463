//! A compiled longest-prefix-match table for IPv4 and IPv6.
//!
//! Built once off the hot path, read-only afterwards. Nested prefixes are flattened into sorted,
//! non-overlapping address ranges, each carrying the value of the most specific prefix that covers it (among
//! equal prefixes, the entry given first). A lookup is a bucket index on the top bits of the address followed
//! by a binary search inside the bucket: a few cache lines, no pointer chasing, no allocation.
//!
//! Invariant: `lookup(ip)` is "the value of the longest input prefix containing `ip`, the earliest such entry
//! on ties" — checked against a naive scan by property tests.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// An unsigned address key: u32 for IPv4, u128 for IPv6.
trait Key: Copy + Ord + std::fmt::Debug {
    const ZERO: Self;
    /// Index bits taken from the top of the key.
    const BUCKET_BITS: u32;
    fn bucket(self) -> usize;
    fn bucket_start(b: usize) -> Self;
    fn checked_inc(self) -> Option<Self>;
}

impl Key for u32 {
    const ZERO: Self = 0;
    const BUCKET_BITS: u32 = 16;
    fn bucket(self) -> usize {
        (self >> (32 - Self::BUCKET_BITS)) as usize
    }
    fn bucket_start(b: usize) -> Self {
        (b as u32) << (32 - Self::BUCKET_BITS)
    }
    fn checked_inc(self) -> Option<Self> {
        self.checked_add(1)
    }
}

impl Key for u128 {
    const ZERO: Self = 0;
    /// Routed IPv6 space lies under 2000::/3, so the top 20 bits still spread real prefixes over 2^17 buckets.
    const BUCKET_BITS: u32 = 20;
    fn bucket(self) -> usize {
        (self >> (128 - Self::BUCKET_BITS)) as usize
    }
    fn bucket_start(b: usize) -> Self {
        (b as u128) << (128 - Self::BUCKET_BITS)
    }
    fn checked_inc(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// No value: an address no prefix covers.
const NONE: u32 = u32::MAX;

/// Sorted non-overlapping ranges of one address family, with a bucket index.
#[derive(Debug, Clone)]
struct Ranges<K> {
    /// Range starts, ascending, the first one zero. Range i covers `starts[i] ..= starts[i + 1] - 1`.
    starts: Vec<K>,
    /// Value index per range, or `NONE`.
    values: Vec<u32>,
    /// For each bucket, the last range starting at or before the bucket's first address.
    index: Vec<u32>,
}

impl<K: Key> Ranges<K> {
    /// `prefixes`: (first, last, value index, input order).
    fn build(mut prefixes: Vec<(K, K, u32, u32)>) -> Ranges<K> {
        // Outer before inner (by start, then the wider first), then input order.
        prefixes.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.3.cmp(&b.3)));
        let mut out = Breakpoints {
            starts: Vec::with_capacity(prefixes.len() * 2 + 1),
            values: Vec::with_capacity(prefixes.len() * 2 + 1),
        };
        out.push(K::ZERO, NONE);
        // The prefixes covering the current position, outermost first: (first, last, value).
        let mut stack: Vec<(K, K, u32)> = Vec::new();
        for (first, last, value, _) in prefixes {
            while let Some(&(_, top_last, _)) = stack.last() {
                if top_last >= first {
                    break;
                }
                stack.pop();
                if let Some(next) = top_last.checked_inc() {
                    out.push(next, stack.last().map_or(NONE, |t| t.2));
                }
            }
            if stack
                .last()
                .is_some_and(|&(f, l, _)| f == first && l == last)
            {
                continue; // the same prefix again: the first one given wins
            }
            out.push(first, value);
            stack.push((first, last, value));
        }
        while let Some((_, top_last, _)) = stack.pop() {
            if let Some(next) = top_last.checked_inc() {
                out.push(next, stack.last().map_or(NONE, |t| t.2));
            }
        }
        let Breakpoints {
            mut starts,
            mut values,
        } = out;
        starts.shrink_to_fit();
        values.shrink_to_fit();
        // An address family with no prefixes needs no index (lookups answer NONE at once).
        let empty = values.len() == 1 && values[0] == NONE;
        let buckets = if empty { 0 } else { 1usize << K::BUCKET_BITS };
        let mut index = Vec::with_capacity(buckets);
        let mut r = 0usize;
        for b in 0..buckets {
            let first = K::bucket_start(b);
            while r + 1 < starts.len() && starts[r + 1] <= first {
                r += 1;
            }
            index.push(r as u32);
        }
        Ranges {
            starts,
            values,
            index,
        }
    }

    #[inline]
    fn lookup(&self, key: K) -> u32 {
        let b = key.bucket();
        let Some(&lo) = self.index.get(b) else {
            return NONE;
        };
        let lo = lo as usize;
        let hi = match self.index.get(b + 1) {
            Some(&next) => next as usize + 1,
            None => self.starts.len(),
        };
        // starts[lo] <= bucket start <= key, so at least one start in lo..hi is <= key.
        let count = self.starts[lo..hi].partition_point(|s| *s <= key);
        self.values[lo + count - 1]
    }

    fn len(&self) -> usize {
        self.starts.len()
    }

    fn bytes(&self) -> usize {
        self.starts.capacity() * std::mem::size_of::<K>()
            + (self.values.capacity() + self.index.capacity()) * 4
    }
}

/// The breakpoints being built: adjacent ranges with one value merge, and a later breakpoint at the same
/// address replaces the earlier one (it is more specific).
struct Breakpoints<K> {
    starts: Vec<K>,
    values: Vec<u32>,
}

impl<K: Key> Breakpoints<K> {
    fn push(&mut self, start: K, value: u32) {
        if self.starts.last() == Some(&start) {
            self.starts.pop();
            self.values.pop();
        }
        if self.values.last() == Some(&value) {
            return;
        }
        self.starts.push(start);
        self.values.push(value);
    }
}

/// A longest-prefix-match map from IPv4 and IPv6 networks to values.
#[derive(Debug, Clone)]
pub struct PrefixTable<V> {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
    values: Vec<V>,
    prefixes: usize,
}

impl<V> PrefixTable<V> {
    /// Build from `(network, value)` pairs; on equal networks the first pair wins. IPv4-mapped IPv6 networks
    /// (`::ffff:0:0/96` and inside) are stored as IPv4.
    pub fn build(entries: impl IntoIterator<Item = (IpNetwork, V)>) -> PrefixTable<V> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut values = Vec::new();
        for (order, (net, value)) in entries.into_iter().enumerate() {
            let id = values.len() as u32;
            values.push(value);
            let order = order as u32;
            match net {
                IpNetwork::V4(n) => {
                    let first = u32::from(n.network());
                    let last = u32::from(n.broadcast());
                    v4.push((first, last, id, order));
                }
                IpNetwork::V6(n) => {
                    let first = u128::from(n.network());
                    let host_bits = 128 - u32::from(n.prefix());
                    let last = if host_bits == 128 {
                        u128::MAX
                    } else {
                        first | ((1u128 << host_bits) - 1)
                    };
                    // ::ffff:a.b.c.d/96+ is an IPv4 network in disguise.
                    if n.prefix() >= 96 && first >> 32 == 0xffff {
                        v4.push((first as u32, last as u32, id, order));
                    } else {
                        v6.push((first, last, id, order));
                    }
                }
            }
        }
        let prefixes = v4.len() + v6.len();
        PrefixTable {
            v4: Ranges::build(v4),
            v6: Ranges::build(v6),
            values,
            prefixes,
        }
    }

    /// The value of the most specific network containing `ip`.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&V> {
        let id = match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        };
        if id == NONE {
            None
        } else {
            self.values.get(id as usize)
        }
    }

    /// Number of networks the table was built from.
    pub fn prefixes(&self) -> usize {
        self.prefixes
    }

    /// Number of flattened ranges (for sizing reports).
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Bytes held by the lookup structure (not counting the values themselves).
    pub fn index_bytes(&self) -> usize {
        self.v4.bytes() + self.v6.bytes() + self.values.capacity() * std::mem::size_of::<V>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_and_gaps_are_empty() {
        let t = PrefixTable::build([
            (net("10.0.0.0/8"), "ten"),
            (net("10.1.0.0/16"), "ten-one"),
            (net("10.1.2.0/24"), "ten-one-two"),
            (net("192.0.2.0/24"), "doc"),
            (net("2001:db8::/32"), "v6"),
            (net("2001:db8:1::/48"), "v6-one"),
        ]);
        assert_eq!(t.lookup(ip("10.9.9.9")), Some(&"ten"));
        assert_eq!(t.lookup(ip("10.1.9.9")), Some(&"ten-one"));
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&"ten-one-two"));
        assert_eq!(
            t.lookup(ip("10.1.3.0")),
            Some(&"ten-one"),
            "after an inner prefix the outer resumes"
        );
        assert_eq!(t.lookup(ip("10.255.255.255")), Some(&"ten"));
        assert_eq!(t.lookup(ip("11.0.0.0")), None);
        assert_eq!(t.lookup(ip("9.255.255.255")), None);
        assert_eq!(t.lookup(ip("192.0.2.255")), Some(&"doc"));
        assert_eq!(t.lookup(ip("2001:db8:1::5")), Some(&"v6-one"));
        assert_eq!(t.lookup(ip("2001:db8:2::5")), Some(&"v6"));
        assert_eq!(t.lookup(ip("2001:db9::")), None);
        assert_eq!(
            t.lookup(ip("::ffff:10.1.2.3")),
            Some(&"ten-one-two"),
            "IPv4-mapped lookups use IPv4"
        );
    }

    #[test]
    fn first_of_equal_prefixes_wins_and_edges_work() {
        let t = PrefixTable::build([
            (net("0.0.0.0/0"), "all"),
            (net("255.255.255.255/32"), "last"),
            (net("203.0.113.0/24"), "first"),
            (net("203.0.113.0/24"), "second"),
            (net("::/0"), "all6"),
            (net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"), "last6"),
            (net("::ffff:198.51.100.0/120"), "mapped"),
        ]);
        assert_eq!(t.lookup(ip("203.0.113.9")), Some(&"first"));
        assert_eq!(t.lookup(ip("255.255.255.255")), Some(&"last"));
        assert_eq!(t.lookup(ip("255.255.255.254")), Some(&"all"));
        assert_eq!(t.lookup(ip("0.0.0.0")), Some(&"all"));
        assert_eq!(
            t.lookup(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            Some(&"last6")
        );
        assert_eq!(t.lookup(ip("::1")), Some(&"all6"));
        assert_eq!(t.lookup(ip("198.51.100.7")), Some(&"mapped"));
        // Regression (found by the property test): a family whose only prefix covers everything.
        let everything = PrefixTable::build([(net("0.0.0.0/0"), 1)]);
        assert_eq!(everything.lookup(ip("1.2.3.4")), Some(&1));
        assert_eq!(everything.lookup(ip("::1")), None);
        let empty: PrefixTable<()> = PrefixTable::build([]);
        assert_eq!(empty.lookup(ip("1.2.3.4")), None);
        assert_eq!(empty.lookup(ip("::1")), None);
    }

    fn naive(entries: &[(IpNetwork, u32)], ip: IpAddr) -> Option<&u32> {
        let ip = ip.to_canonical();
        let mut best: Option<(u8, &u32)> = None;
        for (n, v) in entries {
            let n = match n {
                IpNetwork::V6(v6)
                    if v6.prefix() >= 96 && u128::from(v6.network()) >> 32 == 0xffff =>
                {
                    let a = std::net::Ipv4Addr::from(u128::from(v6.network()) as u32);
                    IpNetwork::new(IpAddr::V4(a), v6.prefix() - 96).unwrap()
                }
                other => *other,
            };
            if n.contains(ip) && best.is_none_or(|(len, _)| n.prefix() > len) {
                best = Some((n.prefix(), v));
            }
        }
        best.map(|(_, v)| v)
    }

    fn v4_net() -> impl Strategy<Value = IpNetwork> {
        // Short prefixes over a small space, so that they nest and collide often.
        (0u32..64, 0u8..=32).prop_map(|(hi, len)| {
            let addr = std::net::Ipv4Addr::from((hi << 26) | (hi.wrapping_mul(2654435761) >> 6));
            IpNetwork::new(IpAddr::V4(addr), len)
                .unwrap()
                .network_prefix()
        })
    }

    fn v6_net() -> impl Strategy<Value = IpNetwork> {
        (0u128..64, 0u8..=128).prop_map(|(hi, len)| {
            let addr = std::net::Ipv6Addr::from(
                (0x2001u128 << 112) | (hi << 100) | hi.wrapping_mul(0x9e3779b97f4a7c15),
            );
            IpNetwork::new(IpAddr::V6(addr), len)
                .unwrap()
                .network_prefix()
        })
    }

    trait NetworkPrefix {
        fn network_prefix(self) -> IpNetwork;
    }

    impl NetworkPrefix for IpNetwork {
        fn network_prefix(self) -> IpNetwork {
            IpNetwork::new(self.network(), self.prefix()).unwrap()
        }
    }

    proptest! {
        #[test]
        fn matches_a_naive_scan(
            nets in prop::collection::vec(prop_oneof![v4_net(), v6_net()], 0..40),
            probes in prop::collection::vec(prop_oneof![
                any::<u32>().prop_map(|a| IpAddr::V4(a.into())),
                (0u128..64, any::<u64>()).prop_map(|(hi, lo)| IpAddr::V6(((0x2001u128 << 112) | (hi << 100) | lo as u128).into())),
            ], 1..60),
        ) {
            let entries: Vec<(IpNetwork, u32)> = nets.into_iter().enumerate().map(|(i, n)| (n, i as u32)).collect();
            let table = PrefixTable::build(entries.iter().copied());
            for p in probes {
                prop_assert_eq!(table.lookup(p), naive(&entries, p), "{}", p);
            }
            // Probe every network's first and last address, and just outside it.
            for (n, _) in &entries {
                for p in [n.network(), n.broadcast()] {
                    prop_assert_eq!(table.lookup(p), naive(&entries, p), "{}", p);
                }
            }
        }
    }
}
