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
