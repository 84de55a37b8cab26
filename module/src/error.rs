//! The module's typed errors, turned into Redis error replies in exactly one place.

use redis_module::RedisError;

/// Everything a QSESS command can refuse. Messages are lowercase and say what is accepted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CommandError {
    #[error("wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    // Refusals never quote the argument: it may be a session id in the wrong place.
    #[error("unknown option for {command}; accepted: {accepted}")]
    UnknownOption { command: &'static str, accepted: &'static str },
    #[error("option {0} given more than once")]
    RepeatedOption(&'static str),
    #[error("option {0} needs a value")]
    MissingValue(&'static str),
    #[error("{0} and {1} cannot be used together")]
    ConflictingOptions(&'static str, &'static str),
    #[error("{what} must be an integer from {min} to {max}")]
    BadInteger { what: &'static str, min: u64, max: u64 },
    #[error("session id must not be empty")]
    EmptySessionId,
    #[error("session id is {0} bytes long; at most {max} are accepted", max = crate::limits::MAX_SESSION_ID_BYTES)]
    SessionIdTooLong(usize),
    #[error("session id is {length} bytes long; at least {min} are required (qsess.min-session-id-bytes): use a random id of 128 bits or more, or mint one with QSESS.NEW")]
    SessionIdTooShort { length: usize, min: usize },
    #[error("the user already has {limit} live sessions, the most qsess.max-sessions-per-user allows; end some (QSESS.REVOKEUSER, QSESS.REVOKE) or write with LIMIT")]
    TooManySessions { limit: u64 },
    #[error("{command} takes at most {max} ids per call; call it again for the rest")]
    TooManyIds { command: &'static str, max: usize },
    #[error("redis is over maxmemory: an id it does not hold cannot be ended now (that would add a tombstone); ids it holds can")]
    OutOfMemoryForAbsentId,
    #[error("session id must start with its bucket as '<bucket>.' where bucket is below {buckets} (qsess.buckets); QSESS.NEW mints such ids")]
    SessionIdWithoutBucket { buckets: u32 },
    #[error("session id is in bucket {session_bucket} but user's sessions live in bucket {user_bucket}; mint ids with QSESS.NEW USER <uid>")]
    WrongBucket { session_bucket: u32, user_bucket: u32 },
    #[error("on a cluster a session lives in its user's hash slot, and this session id hashes to another one; log the user in with QSESS.NEW USER <uid> (then QSESS.DEL the old id), which mints an id in the user's slot")]
    SessionOutsideUserSlot,
    #[error("on a cluster QSESS.ROTATE keeps a session in its hash slot: the new id must hash to the old id's slot (give it the old id's {{hash tag}}); to log a user in, use QSESS.NEW USER <uid> then QSESS.DEL the old id")]
    RotateAcrossSlots,
    #[error("on a cluster {command} takes ids of one hash slot per call (the first id's); send the others in calls of their own")]
    IdsInSeveralSlots { command: &'static str },
    #[error("on a cluster QSESS.NEW takes USER <uid> as its first option, so that cluster clients route it to the user's node")]
    NewUserNotFirst,
    #[error("hash slot {0} is moving to or from this node; retry shortly")]
    SlotInMotion(u16),
    #[error("hash slot {0} is not served by this node, yet this command's keys are in it; this is a bug in qsess, please report it")]
    SlotNotServed(u16),
    #[error("this node serves no hash slot yet, so it cannot mint an anonymous session; send QSESS.NEW to a primary that serves slots")]
    NoSlotServed,
    #[error("bucket must be one qsess writes: a bucket tag as in its keys' {{tag}} (the bucket number on a standalone server)")]
    BadBucket,
    #[error("user id must not be empty")]
    EmptyUserId,
    #[error("user id is {0} bytes long; at most {max} are accepted", max = crate::limits::MAX_USER_ID_BYTES)]
    UserIdTooLong(usize),
    #[error("invalid IP address; accepted: an IPv4 or IPv6 address such as 203.0.113.7 or 2001:db8::1")]
    BadIp,
    #[error("user agent is {0} bytes long; at most {max} are accepted", max = crate::limits::MAX_USER_AGENT_BYTES)]
    UserAgentTooLong(usize),
    #[error("data is {size} bytes long; at most {max} are accepted (qsess.max-data-bytes)")]
    DataTooLarge { size: usize, max: u64 },
    #[error("a session needs an idle or an absolute timeout: IDLE and ABSOLUTE cannot both be 0")]
    NoTimeout,
    #[error("the timeouts given end the session before now; use QSESS.DEL to end it")]
    EndsInThePast,
    #[error("LIMIT needs an owner: give USER or update a session that has one")]
    LimitWithoutUser,
    #[error("session id was revoked and cannot be used again; mint a new one with QSESS.NEW")]
    Revoked,
    #[error("the new session id is already in use")]
    NewIdInUse,
    #[error("old and new session ids are the same")]
    SameIds,
    #[error(transparent)]
    BadHandle(#[from] qsess_record::InvalidHandle),
    #[error("key {0} holds a value of the wrong kind for qsess; it is not a key qsess wrote")]
    WrongType(String),
    #[error("stored session record is unreadable ({0}); delete it with QSESS.DEL")]
    CorruptRecord(#[from] qsess_record::DecodeError),
    #[error("restore record's {0} is out of range; accepted: versions from 1 to 2^53, times within ten years of now, timeouts of at most ten years")]
    RestoreOutOfRange(&'static str),
    #[error("restore payload is not a session record ({0})")]
    BadRestorePayload(qsess_record::DecodeError),
    #[error("this user has no permissions to access the '{0}' key qsess derives from the arguments; qsess keys live under qsess.prefix (grant ~qs:*; README, Security)")]
    NoKeyPermission(String),
    #[error("qsess.restore, qsess.restoreuser and qsess.loader are for qsess-syncd: the caller needs the daemon's ACL (the reload channel, &qs:reload-user; README, Security)")]
    NotTheLoader,
    #[error("change stream {0} can take no more entries: its last id is the largest possible, which qsess never writes; delete the stream once qsess-syncd has mirrored it")]
    StreamExhausted(String),
    #[error("internal error")]
    Internal,
    #[error("this server lacks the module API {0}; qsess needs Redis 7.0 or newer")]
    MissingApi(&'static str),
}

/// Client input quoted in an error message: printable ASCII kept, anything else escaped as `\xNN`,
/// cut at `max_bytes` input bytes. Error replies must be valid single-line text.
pub(crate) fn quote_input(input: &[u8], max_bytes: usize) -> String {
    let mut quoted = String::with_capacity(input.len().min(max_bytes));
    for &byte in input.iter().take(max_bytes) {
        if byte.is_ascii_graphic() || byte == b' ' {
            quoted.push(char::from(byte));
        } else {
            quoted.push_str(&format!("\\x{byte:02x}"));
        }
    }
    if input.len() > max_bytes {
        quoted.push_str("...");
    }
    quoted
}

impl CommandError {
    /// The error reply: `WRONGTYPE` for a foreign key under our prefix, Redis's own arity message, else `ERR`.
    pub(crate) fn into_redis_error(self) -> RedisError {
        match self {
            CommandError::WrongArity(_) => RedisError::WrongArity,
            CommandError::WrongType(_) => RedisError::String(format!("WRONGTYPE {self}")),
            CommandError::NoKeyPermission(_) | CommandError::NotTheLoader => {
                RedisError::String(format!("NOPERM {self}"))
            }
            CommandError::OutOfMemoryForAbsentId => RedisError::String(format!("OOM {self}")),
            // Cluster clients retry a TRYAGAIN after a short wait, as they do for Redis's own.
            CommandError::SlotInMotion(_) => RedisError::String(format!("TRYAGAIN {self}")),
            other => RedisError::String(format!("ERR {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_input_is_printable_ascii() {
        assert_eq!(quote_input(b"caf\xc3\xa9 ok", 64), "caf\\xc3\\xa9 ok");
        assert_eq!(quote_input(b"a\r\nb", 64), "a\\x0d\\x0ab");
        assert_eq!(quote_input(b"abcdef", 3), "abc...");
    }
}
