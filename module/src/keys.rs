//! Key names. Every key carries its bucket as a hash tag so that one command touches one slot.
//!
//! `<prefix>:{B}:s:<handle>` session record, `<prefix>:{B}:u:<uid>` user index, `<prefix>:{B}:chg`
//! change stream, `<prefix>:{B}:t:<handle>` tombstone. No key ever contains a raw session id.

use qsess_record::Handle;

/// The key namespace: the prefix (`qsess.prefix`) and the bucket count (`qsess.buckets`), both fixed at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyNames {
    prefix: String,
}

impl KeyNames {
    pub(crate) fn new(prefix: &str) -> KeyNames {
        KeyNames { prefix: prefix.to_owned() }
    }

    pub(crate) fn session(&self, bucket: u32, handle: &Handle) -> Vec<u8> {
        self.with_suffix(bucket, b"s:", handle.as_bytes())
    }

    pub(crate) fn user_index(&self, bucket: u32, user_id: &[u8]) -> Vec<u8> {
        self.with_suffix(bucket, b"u:", user_id)
    }

    pub(crate) fn tombstone(&self, bucket: u32, handle: &Handle) -> Vec<u8> {
        self.with_suffix(bucket, b"t:", handle.as_bytes())
    }

    pub(crate) fn change_stream(&self, bucket: u32) -> Vec<u8> {
        self.with_suffix(bucket, b"chg", b"")
    }

    /// When the user last revoked all their sessions (`QSESS.REVOKEUSER`), for reloads to respect.
    pub(crate) fn user_revocation(&self, bucket: u32, user_id: &[u8]) -> Vec<u8> {
        self.with_suffix(bucket, b"r:", user_id)
    }

    /// "The loader reloaded this user's sessions": lets `QSESS.BYUSER` answer without asking again.
    pub(crate) fn user_loaded(&self, bucket: u32, user_id: &[u8]) -> Vec<u8> {
        self.with_suffix(bucket, b"ul:", user_id)
    }

    /// Where a read-only `QSESS.BYUSER` asks the loader to reload a user (Pub/Sub: not a key).
    pub(crate) fn user_reload_channel(&self) -> Vec<u8> {
        format!("{}:reload-user", self.prefix).into_bytes()
    }

    /// The negative cache: the loader found no live session with this handle.
    pub(crate) fn not_found(&self, bucket: u32, handle: &Handle) -> Vec<u8> {
        self.with_suffix(bucket, b"n:", handle.as_bytes())
    }

    /// Where misses ask the loader for a reload.
    pub(crate) fn miss_stream(&self, bucket: u32) -> Vec<u8> {
        self.with_suffix(bucket, b"miss", b"")
    }

    fn with_suffix(&self, bucket: u32, kind: &[u8], name: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + 16 + name.len());
        key.extend_from_slice(self.prefix.as_bytes());
        key.extend_from_slice(b":{");
        key.extend_from_slice(bucket.to_string().as_bytes());
        key.extend_from_slice(b"}:");
        key.extend_from_slice(kind);
        key.extend_from_slice(name);
        key
    }
}

/// Checks a `qsess.prefix` value: it must keep keys readable and must not break the hash tag.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), String> {
    let acceptable = |character: char| character.is_ascii_graphic() && !matches!(character, '{' | '}');
    if prefix.is_empty() || prefix.len() > 32 || !prefix.chars().all(acceptable) {
        return Err(format!(
            "invalid qsess.prefix '{prefix}': use 1 to 32 printable ASCII characters without spaces or braces"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_layout() {
        let names = KeyNames::new("qs");
        let handle = Handle::from_session_id(b"sid");
        assert_eq!(names.session(0, &handle), format!("qs:{{0}}:s:{handle}").into_bytes());
        assert_eq!(names.user_index(12, b"42"), b"qs:{12}:u:42".to_vec());
        assert_eq!(names.tombstone(3, &handle), format!("qs:{{3}}:t:{handle}").into_bytes());
        assert_eq!(names.change_stream(0), b"qs:{0}:chg".to_vec());
        assert_eq!(names.miss_stream(2), b"qs:{2}:miss".to_vec());
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
}
