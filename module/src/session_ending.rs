//! Ending several sessions in one command: gather and check everything first, then write.
//!
//! Sessions of one owner share one open index key: two handles on one key would go stale when the
//! first removes the last member and Redis deletes the key.

use crate::effects::{Effects, EndingSession};
use crate::error::CommandError;
use crate::redis_key::RedisKey;
use crate::session_id::SessionAddress;
use crate::session_lookup::{self, live_record};
use qsess_record::{DeleteReason, Handle};
use std::collections::{HashMap, HashSet};

/// What [`SessionsToEnd::add`] found at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// A live session (of the expected owner, when one was given): queued to be ended.
    Live,
    /// No session in Redis. It may still live in the mirror (Redis lost it): queued to be ended
    /// there, and tombstoned here so that no reload brings it back.
    Absent,
    /// A live session of another user (its id expired and was used again): left alone.
    NotOwned,
    /// Already queued by this command.
    Duplicate,
}

pub(crate) struct SessionsToEnd<'e, 'ctx> {
    effects: &'e Effects<'ctx>,
    live: Vec<(SessionAddress, RedisKey<'ctx>, Option<Vec<u8>>)>,
    absent: Vec<(SessionAddress, Option<Vec<u8>>)>,
    /// Every handle in `live` or `absent`: a user may have thousands, so no scan per session.
    queued: HashSet<Handle>,
    /// Open indexes by bucket, then owner (looked up by `&[u8]`, without allocating).
    indexes: HashMap<u32, HashMap<Vec<u8>, RedisKey<'ctx>>>,
    streams: HashMap<u32, RedisKey<'ctx>>,
}

impl<'e, 'ctx> SessionsToEnd<'e, 'ctx> {
    pub(crate) fn new(effects: &'e Effects<'ctx>) -> SessionsToEnd<'e, 'ctx> {
        SessionsToEnd {
            effects,
            live: Vec::new(),
            absent: Vec::new(),
            queued: HashSet::new(),
            indexes: HashMap::new(),
            streams: HashMap::new(),
        }
    }

    /// Uses an index the caller already opened, so the same key is never open twice.
    pub(crate) fn with_index(mut self, bucket: u32, user_id: &[u8], index: RedisKey<'ctx>) -> Self {
        self.indexes.entry(bucket).or_default().insert(user_id.to_vec(), index);
        self
    }

    /// Queues the session at `address` to be ended: a live one (owned by `owner`, when given), or one
    /// Redis does not hold. The owner check matters because an index can still list a handle whose
    /// session expired and was later created again for another user.
    pub(crate) fn add(&mut self, address: SessionAddress, owner: Option<&[u8]>) -> Result<Found, CommandError> {
        if self.queued.contains(&address.handle) {
            return Ok(Found::Duplicate);
        }
        let ctx = self.effects.ctx;
        let key = session_lookup::open_session_writable(ctx, &address)?;
        let expected_owner = owner;
        let owner = match live_record(&key, self.effects.now_ms) {
            Ok(Some(record)) if expected_owner.is_some() && record.user != expected_owner => {
                return Ok(Found::NotOwned)
            }
            Ok(Some(record)) => record.user.map(<[u8]>::to_vec),
            Ok(None) => {
                let owner = expected_owner.map(<[u8]>::to_vec);
                self.open_keys_for(address.bucket, owner.as_deref())?;
                self.queued.insert(address.handle);
                self.absent.push((address, owner));
                return Ok(Found::Absent);
            }
            // An unreadable record can still be ended: its key goes, and a tombstone stops its return.
            Err(CommandError::CorruptRecord(_)) => None,
            Err(error) => return Err(error),
        };
        self.open_keys_for(address.bucket, owner.as_deref())?;
        self.queued.insert(address.handle);
        self.live.push((address, key, owner));
        Ok(Found::Live)
    }

    fn open_keys_for(&mut self, bucket: u32, owner: Option<&[u8]>) -> Result<(), CommandError> {
        let ctx = self.effects.ctx;
        if let Some(user_id) = owner {
            let indexes = self.indexes.entry(bucket).or_default();
            if !indexes.contains_key(user_id) {
                indexes.insert(user_id.to_vec(), session_lookup::open_index_writable(ctx, bucket, user_id)?);
            }
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = self.streams.entry(bucket) {
            slot.insert(session_lookup::open_stream_writable(ctx, bucket)?);
        }
        Ok(())
    }

    /// The index opened for `user_id`, if any session of that user was queued or one was given.
    pub(crate) fn index(&self, bucket: u32, user_id: &[u8]) -> Option<&RedisKey<'ctx>> {
        self.indexes.get(&bucket).and_then(|indexes| indexes.get(user_id))
    }

    pub(crate) fn remove_from_index(&self, bucket: u32, user_id: &[u8], handle: &Handle) -> Result<(), CommandError> {
        if let Some(index) = self.index(bucket, user_id) {
            self.effects.index_remove(index, handle)?;
        }
        Ok(())
    }

    /// Ends every queued session and reports how many were live in Redis.
    pub(crate) fn end_all(self, reason: DeleteReason) -> Result<usize, CommandError> {
        self.effects.with_coalesced_removals(|| self.end_each(reason))
    }

    fn end_each(&self, reason: DeleteReason) -> Result<usize, CommandError> {
        for (address, key, owner) in &self.live {
            let index = owner.as_deref().and_then(|user_id| self.index(address.bucket, user_id));
            let stream = self.streams.get(&address.bucket).ok_or(CommandError::Internal)?;
            let ending = EndingSession { bucket: address.bucket, handle: address.handle, key };
            self.effects.end_session(&ending, index, stream, reason)?;
        }
        for (address, owner) in &self.absent {
            let index = owner.as_deref().and_then(|user_id| self.index(address.bucket, user_id));
            let stream = self.streams.get(&address.bucket).ok_or(CommandError::Internal)?;
            self.effects.end_absent_session(address, owner.as_deref(), index, stream, reason)?;
        }
        Ok(self.live.len())
    }
}
