-- Baseline for QSESS.GET: read the session hash written by bench/session_write.lua and refuse it when expired.
--
-- KEYS[1] session hash "<prefix>:s:<sid>"
-- Returns the hash's fields and values (HGETALL), or nil when it is missing or past its 'expires' (ms).
-- Unlike QSESS.GET it never writes (no 'seen' touch); the runs touch nothing either way (see scripts/bench).

local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
    return false
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #fields, 2 do
    if fields[i] == 'expires' and tonumber(fields[i + 1]) <= now then
        return false
    end
end
return fields
