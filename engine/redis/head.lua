-- Herald head: the epoch and last offset of a topic. An unseen topic gets
-- the epoch its first append will use (deleting an orphaned stream).
-- KEYS: meta hash, stream. ARGV: new epoch, metattl (ms).
local m = redis.call('HMGET', KEYS[1], 'e', 's')
if not m[1] then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', ARGV[1], 's', 0)
  m = {ARGV[1], '0'}
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
else
  -- Never shorter: Append sets a sixteenth more and skips renewing while
  -- the deadline it wrote (y) is far enough.
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]), 'GT')
end
return {m[1], tonumber(m[2] or '0') or 0}
