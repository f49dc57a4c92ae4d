"""The Lua scripts of :class:`~feeds.store.redis.RedisStore` (key layout in its docstring).

Each runs atomically on the server; each bounds its own work per call (see the notes on ``ADD`` and
``POST``).  Several build keys from the store prefix, so the store expects one Redis server, not a
sharded cluster.
"""

PUT = """
if ARGV[1] ~= '' then
  local existing = redis.call('HGET', KEYS[2], ARGV[1])
  if existing then return {1, redis.call('HGET', KEYS[1], existing)} end
end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 0 then return {2, false} end
if ARGV[1] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return {0, false}
"""
# Trim a timeline (sorted set ``tkey``, entry columns in hash ``ekey``) to its ``cap`` newest members
# once it holds more than ``limit``; HDEL per 1000 keeps each call's argument list bounded.  Shared by
# ADD and POST.
_TRIM = """
local function trim_over(tkey, ekey, cap, limit)
  local size = redis.call('ZCARD', tkey)
  if size > limit then
    local old = redis.call('ZRANGE', tkey, 0, size - cap - 1)
    redis.call('ZREMRANGEBYRANK', tkey, 0, size - cap - 1)
    for i = 1, #old, 1000 do
      redis.call('HDEL', ekey, unpack(old, i, math.min(i + 999, #old)))
    end
  end
end
"""
ADD = (
    _TRIM
    + """
local n = tonumber(ARGV[2])
local due = ARGV[3 + 2 * n]
local cap = tonumber(ARGV[1])
for f = 1, #KEYS / 2 do
  local tkey, ekey = KEYS[2 * f - 1], KEYS[2 * f]
  if n == 1 then  -- the fan-out case: skip building the member table
    redis.call('ZADD', tkey, 'NX', 0, ARGV[3])
    redis.call('HSETNX', ekey, ARGV[3], ARGV[4])
  else
    for i = 3, 2 + n, 500 do
      local z = {}
      for j = i, math.min(i + 499, 2 + n) do
        z[#z + 1] = 0
        z[#z + 1] = ARGV[j]
      end
      redis.call('ZADD', tkey, 'NX', unpack(z))
    end
    for i = 3, 2 + n do
      redis.call('HSETNX', ekey, ARGV[i], ARGV[i + n])
    end
  end
  if string.byte(due, f) == 49 then trim_over(tkey, ekey, cap, cap) end
end
return 0
"""
)
# Follower counts are ZCARDs of keys named from the followings (ARGV[3] is the key prefix), so this
# script, like the rest of the store, expects one Redis server rather than a sharded cluster.
READ_PLAN = """
local targets = redis.call('ZRANGE', KEYS[1], 0, -1)
local threshold = tonumber(ARGV[1])
local out = {#targets, redis.call('HGET', KEYS[2], ARGV[2])}
for _, t in ipairs(targets) do
  if redis.call('ZCARD', ARGV[3] .. t) > threshold then out[#out + 1] = t end
end
return out
"""
# The followers (sorted set ``fr_key``) whose last read (hash ``lr_key``) is at or after ``since``;
# HMGET per 1000 keeps each call's argument list bounded.  Shared by ACTIVE and POST.
_ACTIVE_FILTER = """
local function active_followers(fr_key, lr_key, since)
  local sources = redis.call('ZRANGE', fr_key, 0, -1)
  local out = {}
  for i = 1, #sources, 1000 do
    local last = math.min(i + 999, #sources)
    local stamps = redis.call('HMGET', lr_key, unpack(sources, i, last))
    for j = 1, last - i + 1 do
      local t = stamps[j]
      if t and tonumber(t) >= since then out[#out + 1] = sources[i + j - 1] end
    end
  end
  return out
end
"""
ACTIVE = (
    _ACTIVE_FILTER
    + """
return active_followers(KEYS[1], KEYS[2], tonumber(ARGV[1]))
"""
)
# Post an entry and push it to the feed's active followers (Store.add_and_push), in one round trip.
# KEYS: t:<feed>, e:<feed>, fr:<feed>, lr, p:<app>:<id>.  ARGV: member, own meta, own cap, since,
# pull threshold, max push, key prefix, trim slack, n placements, the placements, then
# (follower key prefix, meta, cap) per group.  Follower keys are built here from the store prefix
# (the caller cannot name them before the filter ran), which ties this store to a single Redis
# server (not Redis Cluster), as its multi-key scripts and MULTI/EXEC already do.
# Per call: the follower scan reads at most pull threshold followers (HMGET per 1000) and at most
# max push (<= _ADD_OPS) feeds are written.  A feed is trimmed once it holds more than cap + slack
# entries: a hard bound without the client-side schedule, which cannot see these feeds.
POST = (
    _ACTIVE_FILTER
    + _TRIM
    + """
local member, slack = ARGV[1], tonumber(ARGV[8])
local function add(tkey, ekey, meta, cap)
  local added = redis.call('ZADD', tkey, 0, member)  -- every score is 0: no NX needed
  redis.call('HSETNX', ekey, member, meta)
  if added == 0 then return end
  trim_over(tkey, ekey, cap, cap + slack)
end
local np = tonumber(ARGV[9])
if np > 0 then redis.call('SADD', KEYS[5], unpack(ARGV, 10, 9 + np)) end
local active = {}
if redis.call('ZCARD', KEYS[3]) <= tonumber(ARGV[5]) then
  active = active_followers(KEYS[3], KEYS[4], tonumber(ARGV[4]))
  if #active > tonumber(ARGV[6]) then return {0, active} end
end
add(KEYS[1], KEYS[2], ARGV[2], tonumber(ARGV[3]))
local prefixes, lens, metas, caps = {}, {}, {}, {}
for i = 10 + np, #ARGV, 3 do
  prefixes[#prefixes + 1] = ARGV[i]
  lens[#lens + 1] = #ARGV[i]
  metas[#metas + 1] = ARGV[i + 1]
  caps[#caps + 1] = tonumber(ARGV[i + 2])
end
local tp, ep, pushed, last = ARGV[7] .. 't:', ARGV[7] .. 'e:', {}, 1
if #prefixes == 0 then active = {} end
for _, key in ipairs(active) do  -- followers mostly share a group: try the last match first
  local g = last
  if string.sub(key, 1, lens[g]) ~= prefixes[g] then
    g = nil
    for h = 1, #prefixes do
      if string.sub(key, 1, lens[h]) == prefixes[h] then g = h break end
    end
  end
  if g then
    last = g
    add(tp .. key, ep .. key, metas[g], caps[g])
    pushed[#pushed + 1] = key
  end
end
return {1, pushed}
"""
)
# Compare-and-set of entry columns: a concurrent mark() between our read and write is not lost;
# returns the 1-based indexes of the keys whose entry changed meanwhile (the caller retries those).
CAS = """
local changed = {}
for i = 1, #KEYS do
  local cur = redis.call('HGET', KEYS[i], ARGV[1])
  if cur == ARGV[2 * i] then
    redis.call('HSET', KEYS[i], ARGV[1], ARGV[2 * i + 1])
  elseif cur then
    changed[#changed + 1] = i
  end
end
return changed
"""
JOURNAL = """
local ids = {}
for i = 2, #ARGV do
  local id = redis.call('INCR', KEYS[1])
  redis.call('HSET', KEYS[3], id, ARGV[i])
  redis.call('ZADD', KEYS[2], ARGV[1], id)
  ids[#ids + 1] = id
end
return ids
"""
CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local body = redis.call('HGET', KEYS[2], id)
  if body then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    out[#out + 1] = id
    out[#out + 1] = redis.call('HINCRBY', KEYS[3], id, 1)
    out[#out + 1] = body
  else  -- only reachable if the keys were edited by hand: drop the dangling id
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""
