//! Property tests of the formats the module writes and the daemon reads: decoding arbitrary bytes never
//! panics (a corrupt record or a hand-written stream entry must be an error, not a crash inside Redis
//! or the daemon), and every valid record and change record survives encode then decode unchanged.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use qsess_record::{ChangeRecord, DeleteReason, Handle, SessionRecord, UserAgent, UserRevocation};
use std::net::IpAddr;

/// Times and durations the module can produce: ms since the epoch up to year ~287,000 (2^53), far
/// beyond any real clock yet small enough that `created + duration` never overflows.
const MAX_MS: u64 = 1 << 53;

/// The field names of the change-record format, so arbitrary entries often look almost right.
const FIELD_NAMES: &[&[u8]] = &[b"op", b"h", b"u", b"v", b"r", b"seen", b"exp", b"why", b"at", b"except"];
const OPS: &[&[u8]] = &[b"set", b"touch", b"del", b"revokeuser", b"SET", b""];
/// Values that are almost numbers or reasons.
const WORDS: &[&[u8]] = &[b"logout", b"revoke", b"limit", b"rotate", b"-1", b"18446744073709551616", b" 1", b"0x10"];

/// Bytes of any value, or an optional non-empty string: how the record stores "none" is an empty one.
fn non_empty_bytes(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    option::of(vec(any::<u8>(), 1..max))
}

/// Agents of any bytes (stored as given), of printable ASCII, and made of the phrases browsers repeat
/// (both packed), so every record format is exercised.
fn user_agent() -> impl Strategy<Value = Option<Vec<u8>>> {
    let browser_like =
        "(Mozilla/5.0 \\(|Windows NT 10.0; Win64; x64\\) |AppleWebKit/|Chrome/|\\.0\\.0\\.0|; |[ -~]){1,40}";
    option::of(prop_oneof![
        vec(any::<u8>(), 1..600),
        "[ -~]{1,300}".prop_map(String::into_bytes),
        browser_like.prop_map(String::into_bytes),
    ])
}

fn ip() -> impl Strategy<Value = Option<IpAddr>> {
    option::of(prop_oneof![any::<[u8; 4]>().prop_map(IpAddr::from), any::<[u8; 16]>().prop_map(IpAddr::from),])
}

/// The owned parts of a valid record: times consistent as the module writes them (updated and seen
/// at or after creation, an absolute deadline of 0 or at or after creation), strings either absent or
/// non-empty.
#[derive(Debug, Clone)]
struct OwnedRecord {
    version: u64,
    created_ms: u64,
    updated_after: u64,
    seen_after: u64,
    idle_ms: u64,
    absolute_after: Option<u64>,
    ip: Option<IpAddr>,
    strings: [Option<Vec<u8>>; 5],
    data: Vec<u8>,
}

impl OwnedRecord {
    fn record(&self) -> SessionRecord<'_> {
        let [user, user_agent, location, country, device] = &self.strings;
        SessionRecord {
            version: self.version,
            created_ms: self.created_ms,
            updated_ms: self.created_ms + self.updated_after,
            seen_ms: self.created_ms + self.seen_after,
            idle_ms: self.idle_ms,
            absolute_deadline_ms: self.absolute_after.map_or(0, |after| self.created_ms + after),
            user: user.as_deref(),
            ip: self.ip,
            user_agent: user_agent.as_deref().map(UserAgent::Text),
            location: location.as_deref(),
            country: country.as_deref(),
            device: device.as_deref(),
            data: &self.data,
        }
    }
}

fn owned_record() -> impl Strategy<Value = OwnedRecord> {
    (
        (any::<u64>(), 0..MAX_MS, 0..MAX_MS, 0..MAX_MS, 0..MAX_MS, option::of(0..MAX_MS)),
        ip(),
        (non_empty_bytes(300), user_agent(), non_empty_bytes(200), non_empty_bytes(4), non_empty_bytes(80))
            .prop_map(|(user, agent, location, country, device)| [user, agent, location, country, device]),
        vec(any::<u8>(), 0..2048),
    )
        .prop_map(
            |((version, created_ms, updated_after, seen_after, idle_ms, absolute_after), ip, strings, data)| {
                OwnedRecord {
                    version,
                    created_ms,
                    updated_after,
                    seen_after,
                    idle_ms,
                    absolute_after,
                    ip,
                    strings,
                    data,
                }
            },
        )
}

/// A field/value list that mixes the format's real names and values with arbitrary bytes.
fn entry_pairs() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let name = prop_oneof![
        3 => prop::sample::select(FIELD_NAMES).prop_map(<[u8]>::to_vec),
        1 => vec(any::<u8>(), 0..8),
    ];
    let value = prop_oneof![
        prop::sample::select(OPS).prop_map(<[u8]>::to_vec),
        any::<u64>().prop_map(|number| number.to_string().into_bytes()),
        any::<[u8; 8]>().prop_map(|seed| Handle::from_session_id(&seed).as_bytes().to_vec()),
        prop::sample::select(WORDS).prop_map(<[u8]>::to_vec),
        vec(any::<u8>(), 0..64),
    ];
    vec((name, value), 0..10)
}

fn borrowed(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
    pairs.iter().map(|(name, value)| (name.as_slice(), value.as_slice())).collect()
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..512)) {
        let _ = SessionRecord::decode(&bytes);
    }

    #[test]
    fn decoding_a_corrupted_valid_record_never_panics(
        owned in owned_record(),
        cut in any::<prop::sample::Index>(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = owned.record().encode();
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Ok(record) = SessionRecord::decode(&bytes) {
            // Whatever decodes must encode again without panicking.
            let _ = record.encode();
        }
    }

    #[test]
    fn every_valid_record_round_trips(owned in owned_record()) {
        let record = owned.record();
        let bytes = record.encode();
        prop_assert_eq!(SessionRecord::decode(&bytes), Ok(record));
    }

    #[test]
    fn parsing_arbitrary_entries_never_panics(pairs in entry_pairs()) {
        let pairs = borrowed(&pairs);
        if let Ok(change) = ChangeRecord::parse(&pairs) {
            // A parsed change writes back the fields it came from.
            let fields = change.fields();
            let rewritten: Vec<(&[u8], &[u8])> =
                fields.iter().map(|(name, value)| (name.as_bytes(), value.as_ref())).collect();
            prop_assert_eq!(ChangeRecord::parse(&rewritten), Ok(change));
        }
        let _ = UserRevocation::parse(&pairs);
        for (_, value) in &pairs {
            let _ = Handle::parse(value);
        }
    }

    #[test]
    fn every_change_record_round_trips(
        seed in any::<[u8; 16]>(),
        user in non_empty_bytes(300),
        version in any::<u64>(),
        kind in 0u8..3,
        numbers in (any::<u64>(), any::<u64>()),
        reason in prop::sample::select(&[DeleteReason::Logout, DeleteReason::Revoke, DeleteReason::Limit, DeleteReason::Rotate][..]),
        record in vec(any::<u8>(), 0..512),
    ) {
        let handle = Handle::from_session_id(&seed);
        let user = user.as_deref();
        let change = match kind {
            0 => ChangeRecord::Set { handle, user, version, record: &record },
            1 => ChangeRecord::Touch { handle, user, version, seen_ms: numbers.0, expires_ms: numbers.1 },
            _ => ChangeRecord::Delete { handle, user, version, reason },
        };
        let fields = change.fields();
        let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|(name, value)| (name.as_bytes(), value.as_ref())).collect();
        prop_assert_eq!(ChangeRecord::parse(&pairs), Ok(change));
    }

    #[test]
    fn every_user_revocation_round_trips(
        user in vec(any::<u8>(), 1..300),
        at_ms in any::<u64>(),
        except in option::of(any::<[u8; 16]>()),
    ) {
        let revocation = UserRevocation { user: &user, at_ms, except: except.map(|seed| Handle::from_session_id(&seed)) };
        let fields = revocation.fields();
        let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|(name, value)| (name.as_bytes(), value.as_ref())).collect();
        prop_assert_eq!(UserRevocation::parse(&pairs), Some(Ok(revocation)));
    }
}
