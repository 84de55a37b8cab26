//! Locations from a MaxMind database (`qsess.geoip-db`) in Redis: City and Country databases, IPv4,
//! IPv6 and IPv4-mapped addresses, unknown and private addresses, a location that follows the address,
//! reloads (CONFIG SET and a file replaced by rename), and refusals that keep the previous database.

use std::time::Duration;

use qsess_tests::{eventually, RedisServer};

use crate::support::geo::{
    byuser_meta, config_get, config_set, field, fixture, fixture_copy_dir, install_by_rename, place, set, ASN_DB,
    CITY_DB, COUNTRY_DB, FIREFOX_DEVICE, FIREFOX_UA,
};
use crate::support::session_keys::handle_of;

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

#[test]
fn city_database_locates_ipv4_ipv6_and_mapped_addresses() {
    let server = RedisServer::builder().module_arg("geoip-db", fixture(CITY_DB)).start();
    let mut con = server.connection();
    assert_eq!(config_get(&mut con, "qsess.geoip-db"), fixture(CITY_DB));

    set(&mut con, "v4", &["USER", "42", "IP", "203.0.113.7", "UA", FIREFOX_UA]);
    assert_eq!(place(&mut con, "v4"), (some("203.0.113.7"), some("Tehran, Iran"), some("IR")));
    set(&mut con, "v6", &["USER", "42", "IP", "2001:db8:1::42"]);
    assert_eq!(place(&mut con, "v6"), (some("2001:db8:1::42"), some("Berlin, Germany"), some("DE")));
    set(&mut con, "mapped", &["IP", "::ffff:198.51.100.200"]);
    assert_eq!(place(&mut con, "mapped"), (some("198.51.100.200"), some("Linköping, Sweden"), some("SE")));
    // No city in the database for this network: the country stands for the location.
    set(&mut con, "country-only", &["IP", "198.51.100.7"]);
    assert_eq!(place(&mut con, "country-only"), (some("198.51.100.7"), some("Sweden"), some("SE")));

    // Unknown, reserved, private and loopback addresses, and a network with a continent but no
    // country, simply get no location.
    for (sid, address) in [
        ("unknown", "192.0.2.1"),
        ("private", "10.1.2.3"),
        ("loopback", "127.0.0.1"),
        ("v6-loopback", "::1"),
        ("v6-unique-local", "fd00::1"),
        ("continent-only", "2001:db8:2::1"),
        ("v6-unknown", "2001:db8:99::1"),
    ] {
        set(&mut con, sid, &["IP", address]);
        let (ip, location, country) = place(&mut con, sid);
        assert_eq!((location, country), (None, None), "{address}");
        assert!(ip.is_some(), "{address}");
    }
    set(&mut con, "no-ip", &["DATA", "x"]);
    assert_eq!(place(&mut con, "no-ip"), (None, None, None));

    // What a "your devices" page lists.
    let sessions = byuser_meta(&mut con, "42");
    let desktop = &sessions[&handle_of("v4")];
    let names: Vec<&str> = desktop.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["handle", "ip", "ua", "device", "loc", "cc", "created", "seen", "expires"]);
    assert_eq!(field(desktop, "device").as_deref(), Some(FIREFOX_DEVICE));
    assert_eq!(field(desktop, "loc").as_deref(), Some("Tehran, Iran"));
    let phone = &sessions[&handle_of("v6")];
    assert_eq!((field(phone, "loc").as_deref(), field(phone, "cc").as_deref()), (Some("Berlin, Germany"), Some("DE")));
}

#[test]
fn country_database_gives_the_country_for_ipv4_and_ipv6() {
    let server = RedisServer::builder().module_arg("qsess.geoip-db", fixture(COUNTRY_DB)).start();
    let mut con = server.connection();
    set(&mut con, "v4", &["IP", "203.0.113.7"]);
    assert_eq!(place(&mut con, "v4"), (some("203.0.113.7"), some("Iran"), some("IR")));
    set(&mut con, "v6", &["IP", "2001:db8:1::42"]);
    assert_eq!(place(&mut con, "v6"), (some("2001:db8:1::42"), some("Germany"), some("DE")));
    set(&mut con, "mapped", &["IP", "::ffff:198.51.100.9"]);
    assert_eq!(place(&mut con, "mapped"), (some("198.51.100.9"), some("Sweden"), some("SE")));
    set(&mut con, "unknown", &["IP", "2001:db8:3:8000::1"]);
    assert_eq!(place(&mut con, "unknown"), (some("2001:db8:3:8000::1"), None, None));
}

#[test]
fn the_location_follows_the_address() {
    let server = RedisServer::builder().module_arg("geoip-db", fixture(CITY_DB)).start();
    let mut con = server.connection();
    set(&mut con, "moving", &["IP", "203.0.113.7"]);
    assert_eq!(place(&mut con, "moving").1, some("Tehran, Iran"));
    // Updates without an address, or with the same one, keep it.
    set(&mut con, "moving", &["DATA", "cart"]);
    set(&mut con, "moving", &["IP", "203.0.113.7"]);
    assert_eq!(place(&mut con, "moving").1, some("Tehran, Iran"));
    set(&mut con, "moving", &["IP", "2001:db8:1::1"]);
    assert_eq!(place(&mut con, "moving"), (some("2001:db8:1::1"), some("Berlin, Germany"), some("DE")));
    // A new address the database does not know leaves no stale location behind.
    set(&mut con, "moving", &["IP", "192.0.2.1"]);
    assert_eq!(place(&mut con, "moving"), (some("192.0.2.1"), None, None));
}

#[test]
fn config_set_swaps_databases_without_a_restart() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    assert_eq!(config_get(&mut con, "qsess.geoip-db"), "");
    set(&mut con, "before", &["IP", "203.0.113.7"]);
    assert_eq!(place(&mut con, "before").1, None, "no database, no location");

    config_set(&mut con, "qsess.geoip-db", &fixture(COUNTRY_DB)).unwrap();
    assert_eq!(config_get(&mut con, "qsess.geoip-db"), fixture(COUNTRY_DB));
    set(&mut con, "country", &["IP", "203.0.113.7"]);
    assert_eq!(place(&mut con, "country").1, some("Iran"));

    config_set(&mut con, "qsess.geoip-db", &fixture(CITY_DB)).unwrap();
    set(&mut con, "city", &["IP", "203.0.113.7"]);
    assert_eq!(place(&mut con, "city").1, some("Tehran, Iran"));
    // Sessions keep the location they were given until their address changes.
    assert_eq!(place(&mut con, "country").1, some("Iran"));
    assert_eq!(place(&mut con, "before").1, None);

    config_set(&mut con, "qsess.geoip-db", "").unwrap();
    set(&mut con, "after", &["IP", "203.0.113.7"]);
    assert_eq!(place(&mut con, "after").1, None, "the empty path turns locations off");
    assert!(server.log().contains("locations from"), "swaps are logged:\n{}", server.log());
}

#[test]
fn a_database_replaced_by_rename_is_picked_up_by_itself() {
    // geoipupdate writes the new database beside the old one and renames it over it. Redis does not
    // pass a CONFIG SET that repeats the current path on to the module, so qsess notices by itself.
    let (_dir, path) = fixture_copy_dir();
    install_by_rename(COUNTRY_DB, &path);
    let server = RedisServer::builder().module_arg("geoip-db", path.display()).start();
    let mut con = server.connection();
    set(&mut con, "old", &["IP", "203.0.113.7"]);
    assert_eq!(place(&mut con, "old").1, some("Iran"));

    install_by_rename(CITY_DB, &path);
    let mut n = 0;
    eventually(Duration::from_secs(10), "the replaced database to be used", || {
        n += 1;
        let sid = format!("new-{n}");
        set(&mut con, &sid, &["IP", "203.0.113.7"]);
        match place(&mut con, &sid).1 {
            Some(location) if location == "Tehran, Iran" => Ok(()),
            other => Err(format!("{sid} located at {other:?}")),
        }
    });
    assert_eq!(config_get(&mut con, "qsess.geoip-db"), path.display().to_string());
    assert!(server.log().contains("was replaced"), "{}", server.log());

    // A broken replacement is refused and logged; the database in use stays.
    let next = path.with_extension("next");
    std::fs::write(&next, b"half a download").unwrap();
    std::fs::rename(&next, &path).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    set(&mut con, "after-bad", &["IP", "2001:db8:1::1"]);
    assert_eq!(place(&mut con, "after-bad").1, some("Berlin, Germany"));
    eventually(Duration::from_secs(5), "the refusal to be logged", || {
        if server.log().contains("replaced GeoIP database is refused") {
            Ok(())
        } else {
            Err("not logged yet".to_owned())
        }
    });
}

#[test]
fn bad_paths_and_corrupt_files_are_refused_and_the_previous_database_stays() {
    let server = RedisServer::builder().module_arg("geoip-db", fixture(CITY_DB)).start();
    let mut con = server.connection();
    let dir = tempfile::tempdir().unwrap();
    let city = std::fs::read(fixture(CITY_DB)).unwrap();
    let truncated = dir.path().join("truncated.mmdb");
    std::fs::write(&truncated, &city[..city.len() / 2]).unwrap();
    let garbage = dir.path().join("garbage.mmdb");
    std::fs::write(&garbage, b"<html>404 Not Found</html>").unwrap();
    let empty = dir.path().join("empty.mmdb");
    std::fs::write(&empty, b"").unwrap();

    let refusals = [
        ("/nonexistent/GeoLite2-City.mmdb".to_owned(), "cannot open '/nonexistent/GeoLite2-City.mmdb'"),
        (dir.path().display().to_string(), "is a directory"),
        (truncated.display().to_string(), "is not a MaxMind database"),
        (garbage.display().to_string(), "is not a MaxMind database"),
        (empty.display().to_string(), "is not a MaxMind database"),
        (fixture(ASN_DB), "is a GeoLite2-ASN database; qsess needs a City or Country database"),
    ];
    for (n, (path, expected)) in refusals.iter().enumerate() {
        let error = config_set(&mut con, "qsess.geoip-db", path).expect_err(path);
        let message = error.to_string();
        assert!(message.contains("invalid qsess.geoip-db") && message.contains(expected), "{path}: {message}");
        assert_eq!(config_get(&mut con, "qsess.geoip-db"), fixture(CITY_DB), "{path}");
        let sid = format!("still-{n}");
        set(&mut con, &sid, &["IP", "203.0.113.7"]);
        assert_eq!(place(&mut con, &sid).1, some("Tehran, Iran"), "after refusing {path}");
    }
}

#[test]
fn a_bad_database_at_load_stops_the_server_with_the_reason() {
    let failures = [
        (
            RedisServer::builder().module_arg("geoip-db", "/nonexistent/City.mmdb"),
            "cannot open '/nonexistent/City.mmdb'",
        ),
        (RedisServer::builder().module_arg("geoip-db", fixture(ASN_DB)), "needs a City or Country database"),
    ];
    for (builder, expected) in failures {
        let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.start()))
            .expect_err("the server must not start");
        let message = payload.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("failed to start"), "{message}");
        assert!(message.contains(expected), "the log should say '{expected}':\n{message}");
    }
    // The server option form (`--qsess.geoip-db`) works too.
    let server = RedisServer::builder().server_arg("--qsess.geoip-db", fixture(COUNTRY_DB)).start();
    let mut con = server.connection();
    set(&mut con, "s", &["IP", "203.0.113.7"]);
    assert_eq!(place(&mut con, "s").1, some("Iran"));
}

#[test]
fn device_summaries_appear_where_sessions_are_listed() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    set(&mut con, "desktop", &["USER", "7", "UA", FIREFOX_UA]);
    set(&mut con, "script", &["USER", "7", "UA", "my-script/1.0"]);
    let sessions = byuser_meta(&mut con, "7");
    assert_eq!(field(&sessions[&handle_of("desktop")], "device").as_deref(), Some(FIREFOX_DEVICE));
    assert_eq!(field(&sessions[&handle_of("script")], "device"), None, "an unrecognised agent has no device");
    let peeked = crate::support::geo::peek(&mut con, "desktop");
    assert_eq!(field(&peeked, "device").as_deref(), Some(FIREFOX_DEVICE));
    assert_eq!(field(&peeked, "ua").as_deref(), Some(FIREFOX_UA));
}
