//! Every qsess command on a real Redis Cluster (3 primaries, 1 replica each) through stock clients:
//! `redis-cli -c` and the `redis` crate's cluster client, with no routing done by the test.

use crate::support::acl_recipes::{APPLICATION_ACL_RULES, CLUSTER_CLIENT_ACL_RULES};
use qsess_record::{key_slot, slot_tag, KeyNames};
use qsess_tests::RedisCluster;
use redis::cluster::ClusterConnection;
use redis::{Connection, Value};
use std::process::Command;

fn cluster() -> RedisCluster {
    RedisCluster::builder().primaries(3).replicas_per_primary(1).start()
}

fn query(con: &mut ClusterConnection, words: &[&str]) -> redis::RedisResult<Value> {
    let mut command = redis::cmd(words[0]);
    for word in &words[1..] {
        command.arg(*word);
    }
    command.query(con)
}

fn text(value: Value) -> String {
    redis::from_redis_value(value).unwrap()
}

fn error_of(result: redis::RedisResult<Value>) -> String {
    result.expect_err("the command should be refused").to_string()
}

fn redis_cli(port: u16, words: &[&str]) -> String {
    let output = Command::new("redis-cli").arg("-c").arg("-p").arg(port.to_string()).args(words).output().unwrap();
    assert!(output.status.success(), "redis-cli {words:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn handles_of(reply: Value) -> Vec<String> {
    redis::from_redis_value(reply).unwrap()
}

#[test]
fn the_issue_reproduction_works_through_redis_cli_in_cluster_mode() {
    let cluster = cluster();
    let ports: Vec<u16> = cluster.primaries().iter().map(|node| node.port()).collect();
    // Minted on whichever node redis-cli starts at; read and listed from the other two.
    let session_id = redis_cli(ports[0], &["QSESS.NEW", "USER", "42", "DATA", "x"]);
    assert_eq!(key_slot(session_id.as_bytes()), key_slot(b"42"), "{session_id}");
    let record = redis_cli(ports[1], &["QSESS.GET", &session_id]);
    assert!(record.contains("42") && record.lines().any(|line| line == "x"), "{record}");
    let listed = redis_cli(ports[2], &["QSESS.BYUSER", "42"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert_eq!(cluster.keys_outside_owned_slots(), Vec::new());
    // The user's keys sit on the node that serves the uid's slot, and only there.
    let owner = cluster.primary_for_slot(key_slot(b"42"));
    let names = KeyNames::for_cluster("qs");
    let index = String::from_utf8(names.user_index(u32::from(key_slot(b"42")), b"42")).unwrap();
    let mut owner_con = owner.connection();
    let exists: bool = redis::cmd("EXISTS").arg(&index).query(&mut owner_con).unwrap();
    assert!(exists, "{index} is not on the slot's owner");
}

#[test]
fn every_command_works_through_the_cluster_client_and_keys_stay_in_owned_slots() {
    let cluster = cluster();
    let mut con = cluster.cluster_client().get_connection().unwrap();
    // NEW routed by the uid (the cluster client routes unknown commands by their first argument,
    // "USER", and follows the MOVED that Redis answers from the declared routing argument).
    let mut users_sessions = Vec::new();
    for user in 0..30 {
        let uid = format!("user-{user}");
        let session_id = text(query(&mut con, &["QSESS.NEW", "USER", &uid, "DATA", "d", "IP", "203.0.113.7"]).unwrap());
        assert_eq!(key_slot(session_id.as_bytes()), key_slot(uid.as_bytes()));
        users_sessions.push((uid, session_id));
    }
    // SET with application-chosen ids, anonymous and then owned by a user whose slot they share.
    for n in 0..30 {
        let session_id = format!("anonymous-cookie-{n:04}");
        assert_eq!(query(&mut con, &["QSESS.SET", &session_id, "DATA", "a"]).unwrap(), Value::Int(1));
        assert_eq!(query(&mut con, &["QSESS.TOUCH", &session_id]).unwrap(), Value::Int(1));
    }
    let (uid, session_id) = users_sessions[0].clone();
    assert_ne!(query(&mut con, &["QSESS.GET", &session_id]).unwrap(), Value::Nil);
    assert_ne!(query(&mut con, &["QSESS.PEEK", &session_id]).unwrap(), Value::Nil);
    assert_eq!(query(&mut con, &["QSESS.SET", &session_id, "DATA", "changed", "XX"]).unwrap(), Value::Int(2));
    let tag = slot_tag(key_slot(uid.as_bytes()));
    // A session in the user's slot may be created for the user directly.
    let owned_id = format!("{{{tag}}}application-chosen-0001");
    assert_eq!(query(&mut con, &["QSESS.SET", &owned_id, "USER", &uid]).unwrap(), Value::Int(1));
    assert_eq!(handles_of(query(&mut con, &["QSESS.BYUSER", &uid]).unwrap()).len(), 2);
    let with_meta = query(&mut con, &["QSESS.BYUSER", &uid, "WITHMETA"]).unwrap();
    assert!(format!("{with_meta:?}").contains("203.0.113.7"), "{with_meta:?}");
    // ROTATE within the slot.
    let rotated_id = format!("{{{tag}}}rotated-after-privilege-change");
    assert_eq!(query(&mut con, &["QSESS.ROTATE", &owned_id, &rotated_id]).unwrap(), Value::Int(2));
    assert_eq!(query(&mut con, &["QSESS.GET", &owned_id]).unwrap(), Value::Nil);
    // REVOKE by handle, REVOKEUSER with EXCEPT, DEL.
    let handles = handles_of(query(&mut con, &["QSESS.BYUSER", &uid]).unwrap());
    assert_eq!(query(&mut con, &["QSESS.REVOKE", &uid, &handles[0]]).unwrap(), Value::Int(1));
    let (second_uid, second_id) = users_sessions[1].clone();
    let extra = text(query(&mut con, &["QSESS.NEW", "USER", &second_uid]).unwrap());
    assert_eq!(query(&mut con, &["QSESS.REVOKEUSER", &second_uid, "EXCEPT", &extra]).unwrap(), Value::Int(1));
    assert_eq!(query(&mut con, &["QSESS.GET", &second_id]).unwrap(), Value::Nil);
    assert_eq!(query(&mut con, &["QSESS.DEL", &extra]).unwrap(), Value::Int(1));
    assert_eq!(query(&mut con, &["QSESS.DEL", "anonymous-cookie-0000"]).unwrap(), Value::Int(1));
    assert_eq!(cluster.keys_outside_owned_slots(), Vec::new());
    // Every key qsess wrote carries a slot tag of the cluster scheme.
    for node in cluster.primaries() {
        let mut node_con = node.connection();
        let keys: Vec<String> = redis::cmd("KEYS").arg("qs:*").query(&mut node_con).unwrap();
        for key in keys {
            let tag = key.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map(|(tag, _)| tag).unwrap();
            assert_eq!(slot_tag(key_slot(tag.as_bytes())), tag, "{key}");
        }
    }
}

#[test]
fn what_a_cluster_cannot_do_atomically_is_refused_with_what_to_do_instead() {
    let cluster = cluster();
    let mut con = cluster.cluster_client().get_connection().unwrap();
    // Two ids whose slots differ (checked, not assumed).
    let (first, second) = ("cookie-on-one-slot-0001", "cookie-on-another-slot-0002");
    assert_ne!(key_slot(first.as_bytes()), key_slot(second.as_bytes()));
    query(&mut con, &["QSESS.SET", first, "DATA", "a"]).unwrap();
    query(&mut con, &["QSESS.SET", second, "DATA", "b"]).unwrap();
    let error = error_of(query(&mut con, &["QSESS.DEL", first, second]));
    assert!(error.contains("one hash slot per call"), "{error}");
    assert_ne!(query(&mut con, &["QSESS.GET", first]).unwrap(), Value::Nil, "a refused DEL ended nothing");
    let error = error_of(query(&mut con, &["QSESS.ROTATE", first, second]));
    assert!(error.contains("QSESS.NEW USER"), "{error}");
    // Logging an anonymous session in: its id is not in the user's slot.
    let uid = (0..)
        .map(|n| format!("member-{n}"))
        .find(|uid| key_slot(uid.as_bytes()) != key_slot(first.as_bytes()))
        .unwrap();
    let error = error_of(query(&mut con, &["QSESS.SET", first, "USER", &uid]));
    assert!(error.contains("QSESS.NEW USER"), "{error}");
    assert!(!error.contains(first), "errors never quote an id: {error}");
    // The documented login flow: NEW USER (routed by the uid), then DEL of the anonymous id.
    let logged_in = text(query(&mut con, &["QSESS.NEW", "USER", &uid, "DATA", "a"]).unwrap());
    assert_eq!(query(&mut con, &["QSESS.DEL", first]).unwrap(), Value::Int(1));
    assert_eq!(handles_of(query(&mut con, &["QSESS.BYUSER", &uid]).unwrap()).len(), 1);
    assert_ne!(query(&mut con, &["QSESS.GET", &logged_in]).unwrap(), Value::Nil);
    let error = error_of(query(&mut con, &["QSESS.NEW", "DATA", "x", "USER", &uid]));
    assert!(error.contains("USER <uid> as its first option"), "{error}");
    assert_eq!(cluster.keys_outside_owned_slots(), Vec::new());
}

#[test]
fn an_anonymous_new_sent_to_a_primary_mints_an_id_that_node_serves() {
    let cluster = cluster();
    for node in cluster.primaries() {
        let mut node_con: Connection = node.connection();
        let session_id: String = redis::cmd("QSESS.NEW").arg("ANON").query(&mut node_con).unwrap();
        assert!(cluster.owned_slots(node).contains(&key_slot(session_id.as_bytes())), "{session_id}");
        let record: Value = redis::cmd("QSESS.PEEK").arg(&session_id).query(&mut node_con).unwrap();
        assert_ne!(record, Value::Nil);
    }
    assert_eq!(cluster.keys_outside_owned_slots(), Vec::new());
}

#[test]
fn a_slot_in_motion_answers_tryagain_and_writes_nothing_until_it_settles() {
    let cluster = cluster();
    let uid = "moving-user";
    let slot = key_slot(uid.as_bytes());
    let source = cluster.primary_for_slot(slot);
    let target = cluster.primaries().into_iter().find(|node| node.port() != source.port()).unwrap();
    let mut source_con = source.connection();
    let mut target_con = target.connection();
    let session_id: String = redis::cmd("QSESS.NEW").arg("USER").arg(uid).query(&mut source_con).unwrap();
    let (source_id, target_id) = (cluster.node_id(source), cluster.node_id(target));
    let set_slot = |con: &mut Connection, state: &str, node: &str| {
        let _: () = redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg(state).arg(node).query(con).unwrap();
    };
    set_slot(&mut target_con, "IMPORTING", &source_id);
    set_slot(&mut source_con, "MIGRATING", &target_id);
    // The source redirects (no argument exists as a key there); the target, asked, refuses to serve
    // a half-moved slot.
    let redirect = redis::cmd("QSESS.GET").arg(&session_id).query::<Value>(&mut source_con).unwrap_err();
    assert_eq!(redirect.code(), Some("ASK"), "{redirect}");
    let _: () = redis::cmd("ASKING").query(&mut target_con).unwrap();
    let refused = redis::cmd("QSESS.SET").arg(&session_id).arg("DATA").arg("x").query::<Value>(&mut target_con);
    let refused = refused.unwrap_err();
    assert_eq!(refused.code(), Some("TRYAGAIN"), "{refused}");
    let keys: Vec<String> = redis::cmd("KEYS").arg("qs:*").query(&mut target_con).unwrap();
    assert!(keys.is_empty(), "the importing node wrote {keys:?}");
    let _: () = redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("STABLE").query(&mut source_con).unwrap();
    let _: () = redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("STABLE").query(&mut target_con).unwrap();
    let mut con = cluster.cluster_client().get_connection().unwrap();
    qsess_tests::eventually(std::time::Duration::from_secs(5), "the settled slot is served again", || {
        match query(&mut con, &["QSESS.SET", &session_id, "DATA", "y", "XX"]) {
            Ok(Value::Int(2)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn a_replica_answers_peek_and_byuser_for_its_primary_slots() {
    let cluster = cluster();
    let primary = cluster.primary_for_slot(key_slot(b"reader"));
    let mut primary_con = primary.connection();
    // Written on the connection that then WAITs: WAIT counts replicas that have this client's writes.
    let session_id: String = redis::cmd("QSESS.NEW").arg("USER").arg("reader").query(&mut primary_con).unwrap();
    let acknowledged: i64 = redis::cmd("WAIT").arg(1).arg(2000).query(&mut primary_con).unwrap();
    assert_eq!(acknowledged, 1);
    let replica = cluster.replicas().into_iter().find(|replica| cluster.primary_of(replica).port() == primary.port());
    let mut replica_con = replica.unwrap().connection();
    let _: () = redis::cmd("READONLY").query(&mut replica_con).unwrap();
    let record: Value = redis::cmd("QSESS.PEEK").arg(&session_id).query(&mut replica_con).unwrap();
    assert_ne!(record, Value::Nil);
    let handles: Vec<String> = redis::cmd("QSESS.BYUSER").arg("reader").query(&mut replica_con).unwrap();
    assert_eq!(handles.len(), 1);
    let refused = redis::cmd("QSESS.GET").arg(&session_id).query::<Value>(&mut replica_con).unwrap_err();
    assert_eq!(refused.code(), Some("MOVED"), "a replica sends writes to its primary: {refused}");
}

#[test]
fn the_application_recipe_with_the_cluster_grants_works_and_still_cannot_restore() {
    let cluster = cluster();
    for node in cluster.live_nodes() {
        let mut admin = node.connection();
        let mut words = vec!["ACL", "SETUSER", "app", "on", ">cluster-app-password"];
        words.extend_from_slice(APPLICATION_ACL_RULES);
        words.extend_from_slice(CLUSTER_CLIENT_ACL_RULES);
        let mut command = redis::cmd(words[0]);
        command.arg(&words[1..]);
        let _: () = command.query(&mut admin).unwrap();
    }
    let client = redis::cluster::ClusterClientBuilder::new(cluster.urls())
        .username("app")
        .password("cluster-app-password")
        .build()
        .unwrap();
    let mut con = client.get_connection().unwrap();
    let session_id = text(query(&mut con, &["QSESS.NEW", "USER", "acl-user", "DATA", "d"]).unwrap());
    assert_ne!(query(&mut con, &["QSESS.GET", &session_id]).unwrap(), Value::Nil);
    assert_eq!(handles_of(query(&mut con, &["QSESS.BYUSER", "acl-user"]).unwrap()).len(), 1);
    let tag = slot_tag(key_slot(b"acl-user"));
    let error = error_of(query(&mut con, &["QSESS.RESTOREUSER", tag, "acl-user"]));
    assert!(error.contains("NOPERM") || error.contains("permission"), "{error}");
    assert_eq!(query(&mut con, &["QSESS.REVOKEUSER", "acl-user"]).unwrap(), Value::Int(1));
}
