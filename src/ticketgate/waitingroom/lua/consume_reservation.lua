-- Consume a reservation armed by enter: once, by its user, before it expires (PX).
-- KEYS: 1 reservation slot    ARGV: 1 user id    Returns 1 consumed, 0 refused.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
