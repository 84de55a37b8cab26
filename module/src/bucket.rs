//! Buckets: which hash-tag slot group a user's or a session's keys live in.
//!
//! On a standalone server, with `qsess.buckets` = 1 everything is bucket 0 and any session id works.
//! With N > 1 a user's bucket is `SHA-256(uid) mod N` and a session id carries its bucket as a decimal
//! prefix, `<B>.<random>`, so the session's keys can be found from the cookie alone and sit in the
//! same slot as the owner's index.
//!
//! On Redis Cluster the bucket is the hash slot a stock cluster client computes from the argument it
//! routes by: a user's bucket is the slot of the uid, a session's the slot of its id (any id works;
//! minted ids carry the slot as a hash tag, `{<tag>}<random>`, so they land where their user is).

use crate::error::CommandError;
use qsess_record::{key_slot, BucketTags, SLOT_COUNT};
use sha2::{Digest, Sha256};

/// How keys are grouped into buckets, fixed for the life of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Buckets {
    /// A standalone server with `qsess.buckets` buckets.
    Numbered(u32),
    /// Redis Cluster: one bucket per hash slot, found from the uid or the session id itself.
    ClusterSlots,
}

impl Buckets {
    pub(crate) fn new(count: u32) -> Buckets {
        Buckets::Numbered(count.max(1))
    }

    pub(crate) fn count(self) -> u32 {
        match self {
            Buckets::Numbered(count) => count,
            Buckets::ClusterSlots => u32::from(SLOT_COUNT),
        }
    }

    pub(crate) fn is_cluster(self) -> bool {
        self == Buckets::ClusterSlots
    }

    pub(crate) fn of_user(self, user_id: &[u8]) -> u32 {
        let count = match self {
            Buckets::ClusterSlots => return u32::from(key_slot(user_id)),
            Buckets::Numbered(1) => return 0,
            Buckets::Numbered(count) => count,
        };
        let digest = Sha256::digest(user_id);
        let first_eight: [u8; 8] = digest.first_chunk().copied().unwrap_or_default();
        (u64::from_be_bytes(first_eight) % u64::from(count)) as u32
    }

    /// The bucket a request names by its tag (`QSESS.RESTORE`, `QSESS.RESTOREUSER`): the decimal
    /// number on a standalone server, the slot's tag on a cluster, as in the bucket's key names.
    pub(crate) fn of_tag(self, tag: &[u8]) -> Result<u32, CommandError> {
        let bucket = match self {
            Buckets::Numbered(count) => BucketTags::Decimal.bucket_of_tag(tag, count),
            Buckets::ClusterSlots => BucketTags::ClusterSlot.bucket_of_tag(tag, self.count()),
        };
        bucket.ok_or(CommandError::BadBucket)
    }

    /// The bucket a session id names. With one bucket every id is in bucket 0.
    pub(crate) fn of_session_id(self, session_id: &[u8]) -> Result<u32, CommandError> {
        let count = match self {
            Buckets::ClusterSlots => return Ok(u32::from(key_slot(session_id))),
            Buckets::Numbered(1) => return Ok(0),
            Buckets::Numbered(count) => count,
        };
        let refuse = CommandError::SessionIdWithoutBucket { buckets: count };
        let dot = session_id.iter().position(|&byte| byte == b'.').ok_or(refuse.clone())?;
        let (digits, dot_and_random) = session_id.split_at(dot);
        if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) || dot_and_random.len() < 2 {
            return Err(refuse);
        }
        let bucket: u32 = std::str::from_utf8(digits).ok().and_then(|text| text.parse().ok()).ok_or(refuse.clone())?;
        if bucket >= count {
            return Err(refuse);
        }
        Ok(bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bucket_takes_every_id() {
        let buckets = Buckets::new(1);
        assert_eq!(buckets.of_session_id(b"anything at all"), Ok(0));
        assert_eq!(buckets.of_session_id(b"7.abc"), Ok(0));
        assert_eq!(buckets.of_user(b"42"), 0);
    }

    #[test]
    fn users_spread_over_buckets_stably() {
        let buckets = Buckets::new(16);
        let first = buckets.of_user(b"user-1");
        assert_eq!(first, buckets.of_user(b"user-1"));
        let distinct: std::collections::HashSet<u32> =
            (0..200).map(|n| buckets.of_user(format!("user-{n}").as_bytes())).collect();
        assert!(distinct.len() > 10, "only {} buckets used", distinct.len());
        assert!(distinct.iter().all(|&bucket| bucket < 16));
    }

    #[test]
    fn on_a_cluster_buckets_are_the_slots_clients_compute() {
        let buckets = Buckets::ClusterSlots;
        assert_eq!(buckets.count(), 16_384);
        assert_eq!(buckets.of_user(b"13"), 12_436);
        assert_eq!(buckets.of_session_id(b"any id at all"), Ok(u32::from(key_slot(b"any id at all"))));
        assert_eq!(buckets.of_session_id(b"{13}rest"), Ok(12_436));
    }

    #[test]
    fn session_ids_carry_their_bucket() {
        let buckets = Buckets::new(16);
        assert_eq!(buckets.of_session_id(b"3.Zm9vYmFy"), Ok(3));
        assert_eq!(buckets.of_session_id(b"15.x"), Ok(15));
        for bad in [&b"16.x"[..], b"x.y", b".x", b"3.", b"nodot", b"-1.x", b"999999.x"] {
            assert_eq!(
                buckets.of_session_id(bad),
                Err(CommandError::SessionIdWithoutBucket { buckets: 16 }),
                "accepted {:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
