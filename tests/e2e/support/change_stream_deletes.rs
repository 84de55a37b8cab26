//! The `del` entries of the change stream, read back as the tests that end sessions (log out,
//! revocation, the per-user session limit) check them: handle, owner, version and reason.

use qsess_record::{ChangeRecord, DeleteReason, UserRevocation};
use redis::Connection;

use crate::support::session_keys::{change_stream_key, handle_of};

/// A `del` entry of the change stream, reduced to what the tests check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeleteEntrySummary {
    pub(crate) handle: String,
    pub(crate) user: Option<String>,
    pub(crate) version: u64,
    pub(crate) reason: DeleteReason,
}

/// The summary a test expects for the end of `session_id`.
pub(crate) fn delete_entry_of(
    session_id: &str,
    user: Option<&str>,
    version: u64,
    reason: DeleteReason,
) -> DeleteEntrySummary {
    DeleteEntrySummary { handle: handle_of(session_id), user: user.map(String::from), version, reason }
}

/// The `del` entries of bucket 0's change stream after entry index `skip`, in stream order. User
/// revocation entries name a user, not a session, so they are passed over; any other entry that is
/// not a valid change record panics.
pub(crate) fn delete_entries_after(con: &mut Connection, skip: usize) -> Vec<DeleteEntrySummary> {
    let entries: Vec<(String, Vec<Vec<u8>>)> =
        redis::cmd("XRANGE").arg(change_stream_key(0)).arg("-").arg("+").query(con).unwrap();
    let mut deletes = Vec::new();
    for (id, flat_fields) in entries.iter().skip(skip) {
        let pairs: Vec<(&[u8], &[u8])> =
            flat_fields.chunks_exact(2).map(|pair| (pair[0].as_slice(), pair[1].as_slice())).collect();
        if UserRevocation::parse(&pairs).is_some() {
            continue;
        }
        let change = ChangeRecord::parse(&pairs).unwrap_or_else(|e| panic!("entry {id} does not parse: {e}"));
        if let ChangeRecord::Delete { handle, user, version, reason } = change {
            let user = user.map(|user| String::from_utf8(user.to_vec()).unwrap());
            deletes.push(DeleteEntrySummary { handle: handle.to_string(), user, version, reason });
        }
    }
    deletes
}
