-- Baseline for QSESS.REVOKEUSER uid on the keys bench/session_write.lua writes.
--
-- KEYS[1] owner index "<prefix>:u:<uid>", KEYS[2] change stream "<prefix>:chg"
-- ARGV[1] session hash prefix "<prefix>:s:"
-- Deletes every session of the user, XADDs one 'del' change per session, deletes the index; returns the count.
-- Lighter than QSESS.REVOKEUSER: no tombstones and no per-user revocation time are written.

local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local uid = string.match(KEYS[1], '^[^:]*:[^:]*:(.*)$')
for _, sid in ipairs(members) do
    redis.call('DEL', ARGV[1] .. sid)
    redis.call('XADD', KEYS[2], '*', 'op', 'del', 'h', sid, 'u', uid)
end
redis.call('DEL', KEYS[1])
return #members
