//! Replies written straight to the client: records as maps (RESP3) that Redis flattens to
//! field/value arrays for RESP2 clients. Writing directly avoids building a `RedisValue` tree on GET.

use crate::error::CommandError;
use crate::redis_key::api;
use qsess_record::{Handle, SessionRecord, UserAgent};
use redis_module::Context;
use std::net::IpAddr;
use std::os::raw::{c_char, c_long};
use std::sync::{Arc, Mutex};

/// Which fields of a record a reply carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordFields {
    /// `QSESS.GET`/`QSESS.PEEK`: the whole record except secrets (there are none stored).
    Full,
    /// `QSESS.BYUSER ... WITHMETA`: what a "your devices" page shows.
    Meta,
}

pub(crate) struct Reply<'ctx> {
    ctx: &'ctx Context,
}

impl<'ctx> Reply<'ctx> {
    pub(crate) fn new(ctx: &'ctx Context) -> Reply<'ctx> {
        Reply { ctx }
    }

    pub(crate) fn array(&self, length: usize) -> Result<(), CommandError> {
        let reply_with_array = api!(RedisModule_ReplyWithArray);
        // SAFETY: live command context.
        unsafe { reply_with_array(self.ctx.get_raw(), length as c_long) };
        Ok(())
    }

    pub(crate) fn bytes(&self, bytes: &[u8]) -> Result<(), CommandError> {
        let reply_with_string_buffer = api!(RedisModule_ReplyWithStringBuffer);
        // SAFETY: live command context; Redis copies `bytes` before returning.
        unsafe { reply_with_string_buffer(self.ctx.get_raw(), bytes.as_ptr().cast::<c_char>(), bytes.len()) };
        Ok(())
    }

    pub(crate) fn integer(&self, value: u64) -> Result<(), CommandError> {
        let reply_with_long_long = api!(RedisModule_ReplyWithLongLong);
        // SAFETY: live command context.
        unsafe { reply_with_long_long(self.ctx.get_raw(), value.min(i64::MAX as u64) as i64) };
        Ok(())
    }

    pub(crate) fn null(&self) -> Result<(), CommandError> {
        let reply_with_null = api!(RedisModule_ReplyWithNull);
        // SAFETY: live command context.
        unsafe { reply_with_null(self.ctx.get_raw()) };
        Ok(())
    }

    pub(crate) fn record(
        &self,
        handle: &Handle,
        record: &SessionRecord<'_>,
        fields: RecordFields,
    ) -> Result<(), CommandError> {
        let ip_text = record.ip.map(IpText::of);
        // The device is stored when the user agent is not (`qsess.ua-mode none`), else derived from it.
        let shown_agent = record.user_agent.map(ShownAgent::of);
        let derived_device = match record.device {
            Some(_) => None,
            None => shown_agent.as_ref().and_then(|agent| agent.device.clone()),
        };
        let texts: [(&str, Option<&[u8]>); 7] = [
            ("data", (fields == RecordFields::Full).then_some(record.data)),
            ("user", record.user.filter(|_| fields == RecordFields::Full)),
            ("ip", ip_text.as_ref().map(IpText::as_bytes)),
            ("ua", shown_agent.as_ref().map(|agent| &*agent.text)),
            ("device", record.device.or(derived_device.as_deref().map(str::as_bytes))),
            ("loc", record.location),
            ("cc", record.country),
        ];
        let expires_ms = record.expires_ms().unwrap_or_default();
        let numbers: &[(&str, u64)] = match fields {
            RecordFields::Full => &[
                ("created", record.created_ms),
                ("updated", record.updated_ms),
                ("seen", record.seen_ms),
                ("idle", record.idle_ms),
                ("abs", record.absolute_deadline_ms),
                ("expires", expires_ms),
                ("ver", record.version),
            ],
            RecordFields::Meta => &[("created", record.created_ms), ("seen", record.seen_ms), ("expires", expires_ms)],
        };
        let present_texts = texts.iter().filter(|(_, value)| value.is_some()).count();
        let reply_with_map = api!(RedisModule_ReplyWithMap);
        // SAFETY: live command context; exactly that many key/value pairs follow.
        unsafe { reply_with_map(self.ctx.get_raw(), (1 + present_texts + numbers.len()) as c_long) };
        self.bytes(b"handle")?;
        self.bytes(handle.as_bytes())?;
        for (name, value) in texts {
            if let Some(value) = value {
                self.bytes(name.as_bytes())?;
                self.bytes(value)?;
            }
        }
        for (name, value) in numbers {
            self.bytes(name.as_bytes())?;
            self.integer(*value)?;
        }
        Ok(())
    }
}

/// An address as its `Display` writes it; IPv4, nearly every address, without the formatter (which
/// was 3% of a `QSESS.GET`).
enum IpText {
    V4 { bytes: [u8; 15], length: usize },
    Other(String),
}

impl IpText {
    fn of(address: IpAddr) -> IpText {
        let IpAddr::V4(v4) = address else { return IpText::Other(address.to_string()) };
        let mut bytes = [0u8; 15];
        let mut length = 0;
        let mut push = |byte: u8| {
            if let Some(slot) = bytes.get_mut(length) {
                *slot = byte;
            }
            length += 1;
        };
        for (position, octet) in v4.octets().into_iter().enumerate() {
            if position > 0 {
                push(b'.');
            }
            if octet >= 100 {
                push(b'0' + octet / 100);
            }
            if octet >= 10 {
                push(b'0' + octet / 10 % 10);
            }
            push(b'0' + octet % 10);
        }
        IpText::V4 { bytes, length }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            IpText::V4 { bytes, length } => bytes.get(..*length).unwrap_or_default(),
            IpText::Other(text) => text.as_bytes(),
        }
    }
}

/// A stored user agent as a reply shows it: its text and the device summary derived from it.
#[derive(Clone)]
struct ShownAgent {
    text: Arc<[u8]>,
    device: Option<Arc<str>>,
}

impl ShownAgent {
    /// Through the shared per-agent summary cache, with the last agent remembered in front of it:
    /// consecutive reads mostly show the same few agents, and comparing the stored bytes is cheaper
    /// than unpacking and hashing them (the hash alone was 2% of a `QSESS.GET`).
    fn of(user_agent: UserAgent<'_>) -> ShownAgent {
        type LastAgent = Option<((bool, Box<[u8]>), ShownAgent)>;
        static LAST: Mutex<LastAgent> = Mutex::new(None);
        let stored = match user_agent {
            UserAgent::Text(bytes) => (false, bytes),
            UserAgent::Packed(bytes) => (true, bytes),
        };
        let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(((packed, bytes), shown)) = last.as_ref() {
            if (*packed, &**bytes) == stored {
                return shown.clone();
            }
        }
        let text: Arc<[u8]> = user_agent.text().into();
        let shown = ShownAgent { device: qsess_record::cached_device_summary(&text), text };
        *last = Some(((stored.0, stored.1.into()), shown.clone()));
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_is_what_display_writes() {
        for text in ["0.0.0.0", "1.2.3.4", "203.0.113.7", "10.100.9.255", "255.255.255.255", "2001:db8::1", "::"] {
            let address: IpAddr = text.parse().unwrap();
            assert_eq!(IpText::of(address).as_bytes(), address.to_string().as_bytes(), "{text}");
        }
        for octet in 0..=255u8 {
            let address = IpAddr::from([octet, 255 - octet, octet / 3, 7]);
            assert_eq!(IpText::of(address).as_bytes(), address.to_string().as_bytes());
        }
    }

    #[test]
    fn a_shown_agent_is_its_text_and_its_cached_summary_whatever_was_shown_before() {
        let firefox = b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
        let chrome = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
        for agent in [&firefox[..], &chrome[..], &firefox[..], &firefox[..], b"curl/8.0", &chrome[..], b"\x80"] {
            let mut packed = Vec::new();
            let forms = match qsess_record::pack_user_agent(agent, &mut packed) {
                true => vec![UserAgent::Text(agent), UserAgent::Packed(&packed), UserAgent::Text(agent)],
                false => vec![UserAgent::Text(agent)],
            };
            for form in forms {
                let shown = ShownAgent::of(form);
                assert_eq!(&*shown.text, agent);
                assert_eq!(shown.device, qsess_record::cached_device_summary(agent));
            }
        }
        // The same stored bytes as text and as a packed agent are two different agents.
        assert_eq!(&*ShownAgent::of(UserAgent::Text(b"\x80")).text, b"\x80");
        assert_eq!(&*ShownAgent::of(UserAgent::Packed(b"\x80")).text, b"Mozilla/5.0 (");
    }
}
