//! A writer for the failover test: sessions written straight to the primaries, following `MOVED`,
//! each followed by `WAIT 1 1000` on the same connection, so a session counts as acknowledged only
//! once a replica has it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::new_session;
use qsess_record::key_slot;
use qsess_tests::eventually;

/// Outcomes counted by [`AcknowledgedWriter`].
pub(super) const ACKNOWLEDGED: usize = 0;
pub(super) const NOT_ACKNOWLEDGED: usize = 1;

/// Sessions written straight to the primaries, following `MOVED`, each followed by `WAIT 1 1000` on
/// the same connection: a session is acknowledged once a replica has it.
pub(super) struct AcknowledgedWriter {
    stop: Arc<AtomicBool>,
    /// Acknowledged, not acknowledged, failed.
    counts: Arc<[AtomicUsize; 3]>,
    thread: JoinHandle<WriterReport>,
}

#[derive(Debug, Default)]
pub(super) struct WriterReport {
    pub(super) acknowledged: Vec<String>,
    pub(super) unacknowledged: usize,
    pub(super) errors: usize,
    pub(super) last_error: Option<String>,
}

impl AcknowledgedWriter {
    pub(super) fn start(ports: Vec<u16>, users: usize) -> AcknowledgedWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let thread = thread::spawn({
            let (stop, counts) = (stop.clone(), counts.clone());
            move || {
                let mut nodes = NodeConnections::new(ports);
                let mut report = WriterReport::default();
                let mut n = 0_usize;
                while !stop.load(Ordering::Relaxed) {
                    let uid = format!("failover-user-{}", n % users);
                    match nodes.write_and_wait(&uid, &format!("data-{n}")) {
                        Ok(Some(id)) => {
                            report.acknowledged.push(id);
                            counts[0].fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(None) => {
                            report.unacknowledged += 1;
                            counts[1].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            report.errors += 1;
                            report.last_error = Some(error.to_string());
                            counts[2].fetch_add(1, Ordering::Relaxed);
                            thread::sleep(Duration::from_millis(20));
                        }
                    }
                    n += 1;
                    thread::sleep(Duration::from_millis(2));
                }
                report
            }
        });
        AcknowledgedWriter { stop, counts, thread }
    }

    /// Waits until `count` more writes than now had the outcome `which` (0 acknowledged, 1 not).
    pub(super) fn wait_for_more(&self, which: usize, count: usize) {
        let target = self.counts[which].load(Ordering::Relaxed) + count;
        eventually(Duration::from_secs(30), "more writes", || {
            let [done, unacknowledged, failed] = [0, 1, 2].map(|index| self.counts[index].load(Ordering::Relaxed));
            if self.thread.is_finished() {
                panic!("the writer thread ended early");
            }
            if self.counts[which].load(Ordering::Relaxed) >= target {
                Ok(())
            } else {
                Err(format!("{done} acknowledged, {unacknowledged} not acknowledged, {failed} failed; target {target}"))
            }
        });
    }

    pub(super) fn stop(self) -> WriterReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    }
}

/// One connection per node port, and which port served each slot last.
struct NodeConnections {
    ports: Vec<u16>,
    connections: HashMap<u16, redis::Connection>,
    routes: HashMap<u16, u16>,
    next_guess: usize,
}

impl NodeConnections {
    fn new(ports: Vec<u16>) -> NodeConnections {
        NodeConnections { ports, connections: HashMap::new(), routes: HashMap::new(), next_guess: 0 }
    }

    fn connection(&mut self, port: u16) -> redis::RedisResult<&mut redis::Connection> {
        if let std::collections::hash_map::Entry::Vacant(entry) = self.connections.entry(port) {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
            let con = client.get_connection_with_timeout(Duration::from_millis(500))?;
            con.set_read_timeout(Some(Duration::from_secs(3)))?;
            entry.insert(con);
        }
        Ok(self.connections.get_mut(&port).expect("inserted above"))
    }

    /// `QSESS.NEW USER uid` on the node serving the uid's slot, then `WAIT 1 1000` there: the id if a
    /// replica acknowledged it, `None` if none did in time.
    fn write_and_wait(&mut self, uid: &str, data: &str) -> redis::RedisResult<Option<String>> {
        let slot = key_slot(uid.as_bytes());
        let mut port = match self.routes.get(&slot) {
            Some(port) => *port,
            None => {
                self.next_guess += 1;
                self.ports[self.next_guess % self.ports.len()]
            }
        };
        for _ in 0..5 {
            let outcome = self.connection(port).and_then(|con| new_session(con, uid, data));
            match outcome {
                Ok(id) => {
                    let con = self.connection(port)?;
                    let replicas: i64 = redis::cmd("WAIT").arg(1).arg(1000).query(con)?;
                    return Ok((replicas >= 1).then_some(id));
                }
                Err(error) if error.code() == Some("MOVED") => {
                    // `redirect_node` is (address, slot).
                    let moved_to = error
                        .redirect_node()
                        .and_then(|(address, _)| address.rsplit_once(':'))
                        .and_then(|(_, port)| port.parse().ok());
                    let Some(moved_to) = moved_to else { return Err(error) };
                    port = moved_to;
                    self.routes.insert(slot, port);
                }
                Err(error) => {
                    self.connections.remove(&port);
                    self.routes.remove(&slot);
                    return Err(error);
                }
            }
        }
        Err(redis::RedisError::from(std::io::Error::other("too many redirects")))
    }
}
