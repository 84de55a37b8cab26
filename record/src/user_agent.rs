//! The user agent as a record stores it: packed with a fixed dictionary of the phrases real browsers
//! repeat in every agent, so the benchmark's 111-byte Chrome agent takes 8.
//!
//! The agent was a quarter of every record and what kept a session out of the allocator's 384-byte
//! class. Sessions share a handful of agents, but a table of distinct agents would cost every `GET`
//! a second key lookup and every write a reference count; a static dictionary costs neither: packing
//! is deterministic, needs no state, and unpacking is a copy of at most a few dozen slices.
//!
//! Packed form: a byte from 0x20 to 0x7e is itself; a byte from 0x80 up is `PHRASES[byte - 0x80]`;
//! every other byte is corrupt. Only agents made of printable ASCII (every browser's) are packed; any
//! other agent is stored as given, in a record format without packing.

use std::borrow::Cow;
use std::sync::OnceLock;

/// The first byte value that names a phrase.
const FIRST_PHRASE_CODE: u8 = 0x80;

/// Phrases of real agents (desktop and mobile Chrome, Edge, Opera, Firefox, Safari; Android, iOS,
/// Windows, macOS, Linux; common HTTP libraries), longest first where one contains another. The table
/// is part of record format 3: entries may be appended, never changed or reordered, or stored agents
/// would unpack to different text.
const PHRASES: [&[u8]; 62] = [
    b"Mozilla/5.0 (",
    b"Windows NT 10.0; Win64; x64) ",
    b"Macintosh; Intel Mac OS X 10_15_7) ",
    b"X11; Linux x86_64",
    b"Linux; Android ",
    b"iPhone; CPU iPhone OS ",
    b"iPad; CPU OS ",
    b" like Mac OS X) ",
    b"AppleWebKit/537.36 (KHTML, like Gecko) Chrome/",
    b"AppleWebKit/605.1.15 (KHTML, like Gecko) ",
    b" Safari/537.36",
    b" Mobile Safari/537.36",
    b" Mobile/15E148 Safari/604.1",
    b" Safari/605.1.15",
    b"Version/",
    b"; rv:",
    b") Gecko/20100101 Firefox/",
    b" Edg/",
    b".0.0.0",
    b" OPR/",
    b" CriOS/",
    b" FxiOS/",
    b"SamsungBrowser/",
    b"; K) ",
    b"X11; Ubuntu; Linux x86_64",
    b"Windows NT 6.1; Win64; x64) ",
    b"Windows NT 10.0; WOW64) ",
    b"Windows NT 10.0) ",
    b"Gecko/20100101 Firefox/",
    b"(KHTML, like Gecko)",
    b"AppleWebKit/",
    b" Mobile",
    b" Safari/",
    b"Chrome/",
    b"Firefox/",
    b"Windows NT ",
    b"Linux",
    b"Android",
    b"Macintosh",
    b"Mac OS X",
    b"; Win64; x64",
    b"compatible; ",
    b"python-requests/",
    b"python-httpx/",
    b"curl/",
    b"okhttp/",
    b"Dalvik/2.1.0 (Linux; U; Android ",
    b" Build/",
    b"Mobile/",
    b"Safari/",
    b"Edge/",
    b"Trident/7.0; rv:11.0) like Gecko",
    b"MSIE ",
    b"bot",
    b"Bot",
    b"Opera/",
    b"Gecko",
    b"KHTML",
    b".0.",
    b".0",
    b"; ",
    b") ",
];

/// A user agent as a record holds it. Two agents are equal when their text is.
#[derive(Debug, Clone, Copy)]
pub enum UserAgent<'a> {
    /// The text as the client sent it.
    Text(&'a [u8]),
    /// Packed by [`pack_user_agent`]; valid by construction (the record decoder checks it).
    Packed(&'a [u8]),
}

impl<'a> UserAgent<'a> {
    /// The agent's text: borrowed when stored as text, unpacked otherwise.
    pub fn text(&self) -> Cow<'a, [u8]> {
        match *self {
            UserAgent::Text(text) => Cow::Borrowed(text),
            UserAgent::Packed(packed) => {
                let mut text = Vec::with_capacity(packed.len() * 8);
                unpack_into(packed, &mut text);
                Cow::Owned(text)
            }
        }
    }

    /// Whether the agent is the empty string.
    pub fn is_empty(&self) -> bool {
        match self {
            UserAgent::Text(bytes) | UserAgent::Packed(bytes) => bytes.is_empty(),
        }
    }
}

impl PartialEq for UserAgent<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (UserAgent::Text(left), UserAgent::Text(right)) | (UserAgent::Packed(left), UserAgent::Packed(right)) => {
                left == right
            }
            _ => self.text() == other.text(),
        }
    }
}

impl Eq for UserAgent<'_> {}

/// Appends `text` packed to `packed` and answers true, or answers false and appends nothing when the
/// text has a byte outside printable ASCII (such an agent is stored as given).
pub fn pack_user_agent(text: &[u8], packed: &mut Vec<u8>) -> bool {
    if !text.iter().all(|&byte| is_literal(byte)) {
        return false;
    }
    let phrases_by_first_byte = phrases_by_first_byte();
    let mut rest = text;
    while let Some((&first, after_first)) = rest.split_first() {
        let candidates = phrases_by_first_byte.get(usize::from(first)).map(Vec::as_slice).unwrap_or_default();
        // Candidates are longest first, so the first that matches is the longest match.
        match candidates.iter().find(|&&(_, phrase)| rest.starts_with(phrase)) {
            Some(&(code, phrase)) => {
                packed.push(code);
                rest = rest.get(phrase.len()..).unwrap_or_default();
            }
            None => {
                packed.push(first);
                rest = after_first;
            }
        }
    }
    true
}

/// Whether `packed` is a packed agent this build can unpack: literals and known phrase codes only.
pub fn is_packed_user_agent(packed: &[u8]) -> bool {
    packed.iter().all(|&byte| is_literal(byte) || phrase(byte).is_some())
}

/// Appends the text of a packed agent; bytes that are neither literals nor phrase codes (which
/// [`is_packed_user_agent`] refuses before a record is accepted) are skipped.
fn unpack_into(packed: &[u8], text: &mut Vec<u8>) {
    for &byte in packed {
        if is_literal(byte) {
            text.push(byte);
        } else if let Some(phrase) = phrase(byte) {
            text.extend_from_slice(phrase);
        }
    }
}

fn is_literal(byte: u8) -> bool {
    (0x20..=0x7e).contains(&byte)
}

fn phrase(code: u8) -> Option<&'static [u8]> {
    PHRASES.get(usize::from(code.checked_sub(FIRST_PHRASE_CODE)?)).copied()
}

/// A phrase and the byte that stands for it.
type CodedPhrase = (u8, &'static [u8]);

/// For each first byte, the phrases starting with it, longest first.
fn phrases_by_first_byte() -> &'static [Vec<CodedPhrase>] {
    static TABLE: OnceLock<Vec<Vec<CodedPhrase>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = vec![Vec::new(); 256];
        for (code, phrase) in (FIRST_PHRASE_CODE..).zip(PHRASES) {
            if let Some(candidates) = phrase.first().and_then(|&first| table.get_mut(usize::from(first))) {
                candidates.push((code, phrase));
            }
        }
        for candidates in &mut table {
            candidates.sort_by_key(|&(_, phrase)| std::cmp::Reverse(phrase.len()));
        }
        table
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_AGENTS: [&str; 8] = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) \
         Version/17.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile \
         Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 \
         Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 \
         Safari/537.36 Edg/120.0.0.0",
        "python-requests/2.31.0",
        "curl/8.4.0",
    ];

    fn packed(text: &[u8]) -> Vec<u8> {
        let mut packed = Vec::new();
        assert!(pack_user_agent(text, &mut packed));
        packed
    }

    #[test]
    fn real_agents_unpack_to_their_text_and_shrink() {
        for agent in REAL_AGENTS {
            let packed = packed(agent.as_bytes());
            assert!(is_packed_user_agent(&packed));
            assert_eq!(UserAgent::Packed(&packed).text(), agent.as_bytes(), "{agent}");
            assert!(packed.len() * 2 <= agent.len(), "{agent}: only {} -> {} bytes", agent.len(), packed.len());
        }
    }

    #[test]
    fn the_reference_agent_takes_eight_bytes() {
        // The agent the memory target is measured with (bench/qsess_bench/workload.py).
        assert_eq!(packed(REAL_AGENTS[0].as_bytes()).len(), 8);
    }

    #[test]
    fn agents_outside_printable_ascii_are_not_packed() {
        for text in [&b"curl\0/8"[..], b"caf\xc3\xa9", b"tab\there", b"\x7f"] {
            let mut packed = vec![1];
            assert!(!pack_user_agent(text, &mut packed), "{text:?}");
            assert_eq!(packed, [1], "nothing appended for {text:?}");
        }
    }

    #[test]
    fn only_literals_and_known_codes_are_a_packed_agent() {
        assert!(is_packed_user_agent(b"plain text"));
        assert!(is_packed_user_agent(&[FIRST_PHRASE_CODE, b'x', FIRST_PHRASE_CODE + PHRASES.len() as u8 - 1]));
        assert!(!is_packed_user_agent(&[FIRST_PHRASE_CODE + PHRASES.len() as u8]));
        assert!(!is_packed_user_agent(b"\x00"));
        assert!(!is_packed_user_agent(b"\x7f"));
    }

    #[test]
    fn agents_compare_by_text_whatever_their_form() {
        let text = REAL_AGENTS[1].as_bytes();
        let packed = packed(text);
        assert_eq!(UserAgent::Text(text), UserAgent::Packed(&packed));
        assert_ne!(UserAgent::Text(b"curl/8.4.0"), UserAgent::Packed(&packed));
    }

    #[test]
    fn every_phrase_is_printable_ascii_and_listed_once() {
        for (index, phrase) in PHRASES.iter().enumerate() {
            assert!(!phrase.is_empty() && phrase.iter().all(|&byte| is_literal(byte)), "{phrase:?}");
            assert!(!PHRASES[..index].contains(phrase), "{phrase:?} listed twice");
        }
        assert!(PHRASES.len() <= usize::from(u8::MAX - FIRST_PHRASE_CODE) + 1);
    }
}
