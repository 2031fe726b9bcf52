-- Shared helper (prepended by Script.load(prelude=("waiter",))):
-- forget(wait, seen, users, owners, bucket, seq, held) removes a waiter's place (order and
-- heartbeat) and, for a signed-in waiter, its entry in the users HASH (user ->
-- 'seq:joined_ms', only while it still names this seq: the user may have joined again since)
-- and in the owners HASH (seq -> user). Every removal goes through it, so neither HASH keeps
-- users who are gone, and the bucket HASH's count of held earmarks ('held', read by
-- frontier.lua) stays exact: `held` says whether the waiter holds one (nil: look at its
-- score; held waiters rank first with a negative one). An event from before that count
-- has no 'held' field, and frontier.lua counts the ZSET until a grant or hold writes it.
-- Returns 1 when seq was waiting, else 0.
local function forget(wait, seen, users, owners, bucket, seq, held)
  if held == nil then
    local score = redis.call('ZSCORE', wait, seq)
    held = score and tonumber(score) < 0
  end
  local removed = redis.call('ZREM', wait, seq)
  if removed == 1 and held and redis.call('HEXISTS', bucket, 'held') == 1 then
    redis.call('HINCRBY', bucket, 'held', -1)
  end
  redis.call('ZREM', seen, seq)
  local user = redis.call('HGET', owners, seq)
  if user then
    redis.call('HDEL', owners, seq)
    local entry = redis.call('HGET', users, user)
    if entry and string.sub(entry, 1, #seq + 1) == seq .. ':' then
      redis.call('HDEL', users, user)
    end
  end
  return removed
end
