//! How a `QSESS.SET`/`QSESS.NEW`/`QSESS.ROTATE` turns the stored record and the options into the new
//! record: defaults, kept fields, timeouts and privacy modes. Pure, so every rule has a unit test.

use crate::client_ip;
use crate::error::CommandError;
use crate::session_options::{Owner, SessionOptions};
use crate::settings::{Settings, UaMode};
use qsess_record::SessionRecord;

/// The record of a session created now.
pub(crate) fn create<'a>(
    options: &SessionOptions<'a>,
    settings: &Settings,
    now_ms: u64,
) -> Result<SessionRecord<'a>, CommandError> {
    let idle_ms = options.idle_ms.unwrap_or(settings.idle_timeout_ms);
    let absolute_ms = options.absolute_ms.unwrap_or(settings.absolute_timeout_ms);
    let record = SessionRecord {
        version: 1,
        created_ms: now_ms,
        updated_ms: now_ms,
        seen_ms: now_ms,
        idle_ms,
        absolute_deadline_ms: deadline(now_ms, absolute_ms),
        user: match options.owner {
            Some(Owner::User(user_id)) => Some(user_id),
            Some(Owner::Anonymous) | None => None,
        },
        ip: options.ip.and_then(|address| client_ip::apply_mode(address, settings.ip_mode)),
        user_agent: user_agent(options.user_agent, settings),
        location: None,
        country: None,
        data: options.data.unwrap_or_default(),
    };
    check_timeouts(&record, now_ms)?;
    Ok(record)
}

/// The record after an update of `old` now. Omitted options keep their values; a SET counts as activity.
pub(crate) fn update<'a>(
    old: &SessionRecord<'a>,
    options: &SessionOptions<'a>,
    settings: &Settings,
    now_ms: u64,
) -> Result<SessionRecord<'a>, CommandError> {
    // The privacy mode in force applies to the kept address too: nothing is stored or streamed
    // beyond what the current mode allows.
    let ip = options.ip.or(old.ip).and_then(|address| client_ip::apply_mode(address, settings.ip_mode));
    let ip_changed = ip != old.ip;
    let record = SessionRecord {
        version: old.version + 1,
        created_ms: old.created_ms,
        updated_ms: now_ms,
        seen_ms: now_ms.max(old.seen_ms),
        idle_ms: options.idle_ms.unwrap_or(old.idle_ms),
        absolute_deadline_ms: match options.absolute_ms {
            Some(absolute_ms) => deadline(old.created_ms, absolute_ms),
            None => old.absolute_deadline_ms,
        },
        user: match options.owner {
            Some(Owner::User(user_id)) => Some(user_id),
            Some(Owner::Anonymous) => None,
            None => old.user,
        },
        ip,
        user_agent: match options.user_agent {
            Some(_) => user_agent(options.user_agent, settings),
            None if settings.ua_mode == UaMode::None => None,
            None => old.user_agent,
        },
        // A location belongs to an address: a new address drops the old one.
        location: if ip_changed { None } else { old.location },
        country: if ip_changed { None } else { old.country },
        data: options.data.unwrap_or(old.data),
    };
    check_timeouts(&record, now_ms)?;
    Ok(record)
}

/// The same session under a new id (`QSESS.ROTATE`): everything kept, one more version, activity now.
pub(crate) fn rotate<'a>(old: &SessionRecord<'a>, now_ms: u64) -> SessionRecord<'a> {
    SessionRecord { version: old.version + 1, updated_ms: now_ms, seen_ms: now_ms.max(old.seen_ms), ..old.clone() }
}

fn deadline(from_ms: u64, absolute_ms: u64) -> u64 {
    if absolute_ms == 0 {
        0
    } else {
        from_ms.saturating_add(absolute_ms)
    }
}

fn user_agent<'a>(given: Option<&'a [u8]>, settings: &Settings) -> Option<&'a [u8]> {
    match settings.ua_mode {
        UaMode::None => None,
        UaMode::Full => given.filter(|user_agent| !user_agent.is_empty()),
    }
}

fn check_timeouts(record: &SessionRecord<'_>, now_ms: u64) -> Result<(), CommandError> {
    match record.expires_ms() {
        None => Err(CommandError::NoTimeout),
        Some(expires_ms) if expires_ms <= now_ms => Err(CommandError::EndsInThePast),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_ip::IpMode;

    const NOW: u64 = 1_764_000_000_000;

    fn settings() -> Settings {
        Settings {
            idle_timeout_ms: 1_800_000,
            absolute_timeout_ms: 86_400_000,
            touch_granularity_ms: 60_000,
            tombstone_ttl_ms: 86_400_000,
            max_data_bytes: 65_536,
            miss_timeout_ms: 250,
            negative_cache_ms: 5_000,
            ip_mode: IpMode::Full,
            ua_mode: UaMode::Full,
        }
    }

    #[test]
    fn create_applies_defaults() {
        let record = create(&SessionOptions::default(), &settings(), NOW).unwrap();
        assert_eq!(record.version, 1);
        assert_eq!((record.created_ms, record.updated_ms, record.seen_ms), (NOW, NOW, NOW));
        assert_eq!(record.idle_ms, 1_800_000);
        assert_eq!(record.absolute_deadline_ms, NOW + 86_400_000);
        assert_eq!(record.expires_ms(), Some(NOW + 1_800_000));
        assert_eq!((record.user, record.data), (None, &b""[..]));
    }

    #[test]
    fn update_keeps_what_was_not_given() {
        let options = SessionOptions {
            data: Some(b"d1"),
            owner: Some(Owner::User(b"42")),
            ip: Some("192.0.2.1".parse().unwrap()),
            user_agent: Some(b"ua1"),
            absolute_ms: Some(10_000_000),
            ..SessionOptions::default()
        };
        let old = SessionRecord { location: Some(b"Paris, France"), ..create(&options, &settings(), NOW).unwrap() };
        let later = NOW + 5_000;
        let updated = update(&old, &SessionOptions::default(), &settings(), later).unwrap();
        assert_eq!(updated.version, 2);
        assert_eq!(updated.created_ms, NOW);
        assert_eq!((updated.updated_ms, updated.seen_ms), (later, later));
        assert_eq!(updated.user, Some(&b"42"[..]));
        assert_eq!(updated.data, b"d1");
        assert_eq!(updated.user_agent, Some(&b"ua1"[..]));
        assert_eq!(updated.location, Some(&b"Paris, France"[..]));
        assert_eq!(updated.absolute_deadline_ms, NOW + 10_000_000);
    }

    #[test]
    fn absolute_timeout_counts_from_creation_and_anon_drops_the_owner() {
        let old =
            create(&SessionOptions { owner: Some(Owner::User(b"7")), ..Default::default() }, &settings(), NOW).unwrap();
        let options = SessionOptions { absolute_ms: Some(60_000), owner: Some(Owner::Anonymous), ..Default::default() };
        let updated = update(&old, &options, &settings(), NOW + 1_000).unwrap();
        assert_eq!(updated.absolute_deadline_ms, NOW + 60_000);
        assert_eq!(updated.user, None);
    }

    #[test]
    fn refuses_sessions_that_never_expire_or_are_already_over() {
        let never = SessionOptions { idle_ms: Some(0), absolute_ms: Some(0), ..Default::default() };
        assert_eq!(create(&never, &settings(), NOW), Err(CommandError::NoTimeout));
        let old = create(&SessionOptions::default(), &settings(), NOW).unwrap();
        let too_short = SessionOptions { absolute_ms: Some(1_000), ..Default::default() };
        assert_eq!(update(&old, &too_short, &settings(), NOW + 2_000), Err(CommandError::EndsInThePast));
    }

    #[test]
    fn privacy_modes_apply_before_storing() {
        let strict = Settings { ip_mode: IpMode::Truncated, ua_mode: UaMode::None, ..settings() };
        let options = SessionOptions {
            ip: Some("203.0.113.99".parse().unwrap()),
            user_agent: Some(b"Mozilla"),
            ..Default::default()
        };
        let record = create(&options, &strict, NOW).unwrap();
        assert_eq!(record.ip, Some("203.0.113.0".parse().unwrap()));
        assert_eq!(record.user_agent, None);
        let no_ip = Settings { ip_mode: IpMode::None, ..settings() };
        assert_eq!(create(&options, &no_ip, NOW).unwrap().ip, None);
    }

    #[test]
    fn a_stricter_ip_mode_applies_to_the_kept_address() {
        let old = SessionRecord {
            ip: Some("203.0.113.99".parse().unwrap()),
            ..create(&SessionOptions::default(), &settings(), NOW).unwrap()
        };
        let none = Settings { ip_mode: IpMode::None, ..settings() };
        assert_eq!(update(&old, &SessionOptions::default(), &none, NOW).unwrap().ip, None);
        let truncated = Settings { ip_mode: IpMode::Truncated, ..settings() };
        let kept = update(&old, &SessionOptions::default(), &truncated, NOW).unwrap().ip;
        assert_eq!(kept, Some("203.0.113.0".parse().unwrap()));
    }

    #[test]
    fn a_new_address_drops_the_old_location_and_empty_ua_clears() {
        let old = SessionRecord {
            ip: Some("192.0.2.1".parse().unwrap()),
            location: Some(b"Tehran, Iran"),
            country: Some(b"IR"),
            user_agent: Some(b"ua"),
            ..create(&SessionOptions::default(), &settings(), NOW).unwrap()
        };
        let same_ip = SessionOptions { ip: Some("192.0.2.1".parse().unwrap()), ..Default::default() };
        assert_eq!(update(&old, &same_ip, &settings(), NOW).unwrap().country, Some(&b"IR"[..]));
        let options =
            SessionOptions { ip: Some("198.51.100.1".parse().unwrap()), user_agent: Some(b""), ..Default::default() };
        let updated = update(&old, &options, &settings(), NOW).unwrap();
        assert_eq!((updated.location, updated.country, updated.user_agent), (None, None, None));
    }

    #[test]
    fn rotate_keeps_creation_and_owner() {
        let old =
            create(&SessionOptions { owner: Some(Owner::User(b"9")), ..Default::default() }, &settings(), NOW).unwrap();
        let rotated = rotate(&old, NOW + 10);
        assert_eq!((rotated.version, rotated.created_ms, rotated.seen_ms), (2, NOW, NOW + 10));
        assert_eq!(rotated.user, Some(&b"9"[..]));
    }
}
