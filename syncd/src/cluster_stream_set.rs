//! Which of a cluster node's change streams the mirror reads next, and how: pure bookkeeping, no I/O.
//!
//! A stream is *known* from the moment the daemon discovers it until its slot leaves the node (a
//! `MOVED`/`ASK`, or a full listing without it) or the connection is lost. Discovering a stream means
//! creating the consumer group if it is missing, then re-reading this consumer's pending entries from
//! id 0 (another node's daemon, or this one before a reconnect, may have read them without
//! acknowledging: a stream moves with its pending list), then reading new entries. A known stream is
//! *active* while there may be something to read: from when the watch reports an entry until a read
//! returns fewer entries than it asked for.

use crate::cluster_watch::Found;
use crate::stream_entry::EntryId;
use std::collections::{BTreeMap, BTreeSet};

/// Where a planned read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// This consumer's pending entries after this id (`XREADGROUP ... <id>`).
    Pending(EntryId),
    /// Entries never delivered to the group (`XREADGROUP ... >`).
    New,
}

/// One `XREADGROUP` on one slot's stream, preceded by `XGROUP CREATE` when the group may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedRead {
    pub slot: u16,
    pub create_group: bool,
    pub from: ReadFrom,
    pub count: usize,
}

/// The mirror reader's view of one node's change streams.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamSet {
    known: BTreeSet<u16>,
    active: BTreeSet<u16>,
    /// Known streams whose pending entries are still being re-read, with the last id read so far.
    draining: BTreeMap<u16, EntryId>,
    /// Known streams whose consumer group may be missing: `XGROUP CREATE` goes before their next read.
    groupless: BTreeSet<u16>,
    /// Where the next plan starts, so that a plan cut short by the batch size reaches every stream in turn.
    next: u16,
}

impl StreamSet {
    /// Takes in the watch's news: a full listing first (streams it does not list leave), then the
    /// slots that got entries.
    pub fn discover(&mut self, found: Found) {
        if let Some(every) = found.every {
            let gone: Vec<u16> = self.known.difference(&every).copied().collect();
            for slot in gone {
                self.forget(slot);
            }
            for slot in every {
                self.activate(slot);
            }
        }
        for slot in found.written {
            self.activate(slot);
        }
    }

    fn activate(&mut self, slot: u16) {
        if self.known.insert(slot) {
            self.groupless.insert(slot);
            self.draining.insert(slot, EntryId { ms: 0, seq: 0 });
        }
        self.active.insert(slot);
    }

    /// The slot left this node (`MOVED`, `ASK`) or its stream is gone: forget everything about it, so
    /// that finding it again re-reads its pending entries.
    pub fn forget(&mut self, slot: u16) {
        self.known.remove(&slot);
        self.active.remove(&slot);
        self.draining.remove(&slot);
        self.groupless.remove(&slot);
    }

    /// After a reconnect nothing read before can be trusted: every stream is discovered afresh.
    pub fn forget_everything(&mut self) {
        *self = StreamSet::default();
    }

    /// The group exists now (created, or `BUSYGROUP`).
    pub fn group_ready(&mut self, slot: u16) {
        self.groupless.remove(&slot);
    }

    /// A read answered `NOGROUP`: the group vanished (the node lost its data); create it again from
    /// id 0 and read the stream from its start.
    pub fn group_missing(&mut self, slot: u16) {
        if self.known.contains(&slot) {
            self.groupless.insert(slot);
            self.draining.insert(slot, EntryId { ms: 0, seq: 0 });
            self.active.insert(slot);
        }
    }

    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    pub fn is_known(&self, slot: u16) -> bool {
        self.known.contains(&slot)
    }

    /// Reads for at most `room` entries in all: at most `room` streams, each asked for an equal share.
    pub fn plan(&mut self, room: usize) -> Vec<PlannedRead> {
        if room == 0 || self.active.is_empty() {
            return Vec::new();
        }
        let streams = self.active.len().min(room);
        let count = (room / streams).max(1);
        let slots: Vec<u16> =
            self.active.range(self.next..).chain(self.active.range(..self.next)).take(streams).copied().collect();
        self.next = slots.last().map_or(0, |last| last.saturating_add(1));
        slots
            .into_iter()
            .map(|slot| PlannedRead {
                slot,
                create_group: self.groupless.contains(&slot),
                from: self.draining.get(&slot).map_or(ReadFrom::New, |after| ReadFrom::Pending(*after)),
                count,
            })
            .collect()
    }

    /// A planned read returned `entries` entries, the last with id `last`. Fewer than asked means the
    /// stream is drained: pending ones give way to new ones, and a stream with no new entries rests
    /// until the watch reports it again (an entry added after this read is always reported after it).
    pub fn read_returned(&mut self, read: &PlannedRead, entries: usize, last: Option<EntryId>) {
        if !self.known.contains(&read.slot) {
            return;
        }
        let drained = entries < read.count;
        match read.from {
            ReadFrom::Pending(_) => match last {
                Some(last) if !drained => {
                    self.draining.insert(read.slot, last);
                }
                _ => {
                    self.draining.remove(&read.slot);
                }
            },
            ReadFrom::New => {
                if drained {
                    self.active.remove(&read.slot);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(slots: &[u16]) -> Found {
        Found { written: slots.iter().copied().collect(), every: None }
    }

    fn every(slots: &[u16]) -> Found {
        Found { written: BTreeSet::new(), every: Some(slots.iter().copied().collect()) }
    }

    fn id(ms: u64) -> EntryId {
        EntryId { ms, seq: 0 }
    }

    #[test]
    fn a_new_stream_gets_its_group_then_its_pending_entries_then_new_ones() {
        let mut set = StreamSet::default();
        set.discover(written(&[7]));
        let [first] = set.plan(100)[..] else { panic!("one read expected") };
        assert_eq!(first, PlannedRead { slot: 7, create_group: true, from: ReadFrom::Pending(id(0)), count: 100 });
        set.group_ready(7);
        set.read_returned(&first, 100, Some(id(5)));
        let [second] = set.plan(100)[..] else { panic!("one read expected") };
        assert_eq!((second.create_group, second.from), (false, ReadFrom::Pending(id(5))));
        set.read_returned(&second, 3, Some(id(9)));
        let [third] = set.plan(100)[..] else { panic!("one read expected") };
        assert_eq!(third.from, ReadFrom::New, "pending entries drained");
        set.read_returned(&third, 100, Some(id(20)));
        assert_eq!(set.plan(100)[0].from, ReadFrom::New, "a full read keeps the stream active");
        set.read_returned(&third, 0, None);
        assert!(!set.has_active() && set.plan(100).is_empty(), "an empty read puts it to rest");
        set.discover(written(&[7]));
        assert_eq!(set.plan(100)[0].from, ReadFrom::New, "a known stream is not re-read from the start");
    }

    #[test]
    fn a_full_listing_activates_everything_and_forgets_what_it_does_not_list() {
        let mut set = StreamSet::default();
        set.discover(written(&[1, 2]));
        for read in set.plan(10) {
            set.group_ready(read.slot);
            set.read_returned(&read, 0, None);
        }
        for read in set.plan(10) {
            set.read_returned(&read, 0, None);
        }
        assert!(!set.has_active());
        set.discover(every(&[2, 3]));
        let mut plan = set.plan(10);
        plan.sort_by_key(|read| read.slot);
        assert_eq!(plan.iter().map(|read| read.slot).collect::<Vec<_>>(), [2, 3]);
        assert!(!set.is_known(1), "slot 1 left this node");
        assert_eq!((plan[0].create_group, plan[0].from), (false, ReadFrom::New), "slot 2 is known");
        assert_eq!((plan[1].create_group, plan[1].from), (true, ReadFrom::Pending(id(0))), "slot 3 is new");
    }

    #[test]
    fn a_slot_that_left_and_came_back_is_re_read_from_the_start() {
        let mut set = StreamSet::default();
        set.discover(written(&[4]));
        let read = set.plan(10)[0];
        set.group_ready(4);
        set.read_returned(&read, 0, None);
        set.forget(4);
        assert!(set.plan(10).is_empty());
        set.read_returned(&read, 10, Some(id(3)));
        assert!(!set.is_known(4), "a late reply does not bring a forgotten slot back");
        set.discover(written(&[4]));
        assert_eq!(set.plan(10)[0].from, ReadFrom::Pending(id(0)));
        set.forget_everything();
        assert_eq!(set, StreamSet::default());
    }

    #[test]
    fn a_missing_group_is_created_again_and_read_from_the_start() {
        let mut set = StreamSet::default();
        set.discover(written(&[5]));
        set.group_ready(5);
        set.group_missing(5);
        assert_eq!(
            set.plan(10)[0],
            PlannedRead { slot: 5, create_group: true, from: ReadFrom::Pending(id(0)), count: 10 }
        );
        set.group_missing(6);
        assert!(!set.is_known(6), "only known streams are recreated");
    }

    #[test]
    fn plans_share_the_room_and_take_turns() {
        let mut set = StreamSet::default();
        set.discover(written(&[1, 2, 3, 4, 5]));
        let plan = set.plan(2);
        assert_eq!(plan.iter().map(|read| (read.slot, read.count)).collect::<Vec<_>>(), [(1, 1), (2, 1)]);
        let plan = set.plan(2);
        assert_eq!(plan.iter().map(|read| read.slot).collect::<Vec<_>>(), [3, 4]);
        let plan = set.plan(2);
        assert_eq!(plan.iter().map(|read| read.slot).collect::<Vec<_>>(), [5, 1], "wraps around");
        let plan = set.plan(12);
        assert_eq!(
            plan.iter().map(|read| (read.slot, read.count)).collect::<Vec<_>>(),
            [(2, 2), (3, 2), (4, 2), (5, 2), (1, 2)]
        );
        assert!(set.plan(0).is_empty());
        let total: usize = set.plan(7).iter().map(|read| read.count).sum();
        assert!(total <= 7, "never more than the room: {total}");
    }
}
