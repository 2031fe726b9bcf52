-- Leave: remove a waiter; everyone behind moves up by one.
-- KEYS: 1 wait, 2 seen, 3 users, 4 bucket (HASH: the epoch, the held count), 5 owners
--       (seq -> user)
-- ARGV: 1 seq, 2 the token's joined_ms ('' to skip the epoch check)
-- Returns 1 left, 2 was not waiting.
local seq = ARGV[1]
if ARGV[2] ~= '' and tonumber(ARGV[2]) < tonumber(redis.call('HGET', KEYS[4], 'epoch') or '0') then
  return 2  -- a token of an earlier life of this event (see join.lua)
end
if forget(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[4], seq) == 0 then
  return 2
end
return 1
