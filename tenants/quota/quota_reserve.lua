-- Check and consume every limit of one request at once, or nothing at all.
--
-- KEYS[i]: one key per check.  ARGV[1]: instances requested.  Then three
-- arguments per check: kind, a, b
--   kind 'r' (token bucket, one token per request): a = capacity (burst), b = refill per second
--   kind 'c' (instance counter):                     a = limit,            b = unused
-- Replies:
--   {1, v1, v2, ...}           admitted; v = tokens left * 1000 (bucket) or used after (counter)
--   {0, i, wait_ms, value}     refused by check i; nothing was written
--   {-1, {i, j, ...}}          counters i, j... do not exist: the caller seeds them from the
--                              durable usage record (SET NX) and calls again
-- The clock is Redis' own TIME, so gateway hosts with skewed clocks share one bucket fairly.
local units = tonumber(ARGV[1])
local n = #KEYS
local missing = {}
for i = 1, n do
  if ARGV[(i - 1) * 3 + 2] == 'c' and redis.call('EXISTS', KEYS[i]) == 0 then
    missing[#missing + 1] = i
  end
end
if #missing > 0 then
  return {-1, missing}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local level = {}
local stamps = {}
for i = 1, n do
  local base = (i - 1) * 3 + 2
  local a = tonumber(ARGV[base + 1])
  if ARGV[base] == 'r' then
    local rate = tonumber(ARGV[base + 2])
    local state = redis.call('HMGET', KEYS[i], 't', 's')
    local tokens = tonumber(state[1])
    local stamp = tonumber(state[2])
    if tokens == nil or stamp == nil then
      tokens = a
      stamp = now
    end
    if now > stamp then
      tokens = math.min(a, tokens + (now - stamp) * rate / 1000)
      stamp = now
    end
    if tokens < 1 then
      return {0, i, math.ceil((1 - tokens) * 1000 / rate), math.floor(tokens * 1000)}
    end
    level[i] = tokens
    stamps[i] = stamp
  else
    local used = tonumber(redis.call('GET', KEYS[i]))
    if used + units > a then
      return {0, i, 0, used}
    end
    level[i] = used
  end
end
local out = {1}
for i = 1, n do
  local base = (i - 1) * 3 + 2
  if ARGV[base] == 'r' then
    local a = tonumber(ARGV[base + 1])
    local rate = tonumber(ARGV[base + 2])
    local tokens = level[i] - 1
    redis.call('HSET', KEYS[i], 't', tostring(tokens), 's', tostring(stamps[i]))
    -- An idle bucket is full again after capacity / rate seconds: let Redis drop it then.
    redis.call('PEXPIRE', KEYS[i], math.ceil(a * 1000 / rate) + 1000)
    out[#out + 1] = math.floor(tokens * 1000)
  else
    out[#out + 1] = redis.call('INCRBY', KEYS[i], units)
  end
end
return out
