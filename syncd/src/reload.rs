//! The loader: answers the module's misses from the mirror, so a session Redis lost comes back.
//!
//! It holds the module's loader lease (renewed well before it runs out), reads miss requests from every
//! bucket's miss stream, looks a batch of them up with one `SELECT ... WHERE handle = any($1)`, and
//! answers each with `QSESS.RESTORE` in one pipeline. Ended and expired rows are never restored, and
//! the module refuses revoked ids and older versions on its own.

use crate::config::RetryConfig;
use crate::error::Error;
use crate::mirror_sink;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::stream_entry::EntryId;
use crate::stream_source::{self, Layout};
use qsess_record::{Handle, SessionRecord};
use redis::aio::MultiplexedConnection;
use redis::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The lease the loader asks for, and how often it renews it: a dead loader stops holding clients
/// within three seconds, and a live one renews three times per lease.
const LEASE: Duration = Duration::from_secs(3);
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long one read of the miss streams waits.
const READ_BLOCK: Duration = Duration::from_millis(100);
/// Most misses answered with one query.
const MAX_BATCH: usize = 500;

// One primary-key probe per requested handle, whatever plan Postgres caches for the prepared
// statement: `handle = any($1)` on the table let a cached generic plan walk a whole index instead.
const SELECT_SESSIONS: &str = "
select s.handle, s.user_id, s.data, s.ip, s.user_agent, s.location, s.country,
       (extract(epoch from s.created_at) * 1000)::int8, (extract(epoch from s.updated_at) * 1000)::int8,
       (extract(epoch from s.last_seen) * 1000)::int8,
       coalesce((extract(epoch from s.absolute_expires_at) * 1000)::int8, 0), s.idle_timeout_ms, s.version, s.device
from unnest($1::text[]) as requested(handle)
join qsess.sessions as s on s.handle = requested.handle
where s.ended_at is null and s.expires_at > now()";

// Every live session of one user, for `QSESS.BYUSER` after Redis lost the user's index.
const SELECT_USER_SESSIONS: &str = "
select s.handle, s.user_id, s.data, s.ip, s.user_agent, s.location, s.country,
       (extract(epoch from s.created_at) * 1000)::int8, (extract(epoch from s.updated_at) * 1000)::int8,
       (extract(epoch from s.last_seen) * 1000)::int8,
       coalesce((extract(epoch from s.absolute_expires_at) * 1000)::int8, 0), s.idle_timeout_ms, s.version, s.device
from qsess.sessions as s
where s.user_id = $1 and s.ended_at is null and s.expires_at > now()";

/// Answers `QSESS.BYUSER` reload requests (Pub/Sub `<prefix>:reload-user`, "<bucket> <uid>") for as long
/// as the subscription lives: restores the user's live sessions, then `QSESS.RESTOREUSER` wakes the
/// waiters. Runs beside the miss loop, which holds the lease only while this subscription is up.
async fn answer_user_requests(
    mut pubsub: redis::aio::PubSub,
    mut connection: MultiplexedConnection,
    database_url: String,
) -> Result<(), Error> {
    use futures_util::StreamExt;
    let postgres = mirror_sink::connect(&database_url).await?;
    let select = postgres.prepare(SELECT_USER_SESSIONS).await?;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let payload = message.get_payload_bytes();
        let Some(space) = payload.iter().position(|&byte| byte == b' ') else { continue };
        let (bucket, user_id) = (&payload[..space], &payload[space + 1..]);
        let Some(bucket) = std::str::from_utf8(bucket).ok().and_then(|text| text.parse::<u32>().ok()) else { continue };
        let Ok(user_id) = std::str::from_utf8(user_id) else { continue };
        let rows = postgres.query(&select, &[&user_id]).await?;
        let mut pipeline = redis::pipe();
        for row in &rows {
            match record_from_row(row) {
                Ok((handle, record)) => {
                    pipeline.cmd("QSESS.RESTORE").arg(bucket).arg(handle).arg(record).ignore();
                }
                Err(error) => tracing::warn!(error = %crate::error::chain(&error), "a mirrored row cannot be restored"),
            }
        }
        pipeline.cmd("QSESS.RESTOREUSER").arg(bucket).arg(user_id).ignore();
        pipeline.query_async::<()>(&mut connection).await?;
        metrics::counter!("qsess_syncd_user_reloads_total").increment(1);
        tracing::debug!(sessions = rows.len(), "reloaded a user's sessions");
    }
    Err(Error::UnexpectedReply("the reload-user subscription ended".to_owned()))
}

/// Stops the user-request task when the miss loop ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the loader until shutdown, reconnecting with backoff; detaches on the way out.
pub async fn run(redis_url: String, database_url: String, retry: RetryConfig, mut shutdown: Shutdown) {
    let mut backoff = Backoff::new(retry.clone());
    while !shutdown.is_requested() {
        match serve(&redis_url, &database_url, &mut shutdown).await {
            Ok(()) => break,
            Err(error) => {
                metrics::counter!("qsess_syncd_retries_total", "target" => "loader").increment(1);
                tracing::warn!(error = %crate::error::chain(&error), "the loader lost a connection; reattaching");
                if !backoff.wait(&mut shutdown).await {
                    break;
                }
            }
        }
    }
    // Detach at once, so clients stop waiting for a loader that is gone.
    if let Ok(client) = redis::Client::open(redis_url.as_str()) {
        if let Ok(mut connection) = stream_source::connect(&client).await {
            let _: Result<(), _> = redis::cmd("QSESS.LOADER").arg(0).query_async(&mut connection).await;
        }
    }
}

async fn serve(redis_url: &str, database_url: &str, shutdown: &mut Shutdown) -> Result<(), Error> {
    let client = redis::Client::open(redis_url)?;
    let mut connection = stream_source::connect(&client).await?;
    let layout = Layout::read(&mut connection).await?;
    let keys: Vec<String> = (0..layout.buckets).map(|bucket| layout.miss_stream(bucket)).collect();
    let postgres = mirror_sink::connect(database_url).await?;
    let select = postgres.prepare(SELECT_SESSIONS).await?;
    // Start after the newest request that exists before attaching: older ones were answered by their
    // timeouts already, and every one made from now on is read, even if it comes before the first read.
    let mut last_ids = Vec::with_capacity(keys.len());
    for key in &keys {
        last_ids.push(newest_entry_id(&mut connection, key).await?);
    }
    // Subscribe before attaching, so that no BYUSER asks while nobody listens.
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(format!("{}:reload-user", layout.prefix)).await?;
    let users = AbortOnDrop(tokio::spawn(answer_user_requests(pubsub, connection.clone(), database_url.to_owned())));
    attach(&mut connection).await?;
    let mut renewed = Instant::now();
    tracing::info!("attached as the loader");
    while !shutdown.is_requested() {
        if users.0.is_finished() {
            return Err(Error::UnexpectedReply("the user reload task stopped".to_owned()));
        }
        if renewed.elapsed() >= RENEW_EVERY {
            attach(&mut connection).await?;
            renewed = Instant::now();
        }
        let misses = read_misses(&mut connection, &keys, &mut last_ids).await?;
        if misses.is_empty() {
            continue;
        }
        let started = Instant::now();
        let handles: Vec<String> = misses.iter().map(|(_, handle)| handle.as_str().to_owned()).collect();
        let rows = postgres.query(&select, &[&handles]).await?;
        let mut found: HashMap<String, Vec<u8>> = HashMap::with_capacity(rows.len());
        for row in rows {
            match record_from_row(&row) {
                Ok((handle, record)) => {
                    found.insert(handle, record);
                }
                Err(error) => tracing::warn!(error = %crate::error::chain(&error), "a mirrored row cannot be restored"),
            }
        }
        let mut pipeline = redis::pipe();
        for (bucket, handle) in &misses {
            let command = pipeline.cmd("QSESS.RESTORE").arg(*bucket).arg(handle.as_str());
            match found.get(handle.as_str()) {
                Some(record) => command.arg(record.as_slice()),
                None => command.arg("NOTFOUND"),
            };
        }
        let outcomes: Vec<Value> = pipeline.query_async(&mut connection).await?;
        let restored = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Value::SimpleString(text) if text == "RESTORED"))
            .count();
        metrics::counter!("qsess_syncd_reloads_total", "outcome" => "restored").increment(restored as u64);
        metrics::counter!("qsess_syncd_reloads_total", "outcome" => "other")
            .increment((misses.len() - restored) as u64);
        metrics::histogram!("qsess_syncd_reload_seconds").record(started.elapsed().as_secs_f64());
        tracing::debug!(misses = misses.len(), restored, "answered misses");
    }
    Ok(())
}

/// The id of a stream's newest entry, or `0-0` for an empty or missing stream.
async fn newest_entry_id(connection: &mut MultiplexedConnection, key: &str) -> Result<String, Error> {
    let newest: Value =
        redis::cmd("XREVRANGE").arg(key).arg("+").arg("-").arg("COUNT").arg(1).query_async(connection).await?;
    let id = match newest {
        Value::Array(entries) => entries.first().and_then(|entry| match entry {
            Value::Array(parts) => parts.first().and_then(|id| match id {
                Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    };
    Ok(id.unwrap_or_else(|| "0-0".to_owned()))
}

async fn attach(connection: &mut MultiplexedConnection) -> Result<(), Error> {
    redis::cmd("QSESS.LOADER").arg(LEASE.as_millis() as u64).query_async::<()>(connection).await?;
    Ok(())
}

/// Reads new miss requests from every bucket, deduplicated: (bucket, handle) pairs.
async fn read_misses(
    connection: &mut MultiplexedConnection,
    keys: &[String],
    last_ids: &mut [String],
) -> Result<Vec<(u32, Handle)>, Error> {
    let reply: Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(MAX_BATCH)
        .arg("BLOCK")
        .arg(READ_BLOCK.as_millis() as u64)
        .arg("STREAMS")
        .arg(keys)
        .arg(&*last_ids)
        .query_async(connection)
        .await?;
    let entries = stream_source::parse_read_reply(&reply, keys)?;
    let mut misses = Vec::with_capacity(entries.len());
    for entry in entries {
        if let Some(last) = last_ids.get_mut(entry.stream) {
            let newest = EntryId::parse(last).map_or(entry.id, |known| known.max(entry.id));
            *last = newest.to_string();
        }
        let handle =
            entry.fields.iter().find(|(name, _)| name == b"h").and_then(|(_, value)| Handle::parse(value).ok());
        if let Some(handle) = handle {
            let miss = (entry.stream as u32, handle);
            if !misses.contains(&miss) {
                misses.push(miss);
            }
        }
    }
    Ok(misses)
}

/// A mirrored row as the module's record encoding.
fn record_from_row(row: &tokio_postgres::Row) -> Result<(String, Vec<u8>), Error> {
    let handle: String = row.try_get(0)?;
    let user_id: Option<String> = row.try_get(1)?;
    let data: Vec<u8> = row.try_get(2)?;
    let ip: Option<IpAddr> = row.try_get(3)?;
    let user_agent: Option<String> = row.try_get(4)?;
    let location: Option<String> = row.try_get(5)?;
    let country: Option<String> = row.try_get(6)?;
    let device: Option<String> = row.try_get(13)?;
    let milliseconds = |index: usize| -> Result<u64, Error> { Ok(row.try_get::<_, i64>(index)?.max(0) as u64) };
    let record = SessionRecord {
        version: milliseconds(12)?,
        created_ms: milliseconds(7)?,
        updated_ms: milliseconds(8)?,
        seen_ms: milliseconds(9)?,
        absolute_deadline_ms: milliseconds(10)?,
        idle_ms: milliseconds(11)?,
        user: user_id.as_deref().map(str::as_bytes),
        ip,
        user_agent: user_agent.as_deref().map(str::as_bytes),
        location: location.as_deref().map(str::as_bytes),
        country: country.as_deref().map(str::as_bytes),
        // The module stores a device summary only when it keeps no user agent; otherwise it derives it.
        device: device.as_deref().filter(|_| user_agent.is_none()).map(str::as_bytes),
        data: &data,
    };
    Ok((handle, record.encode()))
}
