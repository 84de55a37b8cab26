//! The Postgres side of the mirror: one transaction per batch, every write guarded by version.
//!
//! Upserts and ends use UNNEST arrays (one statement and one plan for any batch size). A row changes
//! only when the incoming change is newer, so replays, duplicates and reordering cannot make the
//! mirror older. "Newer" is (created_at, version): versions restart at 1 when an id is used again after
//! its session expired, and that later incarnation must win over the old row, while a replayed change
//! of the old incarnation (created earlier, or a touch or end from before the new creation) never does. If a batch fails for a reason that retrying cannot fix, its changes are applied one by
//! one and those Postgres refuses are recorded in `qsess.rejected_changes`; they never block the rest.

use crate::change_batch::{FoldedBatch, NetChange, Rejection};
use crate::error::{postgres_error_is_retryable, Error};
use chrono::{DateTime, Utc};
use std::net::IpAddr;
use tokio_postgres::{Client, NoTls, Transaction};

const UPSERT_SESSIONS: &str = "
insert into qsess.sessions as s (handle, user_id, data, ip, user_agent, location, country, created_at, updated_at,
                                 last_seen, expires_at, absolute_expires_at, idle_timeout_ms, version, device)
select * from unnest($1::text[], $2::text[], $3::bytea[], $4::inet[], $5::text[], $6::text[], $7::text[],
                     $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[],
                     $12::timestamptz[], $13::int8[], $14::int8[], $15::text[])
on conflict (handle) do update set
    user_id = excluded.user_id, data = excluded.data, ip = excluded.ip, user_agent = excluded.user_agent,
    location = excluded.location, country = excluded.country, device = excluded.device, created_at = excluded.created_at,
    updated_at = excluded.updated_at, last_seen = excluded.last_seen, expires_at = excluded.expires_at,
    absolute_expires_at = excluded.absolute_expires_at, idle_timeout_ms = excluded.idle_timeout_ms,
    version = excluded.version, ended_at = null, end_reason = null
where (excluded.created_at, excluded.version) > (s.created_at, s.version)";

const APPLY_TOUCHES: &str = "
update qsess.sessions as s set last_seen = t.last_seen, expires_at = t.expires_at, version = t.version
from unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::int8[]) as t(handle, last_seen, expires_at, version)
where s.handle = t.handle and s.version < t.version and t.last_seen >= s.created_at";

// An end for a session the mirror never saw still leaves a row: it is what stops an older `set`,
// replayed later, from bringing the session back.
const END_SESSIONS: &str = "
insert into qsess.sessions as s (handle, user_id, data, created_at, updated_at, last_seen, expires_at,
                                 idle_timeout_ms, version, ended_at, end_reason)
select t.handle, t.user_id, '\\x', t.ended_at, t.ended_at, t.ended_at, t.ended_at, 0, t.version, t.ended_at, t.reason
from unnest($1::text[], $2::text[], $3::int8[], $4::timestamptz[], $5::text[]) as t(handle, user_id, version, ended_at, reason)
on conflict (handle) do update set
    data = '\\x', version = excluded.version, ended_at = excluded.ended_at, end_reason = excluded.end_reason
where excluded.version > s.version and excluded.ended_at >= s.created_at";

// Ends sessions only the mirror may still hold. A session active since the revocation (kept with
// EXCEPT and rotated, or created after it) was live in Redis then and is left alone.
const END_USER_SESSIONS: &str = "
update qsess.sessions set ended_at = $2, end_reason = 'revoke', data = '\\x'
where user_id = $1 and ended_at is null and last_seen < $2 and handle is distinct from $3";

const RECORD_REJECTION: &str = "
insert into qsess.rejected_changes (stream, entry_id, handle, op, version, error, fields, session_expires_at)
values ($1, $2, $3, $4, $5, $6, $7, $8)";

/// What a successful apply did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub changes: usize,
    pub rejected: usize,
}

pub struct Mirror {
    database_url: String,
    client: Option<Client>,
}

impl Mirror {
    pub fn new(database_url: &str) -> Mirror {
        Mirror { database_url: database_url.to_owned(), client: None }
    }

    /// Forgets the connection after an error; the next call reconnects.
    pub fn reset(&mut self) {
        self.client = None;
    }

    async fn client(&mut self) -> Result<&mut Client, Error> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.database_url).await?);
        }
        self.client.as_mut().ok_or_else(|| Error::Config("no database connection".to_owned()))
    }

    /// Applies a batch in one transaction. On an error retrying cannot fix, applies each change on its
    /// own and records those Postgres refuses. Retryable errors are returned for the caller to retry.
    pub async fn apply(&mut self, batch: &FoldedBatch, stream_names: &[String]) -> Result<ApplyOutcome, Error> {
        let client = self.client().await?;
        let whole = async {
            let transaction = client.transaction().await?;
            write_changes(&transaction, &batch.changes).await?;
            end_user_sessions(&transaction, batch).await?;
            record_rejections(&transaction, &batch.rejections, stream_names).await?;
            transaction.commit().await
        };
        match whole.await {
            Ok(()) => Ok(ApplyOutcome { changes: batch.changes.len(), rejected: batch.rejections.len() }),
            Err(error) if postgres_error_is_retryable(&error) => Err(error.into()),
            Err(error) => {
                tracing::warn!(error = %crate::error::chain(&error), changes = batch.changes.len(), "batch refused by postgres; applying its changes one by one");
                self.apply_one_by_one(batch, stream_names).await
            }
        }
    }

    async fn apply_one_by_one(&mut self, batch: &FoldedBatch, stream_names: &[String]) -> Result<ApplyOutcome, Error> {
        let client = self.client().await?;
        let mut rejections = batch.rejections.clone();
        let mut applied = 0;
        for change in &batch.changes {
            let single = async {
                let transaction = client.transaction().await?;
                write_changes(&transaction, std::slice::from_ref(change)).await?;
                transaction.commit().await
            };
            match single.await {
                Ok(()) => applied += 1,
                Err(error) if postgres_error_is_retryable(&error) => return Err(error.into()),
                Err(error) => {
                    tracing::error!(handle = %change.handle, error = %crate::error::chain(&error), "postgres refused a change; recorded in qsess.rejected_changes");
                    let reason = error.as_db_error().map_or_else(|| error.to_string(), |db| db.message().to_owned());
                    rejections.extend(batch.rejections_of(change, &reason));
                }
            }
        }
        let transaction = client.transaction().await?;
        end_user_sessions(&transaction, batch).await?;
        record_rejections(&transaction, &rejections, stream_names).await?;
        transaction.commit().await?;
        Ok(ApplyOutcome { changes: applied, rejected: rejections.len() })
    }
}

pub async fn connect(database_url: &str) -> Result<Client, Error> {
    let (client, connection) = tokio_postgres::connect(database_url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(error = %crate::error::chain(&error), "postgres connection closed");
        }
    });
    Ok(client)
}

async fn write_changes(transaction: &Transaction<'_>, changes: &[NetChange]) -> Result<(), tokio_postgres::Error> {
    // Rows in handle order, so that two transactions in flight at once lock shared rows in the same
    // order and do not deadlock each other (a deadlock would only cost a retry).
    let mut rows: Vec<_> = changes.iter().filter_map(|change| change.upsert.as_ref()).collect();
    rows.sort_unstable_by(|a, b| a.handle.cmp(&b.handle));
    if !rows.is_empty() {
        let handles: Vec<&str> = rows.iter().map(|row| row.handle.as_str()).collect();
        let user_ids: Vec<Option<&str>> = rows.iter().map(|row| row.user_id.as_deref()).collect();
        let data: Vec<&[u8]> = rows.iter().map(|row| row.data.as_slice()).collect();
        let ips: Vec<Option<IpAddr>> = rows.iter().map(|row| row.ip).collect();
        let user_agents: Vec<Option<&str>> = rows.iter().map(|row| row.user_agent.as_deref()).collect();
        let locations: Vec<Option<&str>> = rows.iter().map(|row| row.location.as_deref()).collect();
        let countries: Vec<Option<&str>> = rows.iter().map(|row| row.country.as_deref()).collect();
        let created: Vec<DateTime<Utc>> = rows.iter().map(|row| row.created_at).collect();
        let updated: Vec<DateTime<Utc>> = rows.iter().map(|row| row.updated_at).collect();
        let seen: Vec<DateTime<Utc>> = rows.iter().map(|row| row.last_seen).collect();
        let expires: Vec<DateTime<Utc>> = rows.iter().map(|row| row.expires_at).collect();
        let absolute: Vec<Option<DateTime<Utc>>> = rows.iter().map(|row| row.absolute_expires_at).collect();
        let idle: Vec<i64> = rows.iter().map(|row| row.idle_timeout_ms).collect();
        let versions: Vec<i64> = rows.iter().map(|row| row.version).collect();
        let devices: Vec<Option<&str>> = rows.iter().map(|row| row.device.as_deref()).collect();
        transaction
            .execute(
                UPSERT_SESSIONS,
                &[
                    &handles,
                    &user_ids,
                    &data,
                    &ips,
                    &user_agents,
                    &locations,
                    &countries,
                    &created,
                    &updated,
                    &seen,
                    &expires,
                    &absolute,
                    &idle,
                    &versions,
                    &devices,
                ],
            )
            .await?;
    }
    let touches: Vec<_> =
        changes.iter().filter_map(|change| change.touch.as_ref().map(|touch| (&change.handle, touch))).collect();
    if !touches.is_empty() {
        let handles: Vec<&str> = touches.iter().map(|(handle, _)| handle.as_str()).collect();
        let seen: Vec<DateTime<Utc>> = touches.iter().map(|(_, touch)| touch.last_seen).collect();
        let expires: Vec<DateTime<Utc>> = touches.iter().map(|(_, touch)| touch.expires_at).collect();
        let versions: Vec<i64> = touches.iter().map(|(_, touch)| touch.version).collect();
        transaction.execute(APPLY_TOUCHES, &[&handles, &seen, &expires, &versions]).await?;
    }
    let mut ends: Vec<_> =
        changes.iter().filter_map(|change| change.end.as_ref().map(|end| (&change.handle, end))).collect();
    ends.sort_unstable_by(|a, b| a.0.cmp(b.0));
    if !ends.is_empty() {
        let handles: Vec<&str> = ends.iter().map(|(handle, _)| handle.as_str()).collect();
        let user_ids: Vec<Option<&str>> = ends.iter().map(|(_, end)| end.user_id.as_deref()).collect();
        let versions: Vec<i64> = ends.iter().map(|(_, end)| end.version).collect();
        let ended: Vec<DateTime<Utc>> = ends.iter().map(|(_, end)| end.ended_at).collect();
        let reasons: Vec<&str> = ends.iter().map(|(_, end)| end.reason).collect();
        transaction.execute(END_SESSIONS, &[&handles, &user_ids, &versions, &ended, &reasons]).await?;
    }
    Ok(())
}

async fn end_user_sessions(transaction: &Transaction<'_>, batch: &FoldedBatch) -> Result<(), tokio_postgres::Error> {
    for revocation in &batch.user_revocations {
        transaction.execute(END_USER_SESSIONS, &[&revocation.user_id, &revocation.at, &revocation.except]).await?;
    }
    Ok(())
}

async fn record_rejections(
    transaction: &Transaction<'_>,
    rejections: &[Rejection],
    stream_names: &[String],
) -> Result<(), tokio_postgres::Error> {
    for rejection in rejections {
        let stream = stream_names.get(rejection.stream).map_or("", String::as_str);
        transaction
            .execute(
                RECORD_REJECTION,
                &[
                    &stream,
                    &rejection.entry_id.to_string(),
                    &rejection.handle,
                    &rejection.op,
                    &rejection.version,
                    &rejection.error,
                    &rejection.fields,
                    &rejection.session_expires_at,
                ],
            )
            .await?;
    }
    Ok(())
}
