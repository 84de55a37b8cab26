//! RESP2 and RESP3 clients get the same content: record replies are maps under RESP3 and flat
//! field/value arrays under RESP2; integers, ids and nils look the same under both.

use crate::support::commands::query_value;
use qsess_record::Handle;
use qsess_tests::RedisServer;
use redis::Value;

/// A RESP3 map or a RESP2 flat array as ordered (field, value) pairs; panics on anything else.
fn ordered_pairs_of_map_or_flat_array(value: &Value) -> Vec<(Value, Value)> {
    match value {
        Value::Map(pairs) => pairs.clone(),
        Value::Array(flat) => {
            assert_eq!(flat.len() % 2, 0, "odd-length flat array {flat:?}");
            flat.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect()
        }
        other => panic!("neither a map nor a flat array: {other:?}"),
    }
}

fn field_names_of_pairs(pairs: &[(Value, Value)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(name, _)| match name {
            Value::BulkString(bytes) => String::from_utf8(bytes.clone()).unwrap(),
            other => panic!("field name is not a bulk string: {other:?}"),
        })
        .collect()
}

fn server_with_two_sessions_of_one_user() -> RedisServer {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    for args in [
        &["full", "USER", "u1", "DATA", "d\x00ta", "IP", "2001:db8::7", "UA", "agent/1.0", "IDLE", "50000"][..],
        &["bare", "USER", "u1", "IDLE", "60000"],
    ] {
        query_value(&mut con, "QSESS.SET", args);
    }
    server
}

#[test]
fn record_replies_are_maps_under_resp3_and_flat_arrays_under_resp2_with_the_same_content() {
    let server = server_with_two_sessions_of_one_user();
    let mut resp2 = server.connection();
    let mut resp3 = server.connection_resp3();
    for (command, args) in [
        ("QSESS.PEEK", &["full"][..]),
        ("QSESS.GET", &["full", "NOTOUCH"]),
        ("QSESS.GET", &["full"]),
        ("QSESS.PEEK", &["bare"]),
    ] {
        let under_resp2 = query_value(&mut resp2, command, args);
        let under_resp3 = query_value(&mut resp3, command, args);
        assert!(matches!(under_resp2, Value::Array(_)), "{command} {args:?} under RESP2: {under_resp2:?}");
        assert!(matches!(under_resp3, Value::Map(_)), "{command} {args:?} under RESP3: {under_resp3:?}");
        let pairs = ordered_pairs_of_map_or_flat_array(&under_resp3);
        assert_eq!(ordered_pairs_of_map_or_flat_array(&under_resp2), pairs, "{command} {args:?}");
        assert_eq!(pairs[0].1, Value::BulkString(Handle::from_session_id(args[0].as_bytes()).as_bytes().to_vec()));
        let ver = pairs.iter().find(|(name, _)| *name == Value::BulkString(b"ver".to_vec())).unwrap();
        assert_eq!(ver.1, Value::Int(1), "integers stay integers under RESP3");
    }
    let full = ordered_pairs_of_map_or_flat_array(&query_value(&mut resp3, "QSESS.PEEK", &["full"]));
    assert_eq!(
        field_names_of_pairs(&full),
        ["handle", "data", "user", "ip", "ua", "created", "updated", "seen", "idle", "abs", "expires", "ver"]
    );
    assert_eq!(full[1].1, Value::BulkString(b"d\x00ta".to_vec()));
}

#[test]
fn byuser_withmeta_is_an_array_of_maps_under_resp3_and_of_flat_arrays_under_resp2() {
    let server = server_with_two_sessions_of_one_user();
    let mut resp2 = server.connection();
    let mut resp3 = server.connection_resp3();
    let Value::Array(sessions2) = query_value(&mut resp2, "QSESS.BYUSER", &["u1", "WITHMETA"]) else {
        panic!("BYUSER WITHMETA under RESP2 is not an array");
    };
    let Value::Array(sessions3) = query_value(&mut resp3, "QSESS.BYUSER", &["u1", "withmeta"]) else {
        panic!("BYUSER WITHMETA under RESP3 is not an array");
    };
    assert_eq!(sessions2.len(), 2);
    assert_eq!(sessions3.len(), 2);
    for (under_resp2, under_resp3) in sessions2.iter().zip(&sessions3) {
        assert!(matches!(under_resp2, Value::Array(_)), "{under_resp2:?}");
        assert!(matches!(under_resp3, Value::Map(_)), "{under_resp3:?}");
        assert_eq!(ordered_pairs_of_map_or_flat_array(under_resp2), ordered_pairs_of_map_or_flat_array(under_resp3));
    }
    // Soonest expiry first: "full" (IDLE 50000) before "bare" (IDLE 60000). No data, no user.
    let full = ordered_pairs_of_map_or_flat_array(&sessions3[0]);
    assert_eq!(field_names_of_pairs(&full), ["handle", "ip", "ua", "created", "seen", "expires"]);
    assert_eq!(full[0].1, Value::BulkString(Handle::from_session_id(b"full").as_bytes().to_vec()));
    assert_eq!(full[1].1, Value::BulkString(b"2001:db8::7".to_vec()));
    let bare = ordered_pairs_of_map_or_flat_array(&sessions3[1]);
    assert_eq!(field_names_of_pairs(&bare), ["handle", "created", "seen", "expires"]);

    let plain2 = query_value(&mut resp2, "QSESS.BYUSER", &["u1"]);
    let plain3 = query_value(&mut resp3, "QSESS.BYUSER", &["u1"]);
    assert_eq!(plain2, plain3);
    let expected: Vec<Value> = [b"full", b"bare"]
        .iter()
        .map(|sid| Value::BulkString(Handle::from_session_id(*sid).as_bytes().to_vec()))
        .collect();
    assert_eq!(plain3, Value::Array(expected));
}

#[test]
fn integers_ids_and_nils_look_the_same_under_both_protocols() {
    let server = RedisServer::builder().start();
    let mut resp2 = server.connection();
    let mut resp3 = server.connection_resp3();
    for (label, con) in [("RESP2", &mut resp2), ("RESP3", &mut resp3)] {
        let sid = format!("sid-{label}");
        let other = format!("other-{label}");
        assert_eq!(query_value(con, "QSESS.SET", &[&sid, "USER", "u1"]), Value::Int(1), "{label}");
        assert_eq!(query_value(con, "QSESS.SET", &[&sid, "DATA", "x"]), Value::Int(2), "{label}");
        assert_eq!(query_value(con, "QSESS.SET", &[&sid, "NX"]), Value::Nil, "{label}");
        assert_eq!(query_value(con, "QSESS.SET", &["missing", "XX"]), Value::Nil, "{label}");
        assert_eq!(query_value(con, "QSESS.GET", &["missing"]), Value::Nil, "{label}");
        assert_eq!(query_value(con, "QSESS.GET", &["missing", "NOTOUCH"]), Value::Nil, "{label}");
        assert_eq!(query_value(con, "QSESS.PEEK", &["missing"]), Value::Nil, "{label}");
        assert_eq!(query_value(con, "QSESS.ROTATE", &["missing", "anything"]), Value::Nil, "{label}");
        assert_eq!(query_value(con, "QSESS.TOUCH", &["missing"]), Value::Int(0), "{label}");
        assert_eq!(query_value(con, "QSESS.TOUCH", &[&sid]), Value::Int(1), "{label}");
        assert_eq!(query_value(con, "QSESS.BYUSER", &["nobody"]), Value::Array(vec![]), "{label}");
        assert_eq!(query_value(con, "QSESS.ROTATE", &[&sid, &other]), Value::Int(3), "{label}");
        assert_eq!(query_value(con, "QSESS.DEL", &[&other, "missing"]), Value::Int(1), "{label}");
        match query_value(con, "QSESS.NEW", &["DATA", "x"]) {
            Value::BulkString(id) => assert_eq!(id.len(), 32, "{label}"),
            other => panic!("{label}: NEW replied {other:?}"),
        }
    }
}
