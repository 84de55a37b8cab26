//! Free loopback TCP ports for test servers, never handed out twice in one process.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// Ports already handed out by [`free_port`] in this process.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// The default Redis port; a system redis may be listening there, so tests never use it.
const DEFAULT_REDIS_PORT: u16 = 6379;

/// Returns a loopback port that was free a moment ago and that this process has not handed out
/// before (and never 6379).
///
/// The port is found by binding `127.0.0.1:0` and dropping the listener, so another process can
/// still take it before the caller binds it; [`RedisServer`](crate::RedisServer) retries with a
/// new port when that happens.
///
/// # Panics
///
/// If no loopback port can be bound.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind a free port on 127.0.0.1: {e}"));
        let port =
            listener.local_addr().unwrap_or_else(|e| panic!("cannot read the address of a bound listener: {e}")).port();
        drop(listener);
        if port == DEFAULT_REDIS_PORT {
            continue;
        }
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("could not find a loopback port not already handed out in 1000 attempts");
}
