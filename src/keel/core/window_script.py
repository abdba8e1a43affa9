"""WINDOW_SCRIPT: Keel's own moving-window count in Redis (see keel.core.ratelimit), in one Lua call.

It can first read the caller's session cache entry (as keel.core.session_cache defines it) and
count only for a live session, and it counts a sign-in against its account's lock and its windows
together.
"""

from __future__ import annotations

from keel.core.session_cache import ENTRY_CHECK_LUA

# KEYS[1]: a session's cache entry, or unused; KEYS[2]: an account's password checks (a hash:
# `attempts` without the right password, and the end of its lock, `until`), or unused; KEYS[3..n]:
# one list per limit of the rule, holding the timestamps of the requests it counted, newest first.
# ARGV[1]: a user's `session_cache.user_prefix` to count only for a live session of that user (the
# entry is read as keel.core.session_cache defines it), or "" to count without one; ARGV[2]: now (Unix seconds);
# ARGV[3..6]: the account's lockout (checks before the lock, the first lock and the longest in
# seconds, and how long the count is kept), or zeros for none; then the limit and its window in
# seconds for each list.
# Returns {the session entry (nil when not looked up or missing), 1 if counted else 0, whole
# seconds to wait when refused (else 0), the check's place in the account's count (0 without one),
# and for each list, after the request: {allowance left, whole seconds until its oldest counted
# request leaves the window}} (no lists when a session was asked for and is not live). A request
# is counted in every list and the account or in none; a refused one is not. A wait and a list's
# seconds are rounded up from the same difference, so a Retry-After and the full list's reset agree.
WINDOW_SCRIPT = (
    ENTRY_CHECK_LUA
    + """
local function window_state(key, limit, seconds, now)
  -- The list holds timestamps newest first, some maybe older than the window: search for the
  -- number still inside it.
  local floor = now - seconds
  local inside, beyond = 0, limit
  while inside < beyond do
    local middle = math.floor((inside + beyond) / 2)
    local at = redis.call('LINDEX', key, middle)
    if at and tonumber(at) > floor then
      inside = middle + 1
    else
      beyond = middle
    end
  end
  if inside == 0 then
    return {limit, 0}
  end
  return {limit - inside, math.ceil(tonumber(redis.call('LINDEX', key, inside - 1)) - floor)}
end

local entry = false
local now = tonumber(ARGV[2])
if ARGV[1] ~= '' then
  entry = redis.call('GET', KEYS[1])
  if not is_live_session(entry, ARGV[1], now) then
    return {entry, 0, 0, 0, {}}
  end
end
local after = tonumber(ARGV[3])
local wait = 0
if after > 0 then
  local locked = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
  if locked > now then
    wait = math.ceil(locked - now)
  end
end
for i = 3, #KEYS do
  local limit, seconds = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
  local oldest = redis.call('LINDEX', KEYS[i], limit - 1)
  if oldest and tonumber(oldest) > now - seconds then
    wait = math.max(wait, math.ceil(tonumber(oldest) - (now - seconds)))
  end
end
local attempt = 0
if wait == 0 then
  for i = 3, #KEYS do
    redis.call('LPUSH', KEYS[i], ARGV[2])
    redis.call('LTRIM', KEYS[i], 0, tonumber(ARGV[2 * i + 1]) - 1)
    redis.call('EXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2 * i + 2])))
  end
  if after > 0 then
    attempt = redis.call('HINCRBY', KEYS[2], 'attempts', 1)
    if attempt >= after then
      local lock = tonumber(ARGV[4]) * 2 ^ math.min(attempt - after, 32)
      redis.call('HSET', KEYS[2], 'until', tostring(now + math.min(lock, tonumber(ARGV[5]))))
    end
    redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[6])))
  end
end
local states = {}
for i = 3, #KEYS do
  states[#states + 1] = window_state(KEYS[i], tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2]), now)
end
return {entry, wait == 0 and 1 or 0, wait, attempt, states}
"""
)
