//! The loader: answers the module's misses from the mirror, so a session Redis lost comes back.
//!
//! It holds the module's loader lease (renewed well before it runs out), reads miss requests from every
//! bucket's miss stream, looks a batch of them up with one `SELECT ... WHERE handle = any($1)`, and
//! answers each with `QSESS.RESTORE` in one pipeline. Ended and expired rows are never restored, and
//! the module refuses revoked ids and older versions on its own.
//!
//! Only a lost connection stops it: a malformed `reload-user` message, a row the module refuses or a
//! user Postgres cannot look up is counted in `qsess_syncd_reload_refused_total{reason}`, logged
//! (rate-limited, never with an id) and skipped, and every pipeline reply is read on its own, so one
//! refusal neither hides the others' answers nor restarts the loader.

use crate::cluster_node::ErrorClass;
use crate::config::RetryConfig;
use crate::error::Error;
use crate::mirror_sink;
pub use crate::reload_refusals::Refusal;
pub(crate) use crate::reload_refusals::{server_error_text, Refusals};
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::stream_entry::EntryId;
use crate::stream_source::{self, Layout};
use qsess_record::{BucketTags, Handle, SessionRecord, UserAgent};
use redis::aio::MultiplexedConnection;
use redis::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The lease the loader asks for, and how often it renews it: a dead loader stops holding clients
/// within three seconds, and a live one renews three times per lease.
pub(crate) const LEASE: Duration = Duration::from_secs(3);
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long the loader must hold the lease before its reconnect backoff starts afresh.
pub(crate) const HEALTHY_AFTER: Duration = LEASE;
/// How long one read of the miss streams waits.
pub(crate) const READ_BLOCK: Duration = Duration::from_millis(100);
/// Most misses answered with one query.
pub(crate) const MAX_BATCH: usize = 500;

// One primary-key probe per requested handle, whatever plan Postgres caches for the prepared
// statement: `handle = any($1)` on the table let a cached generic plan walk a whole index instead.
pub(crate) const SELECT_SESSIONS: &str = "
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

/// The longest user id the module accepts (`MAX_USER_ID_BYTES` in the module): a longer one in a
/// request cannot name a user, so it is refused before Postgres is asked.
const MAX_USER_ID_BYTES: usize = 256;
/// A standalone server's `reload-user` payload, `<bucket> <uid>`, checked against what the module and
/// the mirror accept.
pub fn parse_user_request(payload: &[u8], buckets: u32) -> Result<(u32, &str), &'static str> {
    parse_tagged_user_request(payload, BucketTags::Decimal, buckets)
}

/// A `reload-user` payload, `<bucket tag> <uid>`: the decimal bucket on a standalone server, the slot
/// tag on a cluster (`BucketTags::bucket_of_tag`, so only a tag qsess writes names a bucket).
pub fn parse_tagged_user_request(payload: &[u8], tags: BucketTags, buckets: u32) -> Result<(u32, &str), &'static str> {
    let Some(space) = payload.iter().position(|&byte| byte == b' ') else {
        return Err("expected \"<bucket> <uid>\"");
    };
    let (bucket, user_id) = (&payload[..space], &payload[space + 1..]);
    let bucket = match tags {
        BucketTags::Decimal => {
            let bucket = std::str::from_utf8(bucket)
                .ok()
                .filter(|text| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
                .and_then(|text| text.parse::<u32>().ok())
                .ok_or("expected a decimal bucket number before the space")?;
            if bucket >= buckets {
                return Err("the bucket is not one the server has");
            }
            bucket
        }
        BucketTags::ClusterSlot => {
            tags.bucket_of_tag(bucket, buckets).ok_or("expected the hash tag of a slot before the space")?
        }
    };
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_BYTES {
        return Err("expected a uid of 1 to 256 bytes");
    }
    // The mirror keeps uids as Postgres text: UTF-8 without NUL, so nothing else can be found there.
    let user_id = std::str::from_utf8(user_id).map_err(|_| "expected a UTF-8 uid")?;
    if user_id.contains('\0') {
        return Err("expected a uid without NUL");
    }
    Ok((bucket, user_id))
}

/// Answers `QSESS.BYUSER` reload requests (Pub/Sub `<prefix>:reload-user`, "<bucket> <uid>") for as long
/// as the subscription lives: restores the user's live sessions, then `QSESS.RESTOREUSER` wakes the
/// waiters. Runs beside the miss loop, which holds the lease only while this subscription is up.
///
/// Anyone allowed to publish on the channel can send anything, so a bad message, a row the module
/// refuses or a uid Postgres refuses is counted and skipped: only a lost connection ends the task.
///
/// On a cluster the module's publish reaches every node, so every primary's daemon hears every
/// request: it answers those of the slots its own node serves, and drops the others quietly (a
/// `MOVED`/`ASK` is "not this node's slot", not a refusal: the daemon beside the owner answers).
pub(crate) async fn answer_user_requests(
    mut pubsub: redis::aio::PubSub,
    mut connection: MultiplexedConnection,
    database_url: String,
    layout: Layout,
) -> Result<(), Error> {
    use futures_util::StreamExt;
    let postgres = mirror_sink::connect(&database_url).await?;
    let select = postgres.prepare(SELECT_USER_SESSIONS).await?;
    let mut refusals = Refusals::default();
    let tags = layout.key_names().bucket_tags();
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let (bucket, user_id) = match parse_tagged_user_request(message.get_payload_bytes(), tags, layout.buckets) {
            Ok(request) => request,
            Err(detail) => {
                refusals.record(Refusal::MalformedRequest, detail);
                continue;
            }
        };
        let tag = layout.bucket_tag(bucket);
        if layout.cluster && !serves_slot_of(&mut connection, &layout, bucket).await? {
            tracing::debug!("a user reload for a slot another node serves; its daemon answers it");
            continue;
        }
        let rows = match postgres.query(&select, &[&user_id]).await {
            Ok(rows) => rows,
            Err(error) if crate::error::postgres_error_is_retryable(&error) => return Err(error.into()),
            Err(error) => {
                refusals.record(Refusal::QueryRefused, &crate::error::chain(&error));
                continue;
            }
        };
        let mut pipeline = redis::pipe();
        // Every command's reply is read on its own: one refusal must not hide the others' outcomes.
        pipeline.ignore_errors();
        let mut restores = 0;
        for row in &rows {
            match record_from_row(row) {
                Ok((handle, record)) => {
                    pipeline.cmd("QSESS.RESTORE").arg(&tag).arg(handle).arg(record);
                    restores += 1;
                }
                Err(error) => refusals.record(Refusal::UnrestorableRow, &crate::error::chain(&error)),
            }
        }
        pipeline.cmd("QSESS.RESTOREUSER").arg(&tag).arg(user_id);
        let replies: Vec<Value> = pipeline.query_async(&mut connection).await?;
        for (index, reply) in replies.iter().enumerate() {
            if let Value::ServerError(error) = reply {
                if layout.cluster && ErrorClass::of(error).is_elsewhere_or_later() {
                    tracing::debug!(error = %server_error_text(error), "the slot left this node during a user reload");
                    continue;
                }
                let refusal = if index < restores { Refusal::RestoreRefused } else { Refusal::RestoreUserRefused };
                refusals.record(refusal, &server_error_text(error));
            }
        }
        metrics::counter!("qsess_syncd_user_reloads_total").increment(1);
        tracing::debug!(sessions = rows.len(), "reloaded a user's sessions");
    }
    Err(Error::UnexpectedReply("the reload-user subscription ended".to_owned()))
}

/// Whether this node serves the slot of `bucket`, asked with the cheapest keyed command the daemon may
/// send (`XLEN` of the slot's miss stream): a `MOVED`/`ASK` means another node does, and its daemon
/// answers. Spares a Postgres query per request on every node but one.
async fn serves_slot_of(connection: &mut MultiplexedConnection, layout: &Layout, bucket: u32) -> Result<bool, Error> {
    let mut probe = redis::pipe();
    probe.ignore_errors().cmd("XLEN").arg(layout.miss_stream(bucket));
    let replies: Vec<Value> = probe.query_async(connection).await?;
    Ok(replies.first().and_then(ErrorClass::of_reply) != Some(ErrorClass::SlotElsewhere))
}

/// Stops the user-request task when the miss loop ends, however it ends.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<Result<(), Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the loader until shutdown, reconnecting with backoff; detaches on the way out.
///
/// The backoff is capped at [`RENEW_EVERY`] (while no loader is attached every miss answers nil, so
/// a recovered Redis must get its loader back within a lease), and starts again from its first step
/// once the loader has held the lease for [`HEALTHY_AFTER`]: otherwise every failure in a long life
/// would wait longer than the one before.
pub async fn run(redis_url: String, database_url: String, retry: RetryConfig, shutdown: Shutdown) {
    let loader = StandaloneLoader { redis_url, database_url };
    keep_loader_attached(&loader.redis_url, retry, shutdown, &loader).await;
}

/// One attachment of a loader, from connecting to losing the connection (or shutdown).
pub(crate) trait LoaderAttachment {
    fn serve<'a>(
        &'a self,
        shutdown: &'a mut Shutdown,
        backoff: &'a mut Backoff,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send + 'a;
}

struct StandaloneLoader {
    redis_url: String,
    database_url: String,
}

impl LoaderAttachment for StandaloneLoader {
    fn serve<'a>(
        &'a self,
        shutdown: &'a mut Shutdown,
        backoff: &'a mut Backoff,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send + 'a {
        serve(&self.redis_url, &self.database_url, shutdown, backoff)
    }
}

/// The loader's life on one server, standalone or a cluster node: `loader.serve` until it returns
/// `Ok` (shutdown) or shutdown is requested, with backoff after each failure (capped at
/// [`RENEW_EVERY`]); then detaches at once, so clients stop waiting for a loader that is gone (a
/// demoted cluster node may refuse, which is fine).
pub(crate) async fn keep_loader_attached(
    redis_url: &str,
    retry: RetryConfig,
    mut shutdown: Shutdown,
    loader: &impl LoaderAttachment,
) {
    let retry = RetryConfig { max: retry.max.min(RENEW_EVERY).max(retry.initial), ..retry };
    let mut backoff = Backoff::new(retry);
    while !shutdown.is_requested() {
        match loader.serve(&mut shutdown, &mut backoff).await {
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
    if let Ok(client) = stream_source::open_client(redis_url) {
        if let Ok(mut connection) = stream_source::connect(&client).await {
            let _: Result<(), _> = redis::cmd("QSESS.LOADER").arg(0).query_async(&mut connection).await;
        }
    }
}

/// The loader's lease on one server and the task answering user reloads while it is held.
pub(crate) struct LoaderLease {
    users: AbortOnDrop,
    attached: Instant,
    renewed: Instant,
    healthy: bool,
}

impl LoaderLease {
    /// Subscribes to user reload requests, then attaches as the loader (`QSESS.LOADER`): in that
    /// order, so that no `BYUSER` asks while nobody listens.
    pub(crate) async fn attach(
        client: &redis::Client,
        connection: &mut MultiplexedConnection,
        database_url: &str,
        layout: &Layout,
    ) -> Result<LoaderLease, Error> {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(layout.user_reload_channel()).await?;
        let users = AbortOnDrop(tokio::spawn(answer_user_requests(
            pubsub,
            connection.clone(),
            database_url.to_owned(),
            layout.clone(),
        )));
        attach(connection).await?;
        let attached = Instant::now();
        Ok(LoaderLease { users, attached, renewed: attached, healthy: false })
    }

    /// Once per turn of a loader's loop: fails when the user reload task stopped, renews the lease
    /// every [`RENEW_EVERY`], and resets the backoff once the lease has been held for
    /// [`HEALTHY_AFTER`].
    pub(crate) async fn keep(
        &mut self,
        connection: &mut MultiplexedConnection,
        backoff: &mut Backoff,
    ) -> Result<(), Error> {
        if self.users.0.is_finished() {
            return Err(Error::UnexpectedReply("the user reload task stopped".to_owned()));
        }
        if self.renewed.elapsed() >= RENEW_EVERY {
            attach(connection).await?;
            self.renewed = Instant::now();
        }
        if !self.healthy && self.attached.elapsed() >= HEALTHY_AFTER {
            self.healthy = true;
            backoff.reset();
        }
        Ok(())
    }
}

async fn serve(
    redis_url: &str,
    database_url: &str,
    shutdown: &mut Shutdown,
    backoff: &mut Backoff,
) -> Result<(), Error> {
    let client = stream_source::open_client(redis_url)?;
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
    let mut lease = LoaderLease::attach(&client, &mut connection, database_url, &layout).await?;
    let mut refusals = Refusals::default();
    tracing::info!("attached as the loader");
    while !shutdown.is_requested() {
        lease.keep(&mut connection, backoff).await?;
        let misses = read_misses(&mut connection, &keys, &mut last_ids).await?;
        if misses.is_empty() {
            continue;
        }
        answer_misses(&mut connection, &postgres, &select, &layout, &misses, &mut refusals).await?;
    }
    Ok(())
}

/// Answers a batch of misses, `(bucket, handle)`: one `SELECT` of their live rows, then one
/// `QSESS.RESTORE` per miss (the record, or `NOTFOUND`) in one pipeline.
pub(crate) async fn answer_misses(
    connection: &mut MultiplexedConnection,
    postgres: &tokio_postgres::Client,
    select: &tokio_postgres::Statement,
    layout: &Layout,
    misses: &[(u32, Handle)],
    refusals: &mut Refusals,
) -> Result<(), Error> {
    let started = Instant::now();
    let handles: Vec<String> = misses.iter().map(|(_, handle)| handle.as_str().to_owned()).collect();
    let rows = postgres.query(select, &[&handles]).await?;
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
    // Every miss is answered on its own: a refused restore must not leave the others waiting.
    pipeline.ignore_errors();
    for (bucket, handle) in misses {
        let command = pipeline.cmd("QSESS.RESTORE").arg(layout.bucket_tag(*bucket)).arg(handle.as_str());
        match found.get(handle.as_str()) {
            Some(record) => command.arg(record.as_slice()),
            None => command.arg("NOTFOUND"),
        };
    }
    let outcomes: Vec<Value> = pipeline.query_async(connection).await?;
    answer_refused_misses(connection, layout, misses, &outcomes, refusals).await?;
    let restored =
        outcomes.iter().filter(|outcome| matches!(outcome, Value::SimpleString(text) if text == "RESTORED")).count();
    metrics::counter!("qsess_syncd_reloads_total", "outcome" => "restored").increment(restored as u64);
    metrics::counter!("qsess_syncd_reloads_total", "outcome" => "other").increment((misses.len() - restored) as u64);
    metrics::histogram!("qsess_syncd_reload_seconds").record(started.elapsed().as_secs_f64());
    tracing::debug!(misses = misses.len(), restored, "answered misses");
    Ok(())
}

/// Wakes the clients waiting for misses whose restore the module refused (a mirrored record it cannot
/// take) with a nil answer, instead of leaving them to their timeout. On a cluster, a restore answered
/// `MOVED`/`ASK` (the slot left this node since the miss was read) or `TRYAGAIN` is no refusal: the
/// waiting client's timeout answers it.
async fn answer_refused_misses(
    connection: &mut MultiplexedConnection,
    layout: &Layout,
    misses: &[(u32, Handle)],
    outcomes: &[Value],
    refusals: &mut Refusals,
) -> Result<(), Error> {
    let mut pipeline = redis::pipe();
    pipeline.ignore_errors();
    let mut refused = 0;
    for ((bucket, handle), outcome) in misses.iter().zip(outcomes) {
        if let Value::ServerError(error) = outcome {
            if layout.cluster && ErrorClass::of(error).is_elsewhere_or_later() {
                tracing::debug!(error = %server_error_text(error), "the slot left this node before its miss was answered");
                continue;
            }
            refusals.record(Refusal::RestoreRefused, &server_error_text(error));
            pipeline.cmd("QSESS.RESTORE").arg(layout.bucket_tag(*bucket)).arg(handle.as_str()).arg("NOTFOUND").ignore();
            refused += 1;
        }
    }
    if refused > 0 {
        let _: Vec<Value> = pipeline.query_async(connection).await?;
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

pub(crate) async fn attach(connection: &mut MultiplexedConnection) -> Result<(), Error> {
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
pub(crate) fn record_from_row(row: &tokio_postgres::Row) -> Result<(String, Vec<u8>), Error> {
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
        user_agent: user_agent.as_deref().map(|text| UserAgent::Text(text.as_bytes())),
        location: location.as_deref().map(str::as_bytes),
        country: country.as_deref().map(str::as_bytes),
        // The module stores a device summary only when it keeps no user agent; otherwise it derives it.
        device: device.as_deref().filter(|_| user_agent.is_none()).map(str::as_bytes),
        data: &data,
    };
    Ok((handle, record.encode()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_request_is_a_bucket_and_a_uid() {
        assert_eq!(parse_user_request(b"0 jane", 1), Ok((0, "jane")));
        assert_eq!(parse_user_request(b"3 user with spaces", 4), Ok((3, "user with spaces")));
        let longest = format!("0 {}", "u".repeat(MAX_USER_ID_BYTES));
        assert!(parse_user_request(longest.as_bytes(), 1).is_ok());
    }

    #[test]
    fn malformed_user_requests_say_what_is_expected() {
        let too_long = format!("0 {}", "u".repeat(MAX_USER_ID_BYTES + 1));
        let cases: [(&[u8], &str); 10] = [
            (b"0 ", "uid of 1 to 256 bytes"),
            (b"0", "<bucket> <uid>"),
            (b"", "<bucket> <uid>"),
            (b" jane", "decimal bucket"),
            (b"-1 jane", "decimal bucket"),
            (b"+0 jane", "decimal bucket"),
            (b"99999999999 jane", "decimal bucket"),
            (b"1 jane", "not one the server has"),
            (b"0 \xff\xfe", "UTF-8"),
            (b"0 a\0b", "without NUL"),
        ];
        for (payload, expected) in cases {
            let error = parse_user_request(payload, 1).unwrap_err();
            assert!(error.contains(expected), "{payload:?}: {error}");
        }
        assert!(parse_user_request(too_long.as_bytes(), 1).unwrap_err().contains("1 to 256 bytes"));
    }
}
