//! The privacy switches with locations and devices, in Redis and in the change stream: the location is
//! looked up on the full address before `qsess.ip-mode` truncates or drops it, and the device summary
//! stays when `qsess.ua-mode none` drops the user agent. Nothing beyond what the mode allows is stored
//! or streamed.

use qsess_record::{RECORD_FORMAT_V2, RECORD_FORMAT_V3};
use qsess_tests::RedisServer;

use crate::support::geo::{
    byuser_meta, config_set, decoded, field, fixture, peek, place, set, streamed_records, CITY_DB, FIREFOX_DEVICE,
    FIREFOX_UA, IPHONE_DEVICE, IPHONE_UA,
};
use crate::support::session_keys::handle_of;

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn full_mode_stores_the_address_and_the_user_agent_and_derives_the_device() {
    let server = RedisServer::builder().module_arg("geoip-db", fixture(CITY_DB)).start();
    let mut con = server.connection();
    set(&mut con, "full", &["USER", "1", "IP", "203.0.113.7", "UA", FIREFOX_UA]);
    let fields = peek(&mut con, "full");
    assert_eq!(field(&fields, "ip"), some("203.0.113.7"));
    assert_eq!((field(&fields, "ua"), field(&fields, "device")), (some(FIREFOX_UA), some(FIREFOX_DEVICE)));
    let records = streamed_records(&mut con, "full");
    let record = decoded(&records[0]);
    assert_eq!(records[0][0], RECORD_FORMAT_V3, "a browser's agent is stored packed, the device derived from it");
    assert_eq!(record.ip, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(
        record.user_agent.map(|user_agent| user_agent.text().into_owned()),
        Some(FIREFOX_UA.as_bytes().to_vec())
    );
    assert_eq!((record.location, record.country, record.device), (Some(&b"Tehran, Iran"[..]), Some(&b"IR"[..]), None));
}

#[test]
fn truncated_mode_locates_the_full_address_and_stores_only_its_network() {
    let server =
        RedisServer::builder().module_arg("geoip-db", fixture(CITY_DB)).module_arg("ip-mode", "truncated").start();
    let mut con = server.connection();
    // 198.51.100.200 is in Linköping; its /24, 198.51.100.0, would only say Sweden.
    set(&mut con, "v4", &["IP", "198.51.100.200"]);
    assert_eq!(place(&mut con, "v4"), (some("198.51.100.0"), some("Linköping, Sweden"), some("SE")));
    // 2001:db8:3:8000::1 is in Paris; its /48, 2001:db8:3::, is unknown to the database.
    set(&mut con, "v6", &["IP", "2001:db8:3:8000::1"]);
    assert_eq!(place(&mut con, "v6"), (some("2001:db8:3::"), some("Paris, France"), some("FR")));
    set(&mut con, "mapped", &["IP", "::ffff:203.0.113.77"]);
    assert_eq!(place(&mut con, "mapped"), (some("203.0.113.0"), some("Tehran, Iran"), some("IR")));

    for (sid, full, stored) in [("v4", "198.51.100.200", "198.51.100.0"), ("v6", "2001:db8:3:8000::1", "2001:db8:3::")]
    {
        for bytes in streamed_records(&mut con, sid) {
            assert_eq!(decoded(&bytes).ip, Some(stored.parse().unwrap()), "{sid}");
            let full_octets: Vec<u8> = match full.parse::<std::net::IpAddr>().unwrap() {
                std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
                std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            assert!(!contains(&bytes, &full_octets), "{sid}: the full address reached the stream");
        }
    }
}

#[test]
fn none_mode_keeps_the_location_but_no_address() {
    let server = RedisServer::builder().module_arg("geoip-db", fixture(CITY_DB)).module_arg("ip-mode", "none").start();
    let mut con = server.connection();
    set(&mut con, "hidden", &["USER", "9", "IP", "203.0.113.7"]);
    assert_eq!(place(&mut con, "hidden"), (None, some("Tehran, Iran"), some("IR")));
    // With no address stored, every given address is looked up: a move is still seen.
    set(&mut con, "hidden", &["IP", "2001:db8:1::5"]);
    assert_eq!(place(&mut con, "hidden"), (None, some("Berlin, Germany"), some("DE")));
    let meta = byuser_meta(&mut con, "9");
    let session = &meta[&handle_of("hidden")];
    assert_eq!((field(session, "ip"), field(session, "loc")), (None, some("Berlin, Germany")));
    for bytes in streamed_records(&mut con, "hidden") {
        assert_eq!(decoded(&bytes).ip, None);
        assert!(!contains(&bytes, &[203, 0, 113, 7]), "the address reached the stream");
    }
}

#[test]
fn ua_none_keeps_the_device_summary_instead_of_the_user_agent() {
    let server = RedisServer::builder().module_arg("ua-mode", "none").start();
    let mut con = server.connection();
    set(&mut con, "phone", &["USER", "5", "UA", IPHONE_UA]);
    let fields = peek(&mut con, "phone");
    assert_eq!((field(&fields, "ua"), field(&fields, "device")), (None, some(IPHONE_DEVICE)));
    let meta = byuser_meta(&mut con, "5");
    assert_eq!(field(&meta[&handle_of("phone")], "device"), some(IPHONE_DEVICE));
    // Kept by updates that give no user agent; cleared with `UA ""`.
    set(&mut con, "phone", &["DATA", "x"]);
    assert_eq!(field(&peek(&mut con, "phone"), "device"), some(IPHONE_DEVICE));
    let records = streamed_records(&mut con, "phone");
    // Neither as text nor packed (format 3 stores a browser's agent packed).
    let mut packed_agent = Vec::new();
    assert!(qsess_record::pack_user_agent(IPHONE_UA.as_bytes(), &mut packed_agent));
    for bytes in &records {
        assert_eq!(bytes[0], RECORD_FORMAT_V2);
        let record = decoded(bytes);
        assert_eq!((record.user_agent, record.device), (None, Some(IPHONE_DEVICE.as_bytes())));
        assert!(!contains(bytes, b"AppleWebKit"), "the user agent reached the stream");
        assert!(!contains(bytes, &packed_agent), "the packed user agent reached the stream");
    }
    set(&mut con, "phone", &["UA", ""]);
    assert_eq!(field(&peek(&mut con, "phone"), "device"), None);
}

#[test]
fn switching_modes_at_run_time_applies_to_kept_fields_on_their_next_write() {
    let server = RedisServer::builder().module_arg("geoip-db", fixture(CITY_DB)).start();
    let mut con = server.connection();
    set(&mut con, "s", &["IP", "198.51.100.200", "UA", FIREFOX_UA]);
    config_set(&mut con, "qsess.ip-mode", "truncated").unwrap();
    config_set(&mut con, "qsess.ua-mode", "none").unwrap();
    set(&mut con, "s", &["DATA", "next request"]);
    let fields = peek(&mut con, "s");
    // The kept address is truncated, and keeps the location of the full address it was found with.
    assert_eq!(field(&fields, "ip"), some("198.51.100.0"));
    assert_eq!(field(&fields, "loc"), some("Linköping, Sweden"));
    // The kept user agent is dropped, and its summary stays.
    assert_eq!((field(&fields, "ua"), field(&fields, "device")), (None, some(FIREFOX_DEVICE)));
    config_set(&mut con, "qsess.ip-mode", "none").unwrap();
    set(&mut con, "s", &["DATA", "again"]);
    assert_eq!(place(&mut con, "s"), (None, some("Linköping, Sweden"), some("SE")));
}
