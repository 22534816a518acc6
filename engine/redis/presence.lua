-- Adds or removes one stream in a presence hash: a user's, a node's (KEYS[1]
-- alone) or a topic's (KEYS[1], with KEYS[2] counting each user's streams on
-- the topic).
-- ARGV: "join" or "leave", stream id, value (the node's member, and for a
-- topic "\n" and the user), user, TTL in ms (garbage collection of hashes
-- nobody leaves any more).
--
-- join returns the user's streams on the topic after it, 0 when the stream
-- was there already (a re-registration) and for a hash without counts.
-- leave removes the entry only while it still holds the value
-- (compare-and-delete: a dead node's cleanup never removes what a live node
-- wrote again), and returns -1 when nothing was removed, else the user's
-- streams left on the topic (0 for a hash without counts).
local op, id, value, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if op == 'join' then
  local added = redis.call('HSET', KEYS[1], id, value)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  if #KEYS < 2 then return 0 end
  local n = 0
  if added == 1 then n = redis.call('HINCRBY', KEYS[2], user, 1) end
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
  return n
end
if redis.call('HGET', KEYS[1], id) ~= value then return -1 end
redis.call('HDEL', KEYS[1], id)
if #KEYS < 2 then return 0 end
local n = redis.call('HINCRBY', KEYS[2], user, -1)
if n <= 0 then
  redis.call('HDEL', KEYS[2], user)
  return 0
end
return n
