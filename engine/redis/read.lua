-- Herald read: the retained events of one topic after a cursor, with the
-- gap rules of the engine contract. Retention is applied logically on the
-- engine's clock (MAXLEN ~ may keep a few extra entries).
--
-- KEYS: meta hash, stream.
-- ARGV: has cursor (0/1), cursor epoch, cursor offset, limit, now (ms),
--       maxlen (0: none), maxage (ms, 0: none), new epoch, metattl (ms).
-- Returns {epoch, status, resume, id, t, type, data, ...}: status 'gap' with
-- resume the offset to read after, or 'ok' with the events.
local has, aepoch, aoff, limit = ARGV[1] == '1', ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now, maxlen, maxage = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local meta, log = KEYS[1], KEYS[2]
local m = redis.call('HMGET', meta, 'e', 's')
local e, s = m[1], tonumber(m[2] or '0') or 0
if not e then
  if not has then return {'', 'ok', 0} end
  -- A cursor on a topic with no epoch: it cannot be trusted. Give the topic
  -- the epoch its first append will use, so the gap can name it.
  redis.call('DEL', log)
  redis.call('HSET', meta, 'e', ARGV[8], 's', 0)
  redis.call('PEXPIRE', meta, tonumber(ARGV[9]))
  return {ARGV[8], 'gap', 0}
end
local lo = 1
if maxlen > 0 and s - maxlen + 1 > lo then lo = s - maxlen + 1 end
local oldest = s + 1
local start = lo .. '-0'
while true do
  local r = redis.call('XRANGE', log, start, '+', 'COUNT', 64)
  if #r == 0 then break end
  local found = false
  for _, en in ipairs(r) do
    if maxage == 0 or tonumber(en[2][2]) >= now - maxage then
      oldest = tonumber(string.match(en[1], '^(%d+)'))
      found = true
      break
    end
  end
  if found then break end
  start = '(' .. r[#r][1]
end
if oldest > s + 1 then oldest = s + 1 end
if has and (aepoch ~= e or aoff < oldest - 1) then
  return {e, 'gap', oldest - 1}
end
local from = oldest - 1
if has and aoff > from then from = aoff end
local out = {e, 'ok', 0}
if from >= s then return out end
local r = redis.call('XRANGE', log, (from + 1) .. '-0', s .. '-0', 'COUNT', limit)
for _, en in ipairs(r) do
  out[#out+1] = en[1]
  out[#out+1] = en[2][2]
  out[#out+1] = en[2][4]
  out[#out+1] = en[2][6]
end
return out
