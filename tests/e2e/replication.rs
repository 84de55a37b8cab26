//! Replication and persistence: every write command reaches replicas (with or without the module) and
//! the AOF as MULTI/EXEC blocks of plain, deterministic commands, leaving identical data behind.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::support::commands::{every_key_via_scan, send_command_expecting_success, send_command_words};
use crate::support::server_clock::{server_clock_ms, wait_for_the_next_server_millisecond};
use crate::support::session_keys::{change_stream_key, session_key, tombstone_key_prefix};
use qsess_record::{ChangeRecord, Handle, UserRevocation};
use qsess_tests::{eventually, RedisServer};
use redis::{Connection, Value};

/// Runs every write command (and its options) against a primary started with touch-granularity-ms 0;
/// returns every session id and user id it used, live or ended.
fn run_workload_of_every_write_command(con: &mut Connection) -> (Vec<String>, Vec<String>) {
    let mut session_ids: Vec<String> = [
        "alice-1", "alice-2", "alice-2b", "anon-1", "bob-1", "bob-2", "bob-3", "carol-1", "carol-2", "dave-1",
        "moving-1",
    ]
    .map(String::from)
    .to_vec();
    let full = ["QSESS.SET", "alice-1", "USER", "alice", "DATA", "d1", "IP", "192.0.2.1", "UA", "ua/1"];
    send_command_expecting_success(con, &full);
    send_command_expecting_success(con, &["QSESS.SET", "alice-1", "XX", "DATA", "d2", "IDLE", "600000"]);
    send_command_expecting_success(con, &["QSESS.SET", "alice-2", "NX", "USER", "alice", "ABSOLUTE", "7200000"]);
    let minted_for_alice = send_command_expecting_success(con, &["QSESS.NEW", "USER", "alice", "DATA", "n"]);
    let minted_anonymous = send_command_expecting_success(con, &["QSESS.NEW", "ANON", "IDLE", "900000"]);
    for minted in [minted_for_alice, minted_anonymous] {
        session_ids.push(redis::from_redis_value(minted).unwrap());
    }
    send_command_expecting_success(con, &["QSESS.SET", "anon-1", "ANON"]);
    wait_for_the_next_server_millisecond(con);
    send_command_expecting_success(con, &["QSESS.GET", "alice-1"]);
    send_command_expecting_success(con, &["QSESS.TOUCH", "alice-2"]);
    send_command_expecting_success(con, &["QSESS.ROTATE", "alice-2", "alice-2b"]);
    for bob in ["bob-1", "bob-2"] {
        send_command_expecting_success(con, &["QSESS.SET", bob, "USER", "bob"]);
        wait_for_the_next_server_millisecond(con);
    }
    send_command_expecting_success(con, &["QSESS.SET", "bob-3", "USER", "bob", "LIMIT", "2"]);
    send_command_expecting_success(con, &["QSESS.DEL", "anon-1", "never-existed"]);
    let minted_handle = Handle::from_session_id(session_ids[11].as_bytes()).to_string();
    send_command_expecting_success(con, &["QSESS.REVOKE", "alice", &minted_handle]);
    send_command_expecting_success(con, &["QSESS.SET", "carol-1", "USER", "carol"]);
    send_command_expecting_success(con, &["QSESS.SET", "carol-2", "USER", "carol"]);
    send_command_expecting_success(con, &["QSESS.REVOKEUSER", "carol", "EXCEPT", "carol-1"]);
    send_command_expecting_success(con, &["QSESS.SET", "dave-1", "USER", "dave"]);
    send_command_expecting_success(con, &["QSESS.REVOKEUSER", "dave"]);
    send_command_expecting_success(con, &["QSESS.SET", "moving-1", "USER", "alice"]);
    send_command_expecting_success(con, &["QSESS.SET", "moving-1", "USER", "erin"]);
    let user_ids = ["alice", "bob", "carol", "dave", "erin"].map(String::from).to_vec();
    (session_ids, user_ids)
}

/// The ops and delete reasons in the change stream, to check that the workload exercised everything.
fn change_kinds_in_stream(con: &mut Connection) -> Vec<String> {
    let entries: Vec<(String, Vec<Vec<u8>>)> =
        redis::cmd("XRANGE").arg(change_stream_key(0)).arg("-").arg("+").query(con).unwrap();
    let mut kinds = Vec::new();
    for (id, flat_fields) in &entries {
        let pairs: Vec<(&[u8], &[u8])> =
            flat_fields.chunks_exact(2).map(|pair| (pair[0].as_slice(), pair[1].as_slice())).collect();
        if UserRevocation::parse(&pairs).is_some() {
            kinds.push(UserRevocation::OP.to_owned());
            continue;
        }
        kinds.push(match ChangeRecord::parse(&pairs).unwrap_or_else(|e| panic!("entry {id}: {e}")) {
            ChangeRecord::Delete { reason, .. } => format!("del/{}", reason.as_str()),
            other => other.op().as_str().to_owned(),
        });
    }
    kinds.sort();
    kinds.dedup();
    kinds
}

/// One key's type-specific contents and absolute expiry (PEXPIRETIME).
#[derive(Debug, Clone, PartialEq)]
struct KeyContentsAndExpiry {
    contents: Value,
    pexpiretime: i64,
}

fn snapshot_of_every_key(con: &mut Connection) -> BTreeMap<String, KeyContentsAndExpiry> {
    let mut snapshot = BTreeMap::new();
    for key in every_key_via_scan(con) {
        let kind: String = redis::cmd("TYPE").arg(&key).query(con).unwrap();
        let contents: Value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).query(con).unwrap(),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).arg("WITHSCORES").query(con).unwrap(),
            "stream" => {
                let entries: Value = redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query(con).unwrap();
                let info: Vec<Value> = redis::cmd("XINFO").arg("STREAM").arg(&key).query(con).unwrap();
                let wanted = ["length", "last-generated-id", "entries-added", "max-deleted-entry-id"];
                let metadata = info
                    .chunks_exact(2)
                    .filter(|pair| wanted.iter().any(|name| pair[0] == Value::SimpleString((*name).into())))
                    .flat_map(|pair| pair.to_vec());
                Value::Array(vec![entries, Value::Array(metadata.collect())])
            }
            other => panic!("unexpected key type {other} for {}", String::from_utf8_lossy(&key)),
        };
        let pexpiretime: i64 = redis::cmd("PEXPIRETIME").arg(&key).query(con).unwrap();
        snapshot.insert(String::from_utf8_lossy(&key).into_owned(), KeyContentsAndExpiry { contents, pexpiretime });
    }
    snapshot
}

fn assert_replica_holds_exactly_the_primary_dataset(primary_con: &mut Connection, replica_con: &mut Connection) {
    let on_primary = snapshot_of_every_key(primary_con);
    let on_replica = snapshot_of_every_key(replica_con);
    assert!(on_primary.len() >= 15, "the workload left too few keys to compare: {:?}", on_primary.keys());
    assert_eq!(on_replica.keys().collect::<Vec<_>>(), on_primary.keys().collect::<Vec<_>>(), "key sets differ");
    for (key, primary_value) in &on_primary {
        assert_eq!(&on_replica[key], primary_value, "key {key} differs");
    }
    let primary_digest: String = redis::cmd("DEBUG").arg("DIGEST").query(primary_con).unwrap();
    let replica_digest: String = redis::cmd("DEBUG").arg("DIGEST").query(replica_con).unwrap();
    assert_eq!(replica_digest, primary_digest);
    assert!(on_primary.keys().any(|key| key.starts_with(&tombstone_key_prefix(0))), "workload left no tombstones");
    let without_expiry: Vec<&String> =
        on_primary.iter().filter(|(_, value)| value.pexpiretime < 0).map(|(key, _)| key).collect();
    assert_eq!(without_expiry, [&change_stream_key(0)], "only the change stream may live forever");
}

#[test]
fn replica_with_the_module_ends_up_identical_and_answers_reads_alike() {
    let primary = RedisServer::builder().module_arg("touch-granularity-ms", 0).start();
    let replica = RedisServer::builder().module_arg("touch-granularity-ms", 0).replica_of(&primary).start();
    replica.wait_for_sync();
    let mut primary_con = primary.connection();
    let (session_ids, user_ids) = run_workload_of_every_write_command(&mut primary_con);
    let kinds = change_kinds_in_stream(&mut primary_con);
    assert_eq!(kinds, ["del/limit", "del/logout", "del/revoke", "del/rotate", "revokeuser", "set", "touch"]);
    replica.wait_caught_up(&primary);
    let mut replica_con = replica.connection();

    assert_replica_holds_exactly_the_primary_dataset(&mut primary_con, &mut replica_con);
    for session_id in &session_ids {
        let on_primary = send_command_expecting_success(&mut primary_con, &["QSESS.PEEK", session_id]);
        let on_replica = send_command_expecting_success(&mut replica_con, &["QSESS.PEEK", session_id]);
        assert_eq!(on_replica, on_primary, "PEEK {session_id}");
    }
    for user_id in &user_ids {
        for words in [&["QSESS.BYUSER", user_id][..], &["QSESS.BYUSER", user_id, "WITHMETA"]] {
            let on_primary = send_command_expecting_success(&mut primary_con, words);
            assert_eq!(send_command_expecting_success(&mut replica_con, words), on_primary, "{words:?}");
        }
    }
    let refused: [&[&str]; 8] = [
        &["QSESS.SET", "alice-1", "DATA", "x"],
        &["QSESS.GET", "alice-1"],
        &["QSESS.DEL", "alice-1"],
        &["QSESS.NEW"],
        &["QSESS.TOUCH", "alice-1"],
        &["QSESS.ROTATE", "alice-1", "alice-9"],
        &["QSESS.REVOKEUSER", "alice"],
        &["QSESS.REVOKE", "alice", "ungWv48Bz-pBQUDeXa4iIw"],
    ];
    for words in refused {
        let error = send_command_words(&mut replica_con, words).expect_err("replica must refuse writes");
        assert_eq!(error.code(), Some("READONLY"), "{words:?}: {error}");
    }
}

#[test]
fn replica_without_the_module_ends_up_identical() {
    let primary = RedisServer::builder().module_arg("touch-granularity-ms", 0).start();
    let replica = RedisServer::builder().without_module().replica_of(&primary).start();
    replica.wait_for_sync();
    let mut primary_con = primary.connection();
    run_workload_of_every_write_command(&mut primary_con);
    replica.wait_caught_up(&primary);
    let mut replica_con = replica.connection();

    let modules: Vec<Value> = redis::cmd("MODULE").arg("LIST").query(&mut replica_con).unwrap();
    assert!(modules.is_empty(), "the replica should run without qsess: {modules:?}");
    assert_replica_holds_exactly_the_primary_dataset(&mut primary_con, &mut replica_con);
}

/// Splits an AOF (a sequence of RESP arrays of bulk strings) into commands.
fn commands_in_append_only_file(bytes: &[u8]) -> Vec<Vec<Vec<u8>>> {
    fn line(bytes: &[u8], at: &mut usize) -> usize {
        let end = *at + bytes[*at..].windows(2).position(|w| w == b"\r\n").expect("truncated AOF line");
        let number = std::str::from_utf8(&bytes[*at + 1..end]).unwrap().parse().unwrap();
        *at = end + 2;
        number
    }
    let mut commands = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        assert_eq!(bytes[at], b'*', "AOF command does not start with '*' at byte {at}");
        let count = line(bytes, &mut at);
        let mut words = Vec::with_capacity(count);
        for _ in 0..count {
            assert_eq!(bytes[at], b'$', "AOF argument does not start with '$' at byte {at}");
            let length = line(bytes, &mut at);
            words.push(bytes[at..at + length].to_vec());
            at += length + 2;
        }
        commands.push(words);
    }
    commands
}

fn incremental_aof_commands(server_dir: &Path) -> Vec<Vec<Vec<u8>>> {
    let mut files: Vec<_> = fs::read_dir(server_dir.join("appendonlydir"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".incr.aof"))
        .collect();
    files.sort();
    files.iter().flat_map(|path| commands_in_append_only_file(&fs::read(path).unwrap())).collect()
}

fn all_bytes_under(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            bytes.extend(all_bytes_under(&path));
        } else {
            bytes.extend(fs::read(&path).unwrap());
        }
    }
    bytes
}

fn absolute_ms_argument(word: &[u8], not_before_ms: u64, what: &str) -> u64 {
    let text = std::str::from_utf8(word).unwrap();
    let ms: u64 = text.parse().unwrap_or_else(|_| panic!("{what}: '{text}' is not an absolute time in ms"));
    assert!(ms >= not_before_ms, "{what}: {ms} is not an absolute time after {not_before_ms}");
    ms
}

#[test]
fn aof_holds_multi_exec_blocks_of_plain_deterministic_commands_without_raw_ids() {
    let server = RedisServer::builder().module_arg("touch-granularity-ms", 0).server_arg("--appendonly", "yes").start();
    let mut con = server.connection();
    let start_ms = server_clock_ms(&mut con) as u64;
    let secret = |n: u32| format!("raw-secret-session-id-{n}-do-not-persist");
    send_command_expecting_success(&mut con, &["QSESS.SET", &secret(1), "USER", "42", "DATA", "hello"]);
    wait_for_the_next_server_millisecond(&mut con);
    send_command_expecting_success(&mut con, &["QSESS.GET", &secret(1)]);
    let minted: String =
        redis::from_redis_value(send_command_expecting_success(&mut con, &["QSESS.NEW", "USER", "42"])).unwrap();
    send_command_expecting_success(&mut con, &["QSESS.ROTATE", &secret(1), &secret(2)]);
    send_command_expecting_success(&mut con, &["QSESS.SET", &secret(3), "ANON", "IDLE", "600000"]);
    send_command_expecting_success(&mut con, &["QSESS.DEL", &secret(3)]);
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.SET", &secret(3), "XX"]), Value::Nil);
    send_command_expecting_success(&mut con, &["QSESS.SET", &secret(4), "USER", "42", "LIMIT", "2"]);
    send_command_expecting_success(&mut con, &["QSESS.REVOKEUSER", "42"]);
    send_command_expecting_success(&mut con, &["QSESS.PEEK", &secret(4)]);
    send_command_expecting_success(&mut con, &["QSESS.SET", &secret(5), "ANON"]);
    let writing_commands = 9;

    let commands = eventually(Duration::from_secs(10), "the AOF to hold every write", || {
        let commands = incremental_aof_commands(server.dir());
        let blocks = commands.iter().filter(|words| words[0].eq_ignore_ascii_case(b"EXEC")).count();
        if blocks == writing_commands {
            Ok(commands)
        } else {
            Err(format!("{blocks} EXEC in the AOF, expected {writing_commands}"))
        }
    });

    let mut inside_block = false;
    let mut xadd_ids = Vec::new();
    let mut last_record_expiry = None;
    let record_key_of_five = session_key(0, &Handle::from_session_id(secret(5).as_bytes()));
    for words in &commands {
        let name = String::from_utf8_lossy(&words[0]).to_ascii_uppercase();
        match (name.as_str(), inside_block) {
            // Redis selects the database before MULTI, Valkey inside the block: either way database 0.
            ("SELECT", _) => assert_eq!(words.get(1).map(Vec::as_slice), Some(&b"0"[..]), "{words:?}"),
            ("MULTI", false) => inside_block = true,
            ("EXEC", true) => inside_block = false,
            ("SET", true) => {
                assert_eq!(words.len(), 5, "SET must be SET key value PXAT ms: {words:?}");
                assert!(words[3].eq_ignore_ascii_case(b"PXAT"), "SET without PXAT: {words:?}");
                let expiry = absolute_ms_argument(&words[4], start_ms, "SET PXAT");
                if words[1] == record_key_of_five.as_bytes() {
                    last_record_expiry = Some(expiry);
                }
            }
            ("PEXPIREAT", true) => _ = absolute_ms_argument(&words[2], start_ms, "PEXPIREAT"),
            ("XADD", true) => {
                let id = String::from_utf8(words[2].clone()).unwrap();
                let (ms, seq) = id.split_once('-').unwrap_or_else(|| panic!("XADD id '{id}' is not explicit"));
                assert!(ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok(), "XADD id '{id}' is not explicit");
                xadd_ids.push(id);
            }
            ("ZADD" | "ZREM" | "ZREMRANGEBYSCORE" | "DEL", true) => {}
            _ => panic!("unexpected {name} (inside a MULTI block: {inside_block}) in the AOF: {words:?}"),
        }
    }
    assert!(!inside_block, "the AOF ends inside a MULTI block");

    let stream_ids: Vec<String> = redis::cmd("XRANGE")
        .arg(change_stream_key(0))
        .arg("-")
        .arg("+")
        .query::<Vec<(String, Vec<Vec<u8>>)>>(&mut con)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(xadd_ids, stream_ids, "the AOF's stream ids differ from the stream's");
    let pexpiretime: i64 = redis::cmd("PEXPIRETIME").arg(&record_key_of_five).query(&mut con).unwrap();
    assert_eq!(last_record_expiry, Some(pexpiretime as u64));

    let persisted = all_bytes_under(&server.dir().join("appendonlydir"));
    for raw_id in (1..=5).map(secret).chain([minted]) {
        let found = persisted.windows(raw_id.len()).any(|window| window == raw_id.as_bytes());
        assert!(!found, "the raw session id {raw_id} was persisted");
    }
}
