-- rotate.lua: replaces the session's access token if it is still the one
-- the caller saw; either way replies with the current token. This is what
-- makes concurrent refreshes single-flight: Redis runs one script at a
-- time, so one caller rotates and the others find the new token.
--
-- The token rotated away becomes prev_jti, unless the current one was never
-- presented and the caller holds the previous one (its successor's answer
-- was lost): then the caller's token stays the one exchangeable. Only a
-- bearer client that presented the token rotated away (or that predecessor)
-- gets the long exchange window (prev_max): a rotation made for a cookie
-- client leaves the old token only the short grace, as the cookie client
-- never holds it (the upstream got it).
--
-- The user record is checked as look-ups check it (a session rotated
-- after a revoke-all or a ban raced the look-up is refused): a missing one
-- is store trouble, and the session is kept (see lookup.lua).
--
-- KEYS[1]  the session hash        KEYS[2]  the user hash
-- ARGV[1]  the jti the caller saw     ARGV[2]  new token
-- ARGV[3]  new jti                    ARGV[4]  new token's expiry
-- ARGV[5]  grace, seconds             ARGV[6]  exchange maximum, seconds
-- ARGV[7]  presented jti ('' for none)
--
-- Reply, JSON:
--   {"status":"refused","verdict":"session_not_found"|"session_revoked"|"user_banned"}
--   {"status":"user_missing"}
--   {"status":"current","rotated":bool,"token":s,"jti":s,"exp":n,"rotations":n}
local now = tonumber(redis.call('TIME')[1])
local s = redis.call('HMGET', KEYS[1], 'jti', 'cur_seen', 'prev_jti', 'ver', 'inc')
if not s[1] then
  return cjson.encode({status = 'refused', verdict = 'session_not_found'})
end
local u = redis.call('HMGET', KEYS[2], 'status', 'ver', 'inc')
if not u[1] then
  return cjson.encode({status = 'user_missing'})
end
if (tonumber(s[4]) or 0) < (tonumber(u[2]) or 0) or (s[5] or '') ~= (u[3] or '') then
  return cjson.encode({status = 'refused', verdict = 'session_revoked'})
end
if u[1] == 'banned' then
  return cjson.encode({status = 'refused', verdict = 'user_banned'})
end
local rotated = false
if s[1] == ARGV[1] then
  local prev = s[1]
  local holder = ARGV[7] ~= '' and ARGV[7] == s[1]
  if s[2] ~= '1' and ARGV[7] ~= '' and ARGV[7] == s[3] then
    prev = s[3]
    holder = true
  end
  local prev_max = 0
  if holder then prev_max = now + tonumber(ARGV[6]) end
  redis.call('HSET', KEYS[1], 'prev_jti', prev, 'prev_until', now + tonumber(ARGV[5]),
    'prev_max', prev_max, 'cur_seen', '0',
    'token', ARGV[2], 'jti', ARGV[3], 'exp', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'rotations', 1)
  rotated = true
end
local t = redis.call('HMGET', KEYS[1], 'token', 'jti', 'exp', 'rotations')
return cjson.encode({
  status = 'current', rotated = rotated, token = t[1] or '', jti = t[2] or '',
  exp = tonumber(t[3]) or 0, rotations = tonumber(t[4]) or 0,
})
