-- end_session.lua: ends one session (logout, or an admin's end).
--
-- KEYS[1]  the session hash        KEYS[2]  the user's session index
-- ARGV[1]  the session's handle
--
-- Reply, JSON: {"status":"ended","existed":bool}
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return cjson.encode({status = 'ended', existed = n > 0})
