//! Handles: the public name of a session, `base64url(SHA-256(sid))` truncated to 128 bits.
//!
//! A handle names a session in keys, stream entries, the mirror and `QSESS.BYUSER` replies without
//! revealing the bearer token: knowing a handle does not let anyone present the session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;

/// Characters in a handle: 16 bytes of digest in unpadded base64url.
pub const HANDLE_LEN: usize = 22;

const DIGEST_BYTES_KEPT: usize = 16;

/// The handle of one session, always [`HANDLE_LEN`] base64url characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle([u8; HANDLE_LEN]);

/// A string that is not the handle of any session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid handle: expected {HANDLE_LEN} base64url characters as returned by QSESS.BYUSER")]
pub struct InvalidHandle;

impl Handle {
    /// The handle of the session whose id is `session_id`.
    pub fn from_session_id(session_id: &[u8]) -> Handle {
        let digest = Sha256::digest(session_id);
        let mut text = [0u8; HANDLE_LEN];
        let written = URL_SAFE_NO_PAD.encode_slice(&digest[..DIGEST_BYTES_KEPT], &mut text).unwrap_or_default();
        debug_assert_eq!(written, HANDLE_LEN);
        Handle(text)
    }

    /// Parses a handle as printed by [`Handle::as_str`]; rejects anything no session id could produce.
    pub fn parse(text: &[u8]) -> Result<Handle, InvalidHandle> {
        let text: [u8; HANDLE_LEN] = text.try_into().map_err(|_| InvalidHandle)?;
        let mut digest = [0u8; DIGEST_BYTES_KEPT + 2];
        let decoded = URL_SAFE_NO_PAD.decode_slice(text, &mut digest).map_err(|_| InvalidHandle)?;
        if decoded != DIGEST_BYTES_KEPT {
            return Err(InvalidHandle);
        }
        Ok(Handle(text))
    }

    /// The handle's 22 base64url characters.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The handle's 22 base64url characters, as text.
    pub fn as_str(&self) -> &str {
        // Only base64url characters are ever stored, which are ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Handle({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_base64url_of_the_first_128_bits_of_sha256() {
        // SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 ...
        let handle = Handle::from_session_id(b"abc");
        assert_eq!(handle.as_str(), "ungWv48Bz-pBQUDeXa4iIw");
        assert_eq!(handle.as_str().len(), HANDLE_LEN);
    }

    #[test]
    fn does_not_contain_the_session_id() {
        let session_id = b"this-is-a-secret-cookie-value";
        let handle = Handle::from_session_id(session_id);
        assert!(!handle.as_str().contains("secret"));
        assert_ne!(handle, Handle::from_session_id(b"this-is-a-secret-cookie-valuf"));
    }

    #[test]
    fn parse_accepts_what_it_prints() {
        let handle = Handle::from_session_id(b"sid-1");
        assert_eq!(Handle::parse(handle.as_bytes()), Ok(handle));
    }

    #[test]
    fn parse_rejects_wrong_length_alphabet_and_padding() {
        assert_eq!(Handle::parse(b""), Err(InvalidHandle));
        assert_eq!(Handle::parse(b"ungWv48Bz-pBQUDeXa4iI"), Err(InvalidHandle));
        assert_eq!(Handle::parse(b"ungWv48Bz+pBQUDeXa4iIw"), Err(InvalidHandle));
        assert_eq!(Handle::parse(b"ungWv48Bz-pBQUDeXa4i=="), Err(InvalidHandle));
        // The last character carries 2 bits of padding; non-canonical encodings are refused.
        assert_eq!(Handle::parse(b"ungWv48Bz-pBQUDeXa4iIx"), Err(InvalidHandle));
    }
}
