-- Baseline for QSESS.REVOKEUSER uid with the same guarantees, on the keys bench/session_write.lua writes.
--
-- KEYS[1] owner index "<prefix>:u:<uid>", KEYS[2] change stream "<prefix>:chg"
-- ARGV[1] key prefix "<prefix>:", ARGV[2] tombstone TTL in ms (qsess.tombstone-ttl-ms)
-- Mirrors module/src/commands/revokeuser.rs: for every indexed session still live, read its owner
-- and version, delete it, remove it from the index, leave a tombstone "<prefix>:t:<sid>" holding the
-- ending version that lives as long as the session would have (at most the tombstone TTL), and XADD a
-- 'del' change; then record when the user revoked everything ("<prefix>:r:<uid>") and XADD a
-- 'revokeuser' change. Returns the number of sessions ended.

local index, stream, prefix = KEYS[1], KEYS[2], ARGV[1]
local tombstone_ttl = tonumber(ARGV[2])
local uid = string.match(index, '^[^:]*:[^:]*:(.*)$')

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local members = redis.call('ZRANGE', index, 0, -1, 'WITHSCORES')
local ended = 0
for i = 1, #members, 2 do
    local sid, expires = members[i], tonumber(members[i + 1])
    local session = prefix .. 's:' .. sid
    local record = redis.call('HMGET', session, 'user', 'ver')
    redis.call('ZREM', index, sid)
    if expires > now and record[1] == uid then
        local version = tonumber(record[2]) + 1
        redis.call('DEL', session)
        redis.call('SET', prefix .. 't:' .. sid, version, 'PXAT', math.min(expires, now + tombstone_ttl))
        redis.call('XADD', stream, '*', 'op', 'del', 'h', sid, 'u', uid, 'v', version, 'r', 'revoke')
        ended = ended + 1
    end
end
redis.call('SET', prefix .. 'r:' .. uid, now, 'PX', tombstone_ttl)
redis.call('XADD', stream, '*', 'op', 'revokeuser', 'u', uid, 'at', now)
return ended
