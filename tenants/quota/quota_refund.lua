-- Give instances back to the counters a reservation charged.
-- KEYS: the counters.  ARGV[1]: instances to return.
-- A missing counter is left missing (it will be rebuilt from the durable record,
-- which never counted the refunded instances); a counter never goes below zero.
local units = tonumber(ARGV[1])
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local left = redis.call('DECRBY', KEYS[i], units)
    if left < 0 then
      redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    end
  end
end
return 1
