//! The key scheme shared by the module, the daemon and the tests: key names and the small values
//! stored under them. Every key carries its bucket as a hash tag so that one command touches one slot.
//!
//! `<prefix>:{B}:s:<handle>` session record, `<prefix>:{B}:u:<uid>` user index, `<prefix>:{B}:chg`
//! change stream, `<prefix>:{B}:t:<handle>` tombstone, `<prefix>:{B}:r:<uid>` user revocation,
//! `<prefix>:{B}:ul:<uid>` user-loaded marker, `<prefix>:{B}:n:<handle>` not-found marker,
//! `<prefix>:{B}:miss` miss stream, and the Pub/Sub channel `<prefix>:reload-user`. No key ever
//! contains a raw session id.

use crate::cluster_slots::{slot_of_tag, slot_tag, SLOT_COUNT};
use crate::Handle;
use std::borrow::Cow;

/// The value of a marker key (`ul:`, `n:`): only its existence and expiry mean anything.
pub const MARKER_VALUE: &[u8] = b"1";

/// How a bucket number becomes the hash tag in its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketTags {
    /// A standalone server: bucket `B` (of `qsess.buckets`) is tagged with its decimal number, `{B}`.
    Decimal,
    /// Redis Cluster: the bucket is the hash slot, tagged with [`slot_tag`], so the keys sit in it.
    ClusterSlot,
}

impl BucketTags {
    /// The tag of `bucket`'s keys (the text between the braces).
    pub fn tag(self, bucket: u32) -> Cow<'static, str> {
        match self {
            BucketTags::Decimal => Cow::Owned(bucket.to_string()),
            BucketTags::ClusterSlot => Cow::Borrowed(slot_tag((bucket % u32::from(SLOT_COUNT)) as u16)),
        }
    }

    /// The bucket a tag names, if it is one this scheme writes (`0` to `buckets - 1` when decimal).
    pub fn bucket_of_tag(self, tag: &[u8], buckets: u32) -> Option<u32> {
        match self {
            BucketTags::Decimal => {
                let canonical = !tag.is_empty() && tag.len() <= 10 && (tag == b"0" || tag.first() != Some(&b'0'));
                let bucket: u32 = std::str::from_utf8(tag).ok().filter(|_| canonical)?.parse().ok()?;
                (bucket < buckets).then_some(bucket)
            }
            BucketTags::ClusterSlot => slot_of_tag(tag).map(u32::from),
        }
    }
}

/// The key namespace of one prefix (`qsess.prefix`): every key name qsess uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyNames {
    prefix: String,
    tags: BucketTags,
}

impl KeyNames {
    /// The names under `prefix` (checked by [`validate_prefix`] where it is configured) on a
    /// standalone server: buckets tagged with their number.
    pub fn new(prefix: &str) -> KeyNames {
        KeyNames { prefix: prefix.to_owned(), tags: BucketTags::Decimal }
    }

    /// The names under `prefix` on Redis Cluster: the bucket is the slot, tagged with [`slot_tag`].
    pub fn for_cluster(prefix: &str) -> KeyNames {
        KeyNames { prefix: prefix.to_owned(), tags: BucketTags::ClusterSlot }
    }

    /// How this namespace tags buckets.
    pub fn bucket_tags(&self) -> BucketTags {
        self.tags
    }

    /// The hash tag of `bucket`'s keys, as requests to the loader name the bucket.
    pub fn bucket_tag(&self, bucket: u32) -> Cow<'static, str> {
        self.tags.tag(bucket)
    }

    /// The prefix every name starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A session's record (a string with the session's expiry).
    pub fn session(&self, bucket: u32, handle: &Handle) -> Vec<u8> {
        self.with_suffix(bucket, b"s:", handle.as_bytes())
    }

    /// The `SCAN MATCH` pattern of every session record in a bucket.
    pub fn session_pattern(&self, bucket: u32) -> Vec<u8> {
        self.with_suffix(bucket, b"s:*", b"")
    }

    /// A user's index of sessions (a sorted set scored by expiry).
    pub fn user_index(&self, bucket: u32, user_id: &[u8]) -> Vec<u8> {
        self.with_suffix(bucket, b"u:", user_id)
    }

    /// An ended session's tombstone (its value is the `del` version), so that it stays dead.
    pub fn tombstone(&self, bucket: u32, handle: &Handle) -> Vec<u8> {
        self.with_suffix(bucket, b"t:", handle.as_bytes())
    }

    /// A bucket's change stream, which the daemon mirrors.
    pub fn change_stream(&self, bucket: u32) -> Vec<u8> {
        self.with_suffix(bucket, b"chg", b"")
    }

    /// When the user last revoked all their sessions (`QSESS.REVOKEUSER`), for reloads to respect;
    /// its value is a [`UserRevocationValue`].
    pub fn user_revocation(&self, bucket: u32, user_id: &[u8]) -> Vec<u8> {
        self.with_suffix(bucket, b"r:", user_id)
    }

    /// "The loader reloaded this user's sessions": lets `QSESS.BYUSER` answer without asking again.
    pub fn user_loaded(&self, bucket: u32, user_id: &[u8]) -> Vec<u8> {
        self.with_suffix(bucket, b"ul:", user_id)
    }

    /// Where a read-only `QSESS.BYUSER` asks the loader to reload a user (Pub/Sub: not a key).
    pub fn user_reload_channel(&self) -> Vec<u8> {
        format!("{}:reload-user", self.prefix).into_bytes()
    }

    /// The negative cache: the loader found no live session with this handle.
    pub fn not_found(&self, bucket: u32, handle: &Handle) -> Vec<u8> {
        self.with_suffix(bucket, b"n:", handle.as_bytes())
    }

    /// Where misses ask the loader for a reload.
    pub fn miss_stream(&self, bucket: u32) -> Vec<u8> {
        self.with_suffix(bucket, b"miss", b"")
    }

    fn with_suffix(&self, bucket: u32, kind: &[u8], name: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + 16 + name.len());
        key.extend_from_slice(self.prefix.as_bytes());
        key.extend_from_slice(b":{");
        match self.tags {
            // Written digit by digit: `to_string` went through the formatter and a second allocation
            // on every command (a key name is built for every key a command touches).
            BucketTags::Decimal => push_decimal(&mut key, bucket),
            BucketTags::ClusterSlot => key.extend_from_slice(self.tags.tag(bucket).as_bytes()),
        }
        key.extend_from_slice(b"}:");
        key.extend_from_slice(kind);
        key.extend_from_slice(name);
        key
    }
}

/// Appends `value` in decimal, as `value.to_string()` writes it.
fn push_decimal(out: &mut Vec<u8>, mut value: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(digit) = digits.get_mut(start) {
            *digit = b'0' + (value % 10) as u8;
        }
        value /= 10;
        if value == 0 || start == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// Checks a `qsess.prefix` value: it must keep keys readable and must not break the hash tag.
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
    let acceptable = |character: char| character.is_ascii_graphic() && !matches!(character, '{' | '}');
    if prefix.is_empty() || prefix.len() > 32 || !prefix.chars().all(acceptable) {
        return Err(format!(
            "invalid qsess.prefix '{prefix}': use 1 to 32 printable ASCII characters without spaces or braces"
        ));
    }
    Ok(())
}

/// The value of a user-revocation key: `<at_ms>` or `<at_ms> <except handle>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRevocationValue<'a> {
    /// When the user revoked everything (ms since the epoch); 0 when the stored value is unreadable.
    pub at_ms: u64,
    /// The session `EXCEPT` kept, as stored (a handle's text).
    pub except: Option<&'a [u8]>,
}

impl<'a> UserRevocationValue<'a> {
    /// Encodes the value `QSESS.REVOKEUSER` stores and `QSESS.RESTORE` reads back.
    pub fn encode(&self) -> Vec<u8> {
        let mut value = self.at_ms.to_string().into_bytes();
        if let Some(except) = self.except {
            value.push(b' ');
            value.extend_from_slice(except);
        }
        value
    }

    /// Reads a stored value leniently: an unreadable time counts as 0 (no revocation to respect), so
    /// a key someone overwrote cannot block reloads.
    pub fn parse(value: &'a [u8]) -> UserRevocationValue<'a> {
        let mut words = value.split(|&byte| byte == b' ');
        let at_ms = words
            .next()
            .and_then(|text| std::str::from_utf8(text).ok())
            .and_then(|text| text.parse().ok())
            .unwrap_or(0);
        UserRevocationValue { at_ms, except: words.next() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_tags_are_written_as_to_string_writes_them() {
        for value in [0, 1, 9, 10, 15, 99, 100, 16_383, 1_000_000, u32::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, value);
            assert_eq!(out, format!("x{value}").into_bytes());
        }
        assert_eq!(KeyNames::new("qs").change_stream(12), b"qs:{12}:chg");
    }

    #[test]
    fn names_follow_the_documented_layout() {
        let names = KeyNames::new("qs");
        let handle = Handle::from_session_id(b"sid");
        assert_eq!(names.session(0, &handle), format!("qs:{{0}}:s:{handle}").into_bytes());
        assert_eq!(names.session_pattern(0), b"qs:{0}:s:*".to_vec());
        assert_eq!(names.user_index(12, b"42"), b"qs:{12}:u:42".to_vec());
        assert_eq!(names.tombstone(3, &handle), format!("qs:{{3}}:t:{handle}").into_bytes());
        assert_eq!(names.change_stream(0), b"qs:{0}:chg".to_vec());
        assert_eq!(names.miss_stream(2), b"qs:{2}:miss".to_vec());
        assert_eq!(names.user_revocation(1, b"42"), b"qs:{1}:r:42".to_vec());
        assert_eq!(names.user_loaded(1, b"42"), b"qs:{1}:ul:42".to_vec());
        assert_eq!(names.not_found(0, &handle), format!("qs:{{0}}:n:{handle}").into_bytes());
        assert_eq!(names.user_reload_channel(), b"qs:reload-user".to_vec());
    }

    #[test]
    fn cluster_names_hash_to_the_bucket_slot() {
        let names = KeyNames::for_cluster("qs");
        let slot = crate::key_slot(b"42");
        let handle = Handle::from_session_id(b"sid");
        for key in [names.user_index(u32::from(slot), b"42"), names.session(u32::from(slot), &handle)] {
            assert_eq!(crate::key_slot(&key), slot);
        }
        assert_eq!(names.bucket_tags().bucket_of_tag(names.bucket_tag(7).as_bytes(), 1), Some(7));
    }

    #[test]
    fn decimal_tags_name_buckets_in_range_only() {
        let tags = BucketTags::Decimal;
        assert_eq!(tags.bucket_of_tag(b"0", 1), Some(0));
        assert_eq!(tags.bucket_of_tag(b"15", 16), Some(15));
        for bad in [&b"16"[..], b"", b"01", b"-1", b"x", b"99999999999"] {
            assert_eq!(tags.bucket_of_tag(bad, 16), None, "{bad:?}");
        }
    }

    #[test]
    fn user_ids_with_braces_keep_the_bucket_tag() {
        // Redis hashes the first {...} of a key, which is always the bucket.
        let key = KeyNames::new("qs").user_index(5, b"{evil}");
        assert!(key.starts_with(b"qs:{5}:"));
    }

    #[test]
    fn prefix_validation() {
        assert!(validate_prefix("qs").is_ok());
        assert!(validate_prefix("app1.sessions").is_ok());
        for bad in ["", "a b", "q{s", "x}", &"p".repeat(33)] {
            assert!(validate_prefix(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn user_revocation_values_round_trip() {
        let handle = Handle::from_session_id(b"kept");
        let plain = UserRevocationValue { at_ms: 1_700_000_000_000, except: None };
        assert_eq!(plain.encode(), b"1700000000000".to_vec());
        let encoded = plain.encode();
        assert_eq!(UserRevocationValue::parse(&encoded), plain);
        let with_except = UserRevocationValue { at_ms: 5, except: Some(handle.as_bytes()) };
        let encoded = with_except.encode();
        assert_eq!(encoded, format!("5 {handle}").into_bytes());
        assert_eq!(UserRevocationValue::parse(&encoded), with_except);
        assert_eq!(UserRevocationValue::parse(b"not a time").at_ms, 0);
    }
}
