//! The Redis side of the mirror: the consumer group on every bucket's change stream.
//!
//! After a (re)connect the daemon first re-reads its own pending entries (delivered but never
//! acknowledged, e.g. before a crash), then reads new ones. It acknowledges only what Postgres
//! committed, and trims only below what is acknowledged and not pending.

use crate::error::Error;
use crate::stream_entry::{EntryId, StreamEntry};
use qsess_record::{KeyNames, SLOT_COUNT};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long a blocking read waits before returning empty, so shutdown is noticed promptly.
pub const READ_BLOCK: Duration = Duration::from_millis(500);

/// Where qsess keeps its keys, read from the module's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub prefix: String,
    /// `qsess.buckets` on a standalone server; on a cluster every hash slot is a bucket (16384).
    pub buckets: u32,
    /// The server runs Redis Cluster: buckets are hash slots, tagged with `qsess_record::slot_tag`.
    pub cluster: bool,
}

impl Layout {
    /// The module's key names under this prefix (`qsess_record::KeyNames`, the one key scheme).
    pub fn key_names(&self) -> KeyNames {
        if self.cluster {
            KeyNames::for_cluster(&self.prefix)
        } else {
            KeyNames::new(&self.prefix)
        }
    }

    /// How requests to the loader name `bucket` (`QSESS.RESTORE`, `reload-user`): its decimal number on
    /// a standalone server, its slot tag on a cluster.
    pub fn bucket_tag(&self, bucket: u32) -> String {
        self.key_names().bucket_tag(bucket).into_owned()
    }

    pub fn change_stream(&self, bucket: u32) -> String {
        text_of_name(self.key_names().change_stream(bucket))
    }

    pub fn miss_stream(&self, bucket: u32) -> String {
        text_of_name(self.key_names().miss_stream(bucket))
    }

    pub fn session_pattern(&self, bucket: u32) -> String {
        text_of_name(self.key_names().session_pattern(bucket))
    }

    /// The Pub/Sub channel on which `QSESS.BYUSER` asks for a user's reload.
    pub fn user_reload_channel(&self) -> String {
        text_of_name(self.key_names().user_reload_channel())
    }

    /// Reads `qsess.prefix`, `qsess.buckets` and whether the server runs Redis Cluster. On a cluster
    /// `qsess.buckets` still answers 1 and means nothing: the buckets are the hash slots.
    pub async fn read(connection: &mut MultiplexedConnection) -> Result<Layout, Error> {
        let prefix = config_value(connection, "qsess.prefix").await?;
        if crate::cluster_node::is_cluster_node(connection).await? {
            return Ok(Layout { prefix, buckets: u32::from(SLOT_COUNT), cluster: true });
        }
        let buckets = config_value(connection, "qsess.buckets").await?;
        let buckets = buckets
            .parse()
            .map_err(|_| Error::UnexpectedReply(format!("qsess.buckets is '{buckets}', not a number")))?;
        Ok(Layout { prefix, buckets, cluster: false })
    }

    /// Every bucket's change stream, indexed by bucket: what a [`StreamEntry`]'s `stream` names.
    pub fn change_streams(&self) -> Arc<[String]> {
        (0..self.buckets).map(|bucket| self.change_stream(bucket)).collect()
    }
}

/// Names built from the prefix alone are text: the prefix comes from `CONFIG GET`, a string.
fn text_of_name(name: Vec<u8>) -> String {
    String::from_utf8_lossy(&name).into_owned()
}

async fn config_value(connection: &mut MultiplexedConnection, name: &str) -> Result<String, Error> {
    let pairs: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query_async(connection).await?;
    match pairs.as_slice() {
        [_, value] => Ok(value.clone()),
        _ => Err(Error::Config(format!(
            "Redis does not know {name}: is the qsess module loaded on the server qsess-syncd connects to?"
        ))),
    }
}

/// A client for the daemon's Redis that does not send `CLIENT SETINFO` when it connects: that command
/// exists only from Redis 7.2 on, so granting it would make the daemon's ACL recipe differ by server
/// version, and without it every connection would leave a denial in `ACL LOG`.
pub fn open_client(url: &str) -> redis::RedisResult<redis::Client> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info()?;
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    redis::Client::open(info.set_redis_settings(settings))
}

/// Opens a multiplexed connection whose reply timeout allows for blocking reads.
pub async fn connect(client: &redis::Client) -> Result<MultiplexedConnection, Error> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(READ_BLOCK + Duration::from_secs(10)));
    Ok(client.get_multiplexed_async_connection_with_config(&config).await?)
}

pub struct ChangeStreams {
    client: redis::Client,
    connection: Option<MultiplexedConnection>,
    layout: Option<Layout>,
    keys: Arc<[String]>,
    group: String,
    consumer: String,
    /// Per stream, while draining this consumer's pending entries: the last id read so far.
    pending_cursor: Vec<Option<EntryId>>,
}

impl ChangeStreams {
    pub fn new(client: redis::Client, group: &str, consumer: &str) -> ChangeStreams {
        ChangeStreams {
            client,
            connection: None,
            layout: None,
            keys: Arc::from(Vec::new()),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            pending_cursor: Vec::new(),
        }
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Every bucket's change stream, indexed by bucket (what entries' `stream` refers to).
    pub fn stream_names(&self) -> Arc<[String]> {
        self.keys.clone()
    }

    /// Forgets the connection after an error; the next call reconnects and re-reads pending entries.
    pub fn reset(&mut self) {
        self.connection = None;
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, Error> {
        if let Some(connection) = &self.connection {
            return Ok(connection.clone());
        }
        let mut connection = connect(&self.client).await?;
        let layout = Layout::read(&mut connection).await?;
        if self.layout.as_ref().is_some_and(|known| *known != layout) {
            return Err(Error::Config(format!(
                "qsess layout changed from {:?} to {layout:?} while running; restart qsess-syncd",
                self.layout
            )));
        }
        self.keys = layout.change_streams();
        self.layout = Some(layout);
        self.ensure_groups(&mut connection).await?;
        self.pending_cursor = vec![Some(EntryId { ms: 0, seq: 0 }); self.keys.len()];
        self.connection = Some(connection.clone());
        Ok(connection)
    }

    /// Creates the consumer group on every stream that lacks it, reading from the very start: a
    /// missing group means a fresh deployment or a Redis that lost its data, and in both cases every
    /// entry still in the stream is unmirrored.
    async fn ensure_groups(&self, connection: &mut MultiplexedConnection) -> Result<(), Error> {
        for key in self.keys.iter() {
            let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(key)
                .arg(&self.group)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(connection)
                .await;
            match created {
                Ok(()) => {
                    tracing::info!(stream = %key, group = %self.group, "created consumer group");
                    metrics::counter!("qsess_syncd_consumer_groups_created_total").increment(1);
                }
                Err(error) if error.code() == Some("BUSYGROUP") => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Reads up to `max` entries: pending ones first, then new ones, blocking up to `block` for those.
    pub async fn read(&mut self, max: usize, block: Option<Duration>) -> Result<Vec<StreamEntry>, Error> {
        let mut connection = self.connection().await?;
        let draining: Vec<usize> =
            (0..self.keys.len()).filter(|index| self.pending_cursor.get(*index).is_some_and(Option::is_some)).collect();
        let mut command = redis::cmd("XREADGROUP");
        command.arg("GROUP").arg(&self.group).arg(&self.consumer).arg("COUNT").arg(max);
        let streams: Vec<usize> = if draining.is_empty() {
            if let Some(block) = block {
                command.arg("BLOCK").arg(block.as_millis() as u64);
            }
            command.arg("STREAMS").arg(&*self.keys);
            for _ in self.keys.iter() {
                command.arg(">");
            }
            (0..self.keys.len()).collect()
        } else {
            command.arg("STREAMS");
            for index in &draining {
                command.arg(&self.keys[*index]);
            }
            for index in &draining {
                let cursor = self.pending_cursor[*index].unwrap_or(EntryId { ms: 0, seq: 0 });
                command.arg(cursor.to_string());
            }
            draining.clone()
        };
        let reply: Value = match command.query_async(&mut connection).await {
            Ok(reply) => reply,
            // NOGROUP: the group is gone; UNBLOCKED: the stream was deleted under a blocked read (FLUSHALL).
            Err(error) if matches!(error.code(), Some("NOGROUP" | "UNBLOCKED")) => {
                tracing::warn!(
                    group = %self.group,
                    "consumer group is missing (Redis restarted without its data?); recreating it and reading every entry left in the streams"
                );
                self.ensure_groups(&mut connection).await?;
                return Ok(Vec::new());
            }
            Err(error) => return Err(error.into()),
        };
        let entries = parse_read_reply(&reply, &self.keys)?;
        if !draining.is_empty() {
            for index in streams {
                let last = entries.iter().filter(|entry| entry.stream == index).map(|entry| entry.id).max();
                self.pending_cursor[index] = last;
                if last.is_none() {
                    tracing::debug!(stream = %self.keys[index], "finished re-reading pending entries");
                }
            }
        }
        Ok(entries)
    }

    /// Acknowledges entries whose changes Postgres has committed.
    pub async fn ack(&mut self, entries: &[StreamEntry]) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        let mut pipeline = redis::pipe();
        for (index, key) in self.keys.iter().enumerate() {
            let ids: Vec<String> =
                entries.iter().filter(|entry| entry.stream == index).map(|entry| entry.id.to_string()).collect();
            if !ids.is_empty() {
                pipeline.cmd("XACK").arg(key).arg(&self.group).arg(ids).ignore();
            }
        }
        match pipeline.query_async::<()>(&mut connection).await {
            Ok(()) => Ok(()),
            // The group vanished with Redis's data; the entries are committed, nothing is left to ack.
            Err(error) if error.code() == Some("NOGROUP") => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Trims each stream below its oldest entry that is still pending, or below everything
    /// acknowledged when nothing is pending. Approximate trimming never removes more than asked.
    /// `newest_acknowledged` holds, per stream index, the newest id acknowledged since the last trim.
    pub async fn trim(&mut self, newest_acknowledged: &[Option<EntryId>]) -> Result<(), Error> {
        let mut connection = self.connection().await?;
        for (index, key) in self.keys.iter().enumerate() {
            let Some(newest_acked) = newest_acknowledged.get(index).copied().flatten() else {
                continue;
            };
            let mut minimum = newest_acked.next();
            match oldest_pending(&mut connection, key, &self.group).await {
                Ok(Some(oldest_pending)) => minimum = minimum.min(oldest_pending),
                Ok(None) => {}
                // No group means no stream worth trimming: Redis lost its data since this batch was read.
                Err(Error::Redis(error)) if error.code() == Some("NOGROUP") => continue,
                Err(error) => return Err(error),
            }
            redis::cmd("XTRIM")
                .arg(key)
                .arg("MINID")
                .arg("~")
                .arg(minimum.to_string())
                .query_async::<()>(&mut connection)
                .await?;
        }
        Ok(())
    }
}

impl crate::mirror_loop::ChangeSource for ChangeStreams {
    async fn read(&mut self, max: usize, block: Option<Duration>) -> Result<Vec<StreamEntry>, Error> {
        ChangeStreams::read(self, max, block).await
    }

    async fn ack(&mut self, entries: &[StreamEntry]) -> Result<(), Error> {
        ChangeStreams::ack(self, entries).await
    }

    async fn trim(&mut self, newest_acknowledged: &[Option<EntryId>]) -> Result<(), Error> {
        ChangeStreams::trim(self, newest_acknowledged).await
    }

    fn reset(&mut self) {
        ChangeStreams::reset(self)
    }

    fn stream_names(&self) -> Arc<[String]> {
        ChangeStreams::stream_names(self)
    }
}

/// The oldest entry delivered to the group but not acknowledged, if any.
pub async fn oldest_pending(
    connection: &mut MultiplexedConnection,
    key: &str,
    group: &str,
) -> Result<Option<EntryId>, Error> {
    let summary: Value = redis::cmd("XPENDING").arg(key).arg(group).query_async(connection).await?;
    Ok(oldest_in_pending_summary(&summary))
}

/// The oldest pending id of an `XPENDING <key> <group>` summary (`[count, min, max, consumers]`).
pub(crate) fn oldest_in_pending_summary(summary: &Value) -> Option<EntryId> {
    match summary {
        Value::Array(items) => match items.as_slice() {
            [Value::Int(count), minimum, ..] if *count > 0 => bulk_text(minimum).and_then(|id| EntryId::parse(&id)),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn bulk_text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// Parses an XREADGROUP reply (RESP2 arrays or RESP3 maps) into entries tagged with their stream index.
pub fn parse_read_reply(reply: &Value, keys: &[String]) -> Result<Vec<StreamEntry>, Error> {
    let unexpected = |what: &str| Error::UnexpectedReply(format!("XREADGROUP reply: {what}"));
    let per_stream: Vec<(&Value, &Value)> = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .iter()
            .map(|stream| match stream {
                Value::Array(pair) if pair.len() == 2 => Ok((&pair[0], &pair[1])),
                _ => Err(unexpected("stream is not a [key, entries] pair")),
            })
            .collect::<Result<_, _>>()?,
        Value::Map(pairs) => pairs.iter().map(|(key, entries)| (key, entries)).collect(),
        _ => return Err(unexpected("not an array")),
    };
    let mut entries = Vec::new();
    for (key, stream_entries) in per_stream {
        let key = bulk_text(key).ok_or_else(|| unexpected("stream key is not a string"))?;
        let stream = keys.iter().position(|known| *known == key).ok_or_else(|| unexpected("unknown stream"))?;
        let Value::Array(stream_entries) = stream_entries else { return Err(unexpected("entries are not an array")) };
        for entry in stream_entries {
            let Value::Array(parts) = entry else { return Err(unexpected("entry is not an array")) };
            let [id, fields] = parts.as_slice() else { return Err(unexpected("entry is not [id, fields]")) };
            let id = bulk_text(id).and_then(|id| EntryId::parse(&id)).ok_or_else(|| unexpected("bad entry id"))?;
            let fields = match fields {
                // A pending entry whose data was deleted from the stream behind the daemon's back.
                Value::Nil => Vec::new(),
                Value::Array(items) => items
                    .chunks(2)
                    .map(|pair| match pair {
                        [Value::BulkString(name), Value::BulkString(value)] => Ok((name.clone(), value.clone())),
                        _ => Err(unexpected("field/value is not a pair of strings")),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(unexpected("fields are not an array")),
            };
            entries.push(StreamEntry { stream, id, fields });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn parses_entries_of_several_streams() {
        let keys = vec!["qs:{0}:chg".to_owned(), "qs:{1}:chg".to_owned()];
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("qs:{1}:chg"),
                Value::Array(vec![Value::Array(vec![bulk("5-1"), Value::Array(vec![bulk("op"), bulk("del")])])]),
            ]),
            Value::Array(vec![bulk("qs:{0}:chg"), Value::Array(vec![Value::Array(vec![bulk("7-0"), Value::Nil])])]),
        ]);
        let entries = parse_read_reply(&reply, &keys).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].stream, entries[0].id), (1, EntryId { ms: 5, seq: 1 }));
        assert_eq!(entries[0].fields, vec![(b"op".to_vec(), b"del".to_vec())]);
        assert_eq!((entries[1].stream, entries[1].fields.len()), (0, 0));
        assert!(parse_read_reply(&Value::Nil, &keys).unwrap().is_empty());
        assert!(parse_read_reply(&Value::Int(3), &keys).is_err());
    }

    #[test]
    fn layout_names_match_the_module() {
        let layout = Layout { prefix: "qs".into(), buckets: 2, cluster: false };
        assert_eq!(layout.change_stream(1), "qs:{1}:chg");
        assert_eq!(layout.session_pattern(0), "qs:{0}:s:*");
        assert_eq!(layout.miss_stream(1), "qs:{1}:miss");
        assert_eq!(layout.user_reload_channel(), "qs:reload-user");
        assert_eq!(layout.bucket_tag(1), "1");
    }

    #[test]
    fn cluster_layout_names_are_the_slots() {
        let layout = Layout { prefix: "qs".into(), buckets: u32::from(SLOT_COUNT), cluster: true };
        let tag = qsess_record::slot_tag(12_182);
        assert_eq!(layout.change_stream(12_182), format!("qs:{{{tag}}}:chg"));
        assert_eq!(layout.miss_stream(12_182), format!("qs:{{{tag}}}:miss"));
        assert_eq!(layout.bucket_tag(12_182), tag);
        let names = layout.change_streams();
        assert_eq!(names.len(), usize::from(SLOT_COUNT));
        assert_eq!(qsess_record::key_slot(names[7].as_bytes()), 7, "a stream sits in its own slot");
    }
}
