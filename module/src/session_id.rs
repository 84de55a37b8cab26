//! Session ids: validation, where a session lives (bucket and handle), and minting new ids.

use crate::bucket::Buckets;
use crate::error::CommandError;
use crate::limits::MAX_SESSION_ID_BYTES;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use qsess_record::{slot_tag, Handle};

/// Random bytes in a minted id: 192 bits, above OWASP's 64-bit floor and DESIGN's 128.
const MINTED_RANDOM_BYTES: usize = 24;

/// Where a session's keys are: its bucket and its handle. The raw id is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionAddress {
    pub(crate) bucket: u32,
    pub(crate) handle: Handle,
}

pub(crate) fn locate(session_id: &[u8], buckets: Buckets) -> Result<SessionAddress, CommandError> {
    if session_id.is_empty() {
        return Err(CommandError::EmptySessionId);
    }
    if session_id.len() > MAX_SESSION_ID_BYTES {
        return Err(CommandError::SessionIdTooLong(session_id.len()));
    }
    let min_bytes = crate::settings::min_session_id_bytes();
    if session_id.len() < min_bytes {
        return Err(CommandError::SessionIdTooShort { length: session_id.len(), min: min_bytes });
    }
    Ok(SessionAddress { bucket: buckets.of_session_id(session_id)?, handle: Handle::from_session_id(session_id) })
}

/// A fresh id from the OS CSPRNG, in `bucket` when there is more than one bucket: `<B>.<random>`
/// on a standalone server, `{<slot tag>}<random>` on a cluster (the hash tag clients route by).
pub(crate) fn mint(buckets: Buckets, bucket: u32) -> Result<Vec<u8>, CommandError> {
    let mut random = [0u8; MINTED_RANDOM_BYTES];
    getrandom::fill(&mut random).map_err(|_| CommandError::Internal)?;
    let mut session_id = Vec::with_capacity(48);
    match buckets {
        Buckets::ClusterSlots => {
            session_id.push(b'{');
            session_id.extend_from_slice(slot_tag(bucket as u16).as_bytes());
            session_id.push(b'}');
        }
        Buckets::Numbered(count) if count > 1 => {
            session_id.extend_from_slice(bucket.to_string().as_bytes());
            session_id.push(b'.');
        }
        Buckets::Numbered(_) => {}
    }
    session_id.extend_from_slice(URL_SAFE_NO_PAD.encode(random).as_bytes());
    Ok(session_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_are_unique_cookie_safe_and_in_their_bucket() {
        let one = mint(Buckets::new(1), 0).unwrap();
        assert_eq!(one.len(), 32);
        assert!(one.iter().all(|byte| byte.is_ascii_alphanumeric() || *byte == b'-' || *byte == b'_'));
        assert_ne!(one, mint(Buckets::new(1), 0).unwrap());
        let buckets = Buckets::new(8);
        let in_bucket = mint(buckets, 5).unwrap();
        assert!(in_bucket.starts_with(b"5."));
        assert_eq!(locate(&in_bucket, buckets).unwrap().bucket, 5);
    }

    #[test]
    fn cluster_ids_carry_the_slot_tag_of_their_bucket() {
        let minted = mint(Buckets::ClusterSlots, 12_436).unwrap();
        assert!(minted.starts_with(b"{"), "{minted:?}");
        assert_eq!(qsess_record::key_slot(&minted), 12_436);
        assert_eq!(locate(&minted, Buckets::ClusterSlots).unwrap().bucket, 12_436);
        assert!(minted.len() <= 32 + 6);
    }

    #[test]
    fn locate_refuses_empty_and_oversized_ids() {
        assert_eq!(locate(b"", Buckets::new(1)), Err(CommandError::EmptySessionId));
        let long = vec![b'a'; MAX_SESSION_ID_BYTES + 1];
        assert_eq!(locate(&long, Buckets::new(1)), Err(CommandError::SessionIdTooLong(257)));
        let address = locate(b"abcdefghijklmnop", Buckets::new(1)).unwrap();
        assert_eq!(address, SessionAddress { bucket: 0, handle: Handle::from_session_id(b"abcdefghijklmnop") });
        // qsess.min-session-id-bytes, 1 by default.
        assert!(locate(b"a", Buckets::new(1)).is_ok());
    }
}
