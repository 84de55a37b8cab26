//! What a Redis Cluster node tells the daemon: whether it runs in cluster mode, whether it is a primary or
//! a replica right now, which nodes serve the slots (for `verify`), and what its error replies mean to a
//! daemon that reads one node's per-slot streams.
//!
//! On a cluster one `qsess-syncd` runs beside every node. Every key-level question below is asked of
//! that one node, never through a cluster client: a reply that names another node (`MOVED`, `ASK`)
//! means "not this node's slot", and the daemon of the node that serves it does the work.

use crate::error::Error;
use crate::stream_source::bulk_text;
use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, IntoConnectionInfo, ServerError, Value};

/// Whether the server runs Redis Cluster. Asked with `CONFIG GET cluster-enabled`, which the daemon's
/// ACL recipe already grants, rather than `INFO cluster`; a server that does not know the setting is
/// not a cluster node.
pub async fn is_cluster_node(connection: &mut MultiplexedConnection) -> Result<bool, Error> {
    let pairs: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("cluster-enabled").query_async(connection).await?;
    Ok(matches!(pairs.as_slice(), [_, value] if value.eq_ignore_ascii_case("yes")))
}

/// What a node is right now, by `ROLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// Serves writes: its daemon mirrors its streams and answers its misses.
    Primary,
    /// Replicates a primary: its daemon idles until a failover promotes it.
    Replica,
}

/// Reads the first element of a `ROLE` reply: `master`, or `slave` (Redis) / `replica`.
pub fn parse_role(reply: &Value) -> Result<NodeRole, Error> {
    let first = match reply {
        Value::Array(items) => items.first().and_then(bulk_text),
        _ => None,
    };
    match first.as_deref() {
        Some("master") => Ok(NodeRole::Primary),
        Some("slave" | "replica") => Ok(NodeRole::Replica),
        other => Err(Error::UnexpectedReply(format!("ROLE starts with {other:?}, not master or slave"))),
    }
}

/// The node's role now (`ROLE`, which the daemon's ACL must grant on a cluster).
pub async fn read_role(connection: &mut MultiplexedConnection) -> Result<NodeRole, Error> {
    let reply: Value = redis::cmd("ROLE").query_async(connection).await?;
    parse_role(&reply)
}

/// What an error reply to a command on one stream means for the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// `MOVED`, `ASK` or `READONLY`: another node serves the key's slot now (it was resharded, or this
    /// node was demoted). The stream is that node's daemon's: forget it here. Entries read but not
    /// acknowledged stay pending in the stream and move with it, and the other daemon re-reads them.
    SlotElsewhere,
    /// `TRYAGAIN` (a slot mid-migration), `CLUSTERDOWN`, `LOADING`, `MASTERDOWN`, `BUSY`: the node
    /// cannot answer now; ask again shortly.
    TryLater,
    /// `NOGROUP`: the stream exists without the daemon's consumer group, or not at all.
    NoGroup,
    /// Anything else: a refusal the daemon does not expect (ACL, wrong type, unknown command).
    Other,
}

impl ErrorClass {
    /// Classifies an error by its code, the first word of the reply.
    pub fn of_code(code: &str) -> ErrorClass {
        match code {
            "MOVED" | "ASK" | "READONLY" => ErrorClass::SlotElsewhere,
            "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN" | "BUSY" => ErrorClass::TryLater,
            "NOGROUP" => ErrorClass::NoGroup,
            _ => ErrorClass::Other,
        }
    }

    pub fn of(error: &ServerError) -> ErrorClass {
        ErrorClass::of_code(error.code())
    }

    /// The slot is served elsewhere now, or cannot be served this moment: for a loader, no refusal of
    /// the request, which the node serving the slot answers (or the waiting client's timeout does).
    pub fn is_elsewhere_or_later(self) -> bool {
        matches!(self, ErrorClass::SlotElsewhere | ErrorClass::TryLater)
    }

    /// The class of one reply in a pipeline read with `ignore_errors`; `None` when it is no error.
    pub fn of_reply(reply: &Value) -> Option<ErrorClass> {
        match reply {
            Value::ServerError(error) => Some(ErrorClass::of(error)),
            _ => None,
        }
    }
}

/// The error reply as a daemon error: retryable for [`ErrorClass::TryLater`] (see `Error::is_retryable`).
pub fn server_error(error: &ServerError) -> Error {
    Error::Redis(error.clone().into())
}

/// A node's client address as `CLUSTER SLOTS` gives it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeAddress {
    pub host: String,
    pub port: u16,
}

/// The primaries that serve slots, from a `CLUSTER SLOTS` reply (`[[start, end, [host, port, id, ..],
/// replica, ..], ..]`), each once, in address order. A primary without a known endpoint (`""`, `"?"` or
/// null) is reached at `seed_host`, the host the question was asked of, as Redis documents.
pub fn parse_cluster_slots(reply: &Value, seed_host: &str) -> Result<Vec<NodeAddress>, Error> {
    let unexpected = |what: &str| Error::UnexpectedReply(format!("CLUSTER SLOTS reply: {what}"));
    let Value::Array(ranges) = reply else { return Err(unexpected("not an array")) };
    let mut primaries = Vec::new();
    for range in ranges {
        let Value::Array(parts) = range else { return Err(unexpected("a slot range is not an array")) };
        let Some(Value::Array(primary)) = parts.get(2) else { return Err(unexpected("a range has no primary")) };
        let host = match primary.first() {
            Some(Value::Nil) => String::new(),
            Some(value) => bulk_text(value).ok_or_else(|| unexpected("a host is not a string"))?,
            None => return Err(unexpected("a primary has no host")),
        };
        let host = if host.is_empty() || host == "?" { seed_host.to_owned() } else { host };
        let port = match primary.get(1) {
            Some(Value::Int(port)) => u16::try_from(*port).map_err(|_| unexpected("a port is out of range"))?,
            _ => return Err(unexpected("a port is not a number")),
        };
        primaries.push(NodeAddress { host, port });
    }
    primaries.sort();
    primaries.dedup();
    Ok(primaries)
}

/// Every primary that serves slots, as the node `connection` talks to sees the cluster
/// (`CLUSTER SLOTS`; `qsess-syncd verify` needs `+cluster|slots` on a cluster).
pub async fn primaries(connection: &mut MultiplexedConnection, seed_host: &str) -> Result<Vec<NodeAddress>, Error> {
    let reply: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(connection).await?;
    parse_cluster_slots(&reply, seed_host)
}

/// The host of a Redis URL, for [`parse_cluster_slots`]; `None` for a Unix socket.
pub fn url_host(url: &str) -> Result<Option<String>, Error> {
    let info = url.into_connection_info()?;
    Ok(match info.addr() {
        ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => Some(host.clone()),
        _ => None,
    })
}

/// A client for `node` with everything else of `url`: user, password, database, TLS settings.
pub fn client_for_node(url: &str, node: &NodeAddress) -> Result<redis::Client, Error> {
    let info = url.into_connection_info()?;
    let addr = match info.addr().clone() {
        ConnectionAddr::Tcp(_, _) => ConnectionAddr::Tcp(node.host.clone(), node.port),
        ConnectionAddr::TcpTls { insecure, tls_params, .. } => {
            ConnectionAddr::TcpTls { host: node.host.clone(), port: node.port, insecure, tls_params }
        }
        _ => {
            return Err(Error::Config(
                "a cluster's nodes are reached over TCP: give a redis:// or rediss:// URL, not a socket".to_owned(),
            ))
        }
    };
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    Ok(redis::Client::open(info.set_addr(addr).set_redis_settings(settings))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn error_reply(line: &str) -> Value {
        redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn roles_are_read_from_the_first_element() {
        let primary = Value::Array(vec![bulk("master"), Value::Int(3129), Value::Array(vec![])]);
        assert_eq!(parse_role(&primary).unwrap(), NodeRole::Primary);
        let replica = Value::Array(vec![bulk("slave"), bulk("127.0.0.1"), Value::Int(9753), bulk("connected")]);
        assert_eq!(parse_role(&replica).unwrap(), NodeRole::Replica);
        assert!(parse_role(&Value::Array(vec![bulk("sentinel")])).is_err());
        assert!(parse_role(&Value::Nil).is_err());
    }

    #[test]
    fn error_replies_are_classified_by_their_code() {
        let cases = [
            ("MOVED 3999 127.0.0.1:6381", ErrorClass::SlotElsewhere),
            ("ASK 3999 127.0.0.1:6381", ErrorClass::SlotElsewhere),
            ("READONLY You can't write against a read only replica.", ErrorClass::SlotElsewhere),
            ("TRYAGAIN Multiple keys request during rehashing of slot", ErrorClass::TryLater),
            ("CLUSTERDOWN The cluster is down", ErrorClass::TryLater),
            ("LOADING Redis is loading the dataset in memory", ErrorClass::TryLater),
            ("NOGROUP No such key 'qs:{0}:chg' or consumer group 'g'", ErrorClass::NoGroup),
            ("NOPERM this user has no permissions", ErrorClass::Other),
            ("ERR unknown command", ErrorClass::Other),
        ];
        for (line, class) in cases {
            assert_eq!(ErrorClass::of_reply(&error_reply(line)), Some(class), "{line}");
        }
        assert_eq!(ErrorClass::of_reply(&Value::Int(1)), None);
        let Value::ServerError(try_again) = error_reply("TRYAGAIN later") else { panic!("not an error") };
        assert!(server_error(&try_again).is_retryable());
        let Value::ServerError(moved) = error_reply("MOVED 1 127.0.0.1:1") else { panic!("not an error") };
        assert!(!server_error(&moved).is_retryable());
    }

    #[test]
    fn cluster_slots_name_each_primary_once() {
        let node = |host: Value, port: i64, id: &str| Value::Array(vec![host, Value::Int(port), bulk(id)]);
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node(bulk("127.0.0.1"), 7001, "a"),
                node(bulk("127.0.0.1"), 7004, "d"),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(10922), node(bulk(""), 7002, "b")]),
            Value::Array(vec![Value::Int(10923), Value::Int(11000), node(bulk("127.0.0.1"), 7001, "a")]),
            Value::Array(vec![Value::Int(11001), Value::Int(16383), node(Value::Nil, 7003, "c")]),
        ]);
        let primaries = parse_cluster_slots(&reply, "10.0.0.9").unwrap();
        let seen: Vec<(&str, u16)> = primaries.iter().map(|node| (node.host.as_str(), node.port)).collect();
        assert_eq!(seen, [("10.0.0.9", 7002), ("10.0.0.9", 7003), ("127.0.0.1", 7001)]);
        assert!(parse_cluster_slots(&Value::Array(vec![]), "h").unwrap().is_empty());
        assert!(parse_cluster_slots(&Value::Int(1), "h").is_err());
        let bad_port =
            Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(1), node(bulk("h"), 70000, "x")])]);
        assert!(parse_cluster_slots(&bad_port, "h").is_err());
    }

    #[test]
    fn node_clients_keep_the_credentials_of_the_url() {
        let node = NodeAddress { host: "127.0.0.1".to_owned(), port: 7005 };
        let client = client_for_node("redis://syncd:pw@127.0.0.1:7001/0", &node).unwrap();
        let info = client.get_connection_info();
        assert_eq!(info.addr(), &ConnectionAddr::Tcp("127.0.0.1".to_owned(), 7005));
        let settings = info.redis_settings();
        assert_eq!((settings.username(), settings.password()), (Some("syncd"), Some("pw")));
        assert!(settings.skip_set_lib_name(), "no CLIENT SETINFO, as for the node the URL names");
        assert!(client_for_node("unix:///tmp/redis.sock", &node).is_err());
        assert_eq!(url_host("redis://h1:7001/").unwrap().as_deref(), Some("h1"));
    }
}
