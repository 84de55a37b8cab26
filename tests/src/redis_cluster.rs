//! A throwaway Redis Cluster for tests: N primaries with R replicas each, every node a [`RedisServer`]
//! with the qsess module, joined by `redis-cli --cluster create` and stopped on drop.
//!
//! Roles change (a failover promotes a replica), so the harness never remembers them: every question
//! about roles and slots is answered by asking the nodes (`CLUSTER NODES`), each about itself.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use self::cluster_nodes::{myself_in, myself_in_result, parse_cluster_nodes, slot_signature, NodeEntry};
use crate::eventually::eventually;
use crate::ports::free_port;
use crate::redis_server::{info_field, RedisServer, RedisServerBuilder};

mod cluster_nodes;

/// How far above its client port a node listens for the cluster bus (fixed by Redis).
const BUS_PORT_OFFSET: u16 = 10_000;
/// `--cluster-node-timeout`: short, so a failover takes seconds, yet long enough that a busy 2-core
/// machine does not mark a live node failing.
const NODE_TIMEOUT_MS: u64 = 2_000;
/// How long a cluster may take to agree on its configuration after it is created or resharded.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failover may take: the node timeout, the FAIL vote, the replica's election delay
/// (0.5 to 1 s plus 1 s per rank), then the new configuration reaching every node.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one probe of a node (connect, or one reply) may take before the node counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Bus ports of the cluster nodes this process started, so no node is given another's bus port
/// as its client port ([`free_port`] only knows the client ports it handed out).
static BUS_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port from [`free_port`] whose cluster bus port (port + 10000) is free too.
pub(crate) fn free_cluster_port() -> u16 {
    for _ in 0..1000 {
        let port = free_port();
        let Some(bus_port) = port.checked_add(BUS_PORT_OFFSET) else { continue };
        let mut bus_ports = BUS_PORTS.lock().unwrap_or_else(PoisonError::into_inner);
        if bus_ports.contains(&port) || TcpListener::bind((Ipv4Addr::LOCALHOST, bus_port)).is_err() {
            continue;
        }
        bus_ports.insert(bus_port);
        return port;
    }
    panic!("found no loopback port whose cluster bus port (+{BUS_PORT_OFFSET}) was free in 1000 attempts");
}

/// A running Redis Cluster of [`RedisServer`] nodes on `127.0.0.1`; see [`RedisCluster::builder`].
///
/// Dropping it stops every node the harness started; if the thread is panicking, the cluster's
/// `CLUSTER NODES` and every node's log are printed to stderr first.
#[derive(Debug)]
pub struct RedisCluster {
    /// Every node started, in start order, including killed ones (they are reaped on drop).
    nodes: Vec<RedisServer>,
    /// Ports of the nodes [`kill_primary_and_wait_for_failover`](Self::kill_primary_and_wait_for_failover) killed.
    killed: Mutex<BTreeSet<u16>>,
}

/// Configures and starts a [`RedisCluster`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.start()`"]
pub struct RedisClusterBuilder {
    primaries: usize,
    replicas_per_primary: usize,
    node: RedisServerBuilder,
}

impl RedisCluster {
    /// A builder for 3 primaries with 1 replica each, every node loading the qsess module.
    pub fn builder() -> RedisClusterBuilder {
        RedisClusterBuilder {
            primaries: 3,
            replicas_per_primary: 1,
            node: RedisServer::builder().cluster_enabled().server_arg("--cluster-node-timeout", NODE_TIMEOUT_MS),
        }
    }

    /// Every node the harness started, in start order, including any it killed.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes still running (not killed by the harness), in start order.
    pub fn live_nodes(&self) -> Vec<&RedisServer> {
        let killed = self.killed.lock().unwrap_or_else(PoisonError::into_inner).clone();
        self.nodes.iter().filter(|node| !killed.contains(&node.port())).collect()
    }

    /// The live nodes that are primaries now, each by its own `CLUSTER NODES`.
    pub fn primaries(&self) -> Vec<&RedisServer> {
        self.live_nodes().into_iter().filter(|node| self.myself(node).has_flag("master")).collect()
    }

    /// The live nodes that are replicas now, each by its own `CLUSTER NODES`.
    pub fn replicas(&self) -> Vec<&RedisServer> {
        self.live_nodes().into_iter().filter(|node| self.myself(node).has_flag("slave")).collect()
    }

    /// The node the harness started on `port`.
    ///
    /// # Panics
    ///
    /// If no node of this cluster has that port.
    pub fn node_by_port(&self, port: u16) -> &RedisServer {
        self.nodes.iter().find(|node| node.port() == port).unwrap_or_else(|| {
            panic!("no node of this cluster listens on port {port}; ports: {:?}", self.ports(&self.nodes))
        })
    }

    /// The node's cluster id (`CLUSTER MYID`).
    pub fn node_id(&self, node: &RedisServer) -> String {
        self.myself(node).id
    }

    /// The primary `replica` replicates, by the replica's own `CLUSTER NODES`.
    ///
    /// # Panics
    ///
    /// If `replica` is not a replica, or its primary is not a node of this cluster.
    pub fn primary_of(&self, replica: &RedisServer) -> &RedisServer {
        let myself = self.myself(replica);
        let Some(primary_id) = myself.primary_id.clone() else {
            panic!("node on port {} is not a replica: {myself:?}", replica.port())
        };
        let entries = self.cluster_nodes(replica);
        let primary = entries.iter().find(|entry| entry.id == primary_id).unwrap_or_else(|| {
            panic!("replica on port {} names primary {primary_id}, absent from {entries:?}", replica.port())
        });
        self.node_by_port(primary.port)
    }

    /// The URL of the first live node, for a client that discovers the rest.
    pub fn seed_url(&self) -> String {
        self.live_nodes().first().map(|node| node.url()).unwrap_or_else(|| panic!("every node was killed"))
    }

    /// The URLs of every live node.
    pub fn urls(&self) -> Vec<String> {
        self.live_nodes().iter().map(|node| node.url()).collect()
    }

    /// A cluster client seeded with every live node (it follows `MOVED` and failovers itself).
    pub fn cluster_client(&self) -> redis::cluster::ClusterClient {
        redis::cluster::ClusterClient::new(self.urls())
            .unwrap_or_else(|e| panic!("cluster client for {:?}: {e}", self.urls()))
    }

    /// The live primary that serves `slot`, by each primary's own `CLUSTER NODES`.
    ///
    /// # Panics
    ///
    /// If no live primary, or more than one, claims the slot (as during a migration or failover).
    pub fn primary_for_slot(&self, slot: u16) -> &RedisServer {
        let owners: Vec<&RedisServer> =
            self.primaries().into_iter().filter(|node| self.myself(node).slots.contains(&slot)).collect();
        match owners.as_slice() {
            [owner] => owner,
            _ => panic!(
                "slot {slot} is claimed by the primaries on ports {:?}, expected exactly one",
                self.ports(owners)
            ),
        }
    }

    /// The slots `node` serves by its own `CLUSTER NODES`, ascending: its own for a primary, its
    /// primary's (as the replica sees them) for a replica.
    pub fn owned_slots(&self, node: &RedisServer) -> Vec<u16> {
        let entries = self.cluster_nodes(node);
        let myself = myself_in(&entries, node.port());
        let serving = match &myself.primary_id {
            Some(primary_id) => entries.iter().find(|entry| &entry.id == primary_id).unwrap_or(myself),
            None => myself,
        };
        serving.slots.clone()
    }

    /// SIGKILLs `node`, a live primary with at least one replica, then waits until one of its
    /// replicas has been promoted and [`wait_until_healthy`](Self::wait_until_healthy) holds on the
    /// survivors. Returns the promoted node.
    ///
    /// # Panics
    ///
    /// If `node` is not a live primary with a replica, or the failover does not finish within 30 s.
    pub fn kill_primary_and_wait_for_failover(&self, node: &RedisServer) -> &RedisServer {
        let id = self.node_id(node);
        assert!(self.myself(node).has_flag("master"), "node on port {} is not a primary", node.port());
        let candidates: Vec<&RedisServer> = self
            .replicas()
            .into_iter()
            .filter(|replica| self.myself(replica).primary_id.as_ref() == Some(&id))
            .collect();
        assert!(!candidates.is_empty(), "primary on port {} has no replica to fail over to", node.port());
        node.kill_with_sigkill();
        self.killed.lock().unwrap_or_else(PoisonError::into_inner).insert(node.port());
        let mut probe = Probe::default();
        let promoted_port = eventually(FAILOVER_TIMEOUT, "a replica of the killed primary to be promoted", || {
            for candidate in &candidates {
                let entries = probe.cluster_nodes(candidate.port())?;
                if myself_in_result(&entries, candidate.port())?.has_flag("master") {
                    return Ok(candidate.port());
                }
            }
            Err(format!("no replica of {id} (ports {:?}) is a primary yet", self.ports(candidates.iter().copied())))
        });
        self.wait_until_healthy();
        self.node_by_port(promoted_port)
    }

    /// Moves `slot_count` slots, and their keys, from primary `from` to primary `to` with
    /// `redis-cli --cluster reshard`, then waits until `redis-cli --cluster check` is clean and
    /// [`wait_until_healthy`](Self::wait_until_healthy) holds. redis-cli takes `from`'s lowest slots.
    ///
    /// # Panics
    ///
    /// If redis-cli fails (the message quotes its output) or the cluster does not settle in 30 s.
    pub fn reshard(&self, from: &RedisServer, to: &RedisServer, slot_count: u16) {
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let seed = format!("127.0.0.1:{}", from.port());
        let slots = slot_count.to_string();
        let args = ["--cluster", "reshard", &seed, "--cluster-from", &from_id, "--cluster-to", &to_id];
        redis_cli(&[&args[..], &["--cluster-slots", &slots, "--cluster-yes"]].concat());
        self.wait_for_clean_check();
        self.wait_until_healthy();
    }

    /// Every `(port, key)` held by a live node in a slot that node does not serve (see
    /// [`owned_slots`](Self::owned_slots)), found by `SCAN`ning every key. Replicas are first brought
    /// up to date with their primaries, so only a key truly left behind is reported. Meaningful
    /// when no slot is being migrated.
    pub fn keys_outside_owned_slots(&self) -> Vec<(u16, String)> {
        let mut misplaced = Vec::new();
        for node in self.live_nodes() {
            if self.myself(node).has_flag("slave") {
                node.wait_caught_up(self.primary_of(node));
            }
            let owned: BTreeSet<u16> = self.owned_slots(node).into_iter().collect();
            for key in scan_all_keys(node) {
                if !owned.contains(&qsess_record::key_slot(&key)) {
                    misplaced.push((node.port(), String::from_utf8_lossy(&key).into_owned()));
                }
            }
        }
        misplaced
    }

    /// Waits (up to 30 s) until every live node reports `cluster_state:ok`, all 16384 slots ok,
    /// knows every node the harness started, and agrees with the others on which node serves which
    /// slot, and every live replica's link to its primary is up.
    pub fn wait_until_healthy(&self) {
        let ports = self.ports(self.live_nodes());
        let known = self.nodes.len();
        let mut probe = Probe::default();
        eventually(SETTLE_TIMEOUT, "every cluster node to report a healthy, agreed cluster", || {
            let mut signatures = BTreeSet::new();
            for &port in &ports {
                let info: String = probe.query(port, redis::cmd("CLUSTER").arg("INFO"))?;
                for (field, expected) in [
                    ("cluster_state", "ok".to_string()),
                    ("cluster_slots_ok", "16384".to_string()),
                    ("cluster_known_nodes", known.to_string()),
                ] {
                    if info_field(&info, field) != Some(expected.as_str()) {
                        return Err(format!(
                            "node on port {port} reports {field}:{:?}, expected {expected}\n{info}",
                            info_field(&info, field)
                        ));
                    }
                }
                let entries = probe.cluster_nodes(port)?;
                signatures.insert(slot_signature(&entries));
                if myself_in_result(&entries, port)?.has_flag("slave") {
                    let replication: String = probe.query(port, redis::cmd("INFO").arg("replication"))?;
                    if info_field(&replication, "master_link_status") != Some("up") {
                        return Err(format!("replica on port {port} has no link to its primary\n{replication}"));
                    }
                }
            }
            match signatures.len() {
                1 => Ok(()),
                _ => Err(format!("nodes disagree about who serves which slot: {signatures:#?}")),
            }
        });
    }

    fn wait_for_clean_check(&self) {
        let live = self.live_nodes();
        let seed_port = live.first().map_or_else(|| panic!("every node was killed"), |node| node.port());
        let seed = format!("127.0.0.1:{seed_port}");
        eventually(SETTLE_TIMEOUT, "`redis-cli --cluster check` to be clean", || {
            let (ok, output) = run_redis_cli(&["--cluster", "check", &seed]);
            let clean = ok
                && !output.contains("[ERR]")
                && !output.contains("[WARNING]")
                && output.contains("[OK] All 16384 slots covered");
            if clean {
                Ok(())
            } else {
                Err(output)
            }
        });
    }

    /// `node`'s own line of its `CLUSTER NODES`.
    fn myself(&self, node: &RedisServer) -> NodeEntry {
        myself_in(&self.cluster_nodes(node), node.port()).clone()
    }

    fn cluster_nodes(&self, node: &RedisServer) -> Vec<NodeEntry> {
        Probe::default().cluster_nodes(node.port()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ports<'a>(&self, nodes: impl IntoIterator<Item = &'a RedisServer>) -> Vec<u16> {
        nodes.into_iter().map(RedisServer::port).collect()
    }
}

impl RedisClusterBuilder {
    /// How many primaries (default 3, the least `redis-cli --cluster create` accepts).
    pub fn primaries(mut self, count: usize) -> Self {
        self.primaries = count;
        self
    }

    /// How many replicas each primary gets (default 1).
    pub fn replicas_per_primary(mut self, count: usize) -> Self {
        self.replicas_per_primary = count;
        self
    }

    /// Appends the module argument pair `name value` on every node's `--loadmodule`.
    pub fn module_arg(mut self, name: impl Display, value: impl Display) -> Self {
        self.node = self.node.module_arg(name, value);
        self
    }

    /// Appends an extra server argument and its value on every node (overriding the harness's).
    pub fn server_arg(mut self, name: impl Display, value: impl Display) -> Self {
        self.node = self.node.server_arg(name, value);
        self
    }

    /// Starts every node, joins them with `redis-cli --cluster create` and waits until
    /// [`RedisCluster::wait_until_healthy`] holds.
    ///
    /// # Panics
    ///
    /// If fewer than 3 primaries were asked for, a node does not start, redis-cli fails (the
    /// message quotes its output) or the cluster does not settle within 30 s.
    pub fn start(self) -> RedisCluster {
        assert!(self.primaries >= 3, "redis-cli --cluster create needs at least 3 primaries, got {}", self.primaries);
        let count = self.primaries * (1 + self.replicas_per_primary);
        let nodes: Vec<RedisServer> = (0..count).map(|_| self.node.clone().start()).collect();
        let cluster = RedisCluster { nodes, killed: Mutex::new(BTreeSet::new()) };
        let addresses: Vec<String> = cluster.nodes.iter().map(|node| format!("127.0.0.1:{}", node.port())).collect();
        let replicas = self.replicas_per_primary.to_string();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        redis_cli(&args);
        cluster.wait_until_healthy();
        cluster
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        if thread::panicking() {
            let view = self.live_nodes().first().map_or_else(
                || "(every node was killed)".to_string(),
                |node| {
                    Probe::default()
                        .query::<String>(node.port(), redis::cmd("CLUSTER").arg("NODES"))
                        .unwrap_or_else(|e| e)
                },
            );
            let killed = self.killed.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let report = format!(
                "\n===== redis cluster: ports {:?}, killed {killed:?}; CLUSTER NODES =====\n{view}\n",
                self.ports(&self.nodes)
            );
            let _ = io::stderr().write_all(report.as_bytes());
        }
        // SIGTERM every node first so they shut down together, not one after another's timeout;
        // each RedisServer's own drop then reaps it (and prints its log when panicking).
        for node in &self.nodes {
            node.signal(libc::SIGTERM);
        }
    }
}

/// Connections to nodes for polling, reopened after any error, so a wait does not open a
/// connection per node per poll.
#[derive(Default)]
struct Probe {
    connections: HashMap<u16, redis::Connection>,
}

impl Probe {
    fn query<T: redis::FromRedisValue>(&mut self, port: u16, cmd: &redis::Cmd) -> Result<T, String> {
        let result = self.connection(port).and_then(|con| cmd.query(con).map_err(|e| e.to_string()));
        if result.is_err() {
            self.connections.remove(&port);
        }
        result.map_err(|e| format!("{cmd:?} on port {port}: {e}"))
    }

    fn cluster_nodes(&mut self, port: u16) -> Result<Vec<NodeEntry>, String> {
        let text: String = self.query(port, redis::cmd("CLUSTER").arg("NODES"))?;
        parse_cluster_nodes(&text)
    }

    fn connection(&mut self, port: u16) -> Result<&mut redis::Connection, String> {
        match self.connections.entry(port) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).map_err(|e| e.to_string())?;
                let con = client.get_connection_with_timeout(PROBE_TIMEOUT).map_err(|e| e.to_string())?;
                con.set_read_timeout(Some(PROBE_TIMEOUT)).map_err(|e| e.to_string())?;
                Ok(entry.insert(con))
            }
        }
    }
}

/// Runs `redis-cli` with `args`; panics with its output unless it succeeds.
fn redis_cli(args: &[&str]) -> String {
    let (ok, output) = run_redis_cli(args);
    assert!(ok, "redis-cli {} failed:\n{output}", args.join(" "));
    output
}

/// Runs `redis-cli` with `args`: whether it exited 0, and its stdout and stderr.
fn run_redis_cli(args: &[&str]) -> (bool, String) {
    let output = Command::new("redis-cli").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run redis-cli: {e} (install the Debian package redis-tools, or run scripts/install-deps)")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn scan_all_keys(node: &RedisServer) -> Vec<Vec<u8>> {
    let mut con = node.connection();
    let mut keys = Vec::new();
    let mut cursor = 0_u64;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)
            .unwrap_or_else(|e| panic!("SCAN on port {} failed: {e}", node.port()));
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}
