//! The session record and its compact binary encoding (formats 1, 2 and 3), stored as one Redis string.
//!
//! One string instead of an 11-field hash is what makes the module fast and small: the research
//! measured 711 B per session and 1.5x a Lua script for this layout against 1,519 B and 1.08x for a hash.
//! Times are varints relative to `created`, strings are length-prefixed, and there are no field names.
//! Format 2 adds the device summary after the country code; a record without one is still written as
//! format 1, so a reader that only knows format 1 keeps working through an upgrade. Format 3 is format
//! 2's layout with the user agent packed (`user_agent.rs`); it is written whenever packing saves bytes.

use crate::user_agent::{is_packed_user_agent, pack_user_agent, UserAgent};
use crate::varint;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The first byte of a record without a stored device summary.
pub const RECORD_FORMAT_V1: u8 = 1;
/// The first byte of a record that stores a device summary (format 1 plus `device` after `cc`).
pub const RECORD_FORMAT_V2: u8 = 2;
/// The first byte of a record whose user agent is packed (format 2's layout, `device` always present).
pub const RECORD_FORMAT_V3: u8 = 3;

const IP_NONE: u8 = 0;
const IP_V4: u8 = 4;
const IP_V6: u8 = 6;

/// One session. Byte fields borrow from the buffer they were decoded from, or from command arguments.
///
/// `idle_ms == 0` means no idle timeout and `absolute_deadline_ms == 0` means no absolute deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord<'a> {
    /// Increases with every change; restarts at 1 when an id is used again after it expired.
    pub version: u64,
    /// When the session was created (ms since the epoch).
    pub created_ms: u64,
    /// When the session was last written (ms since the epoch).
    pub updated_ms: u64,
    /// The session's last activity (ms since the epoch).
    pub seen_ms: u64,
    /// The idle timeout (ms); 0 means none.
    pub idle_ms: u64,
    /// The absolute deadline (ms since the epoch); 0 means none.
    pub absolute_deadline_ms: u64,
    /// The owner; `None` for an anonymous session.
    pub user: Option<&'a [u8]>,
    /// The client address, as the IP mode stores it.
    pub ip: Option<IpAddr>,
    /// The user agent, as the UA mode stores it: text as given, or packed as read from a record.
    pub user_agent: Option<UserAgent<'a>>,
    /// The location looked up from the address, if any.
    pub location: Option<&'a [u8]>,
    /// The country code looked up from the address, if any.
    pub country: Option<&'a [u8]>,
    /// "Firefox 120 on Linux": stored only when the user agent it comes from is not (`qsess.ua-mode none`);
    /// otherwise it is derived from `user_agent` where it is shown.
    pub device: Option<&'a [u8]>,
    /// The application's session data.
    pub data: &'a [u8],
}

/// Bytes that are not a record this version can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty session record")]
    /// No bytes at all.
    Empty,
    #[error("session record format {0} is not supported (this build reads formats {RECORD_FORMAT_V1} to {RECORD_FORMAT_V3})")]
    /// A format byte this build does not read.
    UnknownFormat(u8),
    #[error("session record is truncated or corrupt")]
    /// Bytes that do not decode as the format says.
    Corrupt,
}

impl<'a> SessionRecord<'a> {
    /// A record as its first write leaves it when nothing is known about the client: created, updated
    /// and last seen at `created_ms`, with an owner (or none), an idle timeout and no absolute deadline.
    /// Set other fields with struct update syntax: `SessionRecord { ip, ..SessionRecord::plain(...) }`.
    pub fn plain(user: Option<&'a [u8]>, version: u64, created_ms: u64, idle_ms: u64, data: &'a [u8]) -> Self {
        SessionRecord {
            version,
            created_ms,
            updated_ms: created_ms,
            seen_ms: created_ms,
            idle_ms,
            absolute_deadline_ms: 0,
            user,
            ip: None,
            user_agent: None,
            location: None,
            country: None,
            device: None,
            data,
        }
    }

    /// When the session ends: the earlier of `seen + idle` and the absolute deadline.
    /// `None` only for a record with neither timeout, which the module never writes.
    pub fn expires_ms(&self) -> Option<u64> {
        let idle_end = (self.idle_ms > 0).then(|| self.seen_ms.saturating_add(self.idle_ms));
        let absolute_end = (self.absolute_deadline_ms > 0).then_some(self.absolute_deadline_ms);
        match (idle_end, absolute_end) {
            (Some(idle_end), Some(absolute_end)) => Some(idle_end.min(absolute_end)),
            (idle_end, absolute_end) => idle_end.or(absolute_end),
        }
    }

    /// Whether the session is over at `now_ms`.
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        self.expires_ms().is_some_and(|expires| expires <= now_ms)
    }

    /// Appends the encoding to `buffer`: format 3 when packing the user agent saves bytes, else format
    /// 2 when there is a device summary to keep, else format 1.
    pub fn encode_into(&self, buffer: &mut Vec<u8>) {
        let device = self.device.filter(|device| !device.is_empty());
        let mut packed_agent = Vec::new();
        let stored_agent: &[u8] = match self.user_agent {
            None => &[],
            Some(UserAgent::Packed(packed)) => packed,
            Some(UserAgent::Text(text)) => {
                if pack_user_agent(text, &mut packed_agent) && packed_agent.len() < text.len() {
                    &packed_agent
                } else {
                    packed_agent.clear();
                    text
                }
            }
        };
        let agent_is_packed = matches!(self.user_agent, Some(UserAgent::Packed(_))) || !packed_agent.is_empty();
        buffer.push(match (agent_is_packed, device.is_some()) {
            (true, _) => RECORD_FORMAT_V3,
            (false, true) => RECORD_FORMAT_V2,
            (false, false) => RECORD_FORMAT_V1,
        });
        varint::put(buffer, self.version);
        varint::put(buffer, self.created_ms);
        varint::put(buffer, self.updated_ms.saturating_sub(self.created_ms));
        varint::put(buffer, self.seen_ms.saturating_sub(self.created_ms));
        varint::put(buffer, self.idle_ms);
        // 0 keeps meaning "none"; a real deadline is stored as its distance from creation plus one.
        let absolute = match self.absolute_deadline_ms {
            0 => 0,
            deadline => deadline.saturating_sub(self.created_ms).saturating_add(1),
        };
        varint::put(buffer, absolute);
        match self.ip {
            None => buffer.push(IP_NONE),
            Some(IpAddr::V4(address)) => {
                buffer.push(IP_V4);
                buffer.extend_from_slice(&address.octets());
            }
            Some(IpAddr::V6(address)) => {
                buffer.push(IP_V6);
                buffer.extend_from_slice(&address.octets());
            }
        }
        for text in [self.user, Some(stored_agent), self.location, self.country] {
            put_bytes(buffer, text.unwrap_or_default());
        }
        if agent_is_packed || device.is_some() {
            put_bytes(buffer, device.unwrap_or_default());
        }
        put_bytes(buffer, self.data);
    }

    /// The encoding as a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut buffer);
        buffer
    }

    /// Decodes a record, borrowing its byte fields from `bytes`. Never panics on bad input.
    pub fn decode(bytes: &'a [u8]) -> Result<SessionRecord<'a>, DecodeError> {
        let (&format, mut input) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if !(RECORD_FORMAT_V1..=RECORD_FORMAT_V3).contains(&format) {
            return Err(DecodeError::UnknownFormat(format));
        }
        let input = &mut input;
        let version = take_number(input)?;
        let created_ms = take_number(input)?;
        let updated_ms = created_ms.saturating_add(take_number(input)?);
        let seen_ms = created_ms.saturating_add(take_number(input)?);
        let idle_ms = take_number(input)?;
        let absolute_deadline_ms = match take_number(input)? {
            0 => 0,
            distance => created_ms.saturating_add(distance - 1),
        };
        let (&ip_tag, rest) = input.split_first().ok_or(DecodeError::Corrupt)?;
        *input = rest;
        let ip = match ip_tag {
            IP_NONE => None,
            IP_V4 => Some(IpAddr::V4(Ipv4Addr::from(take_array::<4>(input)?))),
            IP_V6 => Some(IpAddr::V6(Ipv6Addr::from(take_array::<16>(input)?))),
            _ => return Err(DecodeError::Corrupt),
        };
        let user = non_empty(take_bytes(input)?);
        let user_agent = match (non_empty(take_bytes(input)?), format) {
            (None, _) => None,
            (Some(packed), RECORD_FORMAT_V3) if is_packed_user_agent(packed) => Some(UserAgent::Packed(packed)),
            (Some(_), RECORD_FORMAT_V3) => return Err(DecodeError::Corrupt),
            (Some(text), _) => Some(UserAgent::Text(text)),
        };
        let location = non_empty(take_bytes(input)?);
        let country = non_empty(take_bytes(input)?);
        let device = if format == RECORD_FORMAT_V1 { None } else { non_empty(take_bytes(input)?) };
        let data = take_bytes(input)?;
        if !input.is_empty() {
            return Err(DecodeError::Corrupt);
        }
        Ok(SessionRecord {
            version,
            created_ms,
            updated_ms,
            seen_ms,
            idle_ms,
            absolute_deadline_ms,
            user,
            ip,
            user_agent,
            location,
            country,
            device,
            data,
        })
    }

    fn encoded_len_hint(&self) -> usize {
        let agent = self.user_agent.map(|agent| match agent {
            UserAgent::Text(bytes) | UserAgent::Packed(bytes) => bytes,
        });
        let texts = [self.user, agent, self.location, self.country, self.device]
            .iter()
            .map(|text| text.map_or(0, <[u8]>::len) + 2)
            .sum::<usize>();
        1 + 6 * 6 + 17 + texts + self.data.len() + 3
    }
}

fn put_bytes(buffer: &mut Vec<u8>, bytes: &[u8]) {
    varint::put(buffer, bytes.len() as u64);
    buffer.extend_from_slice(bytes);
}

fn take_number(input: &mut &[u8]) -> Result<u64, DecodeError> {
    varint::take(input).ok_or(DecodeError::Corrupt)
}

fn take_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let length = usize::try_from(take_number(input)?).map_err(|_| DecodeError::Corrupt)?;
    if length > input.len() {
        return Err(DecodeError::Corrupt);
    }
    let (bytes, rest) = input.split_at(length);
    *input = rest;
    Ok(bytes)
}

fn take_array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N], DecodeError> {
    if input.len() < N {
        return Err(DecodeError::Corrupt);
    }
    let (bytes, rest) = input.split_at(N);
    *input = rest;
    bytes.try_into().map_err(|_| DecodeError::Corrupt)
}

fn non_empty(bytes: &[u8]) -> Option<&[u8]> {
    (!bytes.is_empty()).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SessionRecord<'static> {
        SessionRecord {
            version: 7,
            created_ms: 1_764_000_000_000,
            updated_ms: 1_764_000_050_000,
            seen_ms: 1_764_000_060_000,
            idle_ms: 1_800_000,
            absolute_deadline_ms: 1_764_086_400_000,
            user: Some(b"42"),
            ip: Some("2001:db8::1".parse().unwrap()),
            user_agent: Some(UserAgent::Text(
                b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            )),
            location: Some(b"Tehran, Iran"),
            country: Some(b"IR"),
            device: None,
            data: &[0, 1, 2, 255, b'x'],
        }
    }

    #[test]
    fn round_trips_every_field() {
        let record = sample();
        let encoded = record.encode();
        assert_eq!(encoded[0], RECORD_FORMAT_V3, "a browser's agent is packed: format 3");
        let decoded = SessionRecord::decode(&encoded).unwrap();
        assert!(matches!(decoded.user_agent, Some(UserAgent::Packed(_))));
        assert_eq!(decoded, record, "the packed agent unpacks to the text");
        assert_eq!(decoded.encode(), encoded, "a decoded record encodes to the same bytes");
        let unpackable = SessionRecord { user_agent: Some(UserAgent::Text(b"curl\0/8")), ..sample() };
        let encoded = unpackable.encode();
        assert_eq!(encoded[0], RECORD_FORMAT_V1, "an agent outside printable ASCII is stored as given");
        assert_eq!(SessionRecord::decode(&encoded), Ok(unpackable));
        let with_device = SessionRecord { user_agent: None, device: Some(b"Firefox 120 on Linux"), ..sample() };
        let encoded = with_device.encode();
        assert_eq!(encoded[0], RECORD_FORMAT_V2, "a device summary needs format 2");
        assert_eq!(SessionRecord::decode(&encoded), Ok(with_device));
    }

    #[test]
    fn reads_format_1_as_written_before_format_2_existed() {
        // A format-1 record written by the previous release, byte for byte: version 3, created 1000 ms,
        // updated +5, seen +7, idle 60000, no deadline, IPv4 192.0.2.1, user "u", ua "ua", loc "L",
        // cc "IR", data "d".
        let bytes = [
            1, 3, 0xe8, 0x07, 5, 7, 0xe0, 0xd4, 0x03, 0, 4, 192, 0, 2, 1, 1, b'u', 2, b'u', b'a', 1, b'L', 2, b'I',
            b'R', 1, b'd',
        ];
        let record = SessionRecord::decode(&bytes).unwrap();
        assert_eq!((record.version, record.created_ms, record.updated_ms, record.seen_ms), (3, 1000, 1005, 1007));
        assert_eq!((record.idle_ms, record.absolute_deadline_ms), (60_000, 0));
        assert_eq!(record.ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!((record.user, record.user_agent), (Some(&b"u"[..]), Some(UserAgent::Text(b"ua"))));
        assert_eq!((record.location, record.country, record.device), (Some(&b"L"[..]), Some(&b"IR"[..]), None));
        assert_eq!(record.data, b"d");
        assert_eq!(record.encode(), bytes, "without a device or an agent packing shortens: still format 1");
    }

    #[test]
    fn round_trips_an_anonymous_session_without_deadline_or_ip() {
        let record = SessionRecord {
            user: None,
            ip: Some("192.0.2.7".parse().unwrap()),
            user_agent: None,
            location: None,
            country: None,
            absolute_deadline_ms: 0,
            data: b"",
            ..sample()
        };
        assert_eq!(SessionRecord::decode(&record.encode()), Ok(record.clone()));
        let without_ip = SessionRecord { ip: None, ..record };
        assert_eq!(SessionRecord::decode(&without_ip.encode()), Ok(without_ip));
    }

    #[test]
    fn reference_session_fits_the_384_byte_allocator_class() {
        // The shape the memory target is measured with: 300 B payload, IPv4, the benchmark's 111 B
        // Chrome agent, and a location. Its device summary is derived from the agent, not stored. A Redis
        // string of up to 378 bytes (plus its 5-byte header and terminator) is a 384-byte allocation.
        let payload = [b'a'; 300];
        let chrome = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                       Chrome/124.0.0.0 Safari/537.36";
        let record = SessionRecord {
            ip: Some("203.0.113.9".parse().unwrap()),
            user: Some(b"user-12345"),
            user_agent: Some(UserAgent::Text(chrome)),
            data: &payload,
            ..sample()
        };
        let encoded_len = record.encode().len();
        assert!(encoded_len <= 378, "record grew to {encoded_len} bytes");
        // An agent that cannot be packed is stored as given and costs its length.
        let unpacked = SessionRecord { user_agent: Some(UserAgent::Text(&[0xff; 110])), ..record.clone() };
        assert!(unpacked.encode().len() > encoded_len + 90);
    }

    #[test]
    fn expiry_is_the_earlier_of_idle_and_absolute() {
        let record = sample();
        assert_eq!(record.expires_ms(), Some(record.seen_ms + record.idle_ms));
        let short_deadline = SessionRecord { absolute_deadline_ms: record.seen_ms + 5, ..record.clone() };
        assert_eq!(short_deadline.expires_ms(), Some(record.seen_ms + 5));
        let no_idle = SessionRecord { idle_ms: 0, ..record.clone() };
        assert_eq!(no_idle.expires_ms(), Some(record.absolute_deadline_ms));
        let neither = SessionRecord { idle_ms: 0, absolute_deadline_ms: 0, ..record.clone() };
        assert_eq!(neither.expires_ms(), None);
        assert!(!neither.is_expired_at(u64::MAX));
        assert!(record.is_expired_at(record.seen_ms + record.idle_ms));
        assert!(!record.is_expired_at(record.seen_ms + record.idle_ms - 1));
    }

    #[test]
    fn decode_rejects_garbage_without_panicking() {
        assert_eq!(SessionRecord::decode(b""), Err(DecodeError::Empty));
        assert_eq!(SessionRecord::decode(b"\x09abc"), Err(DecodeError::UnknownFormat(9)));
        let encoded = sample().encode();
        for cut in 1..encoded.len() {
            assert!(SessionRecord::decode(&encoded[..cut]).is_err(), "accepted a record cut at {cut}");
        }
        let mut trailing = encoded.clone();
        trailing.push(0);
        assert_eq!(SessionRecord::decode(&trailing), Err(DecodeError::Corrupt));
        let format_2 = SessionRecord { device: Some(b"Safari 17 on iPhone"), ..sample() }.encode();
        for cut in 1..format_2.len() {
            assert!(SessionRecord::decode(&format_2[..cut]).is_err(), "accepted a format-2 record cut at {cut}");
        }
        // A packed agent with a byte that is neither a literal nor a phrase code is corrupt.
        let mut bad_agent = sample().encode();
        let Some(UserAgent::Text(text)) = sample().user_agent else { unreachable!() };
        let mut packed = Vec::new();
        assert!(pack_user_agent(text, &mut packed));
        let agent_start = bad_agent.windows(packed.len()).position(|window| window == packed).unwrap();
        bad_agent[agent_start] = 0x01;
        assert_eq!(SessionRecord::decode(&bad_agent), Err(DecodeError::Corrupt));
        // Every single-byte prefix variation must be handled without a panic.
        for byte in 0..=255u8 {
            let mut mutated = encoded.clone();
            mutated[10] = byte;
            let _ = SessionRecord::decode(&mutated);
        }
    }
}
