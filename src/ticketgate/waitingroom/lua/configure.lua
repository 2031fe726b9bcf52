-- Configure: change an event's operator overrides atomically and report before and after.
-- KEYS: 1 operator overrides (HASH)
-- ARGV: pairs of (field, value); an empty value removes the field (back to the process
--       setting, or false for the paused/closed flags).
-- Returns the five fields (window, capacity, refill, paused, closed) before, then after,
-- '' when unset.
local fields = {'window', 'capacity', 'refill', 'paused', 'closed'}
local function read()
  local values = redis.call('HMGET', KEYS[1], unpack(fields))
  for i = 1, #fields do
    values[i] = values[i] or ''
  end
  return values
end
local before = read()
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
local after = read()
for i = 1, #after do
  before[#fields + i] = after[i]
end
return before
