//! A session as a row of `qsess.sessions`, converted from the module's record.

use chrono::{DateTime, Utc};
use qsess_record::{Handle, SessionRecord};
use std::net::IpAddr;

/// The columns the mirror stores for a live session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub handle: String,
    pub user_id: Option<String>,
    pub data: Vec<u8>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub location: Option<String>,
    pub country: Option<String>,
    /// "Firefox 120 on Linux": stored in the record when its user agent is not, else derived from it.
    pub device: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub absolute_expires_at: Option<DateTime<Utc>>,
    pub idle_timeout_ms: i64,
    pub version: i64,
}

/// A record that cannot become a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("user id is not UTF-8 text without NUL bytes, which the user_id column needs")]
    UserIdNotText,
    #[error("{0} is out of the range Postgres timestamps can hold")]
    TimeOutOfRange(&'static str),
    #[error("record has no expiry")]
    NoExpiry,
    #[error("version {0} does not fit a bigint")]
    VersionTooLarge(u64),
}

impl SessionRow {
    pub fn from_record(handle: Handle, record: &SessionRecord<'_>) -> Result<SessionRow, RowError> {
        let user_id = match record.user {
            None => None,
            Some(user) => Some(strict_text(user).ok_or(RowError::UserIdNotText)?),
        };
        let expires_ms = record.expires_ms().ok_or(RowError::NoExpiry)?;
        // Unpacked once for the column and the device summary.
        let user_agent = record.user_agent.map(|user_agent| user_agent.text());
        Ok(SessionRow {
            handle: handle.as_str().to_owned(),
            user_id,
            data: record.data.to_vec(),
            ip: record.ip,
            user_agent: user_agent.as_deref().map(lenient_text),
            location: record.location.map(lenient_text),
            country: record.country.map(lenient_text),
            device: match record.device {
                Some(device) => Some(lenient_text(device)),
                None => user_agent
                    .as_deref()
                    .and_then(qsess_record::cached_device_summary)
                    .map(|summary| summary.to_string()),
            },
            created_at: timestamp(record.created_ms, "created")?,
            updated_at: timestamp(record.updated_ms, "updated")?,
            last_seen: timestamp(record.seen_ms, "seen")?,
            expires_at: timestamp(expires_ms, "expires")?,
            absolute_expires_at: match record.absolute_deadline_ms {
                0 => None,
                deadline => Some(timestamp(deadline, "absolute deadline")?),
            },
            idle_timeout_ms: i64::try_from(record.idle_ms).map_err(|_| RowError::TimeOutOfRange("idle timeout"))?,
            version: version(record.version)?,
        })
    }
}

/// Milliseconds since the epoch as a timestamp.
pub fn timestamp(ms: u64, what: &'static str) -> Result<DateTime<Utc>, RowError> {
    i64::try_from(ms).ok().and_then(DateTime::from_timestamp_millis).ok_or(RowError::TimeOutOfRange(what))
}

pub fn version(version: u64) -> Result<i64, RowError> {
    i64::try_from(version).map_err(|_| RowError::VersionTooLarge(version))
}

/// Text that must survive exactly (it is a key), or be refused.
pub fn strict_text(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().filter(|text| !text.contains('\0')).map(str::to_owned)
}

/// Text meant for people: invalid UTF-8 is replaced and NUL bytes, which Postgres text refuses, dropped.
fn lenient_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use qsess_record::UserAgent;

    fn record() -> SessionRecord<'static> {
        SessionRecord {
            version: 3,
            created_ms: 1_764_000_000_000,
            updated_ms: 1_764_000_001_000,
            seen_ms: 1_764_000_002_000,
            idle_ms: 60_000,
            absolute_deadline_ms: 0,
            user: Some(b"42"),
            ip: Some("2001:db8::1".parse().unwrap()),
            user_agent: Some(UserAgent::Text(b"curl\0/8 \xff")),
            location: None,
            country: None,
            device: None,
            data: b"payload",
        }
    }

    #[test]
    fn converts_every_column() {
        let handle = Handle::from_session_id(b"sid");
        let row = SessionRow::from_record(handle, &record()).unwrap();
        assert_eq!(row.handle, handle.as_str());
        assert_eq!(row.user_id.as_deref(), Some("42"));
        assert_eq!(row.user_agent.as_deref(), Some("curl/8 \u{fffd}"));
        assert_eq!(row.expires_at.timestamp_millis(), 1_764_000_062_000);
        assert_eq!(row.absolute_expires_at, None);
        assert_eq!((row.idle_timeout_ms, row.version), (60_000, 3));
    }

    #[test]
    fn the_device_is_the_stored_summary_or_the_user_agent_s() {
        let handle = Handle::from_session_id(b"sid");
        let firefox = b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
        let derived = SessionRecord { user_agent: Some(UserAgent::Text(firefox)), ..record() };
        assert_eq!(SessionRow::from_record(handle, &derived).unwrap().device.as_deref(), Some("Firefox 120 on Linux"));
        let mut packed = Vec::new();
        assert!(qsess_record::pack_user_agent(firefox, &mut packed));
        let from_packed = SessionRow::from_record(
            handle,
            &SessionRecord { user_agent: Some(UserAgent::Packed(&packed)), ..record() },
        )
        .unwrap();
        assert_eq!(from_packed.user_agent.as_deref().map(str::as_bytes), Some(&firefox[..]));
        assert_eq!(from_packed.device.as_deref(), Some("Firefox 120 on Linux"));
        let stored = SessionRecord { user_agent: None, device: Some(b"Safari 17 on iPhone"), ..record() };
        assert_eq!(SessionRow::from_record(handle, &stored).unwrap().device.as_deref(), Some("Safari 17 on iPhone"));
        let neither = SessionRecord { user_agent: None, ..record() };
        assert_eq!(SessionRow::from_record(handle, &neither).unwrap().device, None);
    }

    #[test]
    fn refuses_user_ids_that_text_cannot_hold_exactly() {
        let handle = Handle::from_session_id(b"sid");
        for user in [&b"a\0b"[..], b"\xff\xfe"] {
            let bad = SessionRecord { user: Some(user), ..record() };
            assert_eq!(SessionRow::from_record(handle, &bad), Err(RowError::UserIdNotText));
        }
    }
}
