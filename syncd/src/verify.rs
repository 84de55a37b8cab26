//! `qsess-syncd verify`: compares the live sessions in Redis with the mirror, both directions.
//!
//! On Redis Cluster, given any node, it asks that node which primaries serve the slots (`CLUSTER
//! SLOTS`) and compares the union of their sessions with the mirror.

use crate::cluster_node;
use crate::error::Error;
use crate::mirror_sink;
use crate::stream_source::{self, Layout};
use qsess_record::{Handle, SessionRecord};
use redis::aio::MultiplexedConnection;
use std::collections::BTreeMap;
use std::fmt;

/// Sessions expiring this close to now are left out: they may expire between the two reads.
const EXPIRY_MARGIN_MS: u64 = 2_000;

/// One session the two sides disagree about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    MissingInPostgres { handle: String, version: u64 },
    MissingInRedis { handle: String, version: u64 },
    VersionMismatch { handle: String, redis: u64, postgres: u64 },
}

impl fmt::Display for Difference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::MissingInPostgres { handle, version } => {
                write!(formatter, "missing in postgres: {handle} (redis has version {version})")
            }
            Difference::MissingInRedis { handle, version } => {
                write!(formatter, "missing in redis: {handle} (postgres has version {version})")
            }
            Difference::VersionMismatch { handle, redis, postgres } => {
                write!(formatter, "version differs: {handle} (redis {redis}, postgres {postgres})")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub redis_sessions: usize,
    pub postgres_sessions: usize,
    pub differences: Vec<Difference>,
}

impl VerifyReport {
    pub fn matches(&self) -> bool {
        self.differences.is_empty()
    }
}

pub async fn verify(redis_url: &str, database_url: &str) -> Result<VerifyReport, Error> {
    let client = stream_source::open_client(redis_url)?;
    let mut connection = stream_source::connect(&client).await?;
    let layout = Layout::read(&mut connection).await?;
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let mut in_redis = BTreeMap::new();
    if layout.cluster {
        let seed_host = cluster_node::url_host(redis_url)?.unwrap_or_default();
        for node in cluster_node::primaries(&mut connection, &seed_host).await? {
            let mut on_node = stream_source::connect(&cluster_node::client_for_node(redis_url, &node)?).await?;
            // One pattern for every slot (a SCAN per slot would be 16384 of them); keys are then checked
            // to be session records of a slot tag qsess writes.
            let pattern = format!("{}:{{*}}:s:*", layout.prefix);
            let wanted = |key: &str| is_cluster_session_key(&layout, key);
            scan_sessions(&mut on_node, &pattern, now_ms, &mut in_redis, wanted, Reads::PerSlot).await?;
        }
    } else {
        for bucket in 0..layout.buckets {
            let pattern = layout.session_pattern(bucket);
            scan_sessions(&mut connection, &pattern, now_ms, &mut in_redis, |_| true, Reads::OneMget).await?;
        }
    }
    let postgres = mirror_sink::connect(database_url).await?;
    let rows = postgres
        .query(
            "select handle, version, (extract(epoch from expires_at) * 1000)::int8 from qsess.sessions where ended_at is null",
            &[],
        )
        .await?;
    let mut in_postgres = BTreeMap::new();
    for row in rows {
        let handle: String = row.get(0);
        let version: i64 = row.get(1);
        let expires_ms: i64 = row.get(2);
        if expires_ms.max(0) as u64 > now_ms + EXPIRY_MARGIN_MS {
            in_postgres.insert(handle, version.max(0) as u64);
        }
    }
    let mut differences = Vec::new();
    for (handle, &version) in &in_redis {
        match in_postgres.get(handle) {
            None => differences.push(Difference::MissingInPostgres { handle: handle.clone(), version }),
            Some(&postgres) if postgres != version => {
                differences.push(Difference::VersionMismatch { handle: handle.clone(), redis: version, postgres })
            }
            Some(_) => {}
        }
    }
    for (handle, &version) in &in_postgres {
        if !in_redis.contains_key(handle) {
            differences.push(Difference::MissingInRedis { handle: handle.clone(), version });
        }
    }
    Ok(VerifyReport { redis_sessions: in_redis.len(), postgres_sessions: in_postgres.len(), differences })
}

/// How the records of a page of `SCAN` are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// One `MGET`: a standalone server (all keys of a page share a bucket anyway).
    OneMget,
    /// One `MGET` per hash slot, pipelined: a cluster node refuses a read across slots (`CROSSSLOT`).
    PerSlot,
}

/// Adds the live sessions of the keys matching `pattern` (and `wanted`) on one server to `in_redis`:
/// handle -> version, leaving out those about to expire.
async fn scan_sessions(
    connection: &mut MultiplexedConnection,
    pattern: &str,
    now_ms: u64,
    in_redis: &mut BTreeMap<String, u64>,
    wanted: impl Fn(&str) -> bool,
    reads: Reads,
) -> Result<(), Error> {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(connection)
            .await?;
        let mut keys: Vec<String> = keys.into_iter().filter(|key| wanted(key)).collect();
        if !keys.is_empty() {
            let values: Vec<Option<Vec<u8>>> = match reads {
                Reads::OneMget => redis::cmd("MGET").arg(&keys).query_async(connection).await?,
                Reads::PerSlot => {
                    keys.sort_by_key(|key| qsess_record::key_slot(key.as_bytes()));
                    let mut pipeline = redis::pipe();
                    for same_slot in keys
                        .chunk_by(|a, b| qsess_record::key_slot(a.as_bytes()) == qsess_record::key_slot(b.as_bytes()))
                    {
                        pipeline.cmd("MGET").arg(same_slot);
                    }
                    let per_slot: Vec<Vec<Option<Vec<u8>>>> = pipeline.query_async(connection).await?;
                    per_slot.into_iter().flatten().collect()
                }
            };
            for (key, value) in keys.iter().zip(values) {
                let Some(bytes) = value else { continue };
                let Ok(record) = SessionRecord::decode(&bytes) else { continue };
                let expires_ms = record.expires_ms().unwrap_or(u64::MAX);
                if expires_ms > now_ms + EXPIRY_MARGIN_MS {
                    let handle = key.rsplit(':').next().unwrap_or_default().to_owned();
                    in_redis.insert(handle, record.version);
                }
            }
        }
        cursor = next;
        if cursor == 0 {
            return Ok(());
        }
    }
}

/// Whether `key` is a session record on a cluster, `<prefix>:{<slot tag>}:s:<handle>`: the cluster's
/// `SCAN` pattern also matches other keys whose names happen to contain `}:s:` (a user index of such a
/// uid), which are not sessions.
fn is_cluster_session_key(layout: &Layout, key: &str) -> bool {
    let Some(rest) = key.strip_prefix(layout.prefix.as_str()).and_then(|rest| rest.strip_prefix(":{")) else {
        return false;
    };
    let Some((tag, handle)) = rest.split_once("}:s:") else { return false };
    layout.key_names().bucket_tags().bucket_of_tag(tag.as_bytes(), layout.buckets).is_some()
        && Handle::parse(handle.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_session_keys_are_told_from_look_alikes() {
        let layout = Layout { prefix: "qs".into(), buckets: u32::from(qsess_record::SLOT_COUNT), cluster: true };
        let names = layout.key_names();
        let handle = Handle::from_session_id(b"sid");
        let session = String::from_utf8(names.session(77, &handle)).unwrap();
        assert!(is_cluster_session_key(&layout, &session), "{session}");
        let index = String::from_utf8(names.user_index(77, format!("x}}:s:{handle}").as_bytes())).unwrap();
        assert!(!is_cluster_session_key(&layout, &index), "{index}");
        assert!(!is_cluster_session_key(&layout, &format!("qs:{{{{x}}}}:s:{handle}")), "no slot's tag");
        assert!(!is_cluster_session_key(&layout, &format!("other:{{0}}:s:{handle}")));
        assert!(!is_cluster_session_key(&layout, &session.replace(handle.as_str(), "short")));
    }
}
