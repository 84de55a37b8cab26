//! The backlog gauges: entries not yet mirrored (pending in the group, or after its last delivered
//! id) and the age of the oldest, for `qsess_syncd_stream_backlog_entries` and
//! `qsess_syncd_oldest_unmirrored_age_seconds`. Over every bucket's stream on a standalone server, one
//! command at a time; over the streams a cluster node lists, pipelined.

use crate::error::Error;
use crate::stream_entry::EntryId;
use crate::stream_source::{bulk_text, oldest_in_pending_summary, oldest_pending, Layout};
use redis::aio::MultiplexedConnection;
use redis::Value;

/// Unmirrored entries and the age of the oldest, over every stream, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Backlog {
    pub entries: u64,
    pub oldest_age_seconds: f64,
}

/// One measurement of a node's backlog on an open connection.
pub(crate) type MeasureBacklog = Box<
    dyn for<'a> FnMut(
            &'a mut MultiplexedConnection,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Backlog, Error>> + Send + 'a>>
        + Send,
>;

/// Publishes the backlog gauges every `period` until shutdown, reconnecting after a failed
/// measurement (the gauges keep their last value meanwhile).
pub(crate) async fn publish_backlog_gauges(
    client: redis::Client,
    period: std::time::Duration,
    mut shutdown: crate::shutdown::Shutdown,
    mut measure: MeasureBacklog,
) {
    let mut connection: Option<MultiplexedConnection> = None;
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.requested() => return,
        }
        if connection.is_none() {
            connection = crate::stream_source::connect(&client).await.ok();
        }
        let Some(open) = connection.as_mut() else { continue };
        match measure(open).await {
            Ok(backlog) => {
                metrics::gauge!("qsess_syncd_stream_backlog_entries").set(backlog.entries as f64);
                metrics::gauge!("qsess_syncd_oldest_unmirrored_age_seconds").set(backlog.oldest_age_seconds);
            }
            Err(_) => connection = None,
        }
    }
}

/// Measures the backlog: pending entries plus entries after the group's last delivered id.
pub async fn backlog(connection: &mut MultiplexedConnection, keys: &[String], group: &str) -> Result<Backlog, Error> {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let mut backlog = Backlog::default();
    let mut oldest: Option<EntryId> = None;
    for key in keys {
        let groups: Value = match redis::cmd("XINFO").arg("GROUPS").arg(key).query_async(connection).await {
            Ok(groups) => groups,
            Err(error) if error.code() == Some("ERR") => continue,
            Err(error) => return Err(error.into()),
        };
        let Some(info) = group_info(&groups, group) else { continue };
        let pending = info.pending;
        let lag = match info.lag {
            Some(lag) => lag,
            None => redis::cmd("XLEN").arg(key).query_async(connection).await?,
        };
        backlog.entries += pending + lag;
        let first_unmirrored = if pending > 0 {
            oldest_pending(connection, key, group).await?
        } else if lag > 0 {
            let after: Value = redis::cmd("XRANGE")
                .arg(key)
                .arg(format!("({}", info.last_delivered))
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query_async(connection)
                .await?;
            match after {
                Value::Array(items) => items.first().and_then(|entry| match entry {
                    Value::Array(parts) => parts.first().and_then(bulk_text).and_then(|id| EntryId::parse(&id)),
                    _ => None,
                }),
                _ => None,
            }
        } else {
            None
        };
        oldest = match (oldest, first_unmirrored) {
            (Some(known), Some(found)) => Some(known.min(found)),
            (known, found) => known.or(found),
        };
    }
    backlog.oldest_age_seconds = oldest.map_or(0.0, |id| now_ms.saturating_sub(id.ms) as f64 / 1000.0);
    Ok(backlog)
}

struct GroupInfo {
    pending: u64,
    lag: Option<u64>,
    last_delivered: String,
}

fn group_info(groups: &Value, group: &str) -> Option<GroupInfo> {
    let Value::Array(groups) = groups else { return None };
    groups.iter().find_map(|entry| {
        let pairs: Vec<(String, &Value)> = match entry {
            Value::Array(items) => {
                items.chunks(2).filter_map(|pair| Some((bulk_text(pair.first()?)?, pair.get(1)?))).collect()
            }
            Value::Map(items) => items.iter().filter_map(|(name, value)| Some((bulk_text(name)?, value))).collect(),
            _ => return None,
        };
        let field = |name: &str| pairs.iter().find(|(field, _)| field == name).map(|(_, value)| *value);
        if field("name").and_then(bulk_text)? != group {
            return None;
        }
        let number = |value: Option<&Value>| match value {
            Some(Value::Int(number)) => u64::try_from(*number).ok(),
            _ => None,
        };
        Some(GroupInfo {
            pending: number(field("pending")).unwrap_or(0),
            lag: number(field("lag")),
            last_delivered: field("last-delivered-id").and_then(bulk_text).unwrap_or_else(|| "0-0".to_owned()),
        })
    })
}

/// Unmirrored entries on one node and the age of the oldest, over the change streams of `slots` (the
/// node's `QSESS.STREAMS ALL`), pipelined: pending entries plus entries after the group's last delivered id.
pub async fn cluster_node_backlog(
    connection: &mut MultiplexedConnection,
    layout: &Layout,
    slots: &[u16],
    group: &str,
) -> Result<Backlog, Error> {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let keys: Vec<String> = slots.iter().map(|slot| layout.change_stream(u32::from(*slot))).collect();
    let mut pipeline = redis::pipe();
    pipeline.ignore_errors();
    for key in &keys {
        pipeline.cmd("XINFO").arg("GROUPS").arg(key);
    }
    let groups: Vec<Value> = pipeline.query_async(connection).await?;
    let mut behind = Vec::new();
    for (key, groups) in keys.iter().zip(&groups) {
        // A missing stream (only the miss stream exists) or a slot that just moved: nothing to count here.
        if let Some(info) = group_info(groups, group) {
            behind.push((key, info));
        }
    }
    let mut followups = redis::pipe();
    followups.ignore_errors();
    let mut asked = Vec::new();
    let mut backlog = Backlog::default();
    for (key, info) in &behind {
        match info.lag {
            Some(lag) => backlog.entries += info.pending + lag,
            None => {
                backlog.entries += info.pending;
                followups.cmd("XLEN").arg(*key);
                asked.push(Followup::Length);
            }
        }
        if info.pending > 0 {
            followups.cmd("XPENDING").arg(*key).arg(group);
            asked.push(Followup::OldestPending);
        } else if info.lag.is_none_or(|lag| lag > 0) {
            followups.cmd("XRANGE").arg(*key).arg(format!("({}", info.last_delivered)).arg("+").arg("COUNT").arg(1);
            asked.push(Followup::FirstUndelivered);
        }
    }
    if asked.is_empty() {
        return Ok(backlog);
    }
    let answers: Vec<Value> = followups.query_async(connection).await?;
    let mut oldest: Option<EntryId> = None;
    for (question, answer) in asked.iter().zip(&answers) {
        let found = match (question, answer) {
            (Followup::Length, Value::Int(length)) => {
                backlog.entries += u64::try_from(*length).unwrap_or(0);
                None
            }
            (Followup::OldestPending, summary) => oldest_in_pending_summary(summary),
            (Followup::FirstUndelivered, Value::Array(items)) => items.first().and_then(|entry| match entry {
                Value::Array(parts) => parts.first().and_then(bulk_text).and_then(|id| EntryId::parse(&id)),
                _ => None,
            }),
            _ => None,
        };
        oldest = match (oldest, found) {
            (Some(known), Some(found)) => Some(known.min(found)),
            (known, found) => known.or(found),
        };
    }
    backlog.oldest_age_seconds = oldest.map_or(0.0, |id| now_ms.saturating_sub(id.ms) as f64 / 1000.0);
    Ok(backlog)
}

/// What a follow-up command of [`cluster_node_backlog`] asks.
enum Followup {
    Length,
    OldestPending,
    FirstUndelivered,
}
