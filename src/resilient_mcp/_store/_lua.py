"""
The Redis side of the shared policies: one atomic Lua script each.

Each script reads the time from Redis (``TIME``), not from the caller:
the processes of a fleet run on hosts whose clocks disagree, and their
event loops' clocks are not even on the same epoch, so the only timeline
they can share is the server's.  Times are microseconds since the Unix
epoch as Lua numbers (doubles, exact to well below a microsecond at
today's epoch); they leave the script as strings formatted ``%.17g``,
because Redis truncates a Lua number to an integer on the way out.
Redis 7 replicates a script's effects, not the script, so reading
``TIME`` before writing is allowed.

Every key gets a TTL each time it is written, so that a limiter or a
budget nobody uses any more disappears by itself.
"""

from __future__ import annotations

from typing import Final


GCRA: Final = """
-- KEYS[1]: the limiter's theoretical arrival time (TAT), microseconds.
-- ARGV: interval T, tolerance tau, max_wait, all microseconds.
-- Returns {1, wait}: a turn is reserved wait us from now; {0, wait}: the
-- next turn is wait us away (over max_wait), nothing changed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local wait = tat - tolerance - now
if wait < 0 then
  wait = 0
end
if wait > max_wait then
  return {0, string.format('%.17g', wait)}
end
tat = tat + interval
-- The key outlives the TAT by a second: after that it equals now anyway.
local ttl = math.ceil((tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', ttl)
return {1, string.format('%.17g', wait)}
"""

HOLD: Final = """
-- KEYS[1]: the limiter's TAT, as in GCRA.  ARGV: hold, tolerance tau
-- (microseconds).  Moves the TAT so that the next turn is hold from now
-- and no burst follows (TAT = now + hold + tau), never back.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = now + tonumber(ARGV[1]) + tonumber(ARGV[2])
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat > old then
  local ttl = math.ceil((tat - now) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', ttl)
end
return 1
"""

BUDGET: Final = """
-- KEYS[1]: a hash of the budget's buckets, field = bucket number.
-- ARGV: delta (tokens), bucket width (us), buckets in the window,
-- key TTL (ms).  Returns the tokens in the window, after the delta.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local delta = tonumber(ARGV[1])
local width = tonumber(ARGV[2])
local buckets = tonumber(ARGV[3])
local epoch = math.floor(now / width)
if delta ~= 0 then
  redis.call('HINCRBY', KEYS[1], string.format('%d', epoch), delta)
end
local sum = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if tonumber(all[i]) <= epoch - buckets then
    redis.call('HDEL', KEYS[1], all[i])
  else
    sum = sum + tonumber(all[i + 1])
  end
end
if delta ~= 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return sum
"""

BREAKER: Final = """
-- KEYS[1]: a hash of the fleet's breaker: 'gen' (its generation), 'until'
-- (0: closed; else when the open state ends, us), 'probe' (when the
-- half-open probe lease ends, us), and per bucket 'c:N', 'f:N' (calls
-- and failures of the bucket-width period N, closed state only).
-- ARGV: 1 the reporter's generation (-1: it knows none yet), 2 calls,
-- 3 failures, 4 op (0 report, 1 ask for the probe lease, 2 the probe
-- closed the circuit, 3 it failed), 5 bucket width (us), 6 buckets,
-- 7 failure threshold (count mode), 8 failure rate threshold (0: count
-- mode), 9 minimum calls, 10 recovery timeout (us), 11 key TTL (ms).
-- A report of another generation than the fleet's moves nothing.
-- Returns {gen, wait, granted}: wait is -1 when closed, else the us
-- until a probe may start (0: half-open); granted 1: the lease is the
-- caller's.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local key = KEYS[1]
local gen = tonumber(redis.call('HGET', key, 'gen') or '0')
local untl = tonumber(redis.call('HGET', key, 'until') or '0')
local probe = tonumber(redis.call('HGET', key, 'probe') or '0')
local rgen = tonumber(ARGV[1])
local op = tonumber(ARGV[4])
local recovery = tonumber(ARGV[10])
local granted = 0
local wrote = false
local function move(new_until)
  local fields = redis.call('HKEYS', key)
  for i = 1, #fields do
    local kind = string.sub(fields[i], 1, 2)
    if kind == 'c:' or kind == 'f:' then
      redis.call('HDEL', key, fields[i])
    end
  end
  gen = gen + 1
  untl = new_until
  probe = 0
  redis.call('HSET', key, 'gen', gen, 'until',
    string.format('%.17g', untl), 'probe', 0)
  wrote = true
end
if rgen == gen or (rgen == -1 and op == 0) then
  if untl == 0 then
    local calls = tonumber(ARGV[2])
    local failures = tonumber(ARGV[3])
    if op == 0 and calls > 0 then
      local width = tonumber(ARGV[5])
      local buckets = tonumber(ARGV[6])
      local epoch = math.floor(now / width)
      redis.call('HINCRBY', key, 'c:' .. string.format('%d', epoch), calls)
      if failures > 0 then
        redis.call('HINCRBY', key, 'f:' .. string.format('%d', epoch),
          failures)
      end
      wrote = true
      local c, f = 0, 0
      local all = redis.call('HGETALL', key)
      for i = 1, #all, 2 do
        local kind = string.sub(all[i], 1, 2)
        if kind == 'c:' or kind == 'f:' then
          if tonumber(string.sub(all[i], 3)) <= epoch - buckets then
            redis.call('HDEL', key, all[i])
          elseif kind == 'c:' then
            c = c + tonumber(all[i + 1])
          else
            f = f + tonumber(all[i + 1])
          end
        end
      end
      local rate = tonumber(ARGV[8])
      local trip
      if rate == 0 then
        trip = f >= tonumber(ARGV[7])
      else
        trip = c >= tonumber(ARGV[9]) and f >= rate * c
      end
      if trip then
        move(now + recovery)
      end
    end
  elseif op == 1 then
    if now >= untl and probe <= now then
      probe = now + recovery
      redis.call('HSET', key, 'probe', string.format('%.17g', probe))
      granted = 1
      wrote = true
    end
  elseif op == 2 then
    move(0)
  elseif op == 3 then
    move(now + recovery)
  end
end
if wrote then
  redis.call('PEXPIRE', key, ARGV[11])
end
local wait = -1
if untl ~= 0 then
  wait = math.max(untl, probe) - now
  if wait < 0 then
    wait = 0
  end
end
return {gen, string.format('%.17g', wait), granted}
"""
