//! Measures the Postgres ceiling of the mirror: synthetic session changes applied straight to Postgres
//! through the daemon's own fold and transaction code, on as many connections as the daemon commits
//! on, with no Redis in the way. `bench/mirror.py` runs
//! it beside the end-to-end measurement so the two are compared in the same run.
//!
//! Usage: postgres_ceiling <database-url> <changes> <batch-size> [<version-offset>]
//!
//! The changes write `changes / 2` sessions twice each (half inserts, half updates on an empty table).
//! A second run with `<version-offset>` equal to the first run's `<changes>` writes the same sessions
//! with newer versions: updates only, which is what a live mirror mostly does.

use qsess_record::{ChangeRecord, Handle, SessionRecord, UserAgent};
use qsess_syncd::change_batch::FoldedBatch;
use qsess_syncd::mirror_loop::COMMIT_CONNECTIONS;
use qsess_syncd::mirror_sink::Mirror;
use qsess_syncd::stream_entry::{EntryId, StreamEntry};
use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arguments: Vec<String> = std::env::args().collect();
    let (database_url, changes, batch_size, version_offset) = match arguments.as_slice() {
        [_, database_url, changes, batch_size] => (database_url, changes, batch_size, "0"),
        [_, database_url, changes, batch_size, version_offset] => {
            (database_url, changes, batch_size, version_offset.as_str())
        }
        _ => return Err("usage: postgres_ceiling <database-url> <changes> <batch-size> [<version-offset>]".into()),
    };
    let changes: u64 = changes.parse()?;
    let batch_size: u64 = batch_size.parse()?;
    let version_offset: u64 = version_offset.parse()?;
    qsess_syncd::migrate(database_url).await?;
    let streams = vec!["qs:{0}:chg".to_owned()];
    let payload = vec![b'p'; 300];
    let user_agent =
        b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    let now_ms = chrono::Utc::now().timestamp_millis() as u64;
    // The entries are built before the clock starts: the module's work is not the mirror's.
    let mut all_entries = Vec::with_capacity(changes as usize);
    {
        for sequence in 0..changes {
            // Half the changes update sessions written earlier, like a live workload does.
            let session = sequence % (changes / 2).max(1);
            let sid = format!("ceiling-session-{session}");
            let user = format!("user-{}", session / 10);
            let record = SessionRecord {
                version: version_offset + sequence + 1,
                created_ms: now_ms,
                updated_ms: now_ms,
                seen_ms: now_ms,
                idle_ms: 1_800_000,
                absolute_deadline_ms: now_ms + 86_400_000,
                user: Some(user.as_bytes()),
                ip: Some("203.0.113.7".parse()?),
                user_agent: Some(UserAgent::Text(user_agent)),
                location: None,
                country: None,
                device: None,
                data: &payload,
            }
            .encode();
            let change = ChangeRecord::Set {
                handle: Handle::from_session_id(sid.as_bytes()),
                user: Some(user.as_bytes()),
                version: version_offset + sequence + 1,
                record: &record,
            };
            let fields = change
                .fields()
                .into_iter()
                .map(|(name, value)| (name.as_bytes().to_vec(), value.into_owned()))
                .collect();
            all_entries.push(StreamEntry { stream: 0, id: EntryId { ms: now_ms, seq: sequence }, fields });
        }
    }
    // Owned batches, as the daemon's reader hands them over (folding a slice would copy it), dealt
    // out to as many connections as the daemon commits on, each applying its share in order.
    let mut shares: Vec<Vec<Vec<StreamEntry>>> = vec![Vec::new(); COMMIT_CONNECTIONS];
    for (index, chunk) in all_entries.chunks(batch_size.max(1) as usize).enumerate() {
        shares[index % COMMIT_CONNECTIONS].push(chunk.to_vec());
    }
    let started = Instant::now();
    let appliers = shares.into_iter().map(|share| {
        let mut mirror = Mirror::new(database_url);
        let streams = &streams;
        async move {
            let mut applied = 0u64;
            for entries in share {
                let batch = FoldedBatch::fold(entries);
                mirror.apply(&batch, streams).await?;
                applied += batch.entry_count as u64;
            }
            Ok::<u64, qsess_syncd::Error>(applied)
        }
    });
    let mut applied = 0u64;
    for result in futures_util::future::join_all(appliers).await {
        applied += result?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{:.0}", applied as f64 / seconds);
    Ok(())
}
