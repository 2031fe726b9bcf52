-- Claim the reservation armed by enter for one reservation attempt: by its user, before it
-- expires, one attempt at a time. The reservation stays armed (with its own expiry) until
-- settle_reservation says the attempt held seats; a failed attempt leaves it usable.
-- KEYS: 1 reservation slot, 2 its lease    ARGV: 1 user id, 2 lease id, 3 lease ms
-- Returns 1 claimed (settle it), 2 busy (another attempt holds the lease), 0 gone.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return 1
end
return 2
