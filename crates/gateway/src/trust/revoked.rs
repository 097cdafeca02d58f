//! The internal CA's revoked serials as the gateway holds them: compact enough
//! for 10 million entries, looked up on every handshake and every request of a
//! connection with a client certificate, and changed a few serials at a time
//! without copying the rest.
//!
//! A serial is kept as the integer it is, not as hex text: a serial of up to 16
//! significant bytes (every serial the gatehouse CA issues: `pki::Serial` makes
//! them 16 bytes, first byte 0x10..=0x7F) is a `u128`; a longer one (RFC 5280
//! allows 20 octets, and imported certificates may carry them) is its bytes,
//! in a separate list that is rare and small.
//!
//! The bulk is a `Base`: the `u128`s sorted, with an index of where each
//! range of leading bits starts, so a lookup reads one index slot and then a
//! binary search over a handful of neighbouring entries (two or three cache
//! lines in all). Measured at 10 million serials (BENCHMARKS.md): 16.8 bytes
//! per serial, against 90 resident for a `HashSet<String>` of 32-character hex
//! (a 24-byte `String`, its heap block, the table's slack) and 28.5 for a
//! `HashSet<u128>` (a power-of-two table kept at most 7/8 full). A hit costs
//! about the same in all three; a miss is cheaper in a hash set (one probe),
//! but every lookup is under a microsecond either way, beside a
//! handshake's signature checks. What decided is memory and change: a hash
//! set behind an `ArcSwap` has to be copied whole to be changed, seconds at 10
//! million, where this set copies only its overlay.
//!
//! Changes go to an overlay: serials revoked since the base was built (not in
//! it) and base serials whose certificateHold was released. Applying a batch
//! copies only the overlay; once it passes [`OVERLAY_LIMIT`] the set is
//! [`merged`](RevokedSet::merged) into a new base, which the applying task
//! does off the handshake path.
//!
//! Serials match by value: `00AB`, `ab` and `AB` are the same serial, as a
//! certificate's DER serial with a sign byte (`00 AB`) and without are. The
//! store writes canonical uppercase hex (`pki::Serial`'s form), which is also
//! what [`crate::refusal::summarize`] makes of a certificate's serial, so for
//! every stored serial this matches exactly what comparing the hex did.

use std::sync::Arc;

/// Overlay entries (revoked and released together) past which the set should
/// be merged into a new base. Small enough that copying the overlay per batch
/// and searching it per lookup stay cheap; large enough that merging (a pass
/// over the whole base) is rare.
pub const OVERLAY_LIMIT: usize = 4096;

/// Base entries per index slot, on average, when the serials are spread evenly.
const ENTRIES_PER_SLOT: usize = 8;

/// A serial as a key: its significant big-endian bytes (leading zeros dropped).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    /// Up to 16 significant bytes.
    Short(u128),
    /// More than 16 significant bytes, no leading zero.
    Long(Box<[u8]>),
}

impl Key {
    /// The key of a serial given as big-endian bytes, with or without leading zeros.
    fn from_bytes(bytes: &[u8]) -> Key {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let significant = &bytes[start..];
        if significant.len() <= 16 {
            Key::Short(significant.iter().fold(0u128, |n, b| n << 8 | u128::from(*b)))
        } else {
            Key::Long(significant.into())
        }
    }

    /// The key of a serial given as hex (either case, odd length allowed); `None`
    /// when `hex` is empty or not hex.
    fn from_hex(hex: &str) -> Option<Key> {
        let digits = hex.as_bytes();
        if digits.is_empty() {
            return None;
        }
        let significant = &digits[digits.iter().position(|d| *d != b'0').unwrap_or(digits.len())..];
        if significant.len() <= 32 {
            // The common case, on every handshake: no allocation, no branch per digit.
            let (high, low) = significant.split_at(significant.len().saturating_sub(16));
            return Some(Key::Short(u128::from(hex_u64(high)?) << 64 | u128::from(hex_u64(low)?)));
        }
        let mut bytes = Vec::with_capacity(significant.len().div_ceil(2));
        let (first, rest) = significant.split_at(significant.len() % 2);
        if let [d] = first {
            bytes.push(hex_digit(*d)?);
        }
        for pair in rest.chunks_exact(2) {
            bytes.push(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?);
        }
        Some(Key::Long(bytes.into()))
    }
}

/// The value of up to 16 hex digits; `None` if one is not a hex digit.
fn hex_u64(digits: &[u8]) -> Option<u64> {
    let mut n = 0u64;
    let mut invalid = 0u8;
    for d in digits {
        let value = HEX[usize::from(*d)];
        invalid |= value;
        n = n << 4 | u64::from(value & 0x0F);
    }
    (invalid & 0xF0 == 0).then_some(n)
}

/// Hex digit values by byte; 0xFF for a byte that is not a hex digit. A table
/// rather than a match: random hex digits mispredict a match's branches.
const HEX: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < 16 {
        let digit = b"0123456789ABCDEF"[i];
        table[digit as usize] = i as u8;
        table[digit.to_ascii_lowercase() as usize] = i as u8;
        i += 1;
    }
    table
};

fn hex_digit(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'A'..=b'F' => Some(d - b'A' + 10),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    }
}

/// The index slot of `key`: its bits above `shift` (all 128 of them shifted out: slot 0).
fn slot_of(key: u128, shift: u32) -> u128 {
    key.checked_shr(shift).unwrap_or(0)
}

/// Sorted, distinct `u128` serials and an index over their leading bits.
#[derive(Debug, Default)]
struct Base {
    keys: Vec<u128>,
    /// `index[s]..index[s + 1]` are the positions of the keys whose bits above
    /// `shift` equal `s`; one slot more than there are ranges.
    index: Vec<u32>,
    shift: u32,
}

impl Base {
    /// Indexes `keys`, which must be sorted and distinct.
    fn new(keys: Vec<u128>) -> Base {
        let Some(&max) = keys.last() else {
            return Base::default();
        };
        let slots = (keys.len() / ENTRIES_PER_SLOT).max(1).next_power_of_two();
        let slot_bits = slots.trailing_zeros();
        // Slots cover 0..=max, not the whole u128 range: the CA's serials all have
        // their top bit clear, and small test serials would otherwise share one slot.
        let used_bits = u128::BITS - max.leading_zeros();
        let shift = used_bits.saturating_sub(slot_bits);
        let mut index = Vec::with_capacity(slots + 1);
        let mut position = 0;
        for slot in 0..=slots as u128 {
            while position < keys.len() && slot_of(keys[position], shift) < slot {
                position += 1;
            }
            // A base holds at most u32::MAX serials (see `RevokedSet::merged`).
            index.push(u32::try_from(position).unwrap_or(u32::MAX));
        }
        Base { keys, index, shift }
    }

    fn contains(&self, key: u128) -> bool {
        // Past the last slot (or an empty base): larger than every key.
        let Some(&[start, end]) = usize::try_from(slot_of(key, self.shift))
            .ok()
            .and_then(|slot| self.index.get(slot..))
            .and_then(|rest| rest.get(..2))
        else {
            return false;
        };
        self.keys[start as usize..end as usize].binary_search(&key).is_ok()
    }

    fn heap_bytes(&self) -> usize {
        self.keys.capacity() * size_of::<u128>() + self.index.capacity() * size_of::<u32>()
    }
}

/// The internal CA's revoked serials: a shared base and a small overlay of the
/// changes made since it was built. Cloning shares the base.
#[derive(Debug, Clone, Default)]
pub struct RevokedSet {
    base: Arc<Base>,
    /// Revoked since the base was built, and not in it; sorted.
    added: Vec<u128>,
    /// In the base, and released since; sorted.
    removed: Vec<u128>,
    /// Serials of more than 16 significant bytes, sorted, however they came.
    long: Arc<Vec<Box<[u8]>>>,
}

/// Builds a [`RevokedSet`] from serials read one at a time.
#[derive(Debug, Default)]
pub struct RevokedSetBuilder {
    short: Vec<u128>,
    long: Vec<Box<[u8]>>,
    unreadable: usize,
}

impl RevokedSetBuilder {
    /// A builder with room for `capacity` serials.
    pub fn with_capacity(capacity: usize) -> RevokedSetBuilder {
        RevokedSetBuilder { short: Vec::with_capacity(capacity), ..RevokedSetBuilder::default() }
    }

    /// Adds a serial given as hex; one that is not hex is counted and left out.
    pub fn push_hex(&mut self, serial: &str) {
        match Key::from_hex(serial) {
            Some(Key::Short(n)) => self.short.push(n),
            Some(Key::Long(bytes)) => self.long.push(bytes),
            None => self.unreadable += 1,
        }
    }

    /// Makes room for `additional` more serials of up to 16 bytes (all that
    /// `pki::Serial::random` makes), so that the array is allocated once.
    pub fn reserve(&mut self, additional: usize) {
        self.short.reserve_exact(additional);
    }

    /// How many serials pushed so far were not hex.
    pub fn unreadable(&self) -> usize {
        self.unreadable
    }

    /// The set of the serials pushed.
    pub fn build(self) -> RevokedSet {
        let RevokedSetBuilder { mut short, mut long, .. } = self;
        // The store hands them over in no particular order.
        short.sort_unstable();
        short.dedup();
        short.shrink_to_fit();
        long.sort_unstable();
        long.dedup();
        RevokedSet { base: Arc::new(Base::new(short)), added: Vec::new(), removed: Vec::new(), long: Arc::new(long) }
    }
}

/// The gateway's first load: the store streams an issuer's revoked serials straight
/// into the builder.
impl store::RevokedSerialsSink for RevokedSetBuilder {
    fn expect(&mut self, count: usize) {
        self.reserve(count);
    }
    fn serial(&mut self, serial: &str) {
        self.push_hex(serial);
    }
}

impl RevokedSet {
    /// The set of `serials`, each hex (those that are not are left out).
    pub fn from_hex<S: AsRef<str>>(serials: impl IntoIterator<Item = S>) -> RevokedSet {
        let serials = serials.into_iter();
        let mut builder = RevokedSetBuilder::with_capacity(serials.size_hint().0);
        for serial in serials {
            builder.push_hex(serial.as_ref());
        }
        builder.build()
    }

    /// Whether the serial given as big-endian bytes (a certificate's DER
    /// serial, with or without its sign byte) is revoked.
    pub fn contains(&self, serial: &[u8]) -> bool {
        self.contains_key(&Key::from_bytes(serial))
    }

    /// Whether the serial given as hex (as [`crate::refusal::CertSummary`] holds
    /// it) is revoked; text that is not hex is no serial and is not.
    pub fn contains_hex(&self, serial: &str) -> bool {
        Key::from_hex(serial).is_some_and(|key| self.contains_key(&key))
    }

    fn contains_key(&self, key: &Key) -> bool {
        match key {
            Key::Short(n) => {
                if self.added.binary_search(n).is_ok() {
                    return true;
                }
                self.base.contains(*n) && self.removed.binary_search(n).is_err()
            }
            Key::Long(bytes) => self.long.binary_search(bytes).is_ok(),
        }
    }

    /// Revokes (`revoked`) or releases the serial given as hex; returns whether
    /// the set changed (not when it already was so, or the serial is not hex).
    pub fn apply_hex(&mut self, serial: &str, revoked: bool) -> bool {
        match Key::from_hex(serial) {
            Some(Key::Short(n)) => self.apply_short(n, revoked),
            Some(Key::Long(bytes)) => {
                let found = self.long.binary_search(&bytes);
                match (found, revoked) {
                    (Err(at), true) => Arc::make_mut(&mut self.long).insert(at, bytes),
                    (Ok(at), false) => drop(Arc::make_mut(&mut self.long).remove(at)),
                    _ => return false,
                }
                true
            }
            None => false,
        }
    }

    fn apply_short(&mut self, n: u128, revoked: bool) -> bool {
        let in_base = self.base.contains(n);
        let (overlay, belongs) = if in_base { (&mut self.removed, !revoked) } else { (&mut self.added, revoked) };
        match (overlay.binary_search(&n), belongs) {
            (Err(at), true) => overlay.insert(at, n),
            (Ok(at), false) => drop(overlay.remove(at)),
            _ => return false,
        }
        true
    }

    /// How many serials are revoked.
    pub fn len(&self) -> usize {
        self.base.keys.len() + self.added.len() - self.removed.len() + self.long.len()
    }

    /// Whether no serial is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the overlay has grown enough that the set should be [`merged`](Self::merged).
    pub fn overlay_full(&self) -> bool {
        self.added.len() + self.removed.len() > OVERLAY_LIMIT
    }

    /// The same serials with the overlay merged into a new base: one pass over
    /// the base, so run it where a pause does not hold up handshakes.
    pub fn merged(&self) -> RevokedSet {
        let base = &self.base.keys;
        let mut keys = Vec::with_capacity(base.len() + self.added.len() - self.removed.len());
        let mut removed = self.removed.iter().peekable();
        let mut added = self.added.iter().peekable();
        for &key in base {
            if removed.next_if_eq(&&key).is_some() {
                continue;
            }
            while let Some(&&new) = added.peek()
                && new < key
            {
                keys.push(new);
                added.next();
            }
            keys.push(key);
        }
        keys.extend(added.copied());
        RevokedSet { base: Arc::new(Base::new(keys)), added: Vec::new(), removed: Vec::new(), long: self.long.clone() }
    }

    /// Heap bytes the set holds (the base counted in full even when shared).
    pub fn heap_bytes(&self) -> usize {
        self.base.heap_bytes()
            + (self.added.capacity() + self.removed.capacity()) * size_of::<u128>()
            + self.long.iter().map(|l| l.len() + size_of::<Box<[u8]>>()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the gateway made of a certificate's serial before this set: the hex it compared.
    fn hex_of_certificate(raw_serial: &[u8]) -> String {
        hex::encode_upper(pki::Serial::from_bytes(raw_serial).as_bytes())
    }

    #[test]
    fn a_serial_the_ca_issues_matches_by_bytes_and_by_hex() {
        let serial = pki::Serial::random();
        let set = RevokedSet::from_hex([serial.to_string()]);
        assert!(set.contains(serial.as_bytes()));
        assert!(set.contains_hex(&serial.to_string()));
        assert!(set.contains_hex(&serial.to_string().to_lowercase()));
        assert!(!set.contains(pki::Serial::random().as_bytes()));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn a_leading_zero_or_sign_byte_is_the_same_serial() {
        // DER puts 00 before a serial whose first byte has its top bit set.
        let set = RevokedSet::from_hex(["80FF01"]);
        assert!(set.contains(&[0x00, 0x80, 0xFF, 0x01]));
        assert!(set.contains(&[0x80, 0xFF, 0x01]));
        assert!(set.contains_hex(&hex_of_certificate(&[0x00, 0x80, 0xFF, 0x01])));
        // A stored serial with a leading 00 is the integer it writes.
        let set = RevokedSet::from_hex(["00AB"]);
        assert!(set.contains(&[0xAB]));
        assert!(set.contains_hex("AB"));
        assert!(!set.contains(&[0xAB, 0x00]));
    }

    #[test]
    fn odd_length_hex_has_an_implied_leading_zero() {
        let set = RevokedSet::from_hex(["ABC"]);
        assert!(set.contains(&[0x0A, 0xBC]));
        assert!(set.contains_hex("0ABC"));
        assert!(!set.contains(&[0xAB, 0xC0]));
    }

    #[test]
    fn serials_longer_than_sixteen_bytes_up_to_twenty_and_beyond() {
        let twenty: Vec<u8> = (1..=20).collect();
        let seventeen = [0x7F; 17];
        let thirty_two = [0x55; 32];
        let set = RevokedSet::from_hex([hex::encode(&twenty), hex::encode(seventeen), hex::encode(thirty_two)]);
        assert!(set.contains(&twenty));
        assert!(set.contains(&[&[0u8][..], &twenty].concat()), "with a sign byte");
        assert!(set.contains_hex(&hex_of_certificate(&twenty)));
        assert!(set.contains(&seventeen));
        assert!(set.contains(&thirty_two));
        assert!(!set.contains(&twenty[..19]));
        assert!(!set.contains(&[0x7F; 16]), "sixteen bytes are a different integer");
        assert_eq!(set.len(), 3);
        // Sixteen significant bytes after a sign byte are still a short serial.
        let mut sixteen = vec![0x00];
        sixteen.extend([0xFF; 16]);
        let set = RevokedSet::from_hex([hex::encode(&sixteen)]);
        assert!(set.contains(&sixteen));
        assert!(set.contains(&[0xFF; 16]));
    }

    #[test]
    fn zero_empty_and_unreadable_serials() {
        let mut builder = RevokedSetBuilder::default();
        for serial in ["00", "", "not hex", "12G4"] {
            builder.push_hex(serial);
        }
        assert_eq!(builder.unreadable(), 3);
        let set = builder.build();
        assert!(set.contains(&[0x00]));
        assert!(set.contains_hex(&hex_of_certificate(&[0x00, 0x00])));
        assert!(!set.contains_hex(""));
        assert!(!set.contains_hex("not hex"));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn matches_what_comparing_hex_matched_for_every_serial_the_store_writes() {
        let raw: Vec<Vec<u8>> = vec![
            vec![0x01],
            vec![0x00, 0x80],
            vec![0x7F, 0xFF],
            pki::Serial::random().as_bytes().to_vec(),
            [&[0u8][..], &[0xC3; 16]].concat(),
            (1..=20).collect(),
        ];
        // The store keeps the canonical hex of each serial, as `pki::Serial` prints it.
        let stored: Vec<String> = raw.iter().step_by(2).map(|r| pki::Serial::from_bytes(r).to_string()).collect();
        let set = RevokedSet::from_hex(&stored);
        for r in &raw {
            let before = stored.contains(&hex_of_certificate(r));
            assert_eq!(set.contains(r), before, "{r:02X?}");
            assert_eq!(set.contains_hex(&hex_of_certificate(r)), before, "{r:02X?}");
        }
    }

    fn serial(i: u64) -> String {
        // Spread over the range the CA issues in, like its random serials.
        format!("{:032X}", (0x10u128 << 120) + u128::from(i) * 0x0000_1234_5678_9ABC_DEF0_1234_5678_9ABD)
    }

    #[test]
    fn finds_every_member_and_no_other_of_many() {
        let set = RevokedSet::from_hex((0..10_000).map(|i| serial(i * 2)));
        assert_eq!(set.len(), 10_000);
        for i in 0..20_000 {
            assert_eq!(set.contains_hex(&serial(i)), i % 2 == 0, "serial {i}");
        }
        assert!(!set.contains_hex("FF"));
        assert!(!set.contains(&[0xFF; 16]), "past the largest");
        assert!(!set.contains(&[0x01]), "before the smallest");
        assert!(!RevokedSet::default().contains(&[0x01]));
    }

    #[test]
    fn changes_go_to_the_overlay_and_merge_into_the_same_set() {
        let before = RevokedSet::from_hex((0..1_000).map(|i| serial(i * 2)));
        let mut after = before.clone();
        assert!(after.apply_hex(&serial(1), true), "a new revocation");
        assert!(!after.apply_hex(&serial(1), true), "revoked twice is one change");
        assert!(!after.apply_hex(&serial(2), true), "already in the base");
        assert!(after.apply_hex(&serial(4), false), "a hold released");
        assert!(!after.apply_hex(&serial(3), false), "never revoked");
        assert!(after.apply_hex(&serial(6), false));
        assert!(after.apply_hex(&serial(6), true), "put on hold again");
        assert!(!after.apply_hex("zz", true));
        assert!(after.apply_hex(&"7F".repeat(18), true));
        assert!(Arc::ptr_eq(&before.base, &after.base), "the base is shared, not copied");
        assert!(!before.contains_hex(&serial(1)) && before.contains_hex(&serial(4)), "the old set is untouched");

        let expect = |set: &RevokedSet| {
            assert_eq!(set.len(), 1_001);
            for i in 0..2_000 {
                assert_eq!(set.contains_hex(&serial(i)), (i % 2 == 0 && i != 4) || i == 1, "serial {i}");
            }
            assert!(set.contains(&[0x7F; 18]));
        };
        expect(&after);
        let merged = after.merged();
        assert!(merged.added.is_empty() && merged.removed.is_empty());
        expect(&merged);
        let mut released = merged.clone();
        assert!(released.apply_hex(&"7F".repeat(18), false));
        assert!(!released.contains(&[0x7F; 18]) && merged.contains(&[0x7F; 18]));
    }

    #[test]
    fn any_mix_of_changes_and_merges_agrees_with_a_set_of_hex() {
        // Serials of every shape: tiny, the CA's 16 bytes, the top of u128, 20 bytes.
        let pool: Vec<String> = (0..300u64)
            .map(|i| match i % 4 {
                0 => format!("{:04X}", i),
                1 => serial(i),
                2 => format!("{:032X}", u128::MAX - u128::from(i)),
                _ => format!("{:040X}", u128::from(i) << 32 | 0xFF),
            })
            .map(|hex| pki::Serial::from_bytes(&hex::decode(&hex).unwrap()).to_string())
            .collect();
        let mut model: std::collections::HashSet<String> = pool.iter().step_by(3).cloned().collect();
        let mut set = RevokedSet::from_hex(&model);
        let mut state = 7u64;
        for round in 0..3_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let serial = &pool[(state >> 33) as usize % pool.len()];
            let revoked = state >> 20 & 1 == 0;
            let changed = if revoked { model.insert(serial.clone()) } else { model.remove(serial) };
            assert_eq!(set.apply_hex(serial, revoked), changed, "round {round}");
            if round % 500 == 499 {
                set = set.merged();
            }
            assert_eq!(set.len(), model.len(), "round {round}");
        }
        for serial in &pool {
            assert_eq!(set.contains_hex(serial), model.contains(serial), "{serial}");
        }
    }

    #[test]
    fn the_overlay_fills_and_a_merge_empties_it() {
        let mut set = RevokedSet::from_hex((0..100).map(serial));
        for i in 0..=OVERLAY_LIMIT as u64 {
            set.apply_hex(&serial(1_000 + i), true);
        }
        assert!(set.overlay_full());
        let merged = set.merged();
        assert!(!merged.overlay_full());
        assert_eq!(merged.len(), 100 + OVERLAY_LIMIT + 1);
        assert!(merged.contains_hex(&serial(1_000 + OVERLAY_LIMIT as u64)));
        assert!(merged.heap_bytes() >= merged.len() * 16);
    }
}
