//! The cluster harness itself: a real 3x1 Redis Cluster with the module loaded keeps every key in
//! a slot its node serves through a reshard and a failover, and `qsess_record::key_slot` is the
//! slot Redis computes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use qsess_record::{key_slot, slot_tag};
use qsess_tests::RedisCluster;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// How many plain keys the test writes through the cluster client.
const PLAIN_KEYS: usize = 200;
/// How many slots the reshard moves.
const RESHARDED_SLOTS: u16 = 100;

#[test]
fn cluster_keeps_keys_in_owned_slots_through_reshard_and_failover() {
    let started = Instant::now();
    let cluster = RedisCluster::builder().primaries(3).replicas_per_primary(1).start();
    let formed = started.elapsed();
    assert_eq!(cluster.primaries().len(), 3);
    assert_eq!(cluster.replicas().len(), 3);
    assert_slots_partitioned(&cluster);
    let modules: Vec<redis::Value> =
        redis::cmd("MODULE").arg("LIST").query(&mut cluster.nodes()[0].connection()).unwrap();
    assert_eq!(modules.len(), 1, "every node loads the qsess module: {modules:?}");

    let mut expected: BTreeMap<String, String> =
        (0..PLAIN_KEYS).map(|i| (format!("plain:{i}"), format!("value-{i}"))).collect();
    // One key in each of the source primary's lowest slots: redis-cli reshard moves those, so
    // the reshard below has keys to migrate, not just empty slots.
    let [from, to, _] = cluster.primaries()[..] else { panic!("expected 3 primaries") };
    for slot in cluster.owned_slots(from).into_iter().take(usize::from(RESHARDED_SLOTS) + 50) {
        expected.insert(format!("{{{}}}:reshard", slot_tag(slot)), format!("slot-{slot}"));
    }
    let mut con = cluster.cluster_client().get_connection().unwrap();
    for (key, value) in &expected {
        redis::cmd("SET").arg(key).arg(value).exec(&mut con).unwrap();
    }
    assert_eq!(cluster.keys_outside_owned_slots(), []);
    for (key, _) in expected.iter().take(20) {
        let owner = cluster.primary_for_slot(key_slot(key.as_bytes()));
        let exists: bool = redis::cmd("EXISTS").arg(key).query(&mut owner.connection()).unwrap();
        assert!(exists, "{key} is not on port {}, the primary of its slot", owner.port());
    }

    assert_key_slot_matches_redis(&cluster);

    let from_before = cluster.owned_slots(from);
    let to_before = cluster.owned_slots(to);
    let reshard_started = Instant::now();
    cluster.reshard(from, to, RESHARDED_SLOTS);
    let resharded = reshard_started.elapsed();
    let from_after: BTreeSet<u16> = cluster.owned_slots(from).into_iter().collect();
    let to_after: BTreeSet<u16> = cluster.owned_slots(to).into_iter().collect();
    let moved: Vec<u16> = from_before.iter().copied().filter(|slot| !from_after.contains(slot)).collect();
    assert_eq!(moved.len(), usize::from(RESHARDED_SLOTS));
    assert_eq!(to_after.len(), to_before.len() + moved.len());
    assert!(moved.iter().all(|slot| to_after.contains(slot)));
    let mut to_con = to.connection();
    for &slot in &moved {
        let key = format!("{{{}}}:reshard", slot_tag(slot));
        let value: Option<String> = redis::cmd("GET").arg(&key).query(&mut to_con).unwrap();
        assert_eq!(value, Some(format!("slot-{slot}")), "{key} was not migrated to port {}", to.port());
    }
    assert_eq!(cluster.keys_outside_owned_slots(), []);
    let mut con = cluster.cluster_client().get_connection().unwrap();
    assert_all_readable(&mut con, &expected);

    // Fail over the primary that just received slots, so the promoted replica must hold the
    // migrated keys too.
    let victim_slots = cluster.owned_slots(to);
    let replica_port =
        cluster.replicas().into_iter().find(|r| cluster.primary_of(r).port() == to.port()).unwrap().port();
    let victim_port = to.port();
    let failover_started = Instant::now();
    let promoted = cluster.kill_primary_and_wait_for_failover(to);
    let failed_over = failover_started.elapsed();
    assert_eq!(promoted.port(), replica_port);
    let primaries: BTreeSet<u16> = cluster.primaries().iter().map(|node| node.port()).collect();
    assert_eq!(primaries.len(), 3);
    assert!(primaries.contains(&replica_port) && !primaries.contains(&victim_port));
    assert_eq!(cluster.owned_slots(promoted), victim_slots);
    assert_slots_partitioned(&cluster);
    let mut con = cluster.cluster_client().get_connection().unwrap();
    assert_all_readable(&mut con, &expected);
    assert_eq!(cluster.keys_outside_owned_slots(), []);

    eprintln!(
        "cluster harness timings: formed {formed:?}, resharded {RESHARDED_SLOTS} slots in {resharded:?}, \
         failed over in {failed_over:?}, total {:?}",
        started.elapsed()
    );
}

/// Every slot is served by exactly one live primary, by the primaries' own accounts.
fn assert_slots_partitioned(cluster: &RedisCluster) {
    let mut seen = BTreeSet::new();
    for primary in cluster.primaries() {
        for slot in cluster.owned_slots(primary) {
            assert!(seen.insert(slot), "slot {slot} is served by two primaries");
        }
    }
    assert_eq!(seen.len(), usize::from(qsess_record::SLOT_COUNT));
}

/// `key_slot` against `CLUSTER KEYSLOT` on random keys, random keys with braces in them, and the
/// hash-tag corner cases of the cluster specification.
fn assert_key_slot_matches_redis(cluster: &RedisCluster) {
    let mut rng = StdRng::seed_from_u64(0x5107);
    let mut keys: Vec<Vec<u8>> = [
        "{user1000}.following",
        "{user1000}.followers",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "foo{bar}{zap}",
        "{}",
        "{",
        "}",
        "}{",
        "a{b",
        "{a}",
        "",
        "qs:{0}:s:x",
    ]
    .iter()
    .map(|key| key.as_bytes().to_vec())
    .collect();
    for _ in 0..300 {
        let length = rng.random_range(0..24);
        let mut key: Vec<u8> = (0..length).map(|_| rng.random::<u8>()).collect();
        if rng.random_bool(0.5) {
            for brace in [b'{', b'}'] {
                let at = rng.random_range(0..=key.len());
                key.insert(at, brace);
            }
        }
        keys.push(key);
    }
    let mut con = cluster.nodes()[0].connection();
    for key in &keys {
        let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut con).unwrap();
        assert_eq!(key_slot(key), slot, "slot of {:?}", String::from_utf8_lossy(key));
    }
}

fn assert_all_readable(con: &mut redis::cluster::ClusterConnection, expected: &BTreeMap<String, String>) {
    for (key, value) in expected {
        let read: Option<String> = redis::cmd("GET").arg(key).query(con).unwrap();
        assert_eq!(read.as_ref(), Some(value), "{key}");
    }
}
