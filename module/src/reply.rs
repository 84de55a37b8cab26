//! Replies written straight to the client: records as maps (RESP3) that Redis flattens to
//! field/value arrays for RESP2 clients. Writing directly avoids building a `RedisValue` tree on GET.

use crate::error::CommandError;
use crate::redis_key::api;
use qsess_record::{Handle, SessionRecord};
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
        // Stored when the user agent is not (`qsess.ua-mode none`), else derived from it (cached).
        let derived_device = match record.device {
            Some(_) => None,
            None => record.user_agent.and_then(device_summary),
        };
        let texts: [(&str, Option<&[u8]>); 7] = [
            ("data", (fields == RecordFields::Full).then_some(record.data)),
            ("user", record.user.filter(|_| fields == RecordFields::Full)),
            ("ip", ip_text.as_ref().map(IpText::as_bytes)),
            ("ua", record.user_agent),
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

/// The device summary of a user agent, through the shared per-agent cache, with the last agent
/// remembered in front of it: consecutive reads mostly show the same few agents, and comparing the
/// bytes is cheaper than hashing them for the cache (2% of a `QSESS.GET`).
fn device_summary(user_agent: &[u8]) -> Option<Arc<str>> {
    type LastAgent = Option<(Box<[u8]>, Option<Arc<str>>)>;
    static LAST: Mutex<LastAgent> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((agent, summary)) = last.as_ref() {
        if **agent == *user_agent {
            return summary.clone();
        }
    }
    let summary = qsess_record::cached_device_summary(user_agent);
    *last = Some((user_agent.into(), summary.clone()));
    summary
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
    fn device_summary_is_the_cached_summary() {
        let firefox = b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
        let chrome = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
        for agent in [&firefox[..], &chrome[..], &firefox[..], &firefox[..], b"curl/8.0", &chrome[..]] {
            assert_eq!(device_summary(agent), qsess_record::cached_device_summary(agent));
        }
    }
}
