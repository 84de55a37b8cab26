//! Raw session ids are bearer tokens: after a workload using every command, no key name, value,
//! DUMP payload, stream entry, SLOWLOG entry, MONITOR line, INFO field or log line contains one.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use crate::support::commands::{every_key_via_scan, flatten_reply_bytes, query_value};
use crate::support::server_clock::wait_for_the_next_server_millisecond;
use crate::support::session_keys::tombstone_key_prefix;
use qsess_record::Handle;
use qsess_tests::RedisServer;
use redis::{Connection, Value};

const MONITOR_END_MARKER: &str = "monitor-end-marker-5b1f";

/// A long, distinctive, random session id: `rawsid-<label>-` and 48 hex digits from /dev/urandom.
fn long_distinctive_random_session_id(label: &str) -> String {
    let mut random = [0u8; 24];
    File::open("/dev/urandom").unwrap().read_exact(&mut random).unwrap();
    let hex: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("rawsid-{label}-{hex}")
}

/// What must never be found: each whole id, and every 12-character window of its random part (the
/// whole id for ids minted by QSESS.NEW).
fn forbidden_fragments_of_session_ids(sids: &[String]) -> Vec<String> {
    let mut fragments = Vec::new();
    for sid in sids {
        fragments.push(sid.clone());
        let random = if sid.starts_with("rawsid-") { &sid[sid.len() - 48..] } else { sid.as_str() };
        fragments.extend((0..=random.len() - 12).map(|start| random[start..start + 12].to_owned()));
    }
    fragments
}

fn assert_no_fragment_in(what: &str, haystack: &[u8], fragments: &[String]) {
    for fragment in fragments {
        let needle = fragment.as_bytes();
        assert!(
            !haystack.windows(needle.len()).any(|window| window == needle),
            "{what} contains raw session id material {fragment:?}: {}",
            String::from_utf8_lossy(haystack)
        );
    }
}

/// A raw MONITOR client that collects everything until `ECHO <marker>` shows up.
fn start_monitor_collecting_until_marker(port: u16) -> thread::JoinHandle<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"*1\r\n$7\r\nMONITOR\r\n").unwrap();
    let mut ok = [0u8; 5];
    stream.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");
    thread::spawn(move || {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while !seen.windows(MONITOR_END_MARKER.len()).any(|w| w == MONITOR_END_MARKER.as_bytes()) {
            let read = stream.read(&mut chunk).expect("MONITOR stream ended before the marker");
            assert!(read > 0, "MONITOR connection closed");
            seen.extend_from_slice(&chunk[..read]);
        }
        seen
    })
}

/// Runs every command, success and refusal paths, and returns every raw id used or minted.
fn run_workload_touching_every_command(con: &mut Connection) -> Vec<String> {
    let [a, b, c, d, e, f, g, h, i] =
        ["a", "b", "c", "d", "e", "f", "g", "h", "i"].map(long_distinctive_random_session_id);
    let mut sids =
        vec![a.clone(), b.clone(), c.clone(), d.clone(), e.clone(), f.clone(), g.clone(), h.clone(), i.clone()];
    let full_options = ["DATA", "cart", "USER", "alice", "IP", "::ffff:192.0.2.9", "UA", "agent", "IDLE", "60000"];
    let mut first = vec![a.as_str()];
    first.extend_from_slice(&full_options);
    first.extend_from_slice(&["ABSOLUTE", "120000", "LIMIT", "5"]);
    assert_eq!(query_value(con, "QSESS.SET", &first), Value::Int(1));
    query_value(con, "QSESS.SET", &[&a, "XX", "DATA", "cart2"]);
    // Distinct creation times, so that LIMIT's "oldest first" is a, then b.
    wait_for_the_next_server_millisecond(con);
    query_value(con, "QSESS.SET", &[&b, "NX", "USER", "alice", "LIMIT", "5"]);
    wait_for_the_next_server_millisecond(con);
    query_value(con, "QSESS.SET", &[&c, "USER", "alice", "LIMIT", "2"]); // revokes a (why=limit)
    query_value(con, "QSESS.SET", &[&d, "ANON", "DATA", "anonymous"]);
    for _ in 0..3 {
        let Value::BulkString(minted) = query_value(con, "QSESS.NEW", &["USER", "bob", "DATA", "q", "LIMIT", "10"])
        else {
            panic!("NEW did not reply an id");
        };
        sids.push(String::from_utf8(minted).unwrap());
    }
    let Value::BulkString(anonymous) = query_value(con, "QSESS.NEW", &["ANON"]) else { panic!("NEW failed") };
    sids.push(String::from_utf8(anonymous).unwrap());

    wait_for_the_next_server_millisecond(con);
    assert!(matches!(query_value(con, "QSESS.GET", &[&b]), Value::Array(_)));
    query_value(con, "QSESS.GET", &[&b, "NOTOUCH"]);
    query_value(con, "QSESS.PEEK", &[&b]);
    query_value(con, "QSESS.TOUCH", &[&c]);
    assert!(matches!(query_value(con, "QSESS.ROTATE", &[&b, &e]), Value::Int(_)));
    assert_eq!(query_value(con, "QSESS.DEL", &[&d, &a]), Value::Int(1));
    let handle_of_c = Handle::from_session_id(c.as_bytes()).to_string();
    assert_eq!(query_value(con, "QSESS.REVOKE", &["alice", &handle_of_c]), Value::Int(1));
    query_value(con, "QSESS.SET", &[&f, "USER", "bob"]);
    query_value(con, "QSESS.SET", &[&g, "USER", "bob"]);
    query_value(con, "QSESS.REVOKEUSER", &["bob", "EXCEPT", &g]);
    query_value(con, "QSESS.BYUSER", &["alice", "WITHMETA"]);
    query_value(con, "QSESS.BYUSER", &["bob"]);
    query_value(con, "QSESS.SET", &[&h, "USER", "carol", "LIMIT", "1"]);
    query_value(con, "QSESS.SET", &[&i, "USER", "carol", "LIMIT", "1"]); // revokes h (why=limit)
                                                                         // Refusals that are handed raw ids.
    for (command, args) in
        [("QSESS.SET", vec![d.as_str(), "DATA", "x"]), ("QSESS.ROTATE", vec![&e, &e]), ("QSESS.ROTATE", vec![&g, &i])]
    {
        assert!(redis::cmd(command).arg(&args).query::<Value>(con).is_err(), "{command} must be refused");
    }
    sids
}

#[test]
fn no_raw_session_id_is_stored_logged_or_monitored() {
    let server = RedisServer::builder()
        .module_arg("touch-granularity-ms", 0)
        .server_arg("--slowlog-log-slower-than", "0")
        .server_arg("--slowlog-max-len", "100000")
        .start();
    let monitor = start_monitor_collecting_until_marker(server.port());
    let mut con = server.connection();
    let sids = run_workload_touching_every_command(&mut con);
    let fragments = forbidden_fragments_of_session_ids(&sids);
    let _: String = redis::cmd("ECHO").arg(MONITOR_END_MARKER).query(&mut con).unwrap();

    let keys = every_key_via_scan(&mut con);
    let kinds: Vec<String> = keys.iter().map(|key| redis::cmd("TYPE").arg(key).query(&mut con).unwrap()).collect();
    for expected in ["string", "zset", "stream"] {
        assert!(kinds.iter().any(|kind| kind == expected), "no {expected} key among {kinds:?}: workload too small");
    }
    let tombstones = keys.iter().filter(|key| key.starts_with(tombstone_key_prefix(0).as_bytes())).count();
    assert!(tombstones >= 5, "only {tombstones} tombstones: the workload did not end sessions");
    for (key, kind) in keys.iter().zip(&kinds) {
        assert_no_fragment_in("a key name", key, &fragments);
        let value: Value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(key).query(&mut con).unwrap(),
            "zset" => redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES").query(&mut con).unwrap(),
            "stream" => redis::cmd("XRANGE").arg(key).arg("-").arg("+").query(&mut con).unwrap(),
            other => panic!("unexpected key type {other} at {}", String::from_utf8_lossy(key)),
        };
        let mut bytes = Vec::new();
        flatten_reply_bytes(&value, &mut bytes);
        let dump: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut con).unwrap();
        bytes.extend_from_slice(&dump);
        assert_no_fragment_in(&format!("the {kind} at {}", String::from_utf8_lossy(key)), &bytes, &fragments);
    }

    let slowlog: Value = redis::cmd("SLOWLOG").arg("GET").arg(100_000).query(&mut con).unwrap();
    let mut slowlog_bytes = Vec::new();
    flatten_reply_bytes(&slowlog, &mut slowlog_bytes);
    let lowercase = String::from_utf8_lossy(&slowlog_bytes).to_lowercase();
    assert!(lowercase.contains("qsess.byuser"), "SLOWLOG records nothing at all: {lowercase}");
    assert_no_fragment_in("SLOWLOG", &slowlog_bytes, &fragments);

    let monitored = monitor.join().expect("MONITOR reader");
    assert!(String::from_utf8_lossy(&monitored).to_lowercase().contains("qsess.byuser"), "MONITOR saw nothing");
    assert_no_fragment_in("MONITOR output", &monitored, &fragments);

    let info: String = redis::cmd("INFO").arg("everything").query(&mut con).unwrap();
    assert_no_fragment_in("INFO everything", info.as_bytes(), &fragments);
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
    assert_no_fragment_in("CLIENT LIST", clients.as_bytes(), &fragments);
    assert_no_fragment_in("the server log", server.log().as_bytes(), &fragments);
}
