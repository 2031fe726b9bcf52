-- Leave: remove a waiter; everyone behind moves up by one.
-- KEYS: 1 wait, 2 seen, 3 users, 4 epoch
-- ARGV: 1 seq, 2 user id of the token ('' if anonymous),
--       3 the token's joined_ms ('' to skip the epoch check)
-- Returns 1 left, 2 was not waiting.
local seq = ARGV[1]
if ARGV[3] ~= '' and tonumber(ARGV[3]) < tonumber(redis.call('GET', KEYS[4]) or '0') then
  return 2  -- a token of an earlier life of this event (see join.lua)
end
if redis.call('ZREM', KEYS[1], seq) == 0 then
  redis.call('ZREM', KEYS[2], seq)
  return 2
end
redis.call('ZREM', KEYS[2], seq)
local user = ARGV[2]
if user ~= '' then
  local held = redis.call('HGET', KEYS[3], user)
  if held and string.sub(held, 1, #seq + 1) == seq .. ':' then
    redis.call('HDEL', KEYS[3], user)
  end
end
return 1
