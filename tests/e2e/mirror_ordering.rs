//! Out-of-order and duplicate delivery cannot make the mirror older: batches folded with
//! `FoldedBatch::fold` and applied with `Mirror::apply` against a real, migrated database, newer
//! before older, twice over, and ends before older writes.

use qsess_record::{ChangeRecord, DeleteReason, Handle, SessionRecord, UserAgent};
use qsess_syncd::change_batch::FoldedBatch;
use qsess_syncd::mirror_sink::Mirror;
use qsess_syncd::stream_entry::{EntryId, StreamEntry};
use qsess_tests::{shared_cluster, PgDatabase};
use tokio_postgres::{Client, NoTls};

use crate::support::mirror::{MirrorRow, MIRROR_ROW_SELECT};
use crate::support::session_keys::{change_stream_key, handle_of};

const IDLE_MS: u64 = 3_600_000;

/// A migrated fresh database, a `Mirror` on it and a client to read it.
struct Sink {
    mirror: Mirror,
    client: Client,
    _db: PgDatabase,
}

async fn sink() -> Sink {
    let db = shared_cluster().fresh_database();
    let applied = qsess_syncd::migrate(&db.url()).await.unwrap();
    assert!(applied >= 1, "a fresh database needs the migrations");
    let (client, connection) = tokio_postgres::connect(&db.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    Sink { mirror: Mirror::new(&db.url()), client, _db: db }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Builds stream entries the way the module writes them, with ids that increase as they are made.
struct Entries {
    t0: u64,
    next_id: u64,
}

impl Entries {
    fn new() -> Entries {
        let t0 = now_ms();
        Entries { t0, next_id: t0 }
    }

    fn entry(&mut self, change: ChangeRecord<'_>) -> StreamEntry {
        let fields =
            change.fields().into_iter().map(|(name, value)| (name.as_bytes().to_vec(), value.into_owned())).collect();
        self.next_id += 1;
        StreamEntry { stream: 0, id: EntryId { ms: self.next_id, seq: 0 }, fields }
    }

    /// A `set` of `sid` at `version`: updated and seen `version` ms after creation.
    fn set(&mut self, sid: &str, version: u64, data: &[u8]) -> StreamEntry {
        let record = SessionRecord {
            version,
            created_ms: self.t0,
            updated_ms: self.t0 + version,
            seen_ms: self.t0 + version,
            idle_ms: IDLE_MS,
            absolute_deadline_ms: 0,
            user: Some(b"42"),
            ip: Some("203.0.113.7".parse().unwrap()),
            user_agent: Some(UserAgent::Text(b"agent")),
            location: None,
            country: None,
            device: None,
            data,
        }
        .encode();
        let handle = Handle::from_session_id(sid.as_bytes());
        self.entry(ChangeRecord::Set { handle, user: Some(b"42"), version, record: &record })
    }

    /// A `touch` of `sid` at `version`, seen `seen_offset` ms after creation.
    fn touch(&mut self, sid: &str, version: u64, seen_offset: u64) -> StreamEntry {
        let handle = Handle::from_session_id(sid.as_bytes());
        let seen_ms = self.t0 + seen_offset;
        self.entry(ChangeRecord::Touch { handle, user: Some(b"42"), version, seen_ms, expires_ms: seen_ms + IDLE_MS })
    }

    fn del(&mut self, sid: &str, version: u64, reason: DeleteReason) -> StreamEntry {
        let handle = Handle::from_session_id(sid.as_bytes());
        self.entry(ChangeRecord::Delete { handle, user: Some(b"42"), version, reason })
    }
}

impl Sink {
    async fn apply(&mut self, entries: &[StreamEntry]) {
        let batch = FoldedBatch::fold(entries);
        assert!(batch.rejections.is_empty(), "{:?}", batch.rejections);
        let outcome = self.mirror.apply(&batch, &[change_stream_key(0)]).await.unwrap();
        assert_eq!(outcome.rejected, 0, "{outcome:?}");
    }

    async fn row(&self, sid: &str) -> MirrorRow {
        let sql = format!("{MIRROR_ROW_SELECT} where s.handle = $1");
        let row = self.client.query_opt(&sql, &[&handle_of(sid)]).await.unwrap();
        MirrorRow::from_row(&row.unwrap_or_else(|| panic!("no row for {sid}")))
    }

    async fn all_rows(&self) -> Vec<MirrorRow> {
        let sql = format!("{MIRROR_ROW_SELECT} order by s.handle");
        self.client.query(&sql, &[]).await.unwrap().iter().map(MirrorRow::from_row).collect()
    }

    async fn rejected_count(&self) -> i64 {
        self.client.query_one("select count(*) from qsess.rejected_changes", &[]).await.unwrap().get(0)
    }
}

#[tokio::test]
async fn an_older_batch_after_a_newer_one_changes_nothing() {
    let mut sink = sink().await;
    let mut entries = Entries::new();
    let older = vec![entries.set("s1", 1, b"v1"), entries.set("s1", 2, b"v2"), entries.touch("s1", 3, 30)];
    let newer = vec![entries.set("s1", 4, b"v4"), entries.touch("s1", 5, 50)];

    sink.apply(&newer).await;
    let after_newer = sink.row("s1").await;
    assert_eq!((after_newer.version, after_newer.data.as_slice()), (5, &b"v4"[..]));
    assert_eq!(after_newer.seen_ms, (entries.t0 + 50) as i64);

    sink.apply(&older).await;
    assert_eq!(sink.row("s1").await, after_newer, "an older batch changed the row");
    // One entry at a time, oldest first: still nothing.
    for entry in &older {
        sink.apply(std::slice::from_ref(entry)).await;
    }
    assert_eq!(sink.row("s1").await, after_newer, "older entries one by one changed the row");

    // A newer touch still applies over the newest set.
    sink.apply(&[entries.touch("s1", 6, 60)]).await;
    let touched = sink.row("s1").await;
    assert_eq!((touched.version, touched.seen_ms, touched.data.as_slice()), (6, (entries.t0 + 60) as i64, &b"v4"[..]));
}

#[tokio::test]
async fn a_batch_applied_twice_leaves_the_rows_of_applying_it_once() {
    let mut sink = sink().await;
    let mut entries = Entries::new();
    let batch = vec![
        entries.set("a", 1, b"a1"),
        entries.set("b", 1, b"b1"),
        entries.touch("a", 2, 20),
        entries.set("a", 3, b"a3"),
        entries.del("b", 2, DeleteReason::Logout),
        entries.set("c", 1, b"c1"),
        entries.touch("c", 2, 25),
    ];
    sink.apply(&batch).await;
    let once = sink.all_rows().await;
    assert_eq!(once.len(), 3);
    sink.apply(&batch).await;
    assert_eq!(sink.all_rows().await, once, "applying a batch again changed the mirror");
    // Delivered again entry by entry, as a replay after a crash between commit and ack would be.
    for entry in &batch {
        sink.apply(std::slice::from_ref(entry)).await;
    }
    assert_eq!(sink.all_rows().await, once, "replaying the entries changed the mirror");

    let a = sink.row("a").await;
    assert_eq!((a.version, a.data.as_slice(), a.live), (3, &b"a3"[..], true));
    let b = sink.row("b").await;
    assert_eq!((b.version, b.end_reason.as_deref(), b.data.as_slice(), b.live), (2, Some("logout"), &b""[..], false));
    let c = sink.row("c").await;
    assert_eq!((c.version, c.seen_ms), (2, (entries.t0 + 25) as i64));
    assert_eq!(sink.rejected_count().await, 0);
}

#[tokio::test]
async fn an_end_is_not_undone_by_an_older_write_arriving_late() {
    let mut sink = sink().await;
    let mut entries = Entries::new();
    let set1 = entries.set("ended", 1, b"before logout");
    let touch2 = entries.touch("ended", 2, 20);
    let set3 = entries.set("ended", 3, b"last write");
    let del4 = entries.del("ended", 4, DeleteReason::Revoke);

    sink.apply(&[set1.clone(), touch2.clone(), set3.clone()]).await;
    sink.apply(&[del4]).await;
    let ended = sink.row("ended").await;
    assert_eq!((ended.version, ended.end_reason.as_deref(), ended.live), (4, Some("revoke"), false));
    assert!(ended.ended_ms.is_some() && ended.data.is_empty(), "{ended:?}");

    sink.apply(std::slice::from_ref(&set3)).await;
    sink.apply(std::slice::from_ref(&touch2)).await;
    sink.apply(&[set1.clone(), touch2, set3]).await;
    assert_eq!(sink.row("ended").await, ended, "an older write brought an ended session back");

    // An end the mirror sees before any write of the session still leaves a row that keeps the
    // session's older writes out.
    let early_set = entries.set("never-seen", 1, b"late");
    let early_touch = entries.touch("never-seen", 2, 5);
    sink.apply(&[entries.del("never-seen", 3, DeleteReason::Limit)]).await;
    sink.apply(&[early_set]).await;
    sink.apply(&[early_touch]).await;
    let never_seen = sink.row("never-seen").await;
    assert_eq!((never_seen.version, never_seen.end_reason.as_deref()), (3, Some("limit")));
    assert!(!never_seen.live && never_seen.data.is_empty(), "{never_seen:?}");
}

#[tokio::test]
async fn an_older_end_does_not_end_a_newer_session_state() {
    let mut sink = sink().await;
    let mut entries = Entries::new();
    let stale_end = entries.del("kept", 2, DeleteReason::Logout);
    sink.apply(&[entries.set("kept", 5, b"newest")]).await;
    sink.apply(&[stale_end]).await;
    let kept = sink.row("kept").await;
    assert_eq!((kept.version, kept.data.as_slice(), kept.live, kept.end_reason), (5, &b"newest"[..], true, None));
}
