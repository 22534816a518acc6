-- Herald append: every event of one Engine.Append call, all topics, in one
-- atomic script. Validation happened in Go; this script reads everything it
-- needs before it writes anything, so an error leaves Redis untouched (a
-- call of one topic lets its first XADD check its stream, below).
--
-- KEYS: per topic, its meta hash and its stream: KEYS[2i-1], KEYS[2i].
-- ARGV: now (unix ms), maxlen (0: none), maxage (ms, 0: none), metattl (ms),
--       idempotency window (ms), new epoch, topic count, then per topic:
--       channel, event count, then per event: id ('' for none), type, data.
-- Returns per topic: epoch, then one offset per event (a retried ID gives the
-- offset its first append got).
--
-- Besides e (epoch) and s (head), the meta hash keeps fields that spare most
-- appends three commands. x and y are the stream's and the meta hash's
-- expiry deadlines, by Redis's clock, as an append last set them: a TTL is
-- set a sixteenth longer than asked and renewed only once the key would no
-- longer outlive its TTL from now, so after every append each key lives at
-- least its TTL, and a TTL raised by a new setting is applied at once. o is
-- the time of the stream's first entry or earlier: the age trim reads the
-- stream only once o has expired (o can lag behind the first entry, and run
-- ahead of it only by the skew between the nodes' clocks, which delays a
-- trim by that much).
local now, maxlen, maxage = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local metattl, window, newepoch = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local ntopics = tonumber(ARGV[7])

local function ahead(log, head)
  return redis.error_reply('HERALD stream ' .. log .. ' is ahead of its head ' .. head)
end

-- Phase 1: read.
local plan = {}
local a = 8
for i = 1, ntopics do
  local meta, log = KEYS[2*i-1], KEYS[2*i]
  local p = {meta = meta, log = log, chan = ARGV[a], n = tonumber(ARGV[a+1]), at = a + 2}
  a = a + 2 + 3 * p.n
  local m = redis.call('HMGET', meta, 'e', 's', 'x', 'y', 'o')
  p.epoch, p.head = m[1], tonumber(m[2] or '0') or 0
  p.x, p.y, p.o = tonumber(m[3] or ''), tonumber(m[4] or ''), tonumber(m[5] or '')
  -- A call of one topic skips this read: its first write is its first XADD,
  -- which Redis refuses on such a stream, so the call still fails whole.
  if p.epoch and ntopics > 1 then
    local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
    if #last > 0 and tonumber(string.match(last[1][1], '^(%d+)')) > p.head then
      return ahead(log, p.head)
    end
  end
  p.rbase = string.sub(meta, 1, -2) .. 'r:'
  plan[i] = p
end

-- Phase 2: write.
local logttl = metattl
if maxage > 0 and maxage < metattl then logttl = maxage end
local logfor, metafor = logttl + math.floor(logttl / 16), metattl + math.floor(metattl / 16)
local clock = redis.call('TIME')
local rnow = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local out = {}
for i = 1, ntopics do
  local p = plan[i]
  if not p.epoch then
    p.epoch, p.head, p.x, p.y, p.o, p.newo = newepoch, 0, nil, nil, now, true
    redis.call('DEL', p.log) -- an orphaned stream of a lost epoch
    redis.call('HSET', p.meta, 'e', newepoch, 's', 0)
  end
  out[#out+1] = p.epoch
  local seen = {}
  local frame = {}
  local off = p.head
  local added = 0
  for j = 0, p.n - 1 do
    local id, typ, data = ARGV[p.at + 3*j], ARGV[p.at + 3*j + 1], ARGV[p.at + 3*j + 2]
    local got = nil
    if id ~= '' then
      got = seen[id]
      if not got then
        local r = redis.call('GET', p.rbase .. id)
        if r then
          local re, ro = string.match(r, '^(.*) (%d+)$')
          if re == p.epoch then got = tonumber(ro) end
        end
      end
    end
    if got then
      out[#out+1] = got
    else
      off = off + 1
      added = added + 1
      -- The topic's first XADD does not make the stream (NOMKSTREAM): when
      -- there is none, it is made by a second XADD and gets its TTL below,
      -- whatever its deadline says.
      local args = {'XADD', p.log}
      if added == 1 then args[#args+1] = 'NOMKSTREAM' end
      if maxlen > 0 then
        args[#args+1], args[#args+2], args[#args+3] = 'MAXLEN', '~', ARGV[2]
      end
      local n = #args
      args[n+1], args[n+2], args[n+3], args[n+4], args[n+5], args[n+6], args[n+7] = off .. '-0', 't', ARGV[1], 'y', typ, 'd', data
      local r = redis.pcall(unpack(args))
      if r == false then
        table.remove(args, 3)
        r = redis.pcall(unpack(args))
        p.made = true
      end
      if type(r) == 'table' and r.err then
        if added == 1 and string.find(r.err, 'equal or smaller', 1, true) then
          return ahead(p.log, p.head) -- the call's first write: nothing written
        end
        return r
      end
      if id ~= '' then
        seen[id] = off
        redis.call('SET', p.rbase .. id, p.epoch .. ' ' .. off, 'PX', window)
      end
      frame[#frame+1] = struct.pack('>I8I4c0I4c0', off, #typ, typ, #data, data)
      out[#out+1] = off
    end
  end
  local set = {}
  if added > 0 then
    set = {'s', off}
    redis.call('PUBLISH', p.chan, struct.pack('>BI8I2c0I4', 1, now, #p.epoch, p.epoch, added) .. table.concat(frame))
    -- Bounded age trim: at most 100 expired entries from the front per
    -- append, looked for only once the first entry may have expired.
    if maxage > 0 and p.newo then
      set[#set+1], set[#set+2] = 'o', p.o -- this append's entry is the first
    elseif maxage > 0 and (not p.o or p.o < now - maxage) then
      local old = redis.call('XRANGE', p.log, '-', '+', 'COUNT', 1)
      if old[1] and tonumber(old[1][2][2]) < now - maxage then
        old = redis.call('XRANGE', p.log, '-', '+', 'COUNT', 100)
      end
      local keep, first = nil, nil
      for _, en in ipairs(old) do
        first = tonumber(en[2][2])
        if first >= now - maxage then break end
        keep = en[1]
      end
      if keep then
        redis.call('XTRIM', p.log, 'MINID', tonumber(string.match(keep, '^(%d+)')) + 1)
      end
      if first then -- the new first entry's time, or a trimmed one's: earlier
        set[#set+1], set[#set+2] = 'o', first
      end
    end
  end
  if not p.y or rnow + metattl > p.y then
    redis.call('PEXPIRE', p.meta, metafor)
    set[#set+1], set[#set+2] = 'y', rnow + metafor
  end
  -- A stream that does not exist (expired, all its events retries) gets
  -- no deadline; one this call made gets its TTL now.
  if (p.made or not p.x or rnow + logttl > p.x) and redis.call('PEXPIRE', p.log, logfor) == 1 then
    set[#set+1], set[#set+2] = 'x', rnow + logfor
  end
  if #set > 0 then
    redis.call('HSET', p.meta, unpack(set))
  end
end
return out
