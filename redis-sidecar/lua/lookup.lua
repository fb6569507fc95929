-- lookup.lua: a session look-up with its user check, in one round trip.
--
-- Every deadline is read against Redis's own clock (TIME), so a stalled
-- sidecar or a skewed host cannot run a grace window down.
-- Rotation survives lost answers: the token rotated away (prev_jti) stays
-- exchangeable for its successor until the successor has been presented
-- (cur_seen), bounded by prev_max; after that it is a replay, except within
-- `grace` seconds of the successor's first use (requests already in flight).
--
-- A missing user record is store trouble, never a verdict: user records have
-- no TTL, so only eviction or a hand-made deletion removes one, and the
-- record is what says whether the session was revoked. The session is kept
-- and the caller answers 503 until the record is back. A session made under
-- an earlier incarnation of the user record (`inc`: the record was lost and
-- made again since, so its revocations are lost too) is revoked.
--
-- KEYS[1]  the session hash        KEYS[2]  the user hash
-- KEYS[3]  the user's session index (a sorted set of handles)
-- ARGV[1]  the session's handle    ARGV[2]  presented jti ('' for none)
-- ARGV[3]  '1' to end the session when a replay is seen, else '0'
-- ARGV[4]  grace, seconds
--
-- Reply, JSON:
--   {"status":"refused","verdict":<SessionVerdict code>}
--   {"status":"user_missing"}
--   {"status":"found","record":<record JSON>,"idle_expires_at":n,
--    "roles":<JSON list>,"permissions":<JSON list>,"token":s,"jti":s,"exp":n,
--    "rotations":n,"ver":n,"now":n,"token_presented":bool}
local now = tonumber(redis.call('TIME')[1])
local s = redis.call('HMGET', KEYS[1], 'record', 'abs', 'idle', 'ver', 'token', 'jti', 'exp',
  'prev_jti', 'prev_until', 'rotations', 'cur_seen', 'prev_max', 'inc')
local function refused(verdict)
  return cjson.encode({status = 'refused', verdict = verdict})
end
local function drop()
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
if not s[1] then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return refused('session_not_found')
end
local abs = tonumber(s[2])
local idle = tonumber(s[3])
if not abs or not idle or abs <= now then
  drop()
  return refused('session_not_found')
end
local u = redis.call('HMGET', KEYS[2], 'status', 'roles', 'permissions', 'ver', 'inc')
if not u[1] then
  return cjson.encode({status = 'user_missing'})
end
if (tonumber(s[4]) or 0) < (tonumber(u[4]) or 0) or (s[13] or '') ~= (u[5] or '') then
  drop()
  return refused('session_revoked')
end
if u[1] == 'banned' then
  return refused('user_banned')
end
local presented = ARGV[2]
local cur_seen = s[11] == '1'
if presented ~= '' then
  if presented == s[6] then
    cur_seen = true
    if s[11] ~= '1' then
      -- The successor's first use: from now on its predecessor is a replay,
      -- once the requests already in flight with it have had `grace`.
      redis.call('HSET', KEYS[1], 'cur_seen', '1', 'prev_until', now + tonumber(ARGV[4]))
    end
  else
    local exchangeable = presented == s[8] and (
      now <= (tonumber(s[9]) or 0) or (s[11] ~= '1' and now <= (tonumber(s[12]) or 0)))
    if not exchangeable then
      if ARGV[3] == '1' then drop() end
      return refused('token_replayed')
    end
  end
end
local ttl = math.min(idle, abs - now)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('HSET', KEYS[1], 'seen', now)
return cjson.encode({
  status = 'found', record = s[1], idle_expires_at = now + ttl,
  roles = u[2] or '[]', permissions = u[3] or '[]',
  token = s[5] or '', jti = s[6] or '', exp = tonumber(s[7]) or 0,
  rotations = tonumber(s[10]) or 0, ver = tonumber(s[4]) or 0, now = now,
  token_presented = cur_seen,
})
