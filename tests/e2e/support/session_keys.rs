//! Key names and handles as the tests see them: `qsess_record::KeyNames`, the one key scheme the
//! module and the daemon use, under the default prefix, as text (test ids are ASCII, and assertions
//! compare text with what Redis answers).

use qsess_record::{Handle, KeyNames, HANDLE_LEN};

/// The default `qsess.prefix`, which every test server keeps unless it says otherwise.
pub(crate) const DEFAULT_PREFIX: &str = "qs";

/// The key names under the default prefix.
pub(crate) fn default_key_names() -> KeyNames {
    KeyNames::new(DEFAULT_PREFIX)
}

/// The handle of a session id, as text: what keys, stream entries and `BYUSER` show.
pub(crate) fn handle_of(session_id: &str) -> String {
    Handle::from_session_id(session_id.as_bytes()).as_str().to_owned()
}

/// The handle of a session id, typed, for the key-name functions.
pub(crate) fn typed_handle_of(session_id: &str) -> Handle {
    Handle::from_session_id(session_id.as_bytes())
}

pub(crate) fn session_key(bucket: u32, handle: &Handle) -> String {
    text_of(default_key_names().session(bucket, handle))
}

pub(crate) fn session_key_of(session_id: &str) -> String {
    session_key(0, &typed_handle_of(session_id))
}

pub(crate) fn tombstone_key(bucket: u32, handle: &Handle) -> String {
    text_of(default_key_names().tombstone(bucket, handle))
}

pub(crate) fn tombstone_key_of(session_id: &str) -> String {
    tombstone_key(0, &typed_handle_of(session_id))
}

/// What every tombstone key of `bucket` starts with.
pub(crate) fn tombstone_key_prefix(bucket: u32) -> String {
    let mut name = tombstone_key(bucket, &typed_handle_of(""));
    name.truncate(name.len() - HANDLE_LEN);
    name
}

pub(crate) fn not_found_key_of(session_id: &str) -> String {
    text_of(default_key_names().not_found(0, &typed_handle_of(session_id)))
}

pub(crate) fn user_index_key(bucket: u32, user_id: &str) -> String {
    text_of(default_key_names().user_index(bucket, user_id.as_bytes()))
}

pub(crate) fn user_index_key_of(user_id: &str) -> String {
    user_index_key(0, user_id)
}

pub(crate) fn user_revocation_key(bucket: u32, user_id: &str) -> String {
    text_of(default_key_names().user_revocation(bucket, user_id.as_bytes()))
}

pub(crate) fn change_stream_key(bucket: u32) -> String {
    text_of(default_key_names().change_stream(bucket))
}

pub(crate) fn miss_stream_key(bucket: u32) -> String {
    text_of(default_key_names().miss_stream(bucket))
}

/// What every key of `bucket` starts with, `<prefix>:{B}:`.
pub(crate) fn bucket_key_prefix(bucket: u32) -> String {
    let mut name = change_stream_key(bucket);
    name.truncate(name.len() - "chg".len());
    name
}

fn text_of(name: Vec<u8>) -> String {
    String::from_utf8(name).expect("test key names are text")
}
