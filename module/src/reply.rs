//! Replies written straight to the client: records as maps (RESP3) that Redis flattens to
//! field/value arrays for RESP2 clients. Writing directly avoids building a `RedisValue` tree on GET.

use crate::error::CommandError;
use crate::redis_key::api;
use qsess_record::{Handle, SessionRecord};
use redis_module::Context;
use std::os::raw::{c_char, c_long};

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
        let ip_text = record.ip.map(|address| address.to_string());
        // Stored when the user agent is not (`qsess.ua-mode none`), else derived from it (cached).
        let derived_device = match record.device {
            Some(_) => None,
            None => record.user_agent.and_then(qsess_record::cached_device_summary),
        };
        let texts: [(&str, Option<&[u8]>); 7] = [
            ("data", (fields == RecordFields::Full).then_some(record.data)),
            ("user", record.user.filter(|_| fields == RecordFields::Full)),
            ("ip", ip_text.as_deref().map(str::as_bytes)),
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
