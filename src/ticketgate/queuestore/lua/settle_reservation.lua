-- Settle a reservation attempt's claim. ARGV[2] '1': the attempt held seats, so the
-- reservation is used up (even if the lease lapsed meanwhile: one hold is all a token buys).
-- '0': the attempt failed; only our own lease is dropped, the reservation stays armed.
-- KEYS: 1 reservation slot, 2 its lease    ARGV: 1 lease id, 2 '1' used or '0' failed
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
