//! `qsess-syncd verify`: compares the live sessions in Redis with the mirror, both directions.

use crate::error::Error;
use crate::mirror_sink;
use crate::stream_source::{self, Layout};
use qsess_record::SessionRecord;
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
    for bucket in 0..layout.buckets {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(layout.session_pattern(bucket))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await?;
            if !keys.is_empty() {
                let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query_async(&mut connection).await?;
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
                break;
            }
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
