//! Expiry arithmetic: when a read slides the idle expiry, and how long a tombstone lives.

use crate::settings::Settings;
use qsess_record::SessionRecord;

/// How stale `seen` may get before activity is written. Never more than half the idle timeout, so
/// debouncing can shorten an idle session by at most half its timeout even if granularity is set high.
pub(crate) fn touch_interval_ms(record: &SessionRecord<'_>, settings: &Settings) -> u64 {
    if record.idle_ms == 0 {
        settings.touch_granularity_ms
    } else {
        settings.touch_granularity_ms.min(record.idle_ms / 2)
    }
}

/// The record after activity at `now_ms`, or `None` when the last recorded activity is recent enough.
pub(crate) fn touched<'a>(record: &SessionRecord<'a>, settings: &Settings, now_ms: u64) -> Option<SessionRecord<'a>> {
    let since_seen = now_ms.saturating_sub(record.seen_ms);
    if now_ms <= record.seen_ms || since_seen < touch_interval_ms(record, settings) {
        return None;
    }
    Some(SessionRecord { version: record.version + 1, seen_ms: now_ms, ..record.clone() })
}

/// How long the tombstone of a session ended at `now_ms` lives: the configured time, but no longer than
/// the session itself had left, since nothing can bring back a session past its own expiry.
pub(crate) fn tombstone_ttl_ms(expires_ms: Option<u64>, settings: &Settings, now_ms: u64) -> u64 {
    let remaining = expires_ms.map_or(u64::MAX, |expires_ms| expires_ms.saturating_sub(now_ms));
    settings.tombstone_ttl_ms.min(remaining).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(granularity: u64) -> Settings {
        Settings { touch_granularity_ms: granularity, tombstone_ttl_ms: 3_600_000, ..Settings::defaults() }
    }

    fn record(seen_ms: u64, idle_ms: u64) -> SessionRecord<'static> {
        SessionRecord {
            version: 3,
            created_ms: 0,
            updated_ms: 0,
            seen_ms,
            idle_ms,
            absolute_deadline_ms: 0,
            user: None,
            ip: None,
            user_agent: None,
            location: None,
            country: None,
            device: None,
            data: b"",
        }
    }

    #[test]
    fn reads_within_the_granularity_write_nothing() {
        let session = record(1_000, 600_000);
        assert_eq!(touched(&session, &settings(60_000), 60_999), None);
        let touched_session = touched(&session, &settings(60_000), 61_000).unwrap();
        assert_eq!((touched_session.seen_ms, touched_session.version), (61_000, 4));
    }

    #[test]
    fn a_short_idle_timeout_caps_the_granularity() {
        let session = record(0, 10_000);
        assert_eq!(touch_interval_ms(&session, &settings(60_000)), 5_000);
        assert!(touched(&session, &settings(60_000), 5_000).is_some());
    }

    #[test]
    fn zero_granularity_touches_on_every_new_millisecond() {
        let session = record(100, 10_000);
        assert_eq!(touched(&session, &settings(0), 100), None);
        assert!(touched(&session, &settings(0), 101).is_some());
    }

    #[test]
    fn tombstones_never_outlive_the_session() {
        let settings = settings(0);
        assert_eq!(tombstone_ttl_ms(Some(10_500), &settings, 10_000), 500);
        assert_eq!(tombstone_ttl_ms(Some(99_999_999), &settings, 0), 3_600_000);
        assert_eq!(tombstone_ttl_ms(None, &settings, 0), 3_600_000);
        assert_eq!(tombstone_ttl_ms(Some(5), &settings, 10), 1);
    }
}
