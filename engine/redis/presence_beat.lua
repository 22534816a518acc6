-- A node's heartbeat. KEYS[1]: the nodes' sorted set, scored by the last
-- heartbeat in Redis's own clock (ms), so nodes' clocks need not agree.
-- ARGV[1]: this node's member. Returns {1 when the member was missing (the
-- registry was lost, or judged this node dead), Redis's time in ms, then
-- every member and its score}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local added = redis.call('ZADD', KEYS[1], now, ARGV[1])
local out = {added, now}
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #all do out[#out + 1] = all[i] end
return out
