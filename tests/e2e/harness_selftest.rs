//! Tests of the harness itself, on plain servers without the module (they never build it).

use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use qsess_tests::{eventually, free_port, RedisServer};

fn plain_server() -> RedisServer {
    RedisServer::builder().without_module().start()
}

#[test]
fn server_without_module_answers_ping() {
    let server = plain_server();
    let pong: String = redis::cmd("PING").query(&mut server.connection()).unwrap();
    assert_eq!(pong, "PONG");
    assert!(server.url().ends_with(&format!(":{}/", server.port())));
    assert_ne!(server.port(), 6379);
    let modules: Vec<redis::Value> = redis::cmd("MODULE").arg("LIST").query(&mut server.connection()).unwrap();
    assert!(modules.is_empty(), "unexpected modules: {modules:?}");
}

#[test]
fn server_uses_the_harness_configuration() {
    let server = RedisServer::builder().without_module().server_arg("--maxmemory", "10mb").start();
    let mut con = server.connection();
    let config = |name: &str, con: &mut redis::Connection| -> String {
        let (_, value): (String, String) = redis::cmd("CONFIG").arg("GET").arg(name).query(con).unwrap();
        value
    };
    assert_eq!(config("maxmemory", &mut con), "10485760");
    assert_eq!(config("save", &mut con), "");
    assert_eq!(config("appendonly", &mut con), "no");
    assert_eq!(config("bind", &mut con), "127.0.0.1");
    assert_eq!(config("dir", &mut con), server.dir().canonicalize().unwrap().to_str().unwrap());
    assert!(server.log().contains("Ready to accept connections"), "log: {}", server.log());
}

#[test]
fn resp3_connection_speaks_resp3() {
    let server = plain_server();
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut server.connection_resp3()).unwrap();
    assert!(info.split_whitespace().any(|f| f == "resp=3"), "CLIENT INFO: {info}");
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut server.connection()).unwrap();
    assert!(info.split_whitespace().any(|f| f == "resp=2"), "CLIENT INFO: {info}");
}

#[test]
fn replica_catches_up_and_refuses_writes() {
    let primary = plain_server();
    let replica = RedisServer::builder().without_module().replica_of(&primary).start();
    replica.wait_for_sync();

    let mut primary_con = primary.connection();
    redis::cmd("SET").arg("greeting").arg("hello").exec(&mut primary_con).unwrap();
    replica.wait_caught_up(&primary);

    let mut replica_con = replica.connection();
    let value: Option<String> = redis::cmd("GET").arg("greeting").query(&mut replica_con).unwrap();
    assert_eq!(value.as_deref(), Some("hello"));

    let err = redis::cmd("SET").arg("greeting").arg("bye").exec(&mut replica_con).unwrap_err();
    assert_eq!(err.code(), Some("READONLY"), "unexpected error: {err}");
}

#[test]
fn two_servers_get_distinct_ports() {
    let a = plain_server();
    let b = plain_server();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.pid(), b.pid());
    for server in [&a, &b] {
        let pong: String = redis::cmd("PING").query(&mut server.connection()).unwrap();
        assert_eq!(pong, "PONG");
    }
}

#[test]
fn free_ports_are_never_repeated_nor_6379() {
    let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ports.len());
    assert!(!ports.contains(&6379));
}

#[test]
fn bad_server_arg_panics_with_the_log() {
    let result =
        panic::catch_unwind(|| RedisServer::builder().without_module().server_arg("--no-such-directive", "1").start());
    let payload = result.expect_err("a server with a bad argument must not start");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .expect("panic message is a string");
    assert!(message.contains("failed to start"), "message: {message}");
    assert!(message.contains("--- redis log ---"), "message: {message}");
    // redis-server's own complaint, from its stderr, is part of the quoted log.
    assert!(message.contains("Bad directive"), "message: {message}");
}

#[test]
fn dropping_a_server_stops_its_process() {
    let server = plain_server();
    let port = server.port();
    drop(server);
    let refused = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(1));
    assert!(refused.is_err(), "server on port {port} still answers");
}

#[test]
fn eventually_returns_the_first_success() {
    let mut calls = 0;
    let value = eventually(Duration::from_secs(5), "three calls", || {
        calls += 1;
        if calls >= 3 {
            Ok(calls)
        } else {
            Err(format!("{calls} calls"))
        }
    });
    assert_eq!(value, 3);
}

#[test]
fn eventually_panics_with_what_and_the_last_error() {
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        eventually::<()>(Duration::from_millis(50), "the impossible", || Err("still impossible".to_string()))
    }));
    let payload = result.expect_err("eventually must give up");
    let message = payload.downcast_ref::<String>().expect("formatted message");
    assert!(message.contains("the impossible"), "message: {message}");
    assert!(message.contains("still impossible"), "message: {message}");
}
