//! Buckets: which hash-tag slot group a user's or a session's keys live in.
//!
//! With `qsess.buckets` = 1 everything is bucket 0 and any session id works. With N > 1 a user's bucket
//! is `SHA-256(uid) mod N` and a session id carries its bucket as a decimal prefix, `<B>.<random>`, so
//! the session's keys can be found from the cookie alone and sit in the same slot as the owner's index.

use crate::error::CommandError;
use sha2::{Digest, Sha256};

/// The bucket count, fixed for the life of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Buckets(u32);

impl Buckets {
    pub(crate) fn new(count: u32) -> Buckets {
        Buckets(count.max(1))
    }

    pub(crate) fn count(self) -> u32 {
        self.0
    }

    pub(crate) fn of_user(self, user_id: &[u8]) -> u32 {
        if self.0 == 1 {
            return 0;
        }
        let digest = Sha256::digest(user_id);
        let first_eight: [u8; 8] = digest.first_chunk().copied().unwrap_or_default();
        (u64::from_be_bytes(first_eight) % u64::from(self.0)) as u32
    }

    /// The bucket a session id names. With one bucket every id is in bucket 0.
    pub(crate) fn of_session_id(self, session_id: &[u8]) -> Result<u32, CommandError> {
        if self.0 == 1 {
            return Ok(0);
        }
        let refuse = CommandError::SessionIdWithoutBucket { buckets: self.0 };
        let dot = session_id.iter().position(|&byte| byte == b'.').ok_or(refuse.clone())?;
        let (digits, dot_and_random) = session_id.split_at(dot);
        if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) || dot_and_random.len() < 2 {
            return Err(refuse);
        }
        let bucket: u32 = std::str::from_utf8(digits).ok().and_then(|text| text.parse().ok()).ok_or(refuse.clone())?;
        if bucket >= self.0 {
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
