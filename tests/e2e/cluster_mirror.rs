//! qsess-syncd on Redis Cluster: one daemon beside every node of a 3x1 cluster (six daemons, replicas
//! included), one database. Sessions written through stock cluster clients reach the mirror; a killed
//! primary's acknowledged writes survive in Redis and in the mirror once its replica's daemon takes
//! over; a reshard under load leaves the mirror whole and no key outside its node's slots.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

mod acknowledged_writer;

use self::acknowledged_writer::{AcknowledgedWriter, ACKNOWLEDGED, NOT_ACKNOWLEDGED};
use crate::support::acl_recipes::create_daemon_user;
use crate::support::mirror::{eventually_verify_matches, try_all_mirror_rows, CATCH_UP_DEADLINE};
use crate::support::session_keys::handle_of;
use qsess_record::{key_slot, Handle, KeyNames};
use qsess_tests::{eventually, shared_cluster, Daemon, PgDatabase, RedisCluster};
use redis::Value;

/// A cluster, a database and a daemon beside every node. Fields drop in order: the daemons stop
/// before the nodes they talk to.
struct MirroredCluster {
    daemons: Vec<Daemon>,
    db: PgDatabase,
    cluster: RedisCluster,
}

fn mirrored_cluster() -> MirroredCluster {
    let cluster = RedisCluster::builder().primaries(3).replicas_per_primary(1).start();
    let db = shared_cluster().fresh_database();
    // Six daemons starting at once also apply the migrations at once: they must take turns.
    let daemons: Vec<Daemon> = cluster.nodes().iter().map(|node| Daemon::start(node.url(), db.url(), &[])).collect();
    MirroredCluster { daemons, db, cluster }
}

/// The daemon's password in [`mirrored_cluster_as_restricted_user`].
const PASSWORD: &str = "syncd-cluster-password";

/// A [`MirroredCluster`] whose daemons log in as a user with `DAEMON_ACL_RULES` (`create_daemon_user`), created on
/// every node (a cluster does not share ACLs), plus what `verify` needs; returns the URL of a node
/// as that user too.
fn mirrored_cluster_as_restricted_user() -> (MirroredCluster, String) {
    let cluster = RedisCluster::builder().primaries(3).replicas_per_primary(1).start();
    let db = shared_cluster().fresh_database();
    let as_syncd = |port: u16| format!("redis://syncd:{PASSWORD}@127.0.0.1:{port}/");
    for node in cluster.nodes() {
        let mut admin = node.connection();
        // What `qsess-syncd verify` needs besides: it finds the primaries and reads their sessions.
        create_daemon_user(&mut admin, PASSWORD, &["+scan", "+mget", "+cluster|slots"]);
    }
    let daemons: Vec<Daemon> =
        cluster.nodes().iter().map(|node| Daemon::start(as_syncd(node.port()), db.url(), &[])).collect();
    let seed = as_syncd(cluster.nodes()[0].port());
    (MirroredCluster { daemons, db, cluster }, seed)
}

impl MirroredCluster {
    fn cluster_connection(&self) -> redis::cluster::ClusterConnection {
        self.cluster.cluster_client().get_connection().unwrap()
    }

    fn assert_daemons_running(&mut self) {
        for daemon in &mut self.daemons {
            daemon.assert_running();
        }
    }

    /// Waits until every session of `expected` (id -> version, 0 for any) has a live row at that
    /// version in the mirror.
    fn eventually_mirrored(&self, expected: &BTreeMap<String, i64>) {
        let mut pg = self.db.client();
        eventually(CATCH_UP_DEADLINE, "every session written to be mirrored", || {
            let rows = try_all_mirror_rows(&mut pg)?;
            let missing: Vec<String> = expected
                .iter()
                .filter(|(id, version)| {
                    !rows
                        .get(&handle_of(id))
                        .is_some_and(|row| row.ended_ms.is_none() && (**version == 0 || row.version == **version))
                })
                .map(|(id, version)| format!("{id} v{version}"))
                .take(5)
                .collect();
            match missing.is_empty() {
                true => Ok(()),
                false => Err(format!("{} rows; not mirrored (first 5): {missing:?}", rows.len())),
            }
        });
    }

    /// Waits until no change stream on any live primary has an entry delivered to the daemons and not
    /// acknowledged: entries left pending by a daemon whose node died or whose slot moved were re-read
    /// by the daemon of the node that serves them now.
    fn eventually_nothing_pending(&self) {
        eventually(CATCH_UP_DEADLINE, "no change stream entry left pending", || {
            let mut pending = Vec::new();
            for node in self.cluster.primaries() {
                let mut con = node.connection();
                let streams: Vec<String> = redis::cmd("KEYS").arg("qs:*:chg").query(&mut con).unwrap();
                for stream in streams {
                    let summary: Value =
                        redis::cmd("XPENDING").arg(&stream).arg("qsess-syncd").query(&mut con).unwrap_or(Value::Nil);
                    if let Value::Array(items) = summary {
                        if let Some(Value::Int(count)) = items.first() {
                            if *count > 0 {
                                pending.push(format!("{}:{stream}={count}", node.port()));
                            }
                        }
                    }
                }
            }
            match pending.is_empty() {
                true => Ok(()),
                false => Err(format!("pending: {pending:?}")),
            }
        });
    }
}

pub(super) fn new_session(con: &mut impl redis::ConnectionLike, uid: &str, data: &str) -> redis::RedisResult<String> {
    redis::cmd("QSESS.NEW").arg("USER").arg(uid).arg("DATA").arg(data).query(con)
}

#[test]
fn sessions_written_through_a_cluster_client_are_mirrored_by_one_daemon_per_node() {
    let started = Instant::now();
    let mut mirrored = mirrored_cluster();
    let mut con = mirrored.cluster_connection();
    let mut expected = BTreeMap::new();
    for user in 0..60 {
        let uid = format!("user-{user}");
        for n in 0..5 {
            let id = new_session(&mut con, &uid, "x").unwrap();
            let version = if n % 2 == 0 {
                let updated: i64 =
                    redis::cmd("QSESS.SET").arg(&id).arg("DATA").arg("y").arg("XX").query(&mut con).unwrap();
                assert_eq!(updated, 2, "QSESS.SET {id} XX");
                2
            } else {
                1
            };
            expected.insert(id, version);
        }
    }
    let written = started.elapsed();
    // The sessions spread over every primary, so every primary's daemon had work.
    let slots: BTreeSet<u16> = expected.keys().map(|id| key_slot(id.as_bytes())).collect();
    for node in mirrored.cluster.primaries() {
        let owned: BTreeSet<u16> = mirrored.cluster.owned_slots(node).into_iter().collect();
        assert!(slots.iter().any(|slot| owned.contains(slot)), "no session on the primary on port {}", node.port());
    }
    mirrored.eventually_mirrored(&expected);
    let mirrored_after = started.elapsed();
    let verified = eventually_verify_matches(&mirrored.cluster.seed_url(), &mirrored.db.url(), CATCH_UP_DEADLINE);
    assert!(verified.stdout.contains("300 live sessions, postgres: 300 live sessions"), "{}", verified.everything());
    let rows = try_all_mirror_rows(&mut mirrored.db.client()).unwrap();
    assert_eq!(rows.len(), expected.len(), "one row per session, nothing else");
    mirrored.eventually_nothing_pending();
    mirrored.assert_daemons_running();
    eprintln!(
        "cluster mirror: 300 sessions written in {written:?}, mirrored {:?} later; whole test {:?}",
        mirrored_after - written,
        started.elapsed()
    );
}

#[test]
fn acknowledged_sessions_survive_a_primary_failover_in_redis_and_in_the_mirror() {
    let started = Instant::now();
    let mut mirrored = mirrored_cluster();
    let ports: Vec<u16> = mirrored.cluster.nodes().iter().map(|node| node.port()).collect();
    let writer = AcknowledgedWriter::start(ports, 60);
    writer.wait_for_more(ACKNOWLEDGED, 300);
    let victim = mirrored.cluster.primaries()[0];
    let victim_port = victim.port();
    let failover_started = Instant::now();
    let promoted = mirrored.cluster.kill_primary_and_wait_for_failover(victim);
    let failover = failover_started.elapsed();
    let promoted_port = promoted.port();
    // Keep writing until the promoted node has taken writes too: with no replica left, its `WAIT`
    // times out, so they are the ones not acknowledged.
    writer.wait_for_more(NOT_ACKNOWLEDGED, 2);
    writer.wait_for_more(ACKNOWLEDGED, 20);
    let report = writer.stop();
    assert!(report.acknowledged.len() >= 300, "{report:?}");
    let mut con = mirrored.cluster_connection();
    let lost: Vec<&String> = report
        .acknowledged
        .iter()
        .filter(|id| redis::cmd("QSESS.PEEK").arg(*id).query::<Value>(&mut con).unwrap() == Value::Nil)
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged sessions are gone from Redis: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let expected: BTreeMap<String, i64> = report.acknowledged.iter().map(|id| (id.clone(), 1)).collect();
    let catch_up = Instant::now();
    mirrored.eventually_mirrored(&expected);
    let mirrored_in = catch_up.elapsed();
    eventually_verify_matches(&mirrored.cluster.seed_url(), &mirrored.db.url(), CATCH_UP_DEADLINE);
    mirrored.eventually_nothing_pending();
    // The daemon beside the promoted node took over; the one beside the dead node waits for it.
    let promoted_daemon =
        mirrored.daemons.iter().find(|daemon| daemon.command().contains(&format!(":{promoted_port}/")));
    let log = promoted_daemon.map(Daemon::log).unwrap_or_default();
    assert!(log.contains("this cluster node is a replica") && log.contains("this cluster node is a primary"), "{log}");
    mirrored.assert_daemons_running();
    eprintln!(
        "cluster failover: killed {victim_port}, {promoted_port} promoted in {failover:?}; {} acknowledged, {} not \
         acknowledged, {} errors; mirror complete {mirrored_in:?} after the writer stopped; whole test {:?}",
        report.acknowledged.len(),
        report.unacknowledged,
        report.errors,
        started.elapsed()
    );
}

#[test]
fn a_reshard_under_load_leaves_the_mirror_whole_and_no_key_outside_its_slots() {
    const MOVED_SLOTS: u16 = 500;
    let started = Instant::now();
    let mut mirrored = mirrored_cluster();
    let primaries = mirrored.cluster.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    // redis-cli moves the source's lowest slots: users there have their keys moved under load.
    let moving: BTreeSet<u16> = mirrored.cluster.owned_slots(from).into_iter().take(usize::from(MOVED_SLOTS)).collect();
    let mut moving_users = Vec::new();
    let mut other_users = Vec::new();
    for n in 0.. {
        let uid = format!("reshard-user-{n}");
        match moving.contains(&key_slot(uid.as_bytes())) {
            true if moving_users.len() < 40 => moving_users.push(uid),
            false if other_users.len() < 20 => other_users.push(uid),
            _ => {}
        }
        if moving_users.len() == 40 && other_users.len() == 20 {
            break;
        }
    }
    let users: Vec<String> = moving_users.iter().chain(&other_users).cloned().collect();
    let mut con = mirrored.cluster_connection();
    let mut expected = BTreeMap::new();
    for uid in &users {
        for _ in 0..2 {
            expected.insert(new_session(&mut con, uid, "before").unwrap(), 1);
        }
    }
    // The writer goes through the cluster client, which follows MOVED/ASK and retries TRYAGAIN; an
    // error it still returns is retried here after a pause.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = thread::spawn({
        let (stop, users) = (stop.clone(), users.clone());
        let client = mirrored.cluster.cluster_client();
        move || {
            let mut con = client.get_connection().unwrap();
            let mut written = Vec::new();
            let mut errors = 0;
            let mut n = 0_usize;
            while !stop.load(Ordering::Relaxed) {
                match new_session(&mut con, &users[n % users.len()], "during") {
                    Ok(id) => written.push(id),
                    Err(_) => {
                        errors += 1;
                        thread::sleep(Duration::from_millis(20));
                    }
                }
                n += 1;
                thread::sleep(Duration::from_millis(2));
            }
            (written, errors)
        }
    });
    thread::sleep(Duration::from_millis(500));
    let reshard_started = Instant::now();
    mirrored.cluster.reshard(from, to, MOVED_SLOTS);
    let reshard = reshard_started.elapsed();
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (written, errors) = writer.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload));
    let moved_now: BTreeSet<u16> = mirrored.cluster.owned_slots(to).into_iter().collect();
    assert!(moving.iter().all(|slot| moved_now.contains(slot)), "the reshard moved the source's lowest slots");
    let during = written.len();
    let moved_sessions = written.iter().filter(|id| moving.contains(&key_slot(id.as_bytes()))).count();
    assert!(moved_sessions > 0, "no session was written in a moving slot during the reshard");
    expected.extend(written.into_iter().map(|id| (id, 1)));
    let catch_up = Instant::now();
    mirrored.eventually_mirrored(&expected);
    let mirrored_in = catch_up.elapsed();
    eventually_verify_matches(&mirrored.cluster.seed_url(), &mirrored.db.url(), CATCH_UP_DEADLINE);
    mirrored.eventually_nothing_pending();
    assert_eq!(mirrored.cluster.keys_outside_owned_slots(), Vec::<(u16, String)>::new());
    mirrored.assert_daemons_running();
    eprintln!(
        "cluster reshard: {MOVED_SLOTS} slots in {reshard:?}; {during} sessions written during it ({moved_sessions} in \
         moving slots, {errors} errors retried); mirror complete {mirrored_in:?} after the writer stopped; whole test {:?}",
        started.elapsed()
    );
}

#[test]
fn sessions_and_user_indexes_redis_lost_come_back_from_the_mirror_on_the_node_that_serves_them() {
    let started = Instant::now();
    // As the restricted user of README's recipe, so the recipe is proven on a cluster too.
    let (mut mirrored, syncd_url) = mirrored_cluster_as_restricted_user();
    let mut con = mirrored.cluster_connection();
    let users: Vec<String> = (0..12).map(|n| format!("lost-user-{n}")).collect();
    let mut expected = BTreeMap::new();
    let mut by_user: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for uid in &users {
        for _ in 0..3 {
            let id = new_session(&mut con, uid, "kept in the mirror").unwrap();
            by_user.entry(uid).or_default().push(id.clone());
            expected.insert(id, 1);
        }
    }
    mirrored.eventually_mirrored(&expected);
    // Redis loses every key of these users (as after a restart without persistence), on the nodes
    // that serve them: the record of each session and the user's index.
    let names = KeyNames::for_cluster("qs");
    for (uid, ids) in &by_user {
        let slot = u32::from(key_slot(uid.as_bytes()));
        let mut owner = mirrored.cluster.primary_for_slot(key_slot(uid.as_bytes())).connection();
        let mut keys = vec![names.user_index(slot, uid.as_bytes())];
        keys.extend(ids.iter().map(|id| names.session(slot, &Handle::from_session_id(id.as_bytes()))));
        let deleted: usize = redis::cmd("DEL").arg(&keys).query(&mut owner).unwrap();
        assert_eq!(deleted, keys.len(), "{uid}");
    }
    // A read of a lost session waits for the daemon beside the node that serves it.
    let (first_user, first_ids) = by_user.iter().next().unwrap();
    for id in first_ids {
        let record: Value = redis::cmd("QSESS.GET").arg(id).query(&mut con).unwrap();
        assert_ne!(record, Value::Nil, "{id} did not come back");
    }
    // Listing a user whose index was lost: the reload request reaches every node's daemon, and the
    // one beside the node serving the user's slot restores them all.
    for (uid, ids) in by_user.iter().skip(1) {
        let handles: Vec<String> = redis::cmd("QSESS.BYUSER").arg(*uid).query(&mut con).unwrap();
        let mut expected_handles: Vec<String> = ids.iter().map(|id| handle_of(id)).collect();
        expected_handles.sort();
        let mut handles = handles;
        handles.sort();
        assert_eq!(handles, expected_handles, "{uid}");
    }
    let handles: Vec<String> = redis::cmd("QSESS.BYUSER").arg(*first_user).query(&mut con).unwrap();
    assert_eq!(handles.len(), 3, "the sessions restored one by one were indexed again");
    eventually_verify_matches(&syncd_url, &mirrored.db.url(), CATCH_UP_DEADLINE);
    // No daemon counted another node's reload requests as refusals, or was refused a command.
    for daemon in &mirrored.daemons {
        let log = daemon.log();
        assert!(!log.contains("skipped a request") && !log.contains("NOPERM"), "{}:\n{log}", daemon.command());
    }
    for node in mirrored.cluster.live_nodes() {
        let denied: Vec<Value> = redis::cmd("ACL").arg("LOG").query(&mut node.connection()).unwrap();
        assert!(denied.is_empty(), "port {}: ACL LOG {denied:?}", node.port());
    }
    mirrored.assert_daemons_running();
    eprintln!("cluster read-through: whole test {:?}", started.elapsed());
}
