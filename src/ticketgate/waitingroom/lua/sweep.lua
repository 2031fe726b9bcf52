-- Sweep: remove up to ARGV[2] waiters unseen for the heartbeat TTL (ARGV[1] ms), oldest
-- first, so abandoned users never hold the head of the queue. Bounded work per call.
-- KEYS: 1 wait, 2 seen, 3 users, 4 owners (seq -> user)    Returns how many were removed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ghosts = redis.call(
  'ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - tonumber(ARGV[1])), 'LIMIT', 0, ARGV[2])
for i = 1, #ghosts do
  forget(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ghosts[i])
end
return #ghosts
