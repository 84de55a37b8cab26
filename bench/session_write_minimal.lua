-- Second baseline for QSESS.SET: only the writes the issue names (HSET of the fields, PEXPIREAT, ZADD to
-- the index, XADD of the record), with no read of the old record, no owner move and no index pruning.
-- It does less than QSESS.SET, so it is the harder baseline to beat. Same keys and arguments as
-- session_write.lua.

local session, index, stream = KEYS[1], KEYS[2], KEYS[3]
local data, ip, ua = ARGV[1], ARGV[2], ARGV[3]
local idle = tonumber(ARGV[4])

local sid = string.match(session, '^[^:]*:[^:]*:(.*)$')
local uid = string.match(index, '^[^:]*:[^:]*:(.*)$')

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + idle

local version = redis.call('HINCRBY', session, 'ver', 1)
redis.call('HSET', session,
    'data', data, 'user', uid, 'ip', ip, 'ua', ua,
    'created', now, 'updated', now, 'seen', now, 'idle', idle, 'expires', expires, 'abs', 0)
redis.call('PEXPIREAT', session, expires)
redis.call('ZADD', index, expires, sid)
redis.call('XADD', stream, '*', 'op', 'set', 'h', sid, 'u', uid, 'v', version,
    'data', data, 'ip', ip, 'ua', ua, 'created', now, 'updated', now, 'seen', now, 'idle', idle, 'expires', expires)
return version
