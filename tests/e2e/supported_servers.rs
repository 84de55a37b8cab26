//! What must hold on every supported server (Redis 7.0, Valkey 8.1 with libc malloc): real browser
//! agents through every command with GeoIP on, and the load-time report of the server and its ACL
//! categories. `scripts/test` runs this suite once per server; the Valkey run is the libc-malloc one
//! that crashed before the module had its own allocator (ARCHITECTURE.md, "The allocator").

use crate::support::geo::{byuser_meta, field, fixture, peek, set, CITY_DB, FIREFOX_UA, IPHONE_UA};
use crate::support::session_keys::handle_of;
use qsess_tests::{RedisServer, ServerName};
use redis::{Connection, Value};

/// Agents whose parsing runs the regexes (and memchr's vectorised finders) that faulted on memory
/// aligned to 16 bytes, with the device each must show.
const BROWSERS: [(&str, &str); 4] = [
    (FIREFOX_UA, "Firefox 120 on Linux"),
    (IPHONE_UA, "Safari 17 on iPhone"),
    (
        "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
        "Chrome 120 on Android",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "Chrome 124 on Windows 10",
    ),
];

fn integer(con: &mut Connection, words: &[&str]) -> i64 {
    match redis::cmd(words[0]).arg(&words[1..]).query::<Value>(con) {
        Ok(Value::Int(number)) => number,
        other => panic!("{words:?} replied {other:?}"),
    }
}

#[test]
fn real_browser_agents_go_through_every_command_with_locations_on_any_allocator() {
    let server = RedisServer::builder().module_arg("qsess.geoip-db", fixture(CITY_DB)).start();
    let mut con = server.connection();

    for (index, (agent, device)) in BROWSERS.iter().enumerate() {
        let sid = format!("browser-session-{index}-0123456789");
        set(&mut con, &sid, &["USER", "42", "IP", "203.0.113.7", "UA", agent, "DATA", "payload"]);
        let fields = peek(&mut con, &sid);
        assert_eq!(field(&fields, "device").as_deref(), Some(*device), "{agent}");
        assert_eq!(field(&fields, "loc").as_deref(), Some("Tehran, Iran"));
        let got: Vec<Value> = redis::cmd("QSESS.GET").arg(&sid).query(&mut con).unwrap();
        assert!(!got.is_empty(), "QSESS.GET {sid} found nothing");
        assert_eq!(integer(&mut con, &["QSESS.TOUCH", &sid]), 1);
    }
    let minted: String =
        redis::cmd("QSESS.NEW").arg(&["USER", "42", "IP", "198.51.100.200", "UA", IPHONE_UA]).query(&mut con).unwrap();
    assert_eq!(field(&peek(&mut con, &minted), "loc").as_deref(), Some("Linköping, Sweden"));

    let listed = byuser_meta(&mut con, "42");
    assert_eq!(listed.len(), BROWSERS.len() + 1);
    for (index, (_, device)) in BROWSERS.iter().enumerate() {
        let handle = handle_of(&format!("browser-session-{index}-0123456789"));
        assert_eq!(field(&listed[&handle], "device").as_deref(), Some(*device));
    }

    let rotated = "browser-session-rotated-0123456789";
    assert_eq!(integer(&mut con, &["QSESS.ROTATE", "browser-session-0-0123456789", rotated]), 2);
    let revoked_handle = handle_of("browser-session-1-0123456789");
    assert_eq!(integer(&mut con, &["QSESS.REVOKE", "42", &revoked_handle]), 1);
    assert_eq!(integer(&mut con, &["QSESS.DEL", rotated]), 1);
    assert_eq!(integer(&mut con, &["QSESS.REVOKEUSER", "42", "EXCEPT", &minted]), 2);
    assert_eq!(byuser_meta(&mut con, "42").len(), 1);
    // The internal commands too: without a loader attached, a restore of nothing is a no-op answer.
    let restored: String = redis::cmd("QSESS.RESTORE")
        .arg(&["0", &handle_of("never-seen-id-0123456789"), "NOTFOUND"])
        .query(&mut con)
        .unwrap();
    assert_eq!(restored, "NOTFOUND");
    assert_eq!(redis::cmd("QSESS.LOADER").arg("0").query::<Value>(&mut con).map(|_| ()), Ok(()));

    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG", "the server must still be up");
}

#[test]
fn the_load_log_names_the_server_its_allocator_and_the_acl_categories_used() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let memory: String = redis::cmd("INFO").arg("memory").query(&mut con).unwrap();
    let allocator = memory.lines().find_map(|line| line.strip_prefix("mem_allocator:")).unwrap().trim().to_owned();
    let log = server.log();
    let line = log.lines().find(|line| line.contains("qsess: loaded on")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(&format!("(allocator {allocator})")), "{line}");

    let categories: Vec<String> = redis::cmd("ACL").arg("CAT").query(&mut con).unwrap();
    match server.server_name() {
        // Redis 7.0 has no API for module command categories: commands are granted by name.
        ServerName::Redis => {
            assert!(line.contains("qsess: loaded on redis 7."), "{line}");
            assert!(line.contains("ACL categories: none"), "{line}");
            assert!(!categories.contains(&"qsess".to_owned()));
        }
        // Valkey 8 has both: `+@qsess` grants every qsess command, and they sit in @read/@write.
        ServerName::Valkey => {
            assert!(line.contains("qsess: loaded on valkey 8."), "{line}");
            assert!(line.contains("@qsess"), "{line}");
            let members: Vec<String> = redis::cmd("ACL").arg(&["CAT", "qsess"]).query(&mut con).unwrap();
            assert!(members.contains(&"qsess.get".to_owned()) && members.contains(&"qsess.set".to_owned()));
            let readers: Vec<String> = redis::cmd("ACL").arg(&["CAT", "read"]).query(&mut con).unwrap();
            assert!(readers.contains(&"qsess.peek".to_owned()), "{readers:?}");
        }
    }
}
