//! Locations and devices in the PostgreSQL mirror: `location`, `country` and `device` (migration V2)
//! carry what Redis holds, for City and Country databases, IPv4 and IPv6, unknown addresses and every
//! privacy mode, and `qsess.live_sessions` shows them. The daemon runs in-process.

use std::time::Duration;

use qsess_tests::eventually;

use crate::support::geo::{
    config_set, fixture, set, CITY_DB, COUNTRY_DB, FIREFOX_DEVICE, FIREFOX_UA, IPHONE_DEVICE, IPHONE_UA,
};
use crate::support::mirror::mirrored;
use crate::support::session_keys::handle_of;

/// The columns this feature fills: (ip as text, user_agent, location, country, device).
type GeoColumns = (Option<String>, Option<String>, Option<String>, Option<String>, Option<String>);

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

/// Waits until the row of `sid` is at `version`, then returns its columns.
fn columns_at_version(client: &mut postgres::Client, sid: &str, version: i64) -> GeoColumns {
    let handle = handle_of(sid);
    eventually(Duration::from_secs(30), &format!("the row of {sid} at version {version}"), || {
        // Until the daemon has migrated the database, the table does not exist.
        let row = client
            .query_opt(
                "select version, host(ip), user_agent, location, country, device from qsess.sessions where handle = $1",
                &[&handle],
            )
            .map_err(|error| error.to_string())?;
        match row {
            Some(row) if row.get::<_, i64>(0) == version => {
                Ok((row.get(1), row.get(2), row.get(3), row.get(4), row.get(5)))
            }
            Some(row) => Err(format!("at version {}", row.get::<_, i64>(0))),
            None => Err("no row yet".to_owned()),
        }
    })
}

#[test]
fn the_mirror_carries_locations_and_devices_from_a_city_database() {
    let mirrored = mirrored(&[("geoip-db", &fixture(CITY_DB))]);
    let mut con = mirrored.redis.connection();
    let mut client = mirrored.db.client();

    let v = set(&mut con, "v4", &["USER", "42", "IP", "203.0.113.7", "UA", FIREFOX_UA]);
    assert_eq!(
        columns_at_version(&mut client, "v4", v),
        (some("203.0.113.7"), some(FIREFOX_UA), some("Tehran, Iran"), some("IR"), some(FIREFOX_DEVICE))
    );
    let v = set(&mut con, "v6", &["USER", "42", "IP", "2001:db8:1::42", "UA", IPHONE_UA]);
    assert_eq!(
        columns_at_version(&mut client, "v6", v),
        (some("2001:db8:1::42"), some(IPHONE_UA), some("Berlin, Germany"), some("DE"), some(IPHONE_DEVICE))
    );
    let v = set(&mut con, "unknown", &["IP", "192.0.2.1", "UA", "my-script/1.0"]);
    assert_eq!(
        columns_at_version(&mut client, "unknown", v),
        (some("192.0.2.1"), some("my-script/1.0"), None, None, None)
    );
    // A move updates the row's location; a move to an unknown network clears it.
    let v = set(&mut con, "v4", &["IP", "198.51.100.7"]);
    assert_eq!(columns_at_version(&mut client, "v4", v).2, some("Sweden"));
    let v = set(&mut con, "v4", &["IP", "10.0.0.1"]);
    assert_eq!(columns_at_version(&mut client, "v4", v).2, None);

    // What a DBA reads: "all sessions of user 42, with IP and location".
    let rows = client
        .query("select host(ip), location, device from qsess.live_sessions where user_id = '42' order by location", &[])
        .unwrap();
    let listed: Vec<(Option<String>, Option<String>, Option<String>)> =
        rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect();
    assert_eq!(
        listed,
        [
            (some("2001:db8:1::42"), some("Berlin, Germany"), some(IPHONE_DEVICE)),
            (some("10.0.0.1"), None, some(FIREFOX_DEVICE))
        ]
    );
}

#[test]
fn the_mirror_carries_countries_from_a_country_database() {
    let mirrored = mirrored(&[("geoip-db", &fixture(COUNTRY_DB))]);
    let mut con = mirrored.redis.connection();
    let mut client = mirrored.db.client();
    let v = set(&mut con, "v4", &["IP", "::ffff:203.0.113.7"]);
    assert_eq!(columns_at_version(&mut client, "v4", v), (some("203.0.113.7"), None, some("Iran"), some("IR"), None));
    let v = set(&mut con, "v6", &["IP", "2001:db8:1::42"]);
    assert_eq!(columns_at_version(&mut client, "v6", v).2, some("Germany"));
}

#[test]
fn the_mirror_holds_only_what_the_privacy_modes_keep() {
    let mirrored = mirrored(&[("geoip-db", &fixture(CITY_DB)), ("ip-mode", "truncated")]);
    let mut con = mirrored.redis.connection();
    let mut client = mirrored.db.client();

    // Truncated: the network, and the location of the full address.
    let v = set(&mut con, "truncated-v4", &["IP", "198.51.100.200", "UA", FIREFOX_UA]);
    assert_eq!(
        columns_at_version(&mut client, "truncated-v4", v),
        (some("198.51.100.0"), some(FIREFOX_UA), some("Linköping, Sweden"), some("SE"), some(FIREFOX_DEVICE))
    );
    let v = set(&mut con, "truncated-v6", &["IP", "2001:db8:3:8000::1"]);
    assert_eq!(columns_at_version(&mut client, "truncated-v6", v).0, some("2001:db8:3::"));
    assert_eq!(columns_at_version(&mut client, "truncated-v6", v).2, some("Paris, France"));

    // None, and no user agent: a location and a device, nothing else.
    config_set(&mut con, "qsess.ip-mode", "none").unwrap();
    config_set(&mut con, "qsess.ua-mode", "none").unwrap();
    let v = set(&mut con, "private", &["IP", "203.0.113.7", "UA", IPHONE_UA]);
    assert_eq!(
        columns_at_version(&mut client, "private", v),
        (None, None, some("Tehran, Iran"), some("IR"), some(IPHONE_DEVICE))
    );
    // A session written before the switch loses its address and user agent on its next write.
    let v = set(&mut con, "truncated-v4", &["DATA", "next"]);
    assert_eq!(
        columns_at_version(&mut client, "truncated-v4", v),
        (None, None, some("Linköping, Sweden"), some("SE"), some(FIREFOX_DEVICE))
    );
    let stored: Vec<String> = client
        .query("select coalesce(host(ip), '') || coalesce(user_agent, '') from qsess.sessions", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(!stored.iter().any(|text| text.contains("203.0.113.7") || text.contains("198.51.100.200")), "{stored:?}");
}
