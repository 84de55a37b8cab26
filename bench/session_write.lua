-- Baseline for QSESS.SET: the same writes done by a Lua script on plain keys (hash record, ZSET owner index, change stream).
--
-- KEYS[1] session hash  "<prefix>:s:<sid>"
-- KEYS[2] owner index   "<prefix>:u:<uid>"   (the owner id is taken from this key name, so that
--                                             redis-benchmark needs one __rand_int__ per id, as for QSESS.SET)
-- KEYS[3] change stream "<prefix>:chg"
-- ARGV    data, ip, ua, idle ms, absolute ms
-- Returns the new version (1 on create), like QSESS.SET.
--
-- Mirrors what qsess does on every SET (module/src/commands/set.rs, effects.rs): read the old record,
-- bump the version, rewrite the fields, PEXPIREAT the record, drop the session from its previous
-- owner's index if the owner changed, prune expired members from the new owner's index, ZADD it
-- there scored by expiry, extend the index TTL when needed, and XADD the record to the stream.
-- Scripts touch an undeclared key (the previous owner's index): fine on a standalone server.

local session, index, stream = KEYS[1], KEYS[2], KEYS[3]
local data, ip, ua = ARGV[1], ARGV[2], ARGV[3]
local idle, absolute = tonumber(ARGV[4]), tonumber(ARGV[5])

local sid = string.match(session, '^[^:]*:[^:]*:(.*)$')
local index_prefix, uid = string.match(index, '^([^:]*:[^:]*:)(.*)$')

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local old = redis.call('HMGET', session, 'user', 'created', 'abs')
local old_user, created, deadline = old[1], tonumber(old[2]), tonumber(old[3])
if not created then
    created = now
    deadline = absolute > 0 and now + absolute or 0
end
local expires = now + idle
if deadline > 0 and deadline < expires then
    expires = deadline
end

local version = redis.call('HINCRBY', session, 'ver', 1)
redis.call('HSET', session,
    'data', data, 'user', uid, 'ip', ip, 'ua', ua,
    'created', created, 'updated', now, 'seen', now,
    'idle', idle, 'expires', expires, 'abs', deadline)
redis.call('PEXPIREAT', session, expires)

if old_user and old_user ~= uid then
    redis.call('ZREM', index_prefix .. old_user, sid)
end
redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
redis.call('ZADD', index, expires, sid)
local index_expires = redis.call('PEXPIRETIME', index)
if index_expires < 0 or index_expires < expires then
    redis.call('PEXPIREAT', index, expires)
end

redis.call('XADD', stream, '*', 'op', 'set', 'h', sid, 'u', uid, 'v', version,
    'data', data, 'ip', ip, 'ua', ua, 'created', created, 'updated', now, 'seen', now,
    'idle', idle, 'expires', expires, 'abs', deadline)
return version
