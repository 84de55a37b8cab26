//! Folding a batch of stream entries into one net change per session, keeping only the newest version.
//!
//! Postgres refuses an upsert that names one key twice, and only the newest state matters: a `set`
//! followed by `touch`es becomes one row, and a `del` ends whatever came before it. Entries that cannot
//! be read are kept as rejections instead of being dropped.

use crate::session_row::{self, SessionRow};
use crate::stream_entry::{EntryId, StreamEntry};
use chrono::{DateTime, Utc};
use qsess_record::{ChangeRecord, Handle, SessionRecord, UserRevocation};
use std::collections::HashMap;
use std::sync::Arc;

/// Activity on a session whose row is not part of this batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Touch {
    pub version: i64,
    pub last_seen: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The end of a session (logout, revocation, limit, rotation).
#[derive(Debug, Clone, PartialEq)]
pub struct End {
    pub version: i64,
    pub reason: &'static str,
    pub user_id: Option<String>,
    /// When the module wrote the `del`: its stream id's time.
    pub ended_at: DateTime<Utc>,
}

/// The newest state of one session in a batch. Applied in this order: upsert, touch, end.
#[derive(Debug, Clone, PartialEq)]
pub struct NetChange {
    pub handle: String,
    pub version: u64,
    /// The stream entries folded into this change, as (stream index, entry id).
    pub sources: Vec<(usize, EntryId)>,
    pub upsert: Option<SessionRow>,
    pub touch: Option<Touch>,
    pub end: Option<End>,
}

/// An entry that could not be turned into a change.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub stream: usize,
    pub entry_id: EntryId,
    pub handle: Option<String>,
    pub op: Option<String>,
    pub version: Option<i64>,
    pub error: String,
    pub fields: Vec<u8>,
    /// When the session would expire, as the change says: the purge erases `fields` (which may hold
    /// the session's data) `--purge-grace` after it, as it deletes the session's row.
    pub session_expires_at: Option<DateTime<Utc>>,
}

/// `QSESS.REVOKEUSER`: every session of the user created at or before `at`, except one, is over.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRevocationRow {
    pub user_id: String,
    pub at: DateTime<Utc>,
    pub except: Option<String>,
}

/// A batch ready for Postgres.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FoldedBatch {
    pub changes: Vec<NetChange>,
    /// Applied after `changes`: they only end sessions created before them.
    pub user_revocations: Vec<UserRevocationRow>,
    pub rejections: Vec<Rejection>,
    /// How many stream entries the batch holds, rejected or not.
    pub entry_count: usize,
    /// The entries the batch was folded from, as received: acknowledged once it is committed, and
    /// the source of the raw fields recorded for a change Postgres refuses (looked up only then:
    /// copying every entry's fields up front was a tenth of the daemon's CPU).
    pub entries: Arc<[StreamEntry]>,
}

impl FoldedBatch {
    /// One rejection per stream entry behind `change`, with `error` as the reason.
    pub fn rejections_of(&self, change: &NetChange, error: &str) -> Vec<Rejection> {
        change
            .sources
            .iter()
            .map(|&(stream, entry_id)| Rejection {
                stream,
                entry_id,
                handle: Some(change.handle.clone()),
                op: Some(
                    if change.end.is_some() {
                        "del"
                    } else if change.upsert.is_some() {
                        "set"
                    } else {
                        "touch"
                    }
                    .to_owned(),
                ),
                version: i64::try_from(change.version).ok(),
                error: error.to_owned(),
                fields: self
                    .entries
                    .iter()
                    .find(|entry| entry.stream == stream && entry.id == entry_id)
                    .map(StreamEntry::fields_as_bytes)
                    .unwrap_or_default(),
                session_expires_at: change
                    .upsert
                    .as_ref()
                    .map(|row| row.expires_at)
                    .or(change.touch.as_ref().map(|touch| touch.expires_at)),
            })
            .collect()
    }
}

impl FoldedBatch {
    /// Folds entries into one net change per session. Takes a `Vec` without copying it (a slice is cloned).
    pub fn fold(entries: impl Into<Arc<[StreamEntry]>>) -> FoldedBatch {
        let entries: Arc<[StreamEntry]> = entries.into();
        let mut order: Vec<Handle> = Vec::new();
        let mut by_handle: HashMap<Handle, NetChange> = HashMap::new();
        let mut rejections = Vec::new();
        let mut user_revocations = Vec::new();
        for entry in entries.iter() {
            let pairs: Vec<(&[u8], &[u8])> =
                entry.fields.iter().map(|(name, value)| (name.as_slice(), value.as_slice())).collect();
            if let Some(revocation) = UserRevocation::parse(&pairs) {
                match user_revocation_row(revocation) {
                    Ok(row) => user_revocations.push(row),
                    Err(error) => rejections.push(rejection(entry, None, error)),
                }
                continue;
            }
            let change = match ChangeRecord::parse(&pairs) {
                Ok(change) => change,
                Err(error) => {
                    rejections.push(rejection(entry, None, error.to_string()));
                    continue;
                }
            };
            let handle = change.handle();
            if let Err(error) = fold_one(&mut by_handle, &mut order, entry, &change) {
                rejections.push(rejection(entry, Some(&change), error));
                continue;
            }
            debug_assert!(by_handle.contains_key(&handle));
        }
        let changes = order.iter().filter_map(|handle| by_handle.remove(handle)).collect();
        FoldedBatch { changes, user_revocations, rejections, entry_count: entries.len(), entries }
    }
}

fn user_revocation_row(
    revocation: Result<UserRevocation<'_>, qsess_record::ParseChangeError>,
) -> Result<UserRevocationRow, String> {
    let revocation = revocation.map_err(|error| error.to_string())?;
    Ok(UserRevocationRow {
        user_id: session_row::strict_text(revocation.user).ok_or("user id is not text")?,
        at: session_row::timestamp(revocation.at_ms, "revocation time").map_err(|error| error.to_string())?,
        except: revocation.except.map(|handle| handle.as_str().to_owned()),
    })
}

fn fold_one(
    by_handle: &mut HashMap<Handle, NetChange>,
    order: &mut Vec<Handle>,
    entry: &StreamEntry,
    change: &ChangeRecord<'_>,
) -> Result<(), String> {
    let handle = change.handle();
    let version = change.version();
    // Convert before touching the fold state, so a bad entry leaves the session's state as it was.
    let converted = match change {
        ChangeRecord::Set { record, .. } => {
            let record = SessionRecord::decode(record).map_err(|error| error.to_string())?;
            if record.version != version {
                return Err(format!("record version {} differs from entry version {version}", record.version));
            }
            Converted::Set(SessionRow::from_record(handle, &record).map_err(|error| error.to_string())?)
        }
        ChangeRecord::Touch { seen_ms, expires_ms, .. } => Converted::Touch(Touch {
            version: session_row::version(version).map_err(|error| error.to_string())?,
            last_seen: session_row::timestamp(*seen_ms, "seen").map_err(|error| error.to_string())?,
            expires_at: session_row::timestamp(*expires_ms, "expires").map_err(|error| error.to_string())?,
        }),
        ChangeRecord::Delete { user, reason, .. } => Converted::End(End {
            version: session_row::version(version).map_err(|error| error.to_string())?,
            reason: reason.as_str(),
            user_id: user.and_then(session_row::strict_text),
            ended_at: session_row::timestamp(entry.id.ms, "stream id").map_err(|error| error.to_string())?,
        }),
    };
    let net = by_handle.entry(handle).or_insert_with(|| {
        order.push(handle);
        NetChange {
            handle: handle.as_str().to_owned(),
            version: 0,
            sources: Vec::new(),
            upsert: None,
            touch: None,
            end: None,
        }
    });
    net.sources.push((entry.stream, entry.id));
    if !supersedes(net, version, &converted) {
        // A duplicate or an older replay: the batch already has something at least as new.
        return Ok(());
    }
    net.version = version;
    match converted {
        Converted::Set(row) => {
            net.upsert = Some(row);
            net.touch = None;
            net.end = None;
        }
        Converted::Touch(touch) => match (&mut net.upsert, &net.end) {
            (Some(row), None) => {
                row.last_seen = touch.last_seen;
                row.expires_at = touch.expires_at;
                row.version = touch.version;
            }
            _ => net.touch = Some(touch),
        },
        Converted::End(end) => {
            net.touch = None;
            net.end = Some(end);
        }
    }
    Ok(())
}

/// Whether a change is newer than what the batch holds for its session. Versions restart at 1 when an
/// id is used again after its session expired, so a set of a later incarnation (created after what
/// the batch holds happened) wins even with a lower version; within one incarnation the version decides.
fn supersedes(net: &NetChange, version: u64, converted: &Converted) -> bool {
    if net.version == 0 {
        return true;
    }
    let Converted::Set(row) = converted else { return version > net.version };
    let held_since = match (&net.upsert, &net.end, &net.touch) {
        (Some(held), _, _) => {
            if row.created_at != held.created_at {
                return row.created_at > held.created_at;
            }
            return version > net.version;
        }
        (None, Some(end), _) => end.ended_at,
        (None, None, Some(touch)) => touch.last_seen,
        (None, None, None) => return version > net.version,
    };
    version > net.version || row.created_at > held_since
}

enum Converted {
    Set(SessionRow),
    Touch(Touch),
    End(End),
}

fn rejection(entry: &StreamEntry, change: Option<&ChangeRecord<'_>>, error: String) -> Rejection {
    Rejection {
        stream: entry.stream,
        entry_id: entry.id,
        handle: change.map(|change| change.handle().as_str().to_owned()),
        op: change.map(|change| change.op().as_str().to_owned()),
        version: change.and_then(|change| i64::try_from(change.version()).ok()),
        error,
        fields: entry.fields_as_bytes(),
        session_expires_at: change.and_then(session_expiry),
    }
}

/// When the session a change concerns would expire, if the change says and can be read.
fn session_expiry(change: &ChangeRecord<'_>) -> Option<DateTime<Utc>> {
    let expires_ms = match change {
        ChangeRecord::Set { record, .. } => SessionRecord::decode(record).ok()?.expires_ms()?,
        ChangeRecord::Touch { expires_ms, .. } => *expires_ms,
        ChangeRecord::Delete { .. } => return None,
    };
    session_row::timestamp(expires_ms, "expires").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use qsess_record::DeleteReason;

    const T0: u64 = 1_764_000_000_000;

    fn record(version: u64, data: &'static [u8]) -> Vec<u8> {
        SessionRecord::plain(Some(b"42"), version, T0, 60_000, data).encode()
    }

    fn entry(sequence: u64, change: ChangeRecord<'_>) -> StreamEntry {
        let fields =
            change.fields().into_iter().map(|(name, value)| (name.as_bytes().to_vec(), value.into_owned())).collect();
        StreamEntry { stream: 0, id: EntryId { ms: T0 + sequence, seq: 0 }, fields }
    }

    fn set(sequence: u64, sid: &[u8], version: u64, bytes: &[u8]) -> StreamEntry {
        let handle = Handle::from_session_id(sid);
        entry(sequence, ChangeRecord::Set { handle, user: Some(b"42"), version, record: bytes })
    }

    #[test]
    fn set_then_touches_become_one_row() {
        let first = record(1, b"a");
        let handle = Handle::from_session_id(b"s1");
        let entries = vec![
            set(0, b"s1", 1, &first),
            entry(
                1,
                ChangeRecord::Touch { handle, user: Some(b"42"), version: 2, seen_ms: T0 + 5, expires_ms: T0 + 99 },
            ),
        ];
        let batch = FoldedBatch::fold(entries.as_slice());
        assert_eq!(batch.entry_count, 2);
        assert_eq!(batch.changes.len(), 1);
        let row = batch.changes[0].upsert.as_ref().unwrap();
        assert_eq!((row.version, row.expires_at.timestamp_millis()), (2, (T0 + 99) as i64));
        assert_eq!(batch.changes[0].touch, None);
    }

    #[test]
    fn a_rejection_says_when_its_session_expires_if_the_change_does() {
        let bytes = record(2, b"secret");
        let handle = Handle::from_session_id(b"s1");
        // The record says version 2 but the entry says 3: refused, yet its expiry is known.
        let mismatched = set(0, b"s1", 3, &bytes);
        let unreadable = set(1, b"s2", 1, b"\x01garbage");
        // A touch whose activity time no timestamp can hold.
        let touch =
            entry(2, ChangeRecord::Touch { handle, user: None, version: 4, seen_ms: u64::MAX, expires_ms: T0 + 7 });
        let batch = FoldedBatch::fold([mismatched, unreadable, touch]);
        let expiries: Vec<Option<i64>> = batch
            .rejections
            .iter()
            .map(|rejection| rejection.session_expires_at.map(|at| at.timestamp_millis()))
            .collect();
        assert_eq!(expiries, [Some((T0 + 60_000) as i64), None, Some((T0 + 7) as i64)], "{:?}", batch.rejections);
        // A change Postgres refuses carries its row's expiry.
        let accepted = FoldedBatch::fold([set(0, b"s3", 1, &record(1, b"x"))]);
        let refused = accepted.rejections_of(&accepted.changes[0], "refused");
        assert_eq!(refused[0].session_expires_at.map(|at| at.timestamp_millis()), Some((T0 + 60_000) as i64));
    }

    #[test]
    fn older_and_duplicate_versions_cannot_win() {
        let newer = record(3, b"new");
        let older = record(2, b"old");
        let entries = vec![set(0, b"s1", 3, &newer), set(1, b"s1", 2, &older), set(2, b"s1", 3, &newer)];
        let batch = FoldedBatch::fold(entries.as_slice());
        assert_eq!(batch.changes[0].upsert.as_ref().unwrap().data, b"new");
    }

    #[test]
    fn a_later_incarnation_of_an_id_wins_despite_its_lower_version() {
        let old = record(3, b"old");
        let later_bytes = record(1, b"new");
        let mut later = SessionRecord::decode(&later_bytes).unwrap();
        later.created_ms = T0 + 10_000;
        let later = later.encode();
        let batch = FoldedBatch::fold([set(0, b"s1", 3, &old), set(1, b"s1", 1, &later)]);
        let row = batch.changes[0].upsert.as_ref().unwrap();
        assert_eq!((row.data.as_slice(), row.version), (&b"new"[..], 1));
        assert_eq!(batch.changes[0].sources.len(), 2);
        let rejections = batch.rejections_of(&batch.changes[0], "refused");
        assert_eq!(rejections.len(), 2);
        assert!(rejections[1].fields.starts_with(b"op=set\n"));
    }

    #[test]
    fn a_delete_ends_the_session_and_keeps_the_row_for_insertion() {
        let first = record(1, b"a");
        let handle = Handle::from_session_id(b"s1");
        let entries = vec![
            set(0, b"s1", 1, &first),
            entry(7, ChangeRecord::Delete { handle, user: Some(b"42"), version: 2, reason: DeleteReason::Revoke }),
        ];
        let batch = FoldedBatch::fold(entries.as_slice());
        let change = &batch.changes[0];
        assert!(change.upsert.is_some());
        let end = change.end.as_ref().unwrap();
        assert_eq!((end.version, end.reason), (2, "revoke"));
        assert_eq!(end.ended_at.timestamp_millis(), (T0 + 7) as i64);
    }

    #[test]
    fn user_revocations_are_kept_apart_from_session_changes() {
        let revocation = qsess_record::UserRevocation { user: b"42", at_ms: T0 + 3, except: None };
        let fields = revocation
            .fields()
            .into_iter()
            .map(|(name, value)| (name.as_bytes().to_vec(), value.into_owned()))
            .collect();
        let entries = vec![StreamEntry { stream: 0, id: EntryId { ms: T0 + 3, seq: 0 }, fields }];
        let batch = FoldedBatch::fold(entries.as_slice());
        assert!(batch.changes.is_empty() && batch.rejections.is_empty());
        assert_eq!(batch.user_revocations.len(), 1);
        assert_eq!(batch.user_revocations[0].user_id, "42");
        assert_eq!(batch.user_revocations[0].at.timestamp_millis(), (T0 + 3) as i64);
    }

    #[test]
    fn sessions_keep_their_first_seen_order_and_bad_entries_are_rejected() {
        let one = record(1, b"1");
        let mismatched = record(9, b"x");
        let mut garbage = set(3, b"s3", 1, &one);
        garbage.fields.retain(|(name, _)| name != b"h");
        let entries = vec![set(0, b"s2", 1, &one), set(1, b"s1", 1, &one), set(2, b"s4", 1, &mismatched), garbage];
        let batch = FoldedBatch::fold(entries.as_slice());
        let handles: Vec<&str> = batch.changes.iter().map(|change| change.handle.as_str()).collect();
        assert_eq!(handles, [Handle::from_session_id(b"s2").as_str(), Handle::from_session_id(b"s1").as_str()]);
        assert_eq!(batch.rejections.len(), 2);
        assert!(batch.rejections[0].error.contains("differs from entry version"), "{:?}", batch.rejections[0]);
        assert_eq!(batch.rejections[1].error, "change record has no `h` field");
        assert!(batch.rejections[1].fields.starts_with(b"op=set\n"));
    }
}
