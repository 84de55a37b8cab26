//! Raw session ids are bearer tokens and must not reach the mirror either: after a workload using every
//! command with distinctive random ids, neither a `pg_dump` of the database, nor every row of every
//! table as text, nor the daemon's debug log contains any part of one.

use std::fs::File;
use std::io::Read;
use std::process::Command;

use qsess_tests::{shared_cluster, Daemon, RedisServer};
use redis::{Connection, Value};

use crate::support::mirror::{eventually_row, eventually_verify_matches, MIRROR_DEADLINE};
use crate::support::session_keys::handle_of;

fn distinctive_session_id(label: &str) -> String {
    let mut random = [0u8; 24];
    File::open("/dev/urandom").unwrap().read_exact(&mut random).unwrap();
    let hex: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("rawsid-{label}-{hex}")
}

/// Each whole id, its hex encoding (how bytea is dumped), and every 12-character window of its
/// random part (all of it for minted ids).
fn forbidden_fragments(sids: &[String]) -> Vec<String> {
    let mut fragments = Vec::new();
    for sid in sids {
        fragments.push(sid.clone());
        fragments.push(sid.bytes().map(|byte| format!("{byte:02x}")).collect());
        let random = if sid.starts_with("rawsid-") { &sid[sid.len() - 48..] } else { sid.as_str() };
        fragments.extend((0..=random.len() - 12).map(|start| random[start..start + 12].to_owned()));
    }
    fragments
}

fn assert_free_of(what: &str, haystack: &str, fragments: &[String]) {
    for fragment in fragments {
        assert!(
            !haystack.contains(fragment.as_str()),
            "{what} contains raw session id material {fragment:?}:\n{haystack}"
        );
    }
}

fn command(con: &mut Connection, name: &str, args: &[&str]) -> Value {
    redis::cmd(name).arg(args).query(con).unwrap_or_else(|e| panic!("{name} {args:?}: {e}"))
}

#[test]
fn no_raw_session_id_reaches_postgres_or_the_daemon_log() {
    let redis = RedisServer::builder().module_arg("touch-granularity-ms", 0).start();
    let db = shared_cluster().fresh_database();
    let mut daemon = Daemon::builder(redis.url(), db.url()).env("QSESS_LOG", "debug").start();
    let mut con = redis.connection();
    let [main, other, rotated, revoked, limited, anonymous] =
        ["main", "other", "rotated", "revoked", "limited", "anon"].map(distinctive_session_id);
    command(&mut con, "QSESS.SET", &[&main, "DATA", "payload", "USER", "quinn", "IP", "203.0.113.9", "UA", "ua/1"]);
    command(&mut con, "QSESS.SET", &[&other, "DATA", "payload", "USER", "quinn", "IP", "2001:db8::7"]);
    command(&mut con, "QSESS.SET", &[&revoked, "USER", "rae"]);
    command(&mut con, "QSESS.SET", &[&limited, "USER", "sam"]);
    command(&mut con, "QSESS.SET", &[&anonymous, "DATA", "anonymous"]);
    let minted = match command(&mut con, "QSESS.NEW", &["USER", "sam", "DATA", "minted", "LIMIT", "1"]) {
        Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
        other => panic!("QSESS.NEW replied {other:?}"),
    };
    command(&mut con, "QSESS.GET", &[&main]);
    command(&mut con, "QSESS.TOUCH", &[&main]);
    command(&mut con, "QSESS.SET", &[&main, "XX", "DATA", "updated"]);
    command(&mut con, "QSESS.ROTATE", &[&other, &rotated]);
    command(&mut con, "QSESS.REVOKE", &["rae", &handle_of(&revoked)]);
    command(&mut con, "QSESS.BYUSER", &["quinn", "WITHMETA"]);
    command(&mut con, "QSESS.PEEK", &[&main]);
    command(&mut con, "QSESS.DEL", &[&main]);
    command(&mut con, "QSESS.REVOKEUSER", &["quinn"]);

    let sids = vec![main.clone(), other.clone(), rotated.clone(), revoked, limited, anonymous.clone(), minted.clone()];
    let mut client = db.client();
    for sid in &sids {
        eventually_row(&mut client, &handle_of(sid), "every session to be mirrored", |_| Ok(()));
    }
    eventually_row(&mut client, &handle_of(&rotated), "the last change to be mirrored", |row| {
        if row.end_reason.as_deref() == Some("revoke") {
            Ok(())
        } else {
            Err("not revoked yet".to_owned())
        }
    });
    eventually_verify_matches(&redis.url(), &db.url(), MIRROR_DEADLINE);
    let fragments = forbidden_fragments(&sids);

    // Every row of every table of every schema the daemon writes, as text.
    let tables: Vec<String> = client
        .query("select format('%I.%I', schemaname, tablename) from pg_tables where schemaname = 'qsess'", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(tables.len() >= 3, "{tables:?}");
    let mut rows_as_text = String::new();
    for table in &tables {
        for row in client.query(&format!("select t::text from {table} t"), &[]).unwrap() {
            rows_as_text.push_str(&row.get::<_, String>(0));
            rows_as_text.push('\n');
        }
    }
    assert!(rows_as_text.contains(&handle_of(&minted)), "the dump misses the sessions:\n{rows_as_text}");
    assert_free_of("the rows of the qsess tables", &rows_as_text, &fragments);

    let cluster = shared_cluster();
    let dump = Command::new(cluster.bin_dir().join("pg_dump"))
        .args(["--host", "127.0.0.1", "--port", &cluster.port().to_string(), "--username", "postgres"])
        .arg(db.name())
        .output()
        .unwrap_or_else(|e| panic!("cannot run pg_dump: {e}"));
    assert!(dump.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains(&handle_of(&anonymous)), "the dump misses the sessions:\n{dump}");
    assert_free_of("pg_dump of the mirror", &dump, &fragments);

    daemon.terminate();
    assert!(daemon.wait_exit(std::time::Duration::from_secs(10)).success(), "{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains("DEBUG"), "the daemon did not log at debug level:\n{log}");
    assert_free_of("the daemon's debug log", &log, &fragments);
}
