-- update_user.lua: sets a user's status, roles and permissions, making the
-- user record if there is none (an admin may ban or give roles before the
-- first login). A record made here gets a new incarnation (see create.lua).
--
-- KEYS[1]  the user hash
-- ARGV[1]  user id                 ARGV[2]  a new random incarnation
-- ARGV[3]  status ('' unchanged)   ARGV[4]  roles (JSON list; '' unchanged)
-- ARGV[5]  permissions (JSON list; '' unchanged)
--
-- Reply, JSON:
--   {"status":"updated"}
--   {"status":"user_tag_collision"}
local owner = redis.call('HGET', KEYS[1], 'user_id')
if owner and owner ~= ARGV[1] then return cjson.encode({status = 'user_tag_collision'}) end
if not owner then
  redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'status', 'active', 'roles', '[]',
    'permissions', '[]', 'ver', 0, 'inc', ARGV[2])
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'status', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'roles', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'permissions', ARGV[5]) end
return cjson.encode({status = 'updated'})
