//! Which server loaded the module (Redis or Valkey, version, allocator), read once at load and logged.
//!
//! The module API is the same on every supported server; what differs is found by asking for it
//! (ACL categories for module commands exist from Redis 7.2 and in Valkey, `@qsess` from Redis 7.4
//! and in Valkey 8), so this profile is for operators and bug reports, not for branching.

use redis_module::{Context, RedisValue};

/// What the log line and `INFO qsess` say about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerProfile {
    /// `redis` or `valkey`.
    pub(crate) name: String,
    /// The server's own version (`valkey_version` on Valkey, whose `redis_version` is a compatibility number).
    pub(crate) version: String,
    /// `mem_allocator` from `INFO memory`: `jemalloc-5.3.0`, `libc`, ...
    pub(crate) allocator: String,
}

impl ServerProfile {
    /// Reads the profile from the text of `INFO server` and `INFO memory`; fields a server does not
    /// report read as `unknown`.
    pub(crate) fn from_info(server_info: &str, memory_info: &str) -> ServerProfile {
        let name = info_field(server_info, "server_name").unwrap_or("redis").to_owned();
        let version = info_field(server_info, &format!("{name}_version"))
            .or_else(|| info_field(server_info, "redis_version"))
            .unwrap_or("unknown")
            .to_owned();
        let allocator = info_field(memory_info, "mem_allocator").unwrap_or("unknown").to_owned();
        ServerProfile { name, version, allocator }
    }

    /// Asks the server through `INFO` at load time.
    pub(crate) fn detect(ctx: &Context) -> ServerProfile {
        ServerProfile::from_info(&info_section(ctx, "server"), &info_section(ctx, "memory"))
    }
}

/// One section of `INFO` as text, or empty if the call failed (the profile then reads `unknown`).
fn info_section(ctx: &Context, section: &str) -> String {
    match ctx.call("INFO", &[section]) {
        Ok(RedisValue::SimpleString(text)) | Ok(RedisValue::BulkString(text)) => text,
        Ok(RedisValue::StringBuffer(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    }
}

/// The value of `field:value` in an `INFO` reply.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':')).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valkey_is_named_with_its_own_version_not_the_compatibility_one() {
        let server = "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.8\r\n";
        let profile = ServerProfile::from_info(server, "# Memory\r\nmem_allocator:libc\r\n");
        assert_eq!(profile.name, "valkey");
        assert_eq!(profile.version, "8.1.8");
        assert_eq!(profile.allocator, "libc");
    }

    #[test]
    fn redis_has_no_server_name_field() {
        let server = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        let profile = ServerProfile::from_info(server, "mem_allocator:jemalloc-5.3.0\r\n");
        assert_eq!((profile.name.as_str(), profile.version.as_str()), ("redis", "7.0.15"));
        assert_eq!(profile.allocator, "jemalloc-5.3.0");
    }

    #[test]
    fn missing_fields_read_unknown() {
        let profile = ServerProfile::from_info("", "");
        assert_eq!((profile.version.as_str(), profile.allocator.as_str()), ("unknown", "unknown"));
    }
}
