//! How a `QSESS.SET`/`QSESS.NEW`/`QSESS.ROTATE` turns the stored record and the options into the new
//! record: defaults, kept fields, timeouts, privacy modes, and when a location or device summary is
//! looked up. Pure (lookups are decided here and done by the caller), so every rule has a unit test.

use crate::client_ip::{self, IpMode};
use crate::error::CommandError;
use crate::geo::Place;
use crate::session_options::{Owner, SessionOptions};
use crate::settings::{Settings, UaMode};
use qsess_record::{SessionRecord, UserAgent};
use std::net::IpAddr;
use std::sync::Arc;

/// What a write needs looked up outside the record, decided before anything is looked up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lookups<'a> {
    /// The address to locate: the session's address is set or changes. It is the full address, as the
    /// client sent it: `qsess.ip-mode` truncates or drops it only after the lookup.
    pub(crate) locate: Option<IpAddr>,
    /// The user agent to summarise because it will not be stored (`qsess.ua-mode none`): the summary
    /// is kept in its place. A stored user agent is summarised where it is shown instead.
    pub(crate) describe: Option<UserAgent<'a>>,
}

/// The answers to [`Lookups`]: nothing for what was not asked or not found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) place: Option<Place>,
    pub(crate) device: Option<Arc<str>>,
}

/// What a write of `options` over `old` (or a creation) has to look up.
pub(crate) fn lookups<'a>(
    old: Option<&SessionRecord<'a>>,
    options: &SessionOptions<'a>,
    settings: &Settings,
) -> Lookups<'a> {
    let locate = options.ip.filter(|&address| match old {
        None => true,
        // With no address stored there is nothing to compare with: every given address is looked up.
        Some(_) if settings.ip_mode == IpMode::None => true,
        Some(old) => client_ip::apply_mode(address, settings.ip_mode) != old.ip,
    });
    let describe = match settings.ua_mode {
        UaMode::Full => None,
        UaMode::None => match (options.user_agent, old) {
            (Some(given), _) => Some(UserAgent::Text(given)).filter(|user_agent| !user_agent.is_empty()),
            // A user agent stored under `ua-mode full` is dropped now; its summary stays.
            (None, Some(old)) if old.device.is_none() => old.user_agent,
            (None, _) => None,
        },
    };
    Lookups { locate, describe }
}

/// The record of a session created now; `found` answers `lookups(None, options, settings)`.
pub(crate) fn create<'a>(
    options: &SessionOptions<'a>,
    settings: &Settings,
    found: &'a Found,
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
        location: found.place.as_ref().and_then(Place::location_bytes),
        country: found.place.as_ref().and_then(Place::country_bytes),
        device: match settings.ua_mode {
            UaMode::Full => None,
            UaMode::None => found.device.as_deref().map(str::as_bytes),
        },
        data: options.data.unwrap_or_default(),
    };
    check_timeouts(&record, now_ms)?;
    Ok(record)
}

/// The record after an update of `old` now; `found` answers `lookups(Some(old), options, settings)`.
/// Omitted options keep their values; a SET counts as activity.
pub(crate) fn update<'a>(
    old: &SessionRecord<'a>,
    options: &SessionOptions<'a>,
    settings: &Settings,
    found: &'a Found,
    now_ms: u64,
) -> Result<SessionRecord<'a>, CommandError> {
    // The privacy mode in force applies to the kept address too: nothing is stored or streamed
    // beyond what the current mode allows.
    let ip = options.ip.or(old.ip).and_then(|address| client_ip::apply_mode(address, settings.ip_mode));
    let looked_up = lookups(Some(old), options, settings);
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
        // A location belongs to an address: a new address replaces it, even with nothing (an unknown
        // address, or no database). A kept address keeps its location, whatever ip-mode does to it.
        location: match looked_up.locate {
            Some(_) => found.place.as_ref().and_then(Place::location_bytes),
            None => old.location,
        },
        country: match looked_up.locate {
            Some(_) => found.place.as_ref().and_then(Place::country_bytes),
            None => old.country,
        },
        device: match (settings.ua_mode, options.user_agent) {
            // A new user agent is stored, and its summary derived from it where it is shown.
            (UaMode::Full, Some(_)) => None,
            (UaMode::None, _) if looked_up.describe.is_some() => found.device.as_deref().map(str::as_bytes),
            // `UA ""` clears the user agent and so its summary.
            (UaMode::None, Some(_)) => None,
            (_, None) => old.device,
        },
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

fn user_agent<'a>(given: Option<&'a [u8]>, settings: &Settings) -> Option<UserAgent<'a>> {
    match settings.ua_mode {
        UaMode::None => None,
        UaMode::Full => given.filter(|user_agent| !user_agent.is_empty()).map(UserAgent::Text),
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
    static NOTHING: Found = Found { place: None, device: None };

    fn settings() -> Settings {
        // The documented defaults: 30 min idle, one day absolute, 1 min touch granularity.
        Settings::defaults()
    }

    #[test]
    fn create_applies_defaults() {
        let record = create(&SessionOptions::default(), &settings(), &NOTHING, NOW).unwrap();
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
        let old =
            SessionRecord { location: Some(b"Paris, France"), ..create(&options, &settings(), &NOTHING, NOW).unwrap() };
        let later = NOW + 5_000;
        let updated = update(&old, &SessionOptions::default(), &settings(), &NOTHING, later).unwrap();
        assert_eq!(updated.version, 2);
        assert_eq!(updated.created_ms, NOW);
        assert_eq!((updated.updated_ms, updated.seen_ms), (later, later));
        assert_eq!(updated.user, Some(&b"42"[..]));
        assert_eq!(updated.data, b"d1");
        assert_eq!(updated.user_agent, Some(UserAgent::Text(b"ua1")));
        assert_eq!(updated.location, Some(&b"Paris, France"[..]));
        assert_eq!(updated.absolute_deadline_ms, NOW + 10_000_000);
    }

    #[test]
    fn absolute_timeout_counts_from_creation_and_anon_drops_the_owner() {
        let old = create(
            &SessionOptions { owner: Some(Owner::User(b"7")), ..Default::default() },
            &settings(),
            &NOTHING,
            NOW,
        )
        .unwrap();
        let options = SessionOptions { absolute_ms: Some(60_000), owner: Some(Owner::Anonymous), ..Default::default() };
        let updated = update(&old, &options, &settings(), &NOTHING, NOW + 1_000).unwrap();
        assert_eq!(updated.absolute_deadline_ms, NOW + 60_000);
        assert_eq!(updated.user, None);
    }

    #[test]
    fn refuses_sessions_that_never_expire_or_are_already_over() {
        let never = SessionOptions { idle_ms: Some(0), absolute_ms: Some(0), ..Default::default() };
        assert_eq!(create(&never, &settings(), &NOTHING, NOW), Err(CommandError::NoTimeout));
        let old = create(&SessionOptions::default(), &settings(), &NOTHING, NOW).unwrap();
        let too_short = SessionOptions { absolute_ms: Some(1_000), ..Default::default() };
        assert_eq!(update(&old, &too_short, &settings(), &NOTHING, NOW + 2_000), Err(CommandError::EndsInThePast));
    }

    #[test]
    fn privacy_modes_apply_before_storing() {
        let strict = Settings { ip_mode: IpMode::Truncated, ua_mode: UaMode::None, ..settings() };
        let options = SessionOptions {
            ip: Some("203.0.113.99".parse().unwrap()),
            user_agent: Some(b"Mozilla"),
            ..Default::default()
        };
        let record = create(&options, &strict, &NOTHING, NOW).unwrap();
        assert_eq!(record.ip, Some("203.0.113.0".parse().unwrap()));
        assert_eq!(record.user_agent, None);
        let no_ip = Settings { ip_mode: IpMode::None, ..settings() };
        assert_eq!(create(&options, &no_ip, &NOTHING, NOW).unwrap().ip, None);
    }

    #[test]
    fn a_stricter_ip_mode_applies_to_the_kept_address() {
        let old = SessionRecord {
            ip: Some("203.0.113.99".parse().unwrap()),
            ..create(&SessionOptions::default(), &settings(), &NOTHING, NOW).unwrap()
        };
        let none = Settings { ip_mode: IpMode::None, ..settings() };
        assert_eq!(update(&old, &SessionOptions::default(), &none, &NOTHING, NOW).unwrap().ip, None);
        let truncated = Settings { ip_mode: IpMode::Truncated, ..settings() };
        let kept = update(&old, &SessionOptions::default(), &truncated, &NOTHING, NOW).unwrap().ip;
        assert_eq!(kept, Some("203.0.113.0".parse().unwrap()));
    }

    #[test]
    fn a_new_address_drops_the_old_location_and_empty_ua_clears() {
        let old = SessionRecord {
            ip: Some("192.0.2.1".parse().unwrap()),
            location: Some(b"Tehran, Iran"),
            country: Some(b"IR"),
            user_agent: Some(UserAgent::Text(b"ua")),
            ..create(&SessionOptions::default(), &settings(), &NOTHING, NOW).unwrap()
        };
        let same_ip = SessionOptions { ip: Some("192.0.2.1".parse().unwrap()), ..Default::default() };
        assert_eq!(update(&old, &same_ip, &settings(), &NOTHING, NOW).unwrap().country, Some(&b"IR"[..]));
        let options =
            SessionOptions { ip: Some("198.51.100.1".parse().unwrap()), user_agent: Some(b""), ..Default::default() };
        let updated = update(&old, &options, &settings(), &NOTHING, NOW).unwrap();
        assert_eq!((updated.location, updated.country, updated.user_agent), (None, None, None));
    }

    fn tehran() -> Found {
        Found { place: Some(Place { location: Some("Tehran, Iran".into()), country: Some(*b"IR") }), device: None }
    }

    #[test]
    fn the_full_address_is_located_on_creation_and_then_truncated() {
        let options = SessionOptions { ip: Some("203.0.113.99".parse().unwrap()), ..Default::default() };
        for mode in [IpMode::Full, IpMode::Truncated, IpMode::None] {
            let mode_settings = Settings { ip_mode: mode, ..settings() };
            let wanted = lookups(None, &options, &mode_settings);
            assert_eq!(wanted.locate, Some("203.0.113.99".parse().unwrap()), "{mode:?}");
            let found = tehran();
            let record = create(&options, &mode_settings, &found, NOW).unwrap();
            assert_eq!((record.location, record.country), (Some(&b"Tehran, Iran"[..]), Some(&b"IR"[..])), "{mode:?}");
        }
        assert_eq!(lookups(None, &SessionOptions::default(), &settings()), Lookups::default());
    }

    #[test]
    fn an_address_is_located_only_when_it_changes() {
        let found = tehran();
        let first = SessionOptions { ip: Some("203.0.113.99".parse().unwrap()), ..Default::default() };
        for mode in [IpMode::Full, IpMode::Truncated] {
            let mode_settings = Settings { ip_mode: mode, ..settings() };
            let old = create(&first, &mode_settings, &found, NOW).unwrap();
            // The same address, or (truncated) one of the same /24: no lookup, the location stays.
            let same = SessionOptions { ip: Some("203.0.113.99".parse().unwrap()), ..Default::default() };
            assert_eq!(lookups(Some(&old), &same, &mode_settings).locate, None, "{mode:?}");
            let kept = update(&old, &same, &mode_settings, &NOTHING, NOW).unwrap();
            assert_eq!(kept.location, Some(&b"Tehran, Iran"[..]), "{mode:?}");
            // No address given: nothing to look up either.
            assert_eq!(lookups(Some(&old), &SessionOptions::default(), &mode_settings).locate, None);
            // Another network: looked up, and an unknown place replaces the old one.
            let moved = SessionOptions { ip: Some("192.0.2.1".parse().unwrap()), ..Default::default() };
            assert_eq!(lookups(Some(&old), &moved, &mode_settings).locate, moved.ip, "{mode:?}");
            let updated = update(&old, &moved, &mode_settings, &NOTHING, NOW).unwrap();
            assert_eq!((updated.location, updated.country), (None, None), "{mode:?}");
        }
        let truncated = Settings { ip_mode: IpMode::Truncated, ..settings() };
        let old = create(&first, &truncated, &found, NOW).unwrap();
        let same_network = SessionOptions { ip: Some("203.0.113.1".parse().unwrap()), ..Default::default() };
        assert_eq!(lookups(Some(&old), &same_network, &truncated).locate, None);
        // With no address stored, every given address is looked up.
        let none = Settings { ip_mode: IpMode::None, ..settings() };
        let old = create(&first, &none, &found, NOW).unwrap();
        assert_eq!((old.ip, old.location), (None, Some(&b"Tehran, Iran"[..])));
        assert_eq!(lookups(Some(&old), &first, &none).locate, first.ip);
    }

    #[test]
    fn switching_ip_mode_keeps_the_location_of_a_kept_address() {
        let found = tehran();
        let options = SessionOptions { ip: Some("203.0.113.99".parse().unwrap()), ..Default::default() };
        let old = create(&options, &settings(), &found, NOW).unwrap();
        let truncated = Settings { ip_mode: IpMode::Truncated, ..settings() };
        let updated = update(&old, &SessionOptions::default(), &truncated, &NOTHING, NOW).unwrap();
        assert_eq!(updated.ip, Some("203.0.113.0".parse().unwrap()));
        assert_eq!((updated.location, updated.country), (Some(&b"Tehran, Iran"[..]), Some(&b"IR"[..])));
    }

    #[test]
    fn the_device_summary_is_stored_only_in_place_of_the_user_agent() {
        let firefox = SessionOptions { user_agent: Some(b"Firefox UA"), ..Default::default() };
        let found = Found { place: None, device: Some(Arc::from("Firefox 120 on Linux")) };
        // ua-mode full: the user agent is stored and nothing is looked up.
        assert_eq!(lookups(None, &firefox, &settings()).describe, None);
        let full = create(&firefox, &settings(), &NOTHING, NOW).unwrap();
        assert_eq!((full.user_agent, full.device), (Some(UserAgent::Text(b"Firefox UA")), None));
        // ua-mode none: the summary takes the user agent's place.
        let none = Settings { ua_mode: UaMode::None, ..settings() };
        assert_eq!(lookups(None, &firefox, &none).describe, Some(UserAgent::Text(b"Firefox UA")));
        let stripped = create(&firefox, &none, &found, NOW).unwrap();
        assert_eq!((stripped.user_agent, stripped.device), (None, Some(&b"Firefox 120 on Linux"[..])));
        // Kept on updates without a user agent, replaced by a new one, cleared by UA "".
        assert_eq!(lookups(Some(&stripped), &SessionOptions::default(), &none).describe, None);
        assert_eq!(
            update(&stripped, &SessionOptions::default(), &none, &NOTHING, NOW).unwrap().device,
            stripped.device
        );
        let safari = SessionOptions { user_agent: Some(b"Safari UA"), ..Default::default() };
        assert_eq!(lookups(Some(&stripped), &safari, &none).describe, Some(UserAgent::Text(b"Safari UA")));
        let cleared = SessionOptions { user_agent: Some(b""), ..Default::default() };
        assert_eq!(lookups(Some(&stripped), &cleared, &none).describe, None);
        assert_eq!(update(&stripped, &cleared, &none, &NOTHING, NOW).unwrap().device, None);
        // Switching to none drops a stored user agent and keeps its summary.
        assert_eq!(
            lookups(Some(&full), &SessionOptions::default(), &none).describe,
            Some(UserAgent::Text(b"Firefox UA"))
        );
        let switched = update(&full, &SessionOptions::default(), &none, &found, NOW).unwrap();
        assert_eq!((switched.user_agent, switched.device), (None, Some(&b"Firefox 120 on Linux"[..])));
        // Back to full: a new user agent replaces the stored summary, none given keeps it.
        assert_eq!(
            update(&switched, &SessionOptions::default(), &settings(), &NOTHING, NOW).unwrap().device,
            switched.device
        );
        let back = update(&switched, &safari, &settings(), &NOTHING, NOW).unwrap();
        assert_eq!((back.user_agent, back.device), (Some(UserAgent::Text(b"Safari UA")), None));
    }

    #[test]
    fn rotate_keeps_creation_and_owner() {
        let old = create(
            &SessionOptions { owner: Some(Owner::User(b"9")), ..Default::default() },
            &settings(),
            &NOTHING,
            NOW,
        )
        .unwrap();
        let rotated = rotate(&old, NOW + 10);
        assert_eq!((rotated.version, rotated.created_ms, rotated.seen_ms), (2, NOW, NOW + 10));
        assert_eq!(rotated.user, Some(&b"9"[..]));
    }
}
