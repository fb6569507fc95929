-- list_sessions.lua: a user's live sessions; index entries whose session is
-- gone (expired, idle, ended) are dropped from the index.
--
-- KEYS[1]  the user's session index
-- KEYS[2..] the session hashes the index listed when the caller read it
-- ARGV[1]  now (Unix seconds)
-- ARGV[2..] the handles of KEYS[2..], in the same order
--
-- Reply, JSON: {"status":"listed","sessions":{<handle>:{"record":<record
-- JSON>,"seen":n}, ...}}  (an object: cjson writes an empty table as {})
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local sessions = {}
for i = 2, #KEYS do
  local handle = ARGV[i]
  local s = redis.call('HMGET', KEYS[i], 'record', 'seen')
  if s[1] then
    sessions[handle] = {record = s[1], seen = tonumber(s[2]) or 0}
  else
    redis.call('ZREM', KEYS[1], handle)
  end
end
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('EXPIREAT', KEYS[1], top[2]) end
return cjson.encode({status = 'listed', sessions = sessions})
