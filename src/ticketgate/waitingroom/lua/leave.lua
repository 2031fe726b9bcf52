-- Leave: remove a waiter; everyone behind moves up by one.
-- KEYS: 1 wait, 2 seen, 3 users    ARGV: 1 seq, 2 user id of the token ('' if anonymous)
-- Returns 1 left, 2 was not waiting.
local seq = ARGV[1]
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
