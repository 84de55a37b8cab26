//! Which hash slots this node serves on Redis Cluster, so that qsess never touches a key of a slot
//! the node does not own.
//!
//! Commands declare the argument they route by (a session id or a uid, as `NOT_KEY` key specs), so
//! Redis itself redirects a command sent to the wrong node (`MOVED`) before qsess runs. What Redis
//! cannot see is that qsess's real keys are *derived*: while a slot migrates, Redis sends every qsess
//! command of that slot to the importing node (`ASK`, since no argument exists as a key on the
//! source), where half the slot's keys may not have arrived yet. So every derived key is checked
//! against the slots this node serves *stably*: owned (or, on a replica, owned by its primary) and
//! neither migrating nor importing. A slot in motion answers `TRYAGAIN`, which cluster clients retry,
//! and nothing is written into a half-moved slot. A key of a slot this node does not serve at all
//! is a bug (the command's keys must share the slot Redis routed it by), answered with an error.
//!
//! The node's view comes from `CLUSTER NODES`, re-read when it is older than 100 ms: every command
//! Redis routes here was already checked by Redis against its current view; the cache only has to
//! notice slots in motion, and a stale answer is a `TRYAGAIN` too many, never a write in a slot
//! this node lost (Redis redirects those first).

use crate::error::CommandError;
use qsess_record::{key_slot, SLOT_COUNT};
use redis_module::{Context, RedisValue};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a view of the cluster is trusted before `CLUSTER NODES` is asked again.
const VIEW_LIFETIME: Duration = Duration::from_millis(100);

const WORDS: usize = SLOT_COUNT as usize / 64;

/// A set of hash slots.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SlotSet {
    bits: [u64; WORDS],
}

impl std::fmt::Debug for SlotSet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "SlotSet({} slots)", self.len())
    }
}

impl SlotSet {
    pub(crate) fn empty() -> SlotSet {
        SlotSet { bits: [0; WORDS] }
    }

    pub(crate) fn contains(&self, slot: u16) -> bool {
        let slot = usize::from(slot % SLOT_COUNT);
        self.bits.get(slot / 64).is_some_and(|word| word & (1 << (slot % 64)) != 0)
    }

    pub(crate) fn insert(&mut self, slot: u16) {
        self.set(slot, true);
    }

    fn set(&mut self, slot: u16, member: bool) {
        let slot = usize::from(slot % SLOT_COUNT);
        if let Some(word) = self.bits.get_mut(slot / 64) {
            if member {
                *word |= 1 << (slot % 64);
            } else {
                *word &= !(1 << (slot % 64));
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.bits.iter().map(|word| word.count_ones() as usize).sum()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..SLOT_COUNT).filter(|&slot| self.contains(slot))
    }

    /// The `n`-th member (modulo the size), for picking a slot at random.
    pub(crate) fn nth_wrapping(&self, n: usize) -> Option<u16> {
        let len = self.len();
        (len > 0).then(|| self.iter().nth(n % len)).flatten()
    }
}

/// What `CLUSTER NODES` says about the node it calls `myself`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeView {
    /// Served stably: its own slots, or its primary's when it is a replica, minus slots in motion.
    pub(crate) served: SlotSet,
    /// Being migrated away or imported (`[slot->-target]`, `[slot-<-source]`).
    pub(crate) moving: SlotSet,
}

/// The view of the node `CLUSTER NODES` calls `myself`.
pub(crate) fn parse_cluster_nodes(text: &str) -> NodeView {
    let lines: Vec<Vec<&str>> = text.lines().map(|line| line.split(' ').collect()).collect();
    let myself = lines.iter().find(|fields| fields.get(2).is_some_and(|flags| flags.split(',').any(|f| f == "myself")));
    let Some(myself) = myself else { return NodeView { served: SlotSet::empty(), moving: SlotSet::empty() } };
    let is_replica = myself.get(2).is_some_and(|flags| flags.split(',').any(|f| f == "slave" || f == "replica"));
    let owner = if is_replica {
        let primary_id = myself.get(3).copied().unwrap_or("-");
        lines.iter().find(|fields| fields.first() == Some(&primary_id))
    } else {
        Some(myself)
    };
    let mut served = SlotSet::empty();
    let mut moving = SlotSet::empty();
    for field in owner.map(|fields| fields.iter().skip(8)).into_iter().flatten() {
        if let Some(range) = parse_slot_range(field) {
            for slot in range {
                served.set(slot, true);
            }
        }
    }
    // Slots in motion, as the owner lists them: `[slot->-target]` migrating, `[slot-<-source]` importing.
    for fields in [Some(myself), owner].into_iter().flatten() {
        for field in fields.iter().skip(8).filter(|field| field.starts_with('[')) {
            let slot = field.trim_start_matches('[').split('-').next().and_then(|text| text.parse::<u16>().ok());
            if let Some(slot) = slot {
                served.set(slot, false);
                moving.insert(slot);
            }
        }
    }
    NodeView { served, moving }
}

fn parse_slot_range(field: &str) -> Option<std::ops::RangeInclusive<u16>> {
    if field.starts_with('[') {
        return None;
    }
    let (first, last) = field.split_once('-').unwrap_or((field, field));
    let (first, last) = (first.parse::<u16>().ok()?, last.parse::<u16>().ok()?);
    (first <= last && last < SLOT_COUNT).then_some(first..=last)
}

struct View {
    read_at: Instant,
    node: NodeView,
}

static VIEW: Mutex<Option<View>> = Mutex::new(None);

/// Runs `use_view` on the current view of the slots this node serves, re-reading it when stale.
pub(crate) fn with_served_slots<T>(ctx: &Context, use_view: impl FnOnce(&SlotSet) -> T) -> Result<T, CommandError> {
    with_node_view(ctx, false, |node| use_view(&node.served))
}

fn with_node_view<T>(ctx: &Context, reread: bool, use_view: impl FnOnce(&NodeView) -> T) -> Result<T, CommandError> {
    let mut view = VIEW.lock().map_err(|_| CommandError::Internal)?;
    let fresh = view.as_ref().is_some_and(|view| view.read_at.elapsed() < VIEW_LIFETIME);
    if reread || !fresh {
        *view = Some(View { read_at: Instant::now(), node: read_node_view(ctx)? });
    }
    view.as_ref().map(|view| use_view(&view.node)).ok_or(CommandError::Internal)
}

fn read_node_view(ctx: &Context) -> Result<NodeView, CommandError> {
    let reply = ctx.call("CLUSTER", &["NODES"]).map_err(|_| CommandError::Internal)?;
    let text = match reply {
        RedisValue::SimpleString(text) | RedisValue::BulkString(text) => text,
        RedisValue::StringBuffer(bytes) | RedisValue::VerbatimString((_, bytes)) => {
            String::from_utf8_lossy(&bytes).into_owned()
        }
        RedisValue::BulkRedisString(text) => text.to_string_lossy(),
        _ => return Err(CommandError::Internal),
    };
    Ok(parse_cluster_nodes(&text))
}

/// Refuses unless this node stably serves the slot of `key` (a key qsess derived): with `TRYAGAIN`
/// while the slot is in motion, which clients retry, else (after reading the view again, in case
/// the slot just arrived) with an error that names the slot: a key outside the command's slot is a
/// bug that must be loud, never a write into a foreign slot.
pub(crate) fn require_served_key(ctx: &Context, key: &[u8]) -> Result<(), CommandError> {
    let slot = key_slot(key);
    let state = |node: &NodeView| (node.served.contains(slot), node.moving.contains(slot));
    let (mut served, mut moving) = with_node_view(ctx, false, state)?;
    if !served && !moving {
        (served, moving) = with_node_view(ctx, true, state)?;
    }
    match (served, moving) {
        (true, _) => Ok(()),
        (false, true) => Err(CommandError::SlotInMotion(slot)),
        (false, false) => Err(CommandError::SlotNotServed(slot)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY_VIEW: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [42->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
";

    #[test]
    fn a_primary_serves_its_ranges_minus_slots_in_motion() {
        let NodeView { served, moving } = parse_cluster_nodes(PRIMARY_VIEW);
        assert_eq!(moving.iter().collect::<Vec<_>>(), vec![42]);
        assert!(served.contains(0) && served.contains(5460) && served.contains(41));
        assert!(!served.contains(42), "a migrating slot is not served stably");
        assert!(!served.contains(5461));
        assert_eq!(served.len(), 5460);
    }

    #[test]
    fn a_replica_serves_its_primary_slots_for_reads() {
        let replica_view = PRIMARY_VIEW.replace("myself,master", "master").replace("31004 slave", "31004 myself,slave");
        let served = parse_cluster_nodes(&replica_view).served;
        assert!(served.contains(0) && !served.contains(42) && !served.contains(6000));
    }

    #[test]
    fn an_importing_slot_is_not_served_and_single_slots_parse() {
        let view = "abc 127.0.0.1:1@2 myself,master - 0 0 1 connected 7 100-101 [7-<-def]\n";
        let NodeView { served, moving } = parse_cluster_nodes(view);
        assert!(moving.contains(7));
        assert_eq!(served.iter().collect::<Vec<_>>(), vec![100, 101]);
        assert_eq!(served.nth_wrapping(3), Some(101));
        assert_eq!(parse_cluster_nodes("").served.len(), 0);
    }
}
