/**
 * The Lua scripts behind rooms and zones. Each runs atomically on Redis, so every rule below holds
 * between any two scripts, whatever number of clients, processes or machines call them:
 *
 *   - a room's count is ZCARD of its member set, written to the aggregate in the same script;
 *   - a room is in the open index iff count < capacity, scored by count;
 *   - a player is in the seat hash, the lease index and exactly one member set of the zone, or in none;
 *   - every count change takes the next version and appends one entry `<version>-0` to the change log.
 *
 * Each script reads and validates before its first write, so a refused call (unknown room, full
 * room, Redis out of memory) leaves nothing behind. Time comes from Redis TIME: client clocks
 * never decide a lease.
 *
 * Shared calling convention: KEYS[1..7] = capacity, count, open, seat, leases, version, changes
 * (see keys.ts); ARGV[1] = member-set key prefix, ARGV[2] = change-log length; the rest per script.
 */

const PRELUDE = `
local K_CAP, K_COUNT, K_OPEN, K_SEAT, K_LEASES, K_VER, K_LOG = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local M_PREFIX, LOG_LEN = ARGV[1], ARGV[2]
local ZONE_REAP = 64
local ROOM_REAP = 1000

local function int(n) return string.format('%.0f', n) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The one place a count changes: aggregate, open index, version and change log move together.
local function publish(room, n, cap)
  redis.call('HSET', K_COUNT, room, n)
  if n < cap then redis.call('ZADD', K_OPEN, n, room) else redis.call('ZREM', K_OPEN, room) end
  local v = redis.call('INCR', K_VER)
  redis.call('XADD', K_LOG, 'MAXLEN', '~', LOG_LEN, int(v) .. '-0', 'r', room, 'c', n, 'k', cap)
  return v
end

-- Recomputes a room's count from its member set (never from a delta, so it cannot drift).
local function resync(room)
  local cap = tonumber(redis.call('HGET', K_CAP, room))
  if not cap then return 0 end
  return publish(room, redis.call('ZCARD', M_PREFIX .. room), cap)
end

local function unseat(room, player)
  redis.call('ZREM', M_PREFIX .. room, player)
  redis.call('ZREM', K_LEASES, player)
  redis.call('HDEL', K_SEAT, player)
end

-- Expired seats of one room; bounded, so a huge backlog is finished by later calls or reap().
local function reap_room(room, now)
  local key = M_PREFIX .. room
  local gone = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, ROOM_REAP)
  if #gone == 0 then return 0 end
  for _, p in ipairs(gone) do
    if redis.call('HGET', K_SEAT, p) == room then
      redis.call('HDEL', K_SEAT, p)
      redis.call('ZREM', K_LEASES, p)
    end
  end
  redis.call('ZREM', key, unpack(gone))
  resync(room)
  return #gone
end

-- Expired seats of the whole zone, oldest first, at most 'limit': O(log N + expired).
local function reap_zone(now, limit)
  local gone = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now, 'LIMIT', 0, limit)
  if #gone == 0 then return 0 end
  local touched, order = {}, {}
  for _, p in ipairs(gone) do
    local room = redis.call('HGET', K_SEAT, p)
    if room then
      redis.call('ZREM', M_PREFIX .. room, p)
      if not touched[room] then touched[room] = true; order[#order + 1] = room end
    end
  end
  redis.call('HDEL', K_SEAT, unpack(gone))
  redis.call('ZREM', K_LEASES, unpack(gone))
  for _, room in ipairs(order) do resync(room) end
  return #gone
end

local function renew(room, player, exp)
  redis.call('ZADD', M_PREFIX .. room, 'XX', exp, player)
  redis.call('ZADD', K_LEASES, 'XX', exp, player)
end

local function seat(room, player, exp, n, cap)
  redis.call('ZADD', M_PREFIX .. room, exp, player)
  redis.call('ZADD', K_LEASES, exp, player)
  redis.call('HSET', K_SEAT, player, room)
  return publish(room, n + 1, cap)
end
`;

/** ARGV[3] room, ARGV[4] player, ARGV[5] lease ms. */
const ENTER = `
local room, player, lease = ARGV[3], ARGV[4], tonumber(ARGV[5])
local cap = tonumber(redis.call('HGET', K_CAP, room))
if not cap then return {'UNKNOWN_ROOM', room} end
local now = now_ms()
reap_zone(now, ZONE_REAP)
reap_room(room, now)
local exp = int(now + lease)
local cur = redis.call('HGET', K_SEAT, player)
if cur == room then
  renew(room, player, exp)
  return {'OK', room, redis.call('ZCARD', M_PREFIX .. room), cap, exp, '', 1}
end
local n = redis.call('ZCARD', M_PREFIX .. room)
if n >= cap then return {'ROOM_FULL', room, n, cap} end
-- The move: leave the old room and take the new seat in this one step, never both, never neither.
if cur then
  redis.call('ZREM', M_PREFIX .. cur, player)
  resync(cur)
end
seat(room, player, exp, n, cap)
return {'OK', room, n + 1, cap, exp, cur or '', 0}
`;

/** ARGV[3] player, ARGV[4] lease ms. */
const AUTO_ENTER = `
local player, lease = ARGV[3], tonumber(ARGV[4])
-- A zone exists once a room is defined in it (rooms are never deleted): none is not a full zone.
if redis.call('EXISTS', K_CAP) == 0 then return {'UNKNOWN_ZONE'} end
local now = now_ms()
reap_zone(now, ZONE_REAP)
local exp = int(now + lease)
local cur = redis.call('HGET', K_SEAT, player)
if cur then
  reap_room(cur, now)
  if redis.call('HGET', K_SEAT, player) == cur then
    renew(cur, player, exp)
    return {'OK', cur, redis.call('ZCARD', M_PREFIX .. cur), tonumber(redis.call('HGET', K_CAP, cur)), exp, '', 1}
  end
end
-- The open index holds exactly the rooms with a free seat, so the first pick succeeds; the bounded
-- loop only repairs an index entry a hand edit left stale.
for _ = 1, 8 do
  local top = redis.call('ZREVRANGE', K_OPEN, 0, 0)
  local room = top[1]
  if not room then return {'ZONE_FULL'} end
  local cap = tonumber(redis.call('HGET', K_CAP, room))
  if cap then
    reap_room(room, now)
    local n = redis.call('ZCARD', M_PREFIX .. room)
    if n < cap then
      seat(room, player, exp, n, cap)
      return {'OK', room, n + 1, cap, exp, '', 0}
    end
    resync(room)
  else
    redis.call('ZREM', K_OPEN, room)
  end
end
return {'ZONE_FULL'}
`;

/** ARGV[3] room, ARGV[4] player. */
const LEAVE = `
local room, player = ARGV[3], ARGV[4]
if redis.call('HEXISTS', K_CAP, room) == 0 then return {'UNKNOWN_ROOM', room} end
local now = now_ms()
reap_zone(now, ZONE_REAP)
if redis.call('HGET', K_SEAT, player) ~= room then return {'OK', 0} end
unseat(room, player)
resync(room)
return {'OK', 1}
`;

/** ARGV[3] room, ARGV[4] player, ARGV[5] lease ms. A lapsed lease is not revived. */
const HEARTBEAT = `
local room, player, lease = ARGV[3], ARGV[4], tonumber(ARGV[5])
if redis.call('HEXISTS', K_CAP, room) == 0 then return {'UNKNOWN_ROOM', room} end
local now = now_ms()
reap_zone(now, ZONE_REAP)
reap_room(room, now)
if redis.call('HGET', K_SEAT, player) ~= room then return {'NOT_SEATED'} end
local exp = int(now + lease)
renew(room, player, exp)
return {'OK', exp}
`;

/** ARGV[3] room, ARGV[4] capacity. Creates the room or changes its capacity (never below its count). */
const DEFINE = `
local room, cap = ARGV[3], tonumber(ARGV[4])
local old = tonumber(redis.call('HGET', K_CAP, room))
if old then reap_room(room, now_ms()) end
local n = redis.call('ZCARD', M_PREFIX .. room)
if old == cap then return {'OK', n, cap, 0} end
if n > cap then return {'BELOW_COUNT', n} end
redis.call('HSET', K_CAP, room, cap)
publish(room, n, cap)
return {'OK', n, cap, 1}
`;

/** ARGV[3] reap limit. The zone snapshot: version, then capacity and count hashes. */
const LIST = `
reap_zone(now_ms(), tonumber(ARGV[3]))
return {redis.call('GET', K_VER) or '0', redis.call('HGETALL', K_CAP), redis.call('HGETALL', K_COUNT)}
`;

/** ARGV[3] room. Live members with their lease expiry. */
const MEMBERS = `
local room = ARGV[3]
if redis.call('HEXISTS', K_CAP, room) == 0 then return {'UNKNOWN_ROOM', room} end
reap_room(room, now_ms())
return {'OK', redis.call('ZRANGE', M_PREFIX .. room, 0, -1, 'WITHSCORES')}
`;

/** ARGV[3] player. The player's room in this zone, or '' when none. */
const LOCATE = `
local player = ARGV[3]
local cur = redis.call('HGET', K_SEAT, player)
if not cur then return '' end
reap_room(cur, now_ms())
return redis.call('HGET', K_SEAT, player) or ''
`;

/** ARGV[3] limit. Returns how many expired seats were removed. */
const REAP = `
return reap_zone(now_ms(), tonumber(ARGV[3]))
`;

/**
 * LIST for a replica: declared read-only (the shebang flag), so a replica in READONLY mode runs it,
 * and it reaps nothing (a replica cannot write; the primary's reaping reaches it by replication).
 */
const LIST_REPLICA = `
return {redis.call('GET', K_VER) or '0', redis.call('HGETALL', K_CAP), redis.call('HGETALL', K_COUNT)}
`;

function withPrelude(body: string): string {
  return PRELUDE + body;
}

/**
 * The full Lua source of each script (prelude included): what RoomService loads with
 * `defineCommand`, and what a benchmark baseline can call with plain EVAL/EVALSHA.
 */
export const ROOM_SCRIPTS = {
  enter: withPrelude(ENTER),
  autoEnter: withPrelude(AUTO_ENTER),
  leave: withPrelude(LEAVE),
  heartbeat: withPrelude(HEARTBEAT),
  define: withPrelude(DEFINE),
  list: withPrelude(LIST),
  members: withPrelude(MEMBERS),
  locate: withPrelude(LOCATE),
  reap: withPrelude(REAP),
  // The shebang must be the script's first line.
  listReplica: `#!lua flags=no-writes\n${withPrelude(LIST_REPLICA)}`,
} as const;

/** Scripts that never write: sent as read-only commands, so a Cluster with scaleReads may route them to a replica. */
export const READ_ONLY_SCRIPTS: ReadonlySet<RoomScriptName> = new Set<RoomScriptName>(['listReplica']);

export type RoomScriptName = keyof typeof ROOM_SCRIPTS;

/** Every zone script takes the same seven keys. */
export const ZONE_SCRIPT_KEY_COUNT = 7;
