-- Configure: change an event's operator overrides atomically and report before and after;
-- also registers an event (the 'registered' field of the same HASH, read by join.lua).
-- KEYS: 1 operator overrides (HASH), 2 bucket (HASH: its version changes with the
--       overrides, version.lua)
-- ARGV: 1 mode: 'any' changes any event, 'registered' only a registered one, 'create'
--       registers the event (refused when it is registered already) and applies the changes;
--       2.. pairs of (field, value); an empty value removes the field (back to the process
--       setting, or false for the paused/closed/soldout flags).
-- Returns {outcome, the six fields (window, capacity, refill, paused, closed, soldout)
-- before, then after ('' when unset)}; outcome 1 done, 2 not registered (nothing changed),
-- 3 registered already (nothing changed).
local fields = {'window', 'capacity', 'refill', 'paused', 'closed', 'soldout'}
local function read()
  local values = redis.call('HMGET', KEYS[1], unpack(fields))
  for i = 1, #fields do
    values[i] = values[i] or ''
  end
  return values
end
local registered = redis.call('HEXISTS', KEYS[1], 'registered') == 1
local outcome = 1
if ARGV[1] == 'registered' and not registered then
  outcome = 2
elseif ARGV[1] == 'create' and registered then
  outcome = 3
end
local before = read()
if outcome == 1 then
  if ARGV[1] == 'create' then
    redis.call('HSET', KEYS[1], 'registered', now_ms())
  end
  for i = 2, #ARGV, 2 do
    if ARGV[i + 1] == '' then
      redis.call('HDEL', KEYS[1], ARGV[i])
    else
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    end
  end
  if #ARGV > 1 then
    event_changed(KEYS[2])
  end
end
local after = read()
local reply = {outcome}
for i = 1, #fields do
  reply[1 + i] = before[i]
  reply[1 + #fields + i] = after[i]
end
return reply
