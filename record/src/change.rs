//! The change record: one entry of the `qs:{B}:chg` stream, the contract between module and daemon.
//!
//! Field names are short because the stream holds every change until the daemon has mirrored and
//! trimmed it. Every entry carries `op`, `h` (handle), `v` (version) and `u` (owner, absent when
//! anonymous); `set` adds `r`, the full record in the session-record encoding, so the daemon never
//! reads the session back; `touch` adds `seen` and `exp`; `del` adds `why`.

use crate::handle::{Handle, InvalidHandle};
use std::borrow::Cow;

/// What happened to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    /// Created or changed (`set`).
    Set,
    /// Only the activity changed (`touch`).
    Touch,
    /// Ended (`del`).
    Delete,
}

impl ChangeOp {
    /// The `op` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Set => "set",
            ChangeOp::Touch => "touch",
            ChangeOp::Delete => "del",
        }
    }
}

/// Why a session was deleted, kept for the audit trail of the mirror's consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// `QSESS.DEL`: the user logged out.
    Logout,
    /// `QSESS.REVOKE` or `QSESS.REVOKEUSER`.
    Revoke,
    /// Revoked by `LIMIT n` to make room for a newer session of the same user.
    Limit,
    /// `QSESS.ROTATE` moved the session to a new id.
    Rotate,
}

impl DeleteReason {
    /// The `why` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteReason::Logout => "logout",
            DeleteReason::Revoke => "revoke",
            DeleteReason::Limit => "limit",
            DeleteReason::Rotate => "rotate",
        }
    }

    fn parse(text: &[u8]) -> Option<DeleteReason> {
        Some(match text {
            b"logout" => DeleteReason::Logout,
            b"revoke" => DeleteReason::Revoke,
            b"limit" => DeleteReason::Limit,
            b"rotate" => DeleteReason::Rotate,
            _ => return None,
        })
    }
}

/// One stream entry. `version` is the session's version after the change; for `Delete` it is one more
/// than the last version the session had, so "delete rows older than `version`" is the mirror's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeRecord<'a> {
    /// The session was created or changed: `record` is the whole record, so the mirror never reads
    /// the session back.
    Set {
        /// The session's handle.
        handle: Handle,
        /// The owner, when the session has one.
        user: Option<&'a [u8]>,
        /// The session's version after the change.
        version: u64,
        /// The full encoded record ([`crate::SessionRecord`]).
        record: &'a [u8],
    },
    /// Only the activity changed: the new last activity and expiry.
    Touch {
        /// The session's handle.
        handle: Handle,
        /// The owner, when the session has one.
        user: Option<&'a [u8]>,
        /// The session's version after the change.
        version: u64,
        /// The new last activity (ms since the epoch).
        seen_ms: u64,
        /// The new expiry (ms since the epoch).
        expires_ms: u64,
    },
    /// The session ended.
    Delete {
        /// The session's handle.
        handle: Handle,
        /// The owner, when the session had one.
        user: Option<&'a [u8]>,
        /// One more than the session's last version (`i64::MAX` when it is unknown).
        version: u64,
        /// Why it ended.
        reason: DeleteReason,
    },
}

/// A stream entry that is not a change record of this format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseChangeError {
    #[error("change record has no `{0}` field")]
    /// A required field is absent.
    MissingField(&'static str),
    #[error("change record field `{0}` is malformed")]
    /// A field is present but unreadable.
    BadField(&'static str),
    #[error("unknown change op `{0}`")]
    /// The `op` field names no known change.
    UnknownOp(String),
    #[error(transparent)]
    /// The `h` field is not a handle.
    BadHandle(#[from] InvalidHandle),
}

impl<'a> ChangeRecord<'a> {
    /// What kind of change this is.
    pub fn op(&self) -> ChangeOp {
        match self {
            ChangeRecord::Set { .. } => ChangeOp::Set,
            ChangeRecord::Touch { .. } => ChangeOp::Touch,
            ChangeRecord::Delete { .. } => ChangeOp::Delete,
        }
    }

    /// The session the change is about.
    pub fn handle(&self) -> Handle {
        match self {
            ChangeRecord::Set { handle, .. }
            | ChangeRecord::Touch { handle, .. }
            | ChangeRecord::Delete { handle, .. } => *handle,
        }
    }

    /// The version the change carries.
    pub fn version(&self) -> u64 {
        match self {
            ChangeRecord::Set { version, .. }
            | ChangeRecord::Touch { version, .. }
            | ChangeRecord::Delete { version, .. } => *version,
        }
    }

    /// The session's owner, when it has one.
    pub fn user(&self) -> Option<&'a [u8]> {
        match self {
            ChangeRecord::Set { user, .. } | ChangeRecord::Touch { user, .. } | ChangeRecord::Delete { user, .. } => {
                *user
            }
        }
    }

    /// The entry's field/value pairs in stream order.
    pub fn fields(&self) -> Vec<(&'static str, Cow<'a, [u8]>)> {
        let number = |value: u64| Cow::Owned(value.to_string().into_bytes());
        let mut fields = Vec::with_capacity(6);
        fields.push(("op", Cow::Borrowed(self.op().as_str().as_bytes())));
        fields.push(("h", Cow::Owned(self.handle().as_bytes().to_vec())));
        if let Some(user) = self.user() {
            fields.push(("u", Cow::Borrowed(user)));
        }
        fields.push(("v", number(self.version())));
        match self {
            ChangeRecord::Set { record, .. } => fields.push(("r", Cow::Borrowed(*record))),
            ChangeRecord::Touch { seen_ms, expires_ms, .. } => {
                fields.push(("seen", number(*seen_ms)));
                fields.push(("exp", number(*expires_ms)));
            }
            ChangeRecord::Delete { reason, .. } => fields.push(("why", Cow::Borrowed(reason.as_str().as_bytes()))),
        }
        fields
    }

    /// Parses an entry's field/value pairs; unknown fields are ignored so that newer modules can add some.
    pub fn parse(pairs: &[(&'a [u8], &'a [u8])]) -> Result<ChangeRecord<'a>, ParseChangeError> {
        let find =
            |name: &'static str| pairs.iter().find(|(field, _)| *field == name.as_bytes()).map(|(_, value)| *value);
        let require = |name: &'static str| find(name).ok_or(ParseChangeError::MissingField(name));
        let number = |name: &'static str| -> Result<u64, ParseChangeError> {
            std::str::from_utf8(require(name)?)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or(ParseChangeError::BadField(name))
        };
        let handle = Handle::parse(require("h")?)?;
        let user = find("u");
        let version = number("v")?;
        match require("op")? {
            b"set" => Ok(ChangeRecord::Set { handle, user, version, record: require("r")? }),
            b"touch" => {
                Ok(ChangeRecord::Touch { handle, user, version, seen_ms: number("seen")?, expires_ms: number("exp")? })
            }
            b"del" => Ok(ChangeRecord::Delete {
                handle,
                user,
                version,
                reason: DeleteReason::parse(require("why")?).ok_or(ParseChangeError::BadField("why"))?,
            }),
            other => Err(ParseChangeError::UnknownOp(String::from_utf8_lossy(other).into_owned())),
        }
    }
}

/// "Every session of this user last active before `at_ms` is over" (`QSESS.REVOKEUSER`): also
/// ends sessions only the mirror still holds, e.g. after Redis lost its data. Stream op `revokeuser`,
/// fields `u`, `at` (ms) and, with `EXCEPT`, `except` (the handle that stays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRevocation<'a> {
    /// The user whose sessions end.
    pub user: &'a [u8],
    /// When (ms since the epoch): sessions last active before it end.
    pub at_ms: u64,
    /// The session `EXCEPT` kept, if any.
    pub except: Option<Handle>,
}

impl<'a> UserRevocation<'a> {
    /// The entry's `op` field.
    pub const OP: &'static str = "revokeuser";

    /// The stream entry's fields, in order.
    pub fn fields(&self) -> Vec<(&'static str, Cow<'a, [u8]>)> {
        let mut fields = vec![
            ("op", Cow::Borrowed(Self::OP.as_bytes())),
            ("u", Cow::Borrowed(self.user)),
            ("at", Cow::Owned(self.at_ms.to_string().into_bytes())),
        ];
        if let Some(except) = self.except {
            fields.push(("except", Cow::Owned(except.as_bytes().to_vec())));
        }
        fields
    }

    /// `None` when the entry is not a user revocation at all; an error when it is one but malformed.
    pub fn parse(pairs: &[(&'a [u8], &'a [u8])]) -> Option<Result<UserRevocation<'a>, ParseChangeError>> {
        let find = |name: &str| pairs.iter().find(|(field, _)| *field == name.as_bytes()).map(|(_, value)| *value);
        if find("op")? != Self::OP.as_bytes() {
            return None;
        }
        Some((|| {
            let user = find("u").ok_or(ParseChangeError::MissingField("u"))?;
            let at_ms = std::str::from_utf8(find("at").ok_or(ParseChangeError::MissingField("at"))?)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or(ParseChangeError::BadField("at"))?;
            let except = find("except").map(Handle::parse).transpose()?;
            Ok(UserRevocation { user, at_ms, except })
        })())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(change: ChangeRecord<'_>) {
        let fields = change.fields();
        let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|(name, value)| (name.as_bytes(), value.as_ref())).collect();
        assert_eq!(ChangeRecord::parse(&pairs), Ok(change));
    }

    #[test]
    fn every_op_round_trips() {
        let handle = Handle::from_session_id(b"sid");
        round_trip(ChangeRecord::Set { handle, user: Some(b"42"), version: 3, record: b"\x01abc" });
        round_trip(ChangeRecord::Touch { handle, user: None, version: 4, seen_ms: 10, expires_ms: 99 });
        for reason in [DeleteReason::Logout, DeleteReason::Revoke, DeleteReason::Limit, DeleteReason::Rotate] {
            round_trip(ChangeRecord::Delete { handle, user: Some(b"u"), version: 5, reason });
        }
    }

    #[test]
    fn field_layout_is_the_documented_one() {
        let handle = Handle::from_session_id(b"sid");
        let change = ChangeRecord::Delete { handle, user: Some(b"42"), version: 9, reason: DeleteReason::Logout };
        let names: Vec<&str> = change.fields().iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["op", "h", "u", "v", "why"]);
        let anonymous_touch = ChangeRecord::Touch { handle, user: None, version: 2, seen_ms: 1, expires_ms: 2 };
        let names: Vec<&str> = anonymous_touch.fields().iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["op", "h", "v", "seen", "exp"]);
    }

    #[test]
    fn user_revocations_round_trip_and_are_told_apart() {
        let revocation = UserRevocation { user: b"42", at_ms: 99, except: Some(Handle::from_session_id(b"keep")) };
        let fields = revocation.fields();
        let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|(name, value)| (name.as_bytes(), value.as_ref())).collect();
        assert_eq!(UserRevocation::parse(&pairs), Some(Ok(revocation)));
        assert!(ChangeRecord::parse(&pairs).is_err(), "a revokeuser entry is not a per-session change");
        let handle = Handle::from_session_id(b"sid");
        let set = ChangeRecord::Set { handle, user: None, version: 1, record: b"" }.fields();
        let pairs: Vec<(&[u8], &[u8])> = set.iter().map(|(name, value)| (name.as_bytes(), value.as_ref())).collect();
        assert_eq!(UserRevocation::parse(&pairs), None);
        assert_eq!(
            UserRevocation::parse(&[(b"op", b"revokeuser"), (b"u", b"1")]),
            Some(Err(ParseChangeError::MissingField("at")))
        );
    }

    #[test]
    fn parse_reports_what_is_wrong() {
        let handle = Handle::from_session_id(b"sid");
        let h = handle.as_bytes();
        assert_eq!(
            ChangeRecord::parse(&[(b"op", b"set"), (b"h", h), (b"v", b"1")]),
            Err(ParseChangeError::MissingField("r"))
        );
        assert_eq!(
            ChangeRecord::parse(&[(b"op", b"set"), (b"h", h), (b"v", b"x"), (b"r", b"")]),
            Err(ParseChangeError::BadField("v"))
        );
        assert_eq!(
            ChangeRecord::parse(&[(b"op", b"zap"), (b"h", h), (b"v", b"1")]),
            Err(ParseChangeError::UnknownOp("zap".into()))
        );
        assert!(matches!(
            ChangeRecord::parse(&[(b"op", b"del"), (b"h", b"short"), (b"v", b"1")]),
            Err(ParseChangeError::BadHandle(_))
        ));
    }
}
