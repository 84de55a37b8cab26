//! Shared pieces of the GeoIP and device tests: the generated fixture databases, session fields as
//! QSESS.PEEK and QSESS.BYUSER WITHMETA show them, and the records in the change stream.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::support::session_keys::{change_stream_key, handle_of};
use qsess_record::SessionRecord;
use qsess_tests::geoip_fixtures::fixture_path;
use redis::{Connection, Value};

pub(crate) const CITY_DB: &str = "qsess-test-city.mmdb";
pub(crate) const COUNTRY_DB: &str = "qsess-test-country.mmdb";
pub(crate) const ASN_DB: &str = "qsess-test-asn.mmdb";

pub(crate) const FIREFOX_UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
pub(crate) const FIREFOX_DEVICE: &str = "Firefox 120 on Linux";
pub(crate) const IPHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 \
                             (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
pub(crate) const IPHONE_DEVICE: &str = "Safari 17 on iPhone";

/// The path of a committed fixture database, as text for CONFIG SET and module arguments.
pub(crate) fn fixture(name: &str) -> String {
    fixture_path(name).to_str().expect("fixture paths are UTF-8").to_owned()
}

/// Copies a fixture to `path` the way geoipupdate installs a database: write a new file beside it,
/// then rename it over the old one.
pub(crate) fn install_by_rename(fixture_name: &str, path: &std::path::Path) {
    let next = path.with_extension("mmdb.next");
    std::fs::copy(fixture_path(fixture_name), &next).unwrap();
    std::fs::rename(&next, path).unwrap();
}

pub(crate) fn fixture_copy_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("GeoLite2-City.mmdb");
    (dir, path)
}

/// `QSESS.SET sid args...`, expecting a version.
pub(crate) fn set(con: &mut Connection, sid: &str, args: &[&str]) -> i64 {
    match redis::cmd("QSESS.SET").arg(sid).arg(args).query::<Value>(con) {
        Ok(Value::Int(version)) => version,
        other => panic!("QSESS.SET {sid} {args:?} replied {other:?}"),
    }
}

pub(crate) fn config_set(con: &mut Connection, name: &str, value: &str) -> redis::RedisResult<()> {
    redis::cmd("CONFIG").arg("SET").arg(name).arg(value).query(con)
}

pub(crate) fn config_get(con: &mut Connection, name: &str) -> String {
    let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(con).unwrap();
    pair.get(1).cloned().unwrap_or_else(|| panic!("CONFIG GET {name} replied {pair:?}"))
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).unwrap(),
        Value::SimpleString(text) => text.clone(),
        Value::Int(number) => number.to_string(),
        other => panic!("expected a string, got {other:?}"),
    }
}

fn pairs(flat: &[Value]) -> Vec<(String, String)> {
    flat.chunks_exact(2).map(|pair| (text(&pair[0]), text(&pair[1]))).collect()
}

/// QSESS.PEEK as ordered (field, text) pairs; empty when the session is not live.
pub(crate) fn peek(con: &mut Connection, sid: &str) -> Vec<(String, String)> {
    let flat: Vec<Value> = redis::cmd("QSESS.PEEK").arg(sid).query(con).unwrap();
    pairs(&flat)
}

/// One field of a reply, `None` when the reply omits it.
pub(crate) fn field(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(field, _)| field == name).map(|(_, value)| value.clone())
}

/// The location fields of a session as PEEK shows them: (ip, loc, cc).
pub(crate) fn place(con: &mut Connection, sid: &str) -> (Option<String>, Option<String>, Option<String>) {
    let fields = peek(con, sid);
    assert!(!fields.is_empty(), "{sid} is not live");
    (field(&fields, "ip"), field(&fields, "loc"), field(&fields, "cc"))
}

/// QSESS.BYUSER uid WITHMETA, one map per session, by handle.
pub(crate) fn byuser_meta(con: &mut Connection, user: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let sessions: Vec<Vec<Value>> = redis::cmd("QSESS.BYUSER").arg(user).arg("WITHMETA").query(con).unwrap();
    sessions
        .iter()
        .map(|flat| {
            let pairs = pairs(flat);
            (field(&pairs, "handle").expect("a handle"), pairs)
        })
        .collect()
}

/// The encoded record of every `set` entry of `sid` in the change stream, oldest first.
pub(crate) fn streamed_records(con: &mut Connection, sid: &str) -> Vec<Vec<u8>> {
    let handle = handle_of(sid);
    let entries: Vec<(String, Vec<Vec<u8>>)> =
        redis::cmd("XRANGE").arg(change_stream_key(0)).arg("-").arg("+").query(con).unwrap();
    entries
        .into_iter()
        .filter_map(|(_, flat)| {
            let fields: BTreeMap<Vec<u8>, Vec<u8>> =
                flat.chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
            (fields.get(&b"op"[..]) == Some(&b"set".to_vec())
                && fields.get(&b"h"[..]) == Some(&handle.as_bytes().to_vec()))
            .then(|| fields.get(&b"r"[..]).cloned().expect("a set entry carries its record"))
        })
        .collect()
}

/// Decodes a streamed record for inspection.
pub(crate) fn decoded(bytes: &[u8]) -> SessionRecord<'_> {
    SessionRecord::decode(bytes).unwrap_or_else(|error| panic!("streamed record does not decode: {error}"))
}
