-- create.lua: a login. Upserts the user, refuses a banned one, stores the
-- session and indexes it; index entries past their absolute expiry go.
--
-- Revive protection. A user record is only ever missing after eviction or a
-- deletion by hand, and with it went its token version `ver`: making it
-- again at version 0 would let a session that a revoke-all had left behind
-- (a login racing the revoke, not in the index it read) pass the version
-- check again. The version cannot be restored (the sessions that knew it
-- may be gone too, the index with them), so a record made here gets a new
-- random incarnation `inc`, and each session carries the `inc` of the record
-- it was made under: look-ups revoke every session of an earlier
-- incarnation. A lost user record thus ends that user's older sessions,
-- never revives one. (Records from before `inc` existed have none, and
-- their sessions none: they match.)
--
-- KEYS[1]  the new session hash    KEYS[2]  the user hash
-- KEYS[3]  the user's session index
-- ARGV[1]  record (JSON)           ARGV[2]  absolute expiry (Unix seconds)
-- ARGV[3]  idle timeout, seconds   ARGV[4]  now (Unix seconds)
-- ARGV[5]  the session key's TTL   ARGV[6]  access token
-- ARGV[7]  its jti                 ARGV[8]  its expiry
-- ARGV[9]  user id                 ARGV[10] roles (JSON list)
-- ARGV[11] permissions (JSON list; '' keeps the user's)
-- ARGV[12] the session's handle
-- ARGV[13] a new random incarnation, used if the user record is made here
--
-- Reply, JSON:
--   {"status":"created","ver":n}
--   {"status":"refused","verdict":"user_banned"}
--   {"status":"exists"}               (the id is taken: retry with a new one)
--   {"status":"user_tag_collision"}   (another user has this user's tag)
local u = redis.call('HMGET', KEYS[2], 'user_id', 'status', 'ver', 'inc')
if u[1] and u[1] ~= ARGV[9] then return cjson.encode({status = 'user_tag_collision'}) end
if u[2] == 'banned' then
  return cjson.encode({status = 'refused', verdict = 'user_banned'})
end
if redis.call('EXISTS', KEYS[1]) == 1 then return cjson.encode({status = 'exists'}) end
local ver = tonumber(u[3]) or 0
local inc = u[4] or ''
redis.call('HSET', KEYS[2], 'user_id', ARGV[9], 'roles', ARGV[10])
if not u[2] then
  inc = ARGV[13]
  redis.call('HSET', KEYS[2], 'status', 'active', 'ver', ver, 'permissions', '[]', 'inc', inc)
end
if ARGV[11] ~= '' then redis.call('HSET', KEYS[2], 'permissions', ARGV[11]) end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'abs', ARGV[2], 'idle', ARGV[3], 'seen', ARGV[4],
  'ver', ver, 'inc', inc, 'token', ARGV[6], 'jti', ARGV[7], 'exp', ARGV[8], 'rotations', 0)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[12])
local top = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
if top[2] then redis.call('EXPIREAT', KEYS[3], top[2]) end
return cjson.encode({status = 'created', ver = ver})
