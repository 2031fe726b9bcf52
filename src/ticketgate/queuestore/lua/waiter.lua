-- Shared helper (prepended by Script.load(prelude=("waiter",))): forget(wait, seen, users, owners, seq) removes a
-- waiter's place (order and heartbeat) and, for a signed-in waiter, its entry in the users
-- HASH (user -> 'seq:joined_ms', only while it still names this seq: the user may have
-- joined again since) and in the owners HASH (seq -> user). Every removal goes through it,
-- so neither HASH keeps users who are gone. Returns 1 when seq was waiting, else 0.
local function forget(wait, seen, users, owners, seq)
  local removed = redis.call('ZREM', wait, seq)
  redis.call('ZREM', seen, seq)
  local user = redis.call('HGET', owners, seq)
  if user then
    redis.call('HDEL', owners, seq)
    local held = redis.call('HGET', users, user)
    if held and string.sub(held, 1, #seq + 1) == seq .. ':' then
      redis.call('HDEL', users, user)
    end
  end
  return removed
end
