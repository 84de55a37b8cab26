//! Redis Cluster's hash slots, computed the way every cluster client computes them, and the short
//! hash tag qsess names each slot's keys with.
//!
//! On a cluster qsess keeps a user's index and all of that user's sessions in the slot of the uid,
//! and a session's keys in the slot of its id, so a stock client that routes a command by its uid or
//! its session id reaches the node that holds the data. The keys carry the slot as a hash tag,
//! `{<slot tag>}`: the shortest alphanumeric string that hashes to that slot.

use std::sync::OnceLock;

/// How many hash slots a Redis Cluster has.
pub const SLOT_COUNT: u16 = 16_384;

const CRC16_XMODEM: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// The slot Redis Cluster hashes `key` to: CRC-16/XMODEM of the key's hash tag (the bytes between
/// the first `{` and the next `}`, when not empty) or of the whole key, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    CRC16_XMODEM.checksum(hash_tag_or_key(key)) % SLOT_COUNT
}

fn hash_tag_or_key(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&byte| byte == b'{') else {
        return key;
    };
    let after_open = key.get(open + 1..).unwrap_or_default();
    match after_open.iter().position(|&byte| byte == b'}') {
        Some(close) if close > 0 => after_open.get(..close).unwrap_or(key),
        _ => key,
    }
}

/// The hash tag qsess uses for `slot` (taken modulo 16384): the shortest string of ASCII letters
/// and digits, first in `[0-9A-Za-z]` order, whose slot it is. The table is built once (about
/// 250,000 checksums, a few milliseconds) and is the same in the module, the daemon and the tests.
pub fn slot_tag(slot: u16) -> &'static str {
    let tags = SLOT_TAGS.get_or_init(build_slot_tags);
    tags.get(usize::from(slot % SLOT_COUNT)).map(String::as_str).unwrap_or_default()
}

/// The slot `tag` names when it is the tag qsess uses for that slot, else `None`: a bucket named in
/// a request (`QSESS.RESTORE`, a reload request) must be one qsess would have written.
pub fn slot_of_tag(tag: &[u8]) -> Option<u16> {
    let slot = key_slot(tag);
    (!tag.contains(&b'{') && slot_tag(slot).as_bytes() == tag).then_some(slot)
}

static SLOT_TAGS: OnceLock<Vec<String>> = OnceLock::new();

const TAG_ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn build_slot_tags() -> Vec<String> {
    let mut tags: Vec<Option<String>> = vec![None; usize::from(SLOT_COUNT)];
    let mut missing = usize::from(SLOT_COUNT);
    let mut length = 1;
    while missing > 0 {
        let mut digits = vec![0usize; length];
        loop {
            let candidate: Vec<u8> = digits.iter().filter_map(|&digit| TAG_ALPHABET.get(digit).copied()).collect();
            let entry = tags.get_mut(usize::from(key_slot(&candidate)));
            if let Some(entry @ None) = entry {
                *entry = Some(String::from_utf8_lossy(&candidate).into_owned());
                missing -= 1;
            }
            if !next_combination(&mut digits) {
                break;
            }
        }
        length += 1;
    }
    tags.into_iter().map(Option::unwrap_or_default).collect()
}

/// Counts `digits` up in base `TAG_ALPHABET.len()`, the last digit fastest; false after the last.
fn next_combination(digits: &mut [usize]) -> bool {
    for digit in digits.iter_mut().rev() {
        *digit += 1;
        if *digit < TAG_ALPHABET.len() {
            return true;
        }
        *digit = 0;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_values_redis_documents() {
        // CLUSTER KEYSLOT answers these on any Redis.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"13"), 12436);
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"), "an empty tag hashes the whole key");
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }

    #[test]
    fn every_slot_has_a_short_alphanumeric_tag_of_its_own() {
        for slot in 0..SLOT_COUNT {
            let tag = slot_tag(slot);
            assert!(!tag.is_empty() && tag.len() <= 4, "slot {slot}: {tag:?}");
            assert!(tag.bytes().all(|byte| byte.is_ascii_alphanumeric()));
            assert_eq!(key_slot(tag.as_bytes()), slot);
            assert_eq!(key_slot(format!("qs:{{{tag}}}:u:42").as_bytes()), slot);
            assert_eq!(slot_of_tag(tag.as_bytes()), Some(slot));
        }
    }

    #[test]
    fn only_the_canonical_tag_names_a_slot() {
        let slot = key_slot(b"42");
        assert_eq!(slot_of_tag(slot_tag(slot).as_bytes()), Some(slot));
        assert_eq!(slot_of_tag(b"42"), (slot_tag(slot) == "42").then_some(slot));
        assert_eq!(slot_of_tag(b""), None);
        assert_eq!(slot_of_tag(b"{x}"), None);
    }
}
