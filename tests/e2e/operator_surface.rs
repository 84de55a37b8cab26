//! What operators see and control: INFO qsess, CONFIG qsess.*, module arguments, MODULE UNLOAD,
//! COMMAND INFO/GETKEYS and ACLs.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use crate::support::commands::{send_command_expecting_success, send_command_words};
use crate::support::server_clock::wait_for_the_next_server_millisecond;
use crate::support::session_keys::{change_stream_key, tombstone_key};
use qsess_record::Handle;
use qsess_tests::{RedisServer, ServerName};
use redis::{Connection, Value};

fn info_qsess_fields(con: &mut Connection) -> HashMap<String, String> {
    let info: String = redis::cmd("INFO").arg("qsess").query(con).unwrap();
    info.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

fn info_counter(fields: &HashMap<String, String>, name: &str) -> u64 {
    fields.get(name).unwrap_or_else(|| panic!("INFO qsess has no {name}: {fields:?}")).parse().unwrap()
}

fn change_stream_length(con: &mut Connection) -> u64 {
    redis::cmd("XLEN").arg(change_stream_key(0)).query(con).unwrap()
}

fn qsess_config(con: &mut Connection) -> HashMap<String, String> {
    redis::cmd("CONFIG").arg("GET").arg("qsess.*").query(con).unwrap()
}

/// A field of a QSESS.PEEK reply read over RESP2 (a flat field/value array).
fn peek_field(con: &mut Connection, session_id: &str, name: &str) -> Value {
    let flat: Vec<Value> = redis::cmd("QSESS.PEEK").arg(session_id).query(con).unwrap();
    let pair = flat.chunks_exact(2).find(|pair| pair[0] == Value::BulkString(name.as_bytes().to_vec()));
    pair.unwrap_or_else(|| panic!("PEEK {session_id} has no {name}: {flat:?}"))[1].clone()
}

fn panic_message_of_failed_start(builder: qsess_tests::RedisServerBuilder) -> String {
    let payload = panic::catch_unwind(AssertUnwindSafe(|| builder.start())).expect_err("the server must not start");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|text| (*text).to_owned()))
        .expect("a string panic message")
}

#[test]
fn info_qsess_counters_follow_what_commands_did() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let initial = info_qsess_fields(&mut con);
    let every_field = [
        "qsess_commands",
        "qsess_sessions_created",
        "qsess_sessions_updated",
        "qsess_hits",
        "qsess_misses",
        "qsess_touches",
        "qsess_sessions_deleted",
        "qsess_revocations",
        "qsess_rotations",
        "qsess_rejected_revoked_ids",
        "qsess_restores",
        "qsess_errors",
        "qsess_panics",
        "qsess_buckets",
        "qsess_stream_entries_written",
        "qsess_stream_backlog",
        "qsess_loader_attached",
    ];
    for name in every_field {
        let expected = if name == "qsess_buckets" { 1 } else { 0 };
        assert_eq!(info_counter(&initial, name), expected, "{name} on a fresh server");
    }

    send_command_expecting_success(&mut con, &["QSESS.SET", "s1", "USER", "42"]);
    send_command_expecting_success(&mut con, &["QSESS.SET", "s1", "DATA", "x"]);
    send_command_expecting_success(&mut con, &["QSESS.GET", "s1"]);
    send_command_expecting_success(&mut con, &["QSESS.GET", "missing"]);
    send_command_expecting_success(&mut con, &["QSESS.SET", "s2", "USER", "42"]);
    send_command_expecting_success(&mut con, &["QSESS.SET", "s3", "USER", "42"]);
    send_command_expecting_success(&mut con, &["QSESS.REVOKEUSER", "42", "EXCEPT", "s1"]);
    send_command_expecting_success(&mut con, &["QSESS.DEL", "s1"]);
    send_command_words(&mut con, &["QSESS.SET", "s1"]).expect_err("a logged-out id is refused");
    send_command_expecting_success(&mut con, &["QSESS.SET", "s4", "ANON"]);
    send_command_expecting_success(&mut con, &["QSESS.ROTATE", "s4", "s5"]);
    send_command_expecting_success(&mut con, &["CONFIG", "SET", "qsess.touch-granularity-ms", "0"]);
    wait_for_the_next_server_millisecond(&mut con);
    send_command_expecting_success(&mut con, &["QSESS.GET", "s5"]);

    let after = info_qsess_fields(&mut con);
    let expected = [
        ("qsess_commands", 12),
        ("qsess_sessions_created", 4),
        ("qsess_sessions_updated", 1),
        ("qsess_hits", 2),
        ("qsess_misses", 1),
        ("qsess_touches", 1),
        ("qsess_sessions_deleted", 3),
        ("qsess_revocations", 2),
        ("qsess_rotations", 1),
        ("qsess_rejected_revoked_ids", 1),
        ("qsess_errors", 1),
        ("qsess_panics", 0),
        // 11 change records and the revokeuser entry.
        ("qsess_stream_entries_written", 12),
    ];
    for (name, value) in expected {
        assert_eq!(info_counter(&after, name), value, "{name}");
    }
    assert_eq!(info_counter(&after, "qsess_stream_backlog"), change_stream_length(&mut con));
    assert_eq!(change_stream_length(&mut con), 12);

    send_command_expecting_success(&mut con, &["XTRIM", &change_stream_key(0), "MAXLEN", "4"]);
    let trimmed = info_qsess_fields(&mut con);
    assert_eq!(info_counter(&trimmed, "qsess_stream_backlog"), 4, "backlog follows XLEN after a trim");
    assert_eq!(info_counter(&trimmed, "qsess_stream_entries_written"), 12, "written entries never go down");
}

#[test]
fn config_get_lists_every_setting_with_its_default() {
    let server = RedisServer::builder().start();
    let config = qsess_config(&mut server.connection());
    let expected: HashMap<String, String> = [
        ("qsess.buckets", "1"),
        ("qsess.prefix", "qs"),
        ("qsess.idle-timeout-ms", "1800000"),
        ("qsess.absolute-timeout-ms", "86400000"),
        ("qsess.touch-granularity-ms", "60000"),
        ("qsess.tombstone-ttl-ms", "86400000"),
        ("qsess.max-data-bytes", "65536"),
        ("qsess.miss-timeout-ms", "250"),
        ("qsess.negative-cache-ms", "5000"),
        ("qsess.min-session-id-bytes", "1"),
        ("qsess.max-sessions-per-user", "500"),
        ("qsess.ip-mode", "full"),
        ("qsess.ua-mode", "full"),
        ("qsess.geoip-db", ""),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .into();
    assert_eq!(config, expected);
}

#[test]
fn config_set_changes_mutable_settings_and_refuses_bad_or_immutable_ones() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    assert_eq!(
        send_command_expecting_success(&mut con, &["CONFIG", "SET", "qsess.idle-timeout-ms", "5000"]),
        Value::Okay
    );
    send_command_expecting_success(&mut con, &["QSESS.SET", "after-config", "USER", "42"]);
    assert_eq!(peek_field(&mut con, "after-config", "idle"), Value::Int(5000));
    assert_eq!(send_command_expecting_success(&mut con, &["CONFIG", "SET", "qsess.ip-mode", "truncated"]), Value::Okay);
    send_command_expecting_success(&mut con, &["QSESS.SET", "truncated-ip", "IP", "203.0.113.99"]);
    assert_eq!(peek_field(&mut con, "truncated-ip", "ip"), Value::BulkString(b"203.0.113.0".to_vec()));
    let before = qsess_config(&mut con);

    let refusals = [
        ("qsess.tombstone-ttl-ms", "10", "between 1000 and 2592000000"),
        ("qsess.idle-timeout-ms", "-1", "qsess.idle-timeout-ms"),
        ("qsess.buckets", "2", "immutable"),
        ("qsess.prefix", "other", "immutable"),
        ("qsess.ip-mode", "bogus", "full, truncated, none"),
        ("qsess.ua-mode", "partial", "full, none"),
    ];
    for (name, value, expected_text) in refusals {
        let error = send_command_words(&mut con, &["CONFIG", "SET", name, value]).expect_err(name);
        assert!(error.to_string().contains(expected_text), "CONFIG SET {name} {value}: {error}");
    }
    assert_eq!(qsess_config(&mut con), before, "a refused CONFIG SET changed something");
}

#[test]
fn module_arguments_at_load_set_prefix_and_idle_timeout() {
    let server = RedisServer::builder()
        .module_arg("prefix", "myapp")
        .module_arg("qsess.idle-timeout-ms", 5000)
        .server_arg("--qsess.touch-granularity-ms", 1234)
        .start();
    let mut con = server.connection();
    send_command_expecting_success(&mut con, &["QSESS.SET", "prefixed", "USER", "42"]);

    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    keys.sort();
    let handle = Handle::from_session_id(b"prefixed");
    let mut expected = vec![format!("myapp:{{0}}:s:{handle}"), "myapp:{0}:u:42".to_owned(), "myapp:{0}:chg".to_owned()];
    expected.sort();
    assert_eq!(keys, expected);

    let Value::Int(seen) = peek_field(&mut con, "prefixed", "seen") else { panic!("seen is not an integer") };
    assert_eq!(peek_field(&mut con, "prefixed", "idle"), Value::Int(5000));
    assert_eq!(peek_field(&mut con, "prefixed", "expires"), Value::Int(seen + 5000));
    let ttl: i64 = redis::cmd("PTTL").arg(&expected[1]).query(&mut con).unwrap();
    assert!((1..=5000).contains(&ttl), "record PTTL {ttl} does not follow idle-timeout-ms 5000");
    let config = qsess_config(&mut con);
    assert_eq!((config["qsess.prefix"].as_str(), config["qsess.idle-timeout-ms"].as_str()), ("myapp", "5000"));
    assert_eq!(config["qsess.touch-granularity-ms"], "1234", "a qsess.* server option should apply too");
}

#[test]
fn unknown_module_argument_or_bad_value_stops_the_server_from_starting() {
    let failures = [
        (RedisServer::builder().module_arg("idle-timout-ms", 1000), "unknown module argument 'idle-timout-ms'"),
        (RedisServer::builder().module_arg("tombstone-ttl-ms", 5), "invalid qsess.tombstone-ttl-ms '5'"),
        (RedisServer::builder().module_arg("ip-mode", "partial"), "accepted: full, truncated, none"),
        (RedisServer::builder().module_arg("prefix", "a{b"), "braces"),
    ];
    for (builder, expected_text) in failures {
        let message = panic_message_of_failed_start(builder);
        assert!(message.contains("failed to start"), "{message}");
        assert!(message.contains(expected_text), "the log should say '{expected_text}':\n{message}");
    }
}

#[test]
fn module_unload_is_refused_and_the_module_keeps_working() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    send_command_expecting_success(&mut con, &["QSESS.SET", "before-unload", "USER", "42"]);

    let error = send_command_words(&mut con, &["MODULE", "UNLOAD", "qsess"]).expect_err("unload must be refused");
    assert!(error.to_string().contains("unloading"), "{error}");

    let modules = format!("{:?}", send_command_expecting_success(&mut con, &["MODULE", "LIST"]));
    assert!(modules.contains("qsess"), "qsess is no longer loaded: {modules}");
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.SET", "after-unload", "USER", "42"]), Value::Int(1));
    assert_ne!(send_command_expecting_success(&mut con, &["QSESS.PEEK", "before-unload"]), Value::Nil);
    let handles: Vec<String> = redis::cmd("QSESS.BYUSER").arg("42").query(&mut con).unwrap();
    assert_eq!(handles.len(), 2);
    assert!(server.log().contains("MODULE UNLOAD refused"), "the log should explain the refusal");
}

/// The arity and flags of a command, from COMMAND INFO.
fn arity_and_flags_from_command_info(con: &mut Connection, name: &str) -> (i64, Vec<String>) {
    let reply = send_command_expecting_success(con, &["COMMAND", "INFO", name]);
    let Value::Array(commands) = reply else { panic!("COMMAND INFO answered {reply:?}") };
    let Some(Value::Array(info)) = commands.first() else { panic!("COMMAND INFO {name} answered {commands:?}") };
    let Value::Int(arity) = info[1] else { panic!("no arity in {info:?}") };
    let (Value::Array(flags) | Value::Set(flags)) = &info[2] else { panic!("no flags in {info:?}") };
    let flags = flags.iter().map(|flag| redis::from_redis_value_ref::<String>(flag).unwrap()).collect();
    (arity, flags)
}

#[test]
fn command_info_shows_the_declared_flags() {
    let server = RedisServer::builder().start();
    // Valkey 8.1 renamed the slow log to the command log, and `no-slowlog` shows under the new name.
    let skip_slowlog = match server.server_name() {
        ServerName::Redis => "skip_slowlog",
        ServerName::Valkey => "skip_commandlog",
    };
    let mut con = server.connection();
    let (arity, flags) = arity_and_flags_from_command_info(&mut con, "qsess.set");
    assert_eq!(arity, -2);
    for flag in ["write", "denyoom", "skip_monitor", skip_slowlog] {
        assert!(flags.iter().any(|f| f == flag), "qsess.set lacks {flag}: {flags:?}");
    }
    assert!(!flags.iter().any(|f| f == "readonly"), "{flags:?}");
    // PEEK and BYUSER write nothing, yet are not `readonly`: client tracking remembers the declared
    // (routing) argument of readonly commands, a raw session id or a uid whose cached answer nothing
    // would invalidate. Replicas refuse only `write` commands, so both still run there.
    for name in ["qsess.peek", "qsess.byuser"] {
        let (_, flags) = arity_and_flags_from_command_info(&mut con, name);
        assert!(!flags.iter().any(|f| f == "write" || f == "readonly"), "{name}: {flags:?}");
    }
    let (arity, flags) = arity_and_flags_from_command_info(&mut con, "qsess.peek");
    assert_eq!(arity, 2);
    for flag in ["fast", "skip_monitor", skip_slowlog] {
        assert!(flags.iter().any(|f| f == flag), "qsess.peek lacks {flag}: {flags:?}");
    }
}

#[test]
fn commands_declare_their_routing_argument_as_not_key() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let routed_by = [
        ("qsess.set", 1),
        ("qsess.new", 2),
        ("qsess.get", 1),
        ("qsess.peek", 1),
        ("qsess.touch", 1),
        ("qsess.rotate", 1),
        ("qsess.del", 1),
        ("qsess.byuser", 1),
        ("qsess.revokeuser", 1),
        ("qsess.revoke", 1),
        ("qsess.restore", 1),
        ("qsess.restoreuser", 1),
        ("qsess.loader", 0),
        ("qsess.streams", 0),
    ];
    for (name, position) in routed_by {
        let reply = send_command_expecting_success(&mut con, &["COMMAND", "INFO", name]);
        let Value::Array(commands) = reply else { panic!("COMMAND INFO answered {reply:?}") };
        let Some(Value::Array(info)) = commands.first() else { panic!("COMMAND INFO {name}: {commands:?}") };
        // First key, last key, step: what cluster clients (redis-py, redis-cli -c) route by.
        let step = i64::from(position != 0);
        let expected = [Value::Int(position), Value::Int(position), Value::Int(step)];
        assert_eq!(info.get(3..6), Some(&expected[..]), "{name}: {info:?}");
        if position != 0 {
            let specs = format!("{:?}", info.get(8));
            assert!(specs.contains("not_key"), "{name}: the routing argument must be NOT_KEY: {specs}");
        }
    }
    // NOT_KEY: Redis's key patterns and COMMAND GETKEYS skip the argument, so ACL LOG never sees a raw
    // id; qsess checks the keys it derives (access_control.rs).
    let error = send_command_words(&mut con, &["COMMAND", "GETKEYS", "qsess.get", "raw-session-id-0123"])
        .expect_err("ids are not keys to Redis");
    assert!(!error.to_string().contains("raw-session-id"), "{error}");
}

#[test]
fn acl_user_allowed_only_peek_can_peek_but_not_set() {
    let server = RedisServer::builder().start();
    let mut admin = server.connection();
    send_command_expecting_success(&mut admin, &["QSESS.SET", "watched", "USER", "42", "DATA", "d"]);
    let setuser = ["ACL", "SETUSER", "peeker", "on", ">peek-password", "+qsess.peek", "~*"];
    assert_eq!(send_command_expecting_success(&mut admin, &setuser), Value::Okay);

    let mut peeker = server.connection();
    send_command_expecting_success(&mut peeker, &["AUTH", "peeker", "peek-password"]);
    let record = send_command_expecting_success(&mut peeker, &["QSESS.PEEK", "watched"]);
    assert_eq!(record, send_command_expecting_success(&mut admin, &["QSESS.PEEK", "watched"]));
    assert_ne!(record, Value::Nil);
    for words in [&["QSESS.SET", "watched", "DATA", "stolen"][..], &["QSESS.GET", "watched"], &["QSESS.BYUSER", "42"]] {
        let error = send_command_words(&mut peeker, words).expect_err("the ACL must refuse this");
        assert_eq!(error.code(), Some("NOPERM"), "{words:?}: {error}");
    }
    assert_eq!(peek_field(&mut admin, "watched", "data"), Value::BulkString(b"d".to_vec()));
}

/// Commands that carry raw session ids, and one that does not (QSESS.BYUSER) as a positive control.
fn run_commands_carrying_the_raw_id(con: &mut Connection, raw_id: &str) {
    send_command_expecting_success(con, &["QSESS.SET", raw_id, "USER", "42"]);
    send_command_expecting_success(con, &["QSESS.GET", raw_id]);
    send_command_expecting_success(con, &["QSESS.PEEK", raw_id]);
    send_command_expecting_success(con, &["QSESS.TOUCH", raw_id]);
    send_command_expecting_success(con, &["QSESS.REVOKEUSER", "42", "EXCEPT", raw_id]);
    let rotated = format!("{raw_id}-rotated");
    send_command_expecting_success(con, &["QSESS.ROTATE", raw_id, &rotated]);
    send_command_expecting_success(con, &["QSESS.DEL", &rotated]);
    send_command_expecting_success(con, &["QSESS.BYUSER", "visible-user-id"]);
}

#[test]
fn monitor_never_shows_raw_session_ids() {
    let server = RedisServer::builder().start();
    let mut monitor = server.connection();
    monitor.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(send_command_expecting_success(&mut monitor, &["MONITOR"]), Value::Okay);
    let mut con = server.connection();
    run_commands_carrying_the_raw_id(&mut con, "monitored-secret-sid");
    send_command_expecting_success(&mut con, &["ECHO", "monitor-end-marker"]);

    let mut lines = Vec::new();
    while !lines.iter().any(|line: &String| line.contains("monitor-end-marker")) {
        let line = monitor.recv_response().unwrap_or_else(|e| panic!("MONITOR stopped after {lines:?}: {e}"));
        lines.push(format!("{line:?}"));
    }
    assert!(lines.iter().any(|line| line.contains("visible-user-id")), "MONITOR showed nothing: {lines:?}");
    let leaks: Vec<&String> = lines.iter().filter(|line| line.contains("monitored-secret-sid")).collect();
    assert!(leaks.is_empty(), "MONITOR shows raw session ids: {leaks:?}");
}

#[test]
fn slowlog_never_records_raw_session_ids() {
    let server = RedisServer::builder().server_arg("--slowlog-log-slower-than", 0).start();
    let mut con = server.connection();
    send_command_expecting_success(&mut con, &["SLOWLOG", "RESET"]);
    run_commands_carrying_the_raw_id(&mut con, "slowlogged-secret-sid");

    let entries = format!("{:?}", send_command_expecting_success(&mut con, &["SLOWLOG", "GET", "-1"]));
    assert!(entries.contains("visible-user-id"), "the slowlog recorded nothing: {entries}");
    assert!(!entries.contains("slowlogged-secret-sid"), "the slowlog records raw session ids: {entries}");
}

const REVOKED_ID_MESSAGE: &str = "session id was revoked and cannot be used again";

fn tombstone_exists_for(con: &mut Connection, session_id: &str) -> bool {
    let key = tombstone_key(0, &Handle::from_session_id(session_id.as_bytes()));
    redis::cmd("EXISTS").arg(key).query::<i64>(con).unwrap() == 1
}

#[test]
fn logout_and_revocation_keep_working_when_redis_is_out_of_memory() {
    let server = RedisServer::builder().server_arg("--maxmemory-policy", "noeviction").start();
    let mut con = server.connection();
    for (session_id, user_id) in [("full-1", "42"), ("full-2", "42"), ("full-3", "42"), ("full-other", "7")] {
        send_command_expecting_success(&mut con, &["QSESS.SET", session_id, "USER", user_id]);
    }
    send_command_expecting_success(&mut con, &["CONFIG", "SET", "maxmemory", "1"]);

    let growing: [&[&str]; 3] =
        [&["QSESS.SET", "full-new", "USER", "42"], &["QSESS.NEW", "USER", "42"], &["QSESS.ROTATE", "full-1", "full-9"]];
    for words in growing {
        let error = send_command_words(&mut con, words).expect_err("deny-oom command while out of memory");
        assert_eq!(error.code(), Some("OOM"), "{words:?}: {error}");
    }
    assert_ne!(send_command_expecting_success(&mut con, &["QSESS.GET", "full-1"]), Value::Nil, "GET must work");
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.DEL", "full-1"]), Value::Int(1));
    let full_2 = Handle::from_session_id(b"full-2").to_string();
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.REVOKE", "42", &full_2]), Value::Int(1));
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.REVOKEUSER", "7"]), Value::Int(1));

    send_command_expecting_success(&mut con, &["CONFIG", "SET", "maxmemory", "0"]);
    for ended in ["full-1", "full-2", "full-other"] {
        let error = send_command_words(&mut con, &["QSESS.SET", ended]).expect_err(ended);
        assert!(error.to_string().contains(REVOKED_ID_MESSAGE), "{ended} was not tombstoned under OOM: {error}");
    }
    assert_ne!(send_command_expecting_success(&mut con, &["QSESS.PEEK", "full-3"]), Value::Nil);
}

/// README, "Operating it": under `maxmemory` qsess needs `noeviction`. When Redis is full it refuses new
/// writes, but nothing qsess keeps is evicted: a logged-out id stays refused once memory is back.
#[test]
fn revoked_id_stays_refused_when_memory_runs_out_under_noeviction() {
    let server = RedisServer::builder().server_arg("--maxmemory-policy", "noeviction").start();
    let mut con = server.connection();
    send_command_expecting_success(&mut con, &["QSESS.SET", "full-redis-tombstone", "USER", "42"]);
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.DEL", "full-redis-tombstone"]), Value::Int(1));
    assert!(tombstone_exists_for(&mut con, "full-redis-tombstone"));

    send_command_expecting_success(&mut con, &["CONFIG", "SET", "maxmemory", "1"]);
    let refused = send_command_words(&mut con, &["QSESS.SET", "full-redis-tombstone", "USER", "42"]);
    assert!(refused.is_err(), "a write was accepted with no memory left: {refused:?}");
    send_command_expecting_success(&mut con, &["CONFIG", "SET", "maxmemory", "0"]);

    assert!(tombstone_exists_for(&mut con, "full-redis-tombstone"), "noeviction must never drop a tombstone");
    let error = send_command_words(&mut con, &["QSESS.SET", "full-redis-tombstone", "USER", "42"])
        .expect_err("a logged-out session id was accepted again");
    assert!(error.to_string().contains(REVOKED_ID_MESSAGE), "{error}");
}
