-- The durable mirror of qsess sessions: one row per session handle, written only by qsess-syncd.
-- Rows are never older than Redis (every write is guarded by version); ended sessions keep their row,
-- with ended_at set and data erased, until the purge removes them after they would have expired.

create schema if not exists qsess;

create table qsess.sessions (
    handle              text primary key,   -- base64url(SHA-256(session id)), 128 bits; never the id itself
    user_id             text,               -- the owner, null for an anonymous session
    data                bytea not null,     -- the application's opaque session data
    ip                  inet,
    user_agent          text,
    location            text,               -- "City, Country" from GeoIP, when configured
    country             text,               -- ISO 3166-1 alpha-2
    created_at          timestamptz not null,
    updated_at          timestamptz not null,  -- last write by the application
    last_seen           timestamptz not null,  -- last activity, debounced by qsess.touch-granularity-ms
    expires_at          timestamptz not null,  -- min(last_seen + idle timeout, absolute_expires_at)
    absolute_expires_at timestamptz,           -- null when the session has no absolute deadline
    idle_timeout_ms     bigint not null,       -- 0 when the session has no idle timeout
    version             bigint not null,       -- qsess's version; a change applies only over an older one
    ended_at            timestamptz,           -- when it was logged out or revoked; null while it lives
    end_reason          text                   -- logout, revoke, limit or rotate
);

-- "All sessions of user 42", for live sessions only.
create index sessions_by_user on qsess.sessions (user_id) where ended_at is null;
-- The purge deletes by expiry.
create index sessions_by_expiry on qsess.sessions (expires_at);

comment on table qsess.sessions is 'qsess sessions mirrored from Redis by qsess-syncd; query qsess.live_sessions for sessions that are still valid';

-- Sessions still valid now: not ended and not expired.
create view qsess.live_sessions as
select handle, user_id, ip, user_agent, location, country, created_at, updated_at, last_seen, expires_at,
       absolute_expires_at, data, version
from qsess.sessions
where ended_at is null and expires_at > now();

-- Changes qsess-syncd could not apply (a malformed entry, or a row Postgres refused for good), kept
-- instead of dropped so an operator can see and replay them.
create table qsess.rejected_changes (
    id          bigserial primary key,
    stream      text not null,     -- the Redis stream the entry came from
    entry_id    text not null,     -- its stream id
    handle      text,
    op          text,
    version     bigint,
    error       text not null,
    fields      bytea not null,    -- the entry's field/value pairs, as received
    rejected_at timestamptz not null default now()
);
