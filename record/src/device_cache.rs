//! Device summaries ("Firefox 120 on Linux") of user agents, cached per distinct user agent, for the
//! module (every `QSESS.SET`, and reads of records that keep the user agent) and the daemon (every
//! mirrored `set`).
//!
//! Parsing a user agent costs 1-3 µs (woothee, [`crate::device_summary`]), a quarter of a whole
//! `QSESS.SET` and a fifth of the daemon's CPU per mirrored change before it was cached; a hit in
//! this cache costs a hash of the user agent. Web traffic repeats a small set of
//! user agents, so nearly every lookup is a hit. The cache is bounded: two generations of at most
//! [`GENERATION_CAPACITY`] entries each; when the young one fills up the old one is dropped and the
//! young one becomes old, so agents in use stay cached (a hit in the old generation moves the entry
//! back to the young one) and memory stays under about a megabyte whatever the traffic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Entries per generation; the longest user agent kept is 512 bytes, so the cache holds at most
/// about 2 × 2048 × 600 B.
const GENERATION_CAPACITY: usize = 2048;

type Summary = Option<Arc<str>>;

struct Cache {
    young: HashMap<Box<[u8]>, Summary>,
    old: HashMap<Box<[u8]>, Summary>,
}

impl Cache {
    fn get_or_parse(&mut self, user_agent: &[u8], parse: impl FnOnce(&[u8]) -> Summary) -> Summary {
        if let Some(summary) = self.young.get(user_agent) {
            return summary.clone();
        }
        let summary = match self.old.remove(user_agent) {
            Some(summary) => summary,
            None => parse(user_agent),
        };
        if self.young.len() >= GENERATION_CAPACITY {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(user_agent.into(), summary.clone());
        summary
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// The device summary of `user_agent`, `None` when it names no known browser or system: what
/// [`crate::device_summary`] answers, parsed once per distinct user agent.
pub fn cached_device_summary(user_agent: &[u8]) -> Option<Arc<str>> {
    let mut guard = CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let cache = guard.get_or_insert_with(|| Cache { young: HashMap::new(), old: HashMap::new() });
    cache.get_or_parse(user_agent, |user_agent| crate::device_summary(user_agent).map(Arc::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn summarises_through_the_cache() {
        let firefox = b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
        assert_eq!(cached_device_summary(firefox).as_deref(), Some("Firefox 120 on Linux"));
        assert_eq!(cached_device_summary(firefox).as_deref(), Some("Firefox 120 on Linux"));
        assert_eq!(cached_device_summary(b"not a browser at all").as_deref(), None);
    }

    #[test]
    fn parses_each_agent_once_and_stays_bounded() {
        let mut cache = Cache { young: HashMap::new(), old: HashMap::new() };
        let parses = Cell::new(0);
        let parse = |agent: &[u8]| {
            parses.set(parses.get() + 1);
            Some(Arc::from(String::from_utf8_lossy(agent).as_ref()))
        };
        for _ in 0..3 {
            assert_eq!(cache.get_or_parse(b"hot", parse).as_deref(), Some("hot"));
        }
        assert_eq!(parses.get(), 1);
        for n in 0..5 * GENERATION_CAPACITY {
            cache.get_or_parse(format!("agent {n}").as_bytes(), parse);
            // A hot agent used now and then survives every generation change.
            if n % 100 == 0 {
                cache.get_or_parse(b"hot", parse);
            }
            assert!(cache.len() <= 2 * GENERATION_CAPACITY);
        }
        assert_eq!(parses.get(), 1 + 5 * GENERATION_CAPACITY, "the hot agent was parsed again");
    }
}
