-- Baseline for QSESS.BYUSER uid WITHMETA on the keys bench/session_write.lua writes.
--
-- KEYS[1] owner index "<prefix>:u:<uid>" (ZSET of session ids scored by expiry, ms)
-- ARGV[1] session hash prefix "<prefix>:s:"
-- Returns one HGETALL array per live session, soonest to expire first.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, sid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
    local fields = redis.call('HGETALL', ARGV[1] .. sid)
    if #fields > 0 then
        out[#out + 1] = fields
    end
end
return out
