//! Real eviction under `maxmemory`: sessions Redis evicts come back from the mirror on their next read.

use qsess_tests::{eventually, shared_cluster, Daemon, RedisServer};
use redis::{Connection, Value};
use std::time::Duration;

use crate::support::read_through::{counter, get_notouch, NO_TOUCH_GRANULARITY_MS};
use crate::support::session_keys::session_key_of;

const SESSIONS: usize = 2_000;

fn used_memory(con: &mut Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(con).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("INFO memory has used_memory")
}

fn evicted_keys(con: &mut Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(con).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("evicted_keys:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("INFO stats has evicted_keys")
}

#[test]
fn sessions_evicted_under_maxmemory_come_back_from_the_mirror() {
    let redis = RedisServer::builder()
        .module_arg("qsess.touch-granularity-ms", NO_TOUCH_GRANULARITY_MS)
        .module_arg("qsess.miss-timeout-ms", 5000)
        .server_arg("--maxmemory-policy", "volatile-lru")
        .server_arg("--maxmemory-samples", 10)
        .start();
    let db = shared_cluster().fresh_database();
    let mut daemon = Daemon::start(redis.url(), db.url(), &[]);
    let mut con = redis.connection();
    let payload = "p".repeat(300);
    let mut pipeline = redis::pipe();
    for n in 0..SESSIONS {
        pipeline.cmd("QSESS.SET").arg(format!("evict-{n}")).arg("DATA").arg(&payload).arg("ANON").ignore();
    }
    pipeline.query::<()>(&mut con).unwrap();
    let mut pg = db.client();
    eventually(Duration::from_secs(60), "every session to be mirrored", || {
        // The daemon creates the schema as it starts; until then the count is an error, not zero.
        let count: i64 =
            pg.query_one("select count(*) from qsess.live_sessions", &[]).map_err(|error| error.to_string())?.get(0);
        if count as usize == SESSIONS {
            Ok(())
        } else {
            Err(format!("{count} of {SESSIONS} rows"))
        }
    });
    let before: Vec<Value> = (0..SESSIONS).map(|n| get_notouch(&mut con, &format!("evict-{n}"))).collect();

    // Squeeze memory until Redis has evicted a good share of the sessions (they are the keys with a
    // TTL and the least recently used), then give the memory back.
    let budget = used_memory(&mut con) - (SESSIONS as u64 * 600) / 2;
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(budget).query(&mut con).unwrap();
    let _: () = redis::cmd("SET").arg("trigger-eviction").arg("x").query(&mut con).unwrap_or(());
    let evicted_sessions: Vec<usize> = (0..SESSIONS)
        .filter(|n| {
            let exists: bool = redis::cmd("EXISTS").arg(session_key_of(&format!("evict-{n}"))).query(&mut con).unwrap();
            !exists
        })
        .collect();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0).query(&mut con).unwrap();
    assert!(evicted_keys(&mut con) > 0, "Redis evicted nothing");
    assert!(evicted_sessions.len() >= SESSIONS / 10, "only {} sessions were evicted", evicted_sessions.len());

    let restores_before = counter(&mut con, "qsess_restores");
    for &n in &evicted_sessions {
        let sid = format!("evict-{n}");
        assert_eq!(get_notouch(&mut con, &sid), before[n], "{sid} came back different after eviction");
    }
    assert_eq!(counter(&mut con, "qsess_restores") - restores_before, evicted_sessions.len() as u64);
    assert_eq!(counter(&mut con, "qsess_miss_timeouts"), 0);
    daemon.assert_running();
}
