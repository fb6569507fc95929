-- revoke_user.lua: ends every session of a user and bumps the user's token
-- version, so any session or token minted before is refused from now on
-- (a session that is not among KEYS, made by a login racing this call, was
-- made with the old version: look-ups refuse and drop it). A user record
-- made here gets a new incarnation (see create.lua).
--
-- KEYS[1]  the user hash           KEYS[2]  the user's session index
-- KEYS[3..] the session hashes the index listed when the caller read it
-- ARGV[1]  user id                 ARGV[2]  a new random incarnation
--
-- Reply, JSON:
--   {"status":"revoked","ended":n,"ver":n}
--   {"status":"user_tag_collision"}
local owner = redis.call('HGET', KEYS[1], 'user_id')
if owner and owner ~= ARGV[1] then return cjson.encode({status = 'user_tag_collision'}) end
if not owner then
  redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'status', 'active', 'roles', '[]',
    'permissions', '[]', 'inc', ARGV[2])
end
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
local ended = 0
for i = 3, #KEYS do
  ended = ended + redis.call('DEL', KEYS[i])
end
redis.call('DEL', KEYS[2])
return cjson.encode({status = 'revoked', ended = ended, ver = ver})
