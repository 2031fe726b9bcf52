-- Join: append a waiter at the tail, or return the place it already holds.
-- KEYS: 1 seq, 2 wait, 3 seen, 4 users, 5 idempotency slot, 6 bucket (HASH: the epoch and
--       the held count live beside the bucket's fields), 7 operator overrides
--       (HASH; 'closed' or 'soldout' = '1' refuses newcomers, 'registered' set by an
--       operator), 8 marks (join times of every 32nd seq), 9 owners (seq -> user),
--       10 admitted users (user -> seq)
-- ARGV: 1 user id ('' for anonymous), 2 '1' when an Idempotency-Key was sent, 3 its TTL in ms,
--       4 heartbeat TTL in ms, 5 '1' when only registered events may be joined
-- Returns {kind, seq, joined_ms, position}: kind 1 new, 2 the user's existing place,
-- 0 replay of the same Idempotency-Key; refused: 3 the queue is closed, 4 the event is sold
-- out (those already in the queue keep their places and get them back on a repeated join),
-- 5 the event is not registered, 6 this user was admitted to the event already. A user's
-- place unseen for the heartbeat TTL is expired here (as status would) and the user joins
-- again at the tail.
local now = now_ms()
local user = ARGV[1]
local cfg = redis.call('HMGET', KEYS[7], 'closed', 'soldout', 'registered')
if ARGV[5] == '1' and not cfg[3] then
  return {5, 0, 0, 0}
end

local function held_place(value, kind)
  local sep = string.find(value, ':', 1, true)
  local seq = string.sub(value, 1, sep - 1)
  local rank = redis.call('ZRANK', KEYS[2], seq)
  if kind == 2 then
    if not rank then
      return nil
    end
    local seen = tonumber(redis.call('ZSCORE', KEYS[3], seq) or '0')
    if now - seen > tonumber(ARGV[4]) then
      forget(KEYS[2], KEYS[3], KEYS[4], KEYS[9], KEYS[6], seq)
      return nil
    end
  end
  return {kind, tonumber(seq), tonumber(string.sub(value, sep + 1)), rank and rank + 1 or 0}
end

if ARGV[2] == '1' then
  local held = redis.call('GET', KEYS[5])
  if held then
    return held_place(held, 0)
  end
end
if user ~= '' then
  local held = redis.call('HGET', KEYS[4], user)
  if held then
    local place = held_place(held, 2)
    if place then
      return place
    end
  end
end

if user ~= '' and redis.call('HEXISTS', KEYS[10], user) == 1 then
  return {6, 0, 0, 0}
end
if cfg[2] == '1' then
  return {4, 0, 0, 0}
end
if cfg[1] == '1' then
  return {3, 0, 0, 0}
end
local seq = redis.call('INCR', KEYS[1])
if seq == 1 then
  -- A new life of this event's sequence (first join, or Redis lost the data): tokens
  -- issued before now name places of an earlier life and must not alias newcomers. The
  -- count of held earmarks starts here (waiter.lua), unless the bucket outlived the order.
  redis.call('HSET', KEYS[6], 'epoch', now)
  redis.call('HSETNX', KEYS[6], 'held', 0)
  event_changed(KEYS[6])
end
redis.call('ZADD', KEYS[2], seq, seq)
redis.call('ZADD', KEYS[3], now, seq)
local value = seq .. ':' .. now
if seq % 32 == 1 then
  -- A mark ages the head of the queue for the operator (stats.lua); keep the last mark at or
  -- before the head, drop the older ones.
  redis.call('ZADD', KEYS[8], seq, value)
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', '(' .. (tonumber(head) - 31))
end
if user ~= '' then
  redis.call('HSET', KEYS[4], user, value)
  redis.call('HSET', KEYS[9], seq, user)
end
if ARGV[2] == '1' then
  redis.call('SET', KEYS[5], value, 'PX', ARGV[3])
end
return {1, seq, now, redis.call('ZCARD', KEYS[2])}
