"""The Lua scripts behind ``RedisQueue``: each queue method that changes more than one key
runs as one script, so Redis applies it atomically (see ``redis.py`` for the key layout).

Every script gets the key prefix as ARGV[1] and builds its key names from it, because the
keys a call touches (a function's stream, a task's hash) are only known inside the script.
That is fine on one Redis server; on a Redis Cluster the prefix must be a hash tag
(``{ember}``) so that every key lives in one slot.
"""

from __future__ import annotations

# Helpers shared by the scripts below. Keys are "<prefix>:<kind>:<name>…"; function names
# cannot contain ":" (model.function.NAME_RE), so the names cannot collide.
_HELPERS = """
local P = ARGV[1]
local GROUP = 'ember'  -- the one consumer group of every stream
local function k(...) return P .. ':' .. table.concat({...}, ':') end

-- An ordering member "<time>|<sequence>|<id>": sorted as bytes it is time order, with ties
-- in the order they were written, so listings page with ZRANGE BYLEX and an exclusive cursor.
local function order_member(at, id)
  return string.format('%020.6f|%012d|%s', tonumber(at), redis.call('INCR', k('seq')), id)
end

local function member_id(member) return string.match(member, '^[^|]*|[^|]*|(.*)$') end

local FINAL = {succeeded = true, failed = true, stopped = true, expired = true}

-- Store a task and keep its function's listing and per-status listings in step, and the
-- index of finished tasks by their last change (``updated_at``), which purges walk.
-- Every script that stores a task gets its updated_at as its last argument.
local function put_task(id, fn, status, created_at, blob)
  if FINAL[status] then
    redis.call('ZADD', k('finished'), ARGV[#ARGV], id)
  else
    redis.call('ZREM', k('finished'), id)
  end
  local key = k('task', id)
  local old = redis.call('HMGET', key, 'status', 'order')
  local order = old[2]
  if order then
    redis.call('ZREM', k('status', fn, old[1]), order)
  else
    order = order_member(created_at, id)
    redis.call('ZADD', k('tasks', fn), 0, order)
  end
  redis.call('HSET', key, 'function', fn, 'status', status, 'order', order, 'data', blob)
  redis.call('HINCRBY', key, 'rev', 1)
  redis.call('ZADD', k('status', fn, status), 0, order)
  redis.call('SADD', k('statuses', fn), status)
end

-- Append an event to its function's stream, creating the stream and its group on first use.
-- Entry ids come from one counter for all streams, so they order events across functions.
local function enqueue(fn, id, body)
  local stream = k('stream', fn)
  if redis.call('EXISTS', stream) == 0 then
    redis.call('XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM')
  end
  redis.call('SADD', k('functions'), fn)
  local entry = string.format('%d-0', redis.call('INCR', k('seq')))
  redis.call('XADD', stream, entry, 'id', id, 'event', body)
  redis.call('HSET', k('entry', fn), id, entry)
end

-- Put an event (back) in the queue: into the stream when due, else into the delayed set.
local function requeue(fn, id, body, enqueued_at, due, now)
  redis.call('ZADD', k('events', fn), enqueued_at, id)
  if tonumber(due) <= tonumber(now) then
    enqueue(fn, id, body)
  else
    redis.call('SADD', k('functions'), fn)
    redis.call('ZADD', k('delayed', fn), due, id)
    redis.call('HSET', k('dbody', fn), id, body)
  end
end

-- Take an entry out of the stream and forget its lease.
local function unstream(fn, id, entry)
  local stream = k('stream', fn)
  redis.call('XACK', stream, GROUP, entry)
  redis.call('XDEL', stream, entry)
  redis.call('ZREM', k('lease', fn), entry)
  redis.call('HDEL', k('token', fn), entry)
  redis.call('HDEL', k('entry', fn), id)
end

-- The entry a token leases, or nil when the token is stale (the event was finished, or its
-- lease ran out and another claim took it): a stale holder must not touch the event.
local function leased_entry(fn, token)
  local entry = string.match(token, '^(.-)/')
  if entry and redis.call('HGET', k('token', fn), entry) == token then return entry end
  return nil
end
"""

# ARGV: prefix, function, task id, event body, enqueued_at, idempotency key ("" for none),
# now, dedup until, task status, task created_at, task blob, task updated_at.
# Returns {0} when stored, {1, blob} with the task that was there first.
_SUBMIT = """
local fn, id, body, enqueued_at, key = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now, dedup_until = ARGV[7], ARGV[8]
local existing = redis.call('HGET', k('task', id), 'data')
if existing then return {1, existing} end
if key ~= '' then
  local ids, untils = k('idem', fn), k('idem-until', fn)
  -- Dedup windows end by the caller's clock, not the server's: prune lazily, a batch a call.
  local gone = redis.call('ZRANGEBYSCORE', untils, '-inf', now, 'LIMIT', 0, 100)
  if #gone > 0 then
    redis.call('ZREM', untils, unpack(gone))
    redis.call('HDEL', ids, unpack(gone))
  end
  local first = redis.call('HGET', ids, key)
  local window_end = redis.call('ZSCORE', untils, key)
  if first and window_end and tonumber(window_end) > tonumber(now) then
    local blob = redis.call('HGET', k('task', first), 'data')
    if blob then return {1, blob} end
  end
  if tonumber(dedup_until) > tonumber(now) then
    redis.call('HSET', ids, key, id)
    redis.call('ZADD', untils, dedup_until, key)
  end
end
put_task(id, fn, ARGV[9], ARGV[10], ARGV[11])
requeue(fn, id, body, enqueued_at, now, now)
return {0}
"""

# ARGV: prefix, now, lease_until, limit, consumer, n skipped, skipped functions…, n capped,
# then function, cap for each capped function (at most cap events of it leased at once).
# Returns a flat list: function, token, event body, redeliveries, task blob, function, …
# where redeliveries counts the claims of this entry whose lease ran out (Redis's delivery
# count less one): attempts cut short, which the caller adds to the body's attempt; the
# task blob is the event's task as stored ("" when there is none), read in the same step so
# that the caller needs no second round trip to start the attempt.
_CLAIM = """
-- Times stay the strings Python sent: Lua would print numbers with 14 digits only.
local now, lease_until, limit, consumer = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local skip, caps = {}, {}
local n_skip = tonumber(ARGV[6])
for i = 7, 6 + n_skip do skip[ARGV[i]] = true end
local capped_at = 7 + n_skip
for i = capped_at + 1, capped_at + 2 * tonumber(ARGV[capped_at]), 2 do
  caps[ARGV[i]] = tonumber(ARGV[i + 1])
end
local function seq(entry) return tonumber(string.match(entry, '^(%d+)')) end

local function last_delivered(stream)
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    if info['name'] == GROUP then return info['last-delivered-id'] end
  end
  return '0-0'
end

local queues = {}
local fns = redis.call('SMEMBERS', k('functions'))
table.sort(fns)
for _, fn in ipairs(fns) do
  if not skip[fn] and redis.call('ZCARD', k('events', fn)) > 0 then
    -- Retries whose delay has passed join the stream first.
    local due = redis.call('ZRANGEBYSCORE', k('delayed', fn), '-inf', now, 'LIMIT', 0, 1000)
    for _, id in ipairs(due) do
      local body = redis.call('HGET', k('dbody', fn), id)
      redis.call('ZREM', k('delayed', fn), id)
      redis.call('HDEL', k('dbody', fn), id)
      if body then enqueue(fn, id, body) end
    end
    local stream = k('stream', fn)
    -- How many more of its events may be leased: its cap less its live leases.
    local room = limit
    if caps[fn] then
      room = math.min(limit, caps[fn] - redis.call('ZCOUNT', k('lease', fn), now, '+inf'))
    end
    if room > 0 and redis.call('EXISTS', stream) == 1 then
      -- Leases that ran out (the holder died): delivered again before anything new.
      local expired = redis.call('ZRANGEBYSCORE', k('lease', fn), '-inf', '(' .. now,
                                 'LIMIT', 0, room)
      table.sort(expired, function(a, b) return seq(a) < seq(b) end)
      table.insert(queues, {fn = fn, stream = stream, expired = expired, next = 1,
                            last = last_delivered(stream), room = room})
    end
  end
end

local function head(q)
  if q.next <= #q.expired then return q.expired[q.next], true end
  local ahead = redis.call('XRANGE', q.stream, '(' .. q.last, '+', 'COUNT', 1)
  if #ahead > 0 then return ahead[1][1], false end
  return nil, false
end

local function field(fields, name)
  for i = 1, #fields, 2 do if fields[i] == name then return fields[i + 1] end end
  return nil
end

local out, taken = {}, 0
local function take(q)
  local got
  if q.was_leased then
    q.next = q.next + 1
    got = redis.call('XCLAIM', q.stream, GROUP, consumer, 0, q.head)
  else
    local read = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', 1,
                            'STREAMS', q.stream, '>')
    got = read and read[1][2] or {}
  end
  if #got == 0 or not got[1][2] then
    -- The entry is gone from the stream: drop what still refers to it.
    redis.call('ZREM', k('lease', q.fn), q.head)
    redis.call('HDEL', k('token', q.fn), q.head)
    return
  end
  local entry = got[1][1]
  local redeliveries = 0
  if q.was_leased then
    -- XCLAIM counted this delivery in the entry's pending record.
    local pending = redis.call('XPENDING', q.stream, GROUP, entry, entry, 1)
    if #pending > 0 then redeliveries = tonumber(pending[1][4]) - 1 end
  else
    q.last = entry
  end
  local token = string.format('%s/%d', entry, redis.call('INCR', k('seq')))
  redis.call('ZADD', k('lease', q.fn), lease_until, entry)
  redis.call('HSET', k('token', q.fn), entry, token)
  table.insert(out, q.fn)
  table.insert(out, token)
  table.insert(out, field(got[1][2], 'event'))
  table.insert(out, redeliveries)
  table.insert(out, redis.call('HGET', k('task', field(got[1][2], 'id')), 'data') or '')
  taken = taken + 1
  q.room = q.room - 1
end

-- Round robin: each round gives every function with something due one event, the function
-- whose next event is oldest first, until the limit is reached.
while taken < limit and #queues > 0 do
  local ready = {}
  for _, q in ipairs(queues) do
    if q.room > 0 then
      q.head, q.was_leased = head(q)
      if q.head then table.insert(ready, q) end
    end
  end
  table.sort(ready, function(a, b) return seq(a.head) < seq(b.head) end)
  for _, q in ipairs(ready) do
    if taken >= limit then break end
    take(q)
  end
  queues = ready
end
return out
"""

# ARGV: prefix, function, token, lease_until. Returns 1, or 0 for a stale token.
_EXTEND = """
local entry = leased_entry(ARGV[2], ARGV[3])
if not entry then return 0 end
redis.call('ZADD', k('lease', ARGV[2]), 'XX', ARGV[4], entry)
return 1
"""

# Ends a claim. ARGV: prefix, function, task id, token, mode ("ack", "requeue", "dead"),
# task status ("" to leave the task alone), task created_at, task blob,
# then for "requeue": event body, enqueued_at, due, now; for "dead": dead_at, dead-letter blob;
# last, task updated_at.
# A stale token (the lease ran out and another claim took the event, or it was finished)
# changes nothing at all: the newer claim owns both the event and the task. Returns 1 or 0.
_SETTLE = """
local fn, id, mode = ARGV[2], ARGV[3], ARGV[5]
local entry = leased_entry(fn, ARGV[4])
if not entry then return 0 end
unstream(fn, id, entry)
if mode == 'requeue' then
  requeue(fn, id, ARGV[9], ARGV[10], ARGV[11], ARGV[12])
else
  redis.call('ZREM', k('events', fn), id)
end
if mode == 'dead' then
  local key = k('dl', id)
  local old = redis.call('HGET', key, 'order')
  if old then
    redis.call('ZREM', k('dls'), old)
    redis.call('ZREM', k('dls', fn), old)
  end
  local order = order_member(ARGV[9], id)
  redis.call('HSET', key, 'function', fn, 'order', order, 'data', ARGV[10])
  redis.call('ZADD', k('dls'), 0, order)
  redis.call('ZADD', k('dls', fn), 0, order)
end
if ARGV[6] ~= '' then put_task(id, fn, ARGV[6], ARGV[7], ARGV[8]) end
return 1
"""

# ARGV: prefix, function, task id, status, created_at, blob, updated_at. A task that is not
# stored (its function was deleted meanwhile) is not brought back. Returns 1, or 0 for no
# such task.
_SAVE_TASK = """
if redis.call('EXISTS', k('task', ARGV[3])) == 0 then return 0 end
put_task(ARGV[3], ARGV[2], ARGV[4], ARGV[5], ARGV[6])
return 1
"""

# ARGV: prefix, function, task id, revision read, now, then the stopped task: status,
# created_at, blob, updated_at. Returns "stopped", "leased", or "changed" (the task changed since it
# was read: read it again).
_STOP = """
local fn, id, now = ARGV[2], ARGV[3], tonumber(ARGV[5])
if redis.call('HGET', k('task', id), 'rev') ~= ARGV[4] then return 'changed' end
local entry = redis.call('HGET', k('entry', fn), id)
if entry then
  local lease = redis.call('ZSCORE', k('lease', fn), entry)
  if lease and tonumber(lease) >= now then return 'leased' end
  unstream(fn, id, entry)
else
  redis.call('ZREM', k('delayed', fn), id)
  redis.call('HDEL', k('dbody', fn), id)
end
redis.call('ZREM', k('events', fn), id)
put_task(id, fn, ARGV[6], ARGV[7], ARGV[8])
return 'stopped'
"""

# ARGV: prefix, function, task id, task revision read ("" when there was no task), now,
# event body, then the queued task: status, created_at, blob, updated_at.
# Returns "queued", "missing" (no such dead letter) or "changed" (read again).
_REDRIVE = """
local fn, id, now = ARGV[2], ARGV[3], ARGV[5]
local key = k('dl', id)
local order = redis.call('HGET', key, 'order')
if not order then return 'missing' end
if (redis.call('HGET', k('task', id), 'rev') or '') ~= ARGV[4] then return 'changed' end
redis.call('DEL', key)
redis.call('ZREM', k('dls'), order)
redis.call('ZREM', k('dls', fn), order)
put_task(id, fn, ARGV[7], ARGV[8], ARGV[9])
requeue(fn, id, ARGV[6], now, now, now)
return 'queued'
"""

# ARGV: prefix, now, function ("" for all). Returns depth, leased, delayed, the oldest
# enqueued_at (as Redis prints the score, full precision) or false, dead letters.
_FIGURES = """
local now, only = ARGV[2], ARGV[3]
local fns = only ~= '' and {only} or redis.call('SMEMBERS', k('functions'))
local depth, leased, delayed, oldest = 0, 0, 0, false
for _, fn in ipairs(fns) do
  depth = depth + redis.call('ZCARD', k('events', fn))
  leased = leased + redis.call('ZCOUNT', k('lease', fn), now, '+inf')
  delayed = delayed + redis.call('ZCOUNT', k('delayed', fn), '(' .. now, '+inf')
  local first = redis.call('ZRANGE', k('events', fn), 0, 0, 'WITHSCORES')
  if #first > 0 and (not oldest or tonumber(first[2]) < tonumber(oldest)) then
    oldest = first[2]
  end
end
local dead = redis.call('ZCARD', only ~= '' and k('dls', only) or k('dls'))
return {depth, leased, delayed, oldest, dead}
"""

# ARGV: prefix, listing kind ("tasks", "status", "dls"), its name parts…, then cursor
# ("" for the first page), count, and the record kind ("task" or "dl").
# Returns a flat list: member, blob, member, blob, … newest first.
_LIST = """
local n = #ARGV
local index = k(unpack(ARGV, 2, n - 3))
local cursor, count, record = ARGV[n - 2], ARGV[n - 1], ARGV[n]
local start = cursor == '' and '+' or '(' .. cursor
local out = {}
for _, member in ipairs(redis.call('ZRANGE', index, start, '-', 'BYLEX', 'REV',
                                   'LIMIT', 0, count)) do
  local blob = redis.call('HGET', k(record, member_id(member)), 'data')
  if blob then
    table.insert(out, member)
    table.insert(out, blob)
  end
end
return out
"""

# ARGV: prefix, function.
_DELETE_FUNCTION = """
local fn = ARGV[2]
for _, member in ipairs(redis.call('ZRANGE', k('tasks', fn), 0, -1)) do
  redis.call('UNLINK', k('task', member_id(member)))
  redis.call('ZREM', k('finished'), member_id(member))
end
for _, member in ipairs(redis.call('ZRANGE', k('dls', fn), 0, -1)) do
  redis.call('UNLINK', k('dl', member_id(member)))
  redis.call('ZREM', k('dls'), member)
end
for _, status in ipairs(redis.call('SMEMBERS', k('statuses', fn))) do
  redis.call('UNLINK', k('status', fn, status))
end
for _, kind in ipairs({'stream', 'entry', 'lease', 'token', 'delayed', 'dbody', 'events',
                       'tasks', 'statuses', 'idem', 'idem-until', 'dls'}) do
  redis.call('UNLINK', k(kind, fn))
end
redis.call('SREM', k('functions'), fn)
return 1
"""

# ARGV: prefix, before, batch size. Deletes up to a batch of the tasks finished before
# ``before`` (a task whose event is still queued is kept, and leaves the index until it is
# stored again) and up to a batch of the dead letters made before it.
# Returns {tasks deleted, tasks looked at, dead letters deleted}.
_PURGE = """
local before, batch = tonumber(ARGV[2]), tonumber(ARGV[3])
local tasks, seen, dead = 0, 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', k('finished'), '-inf', '(' .. ARGV[2],
                               'LIMIT', 0, batch)) do
  seen = seen + 1
  redis.call('ZREM', k('finished'), id)
  local key = k('task', id)
  local t = redis.call('HMGET', key, 'function', 'status', 'order')
  if t[1] and not redis.call('ZSCORE', k('events', t[1]), id) then
    redis.call('ZREM', k('tasks', t[1]), t[3])
    redis.call('ZREM', k('status', t[1], t[2]), t[3])
    redis.call('UNLINK', key)
    tasks = tasks + 1
  end
end
-- Dead-letter listings are ordered by dead_at, written as order_member writes it.
local bound = '(' .. string.format('%020.6f', before)
for _, member in ipairs(redis.call('ZRANGE', k('dls'), '-', bound, 'BYLEX', 'LIMIT', 0, batch)) do
  local id = member_id(member)
  local fn = redis.call('HGET', k('dl', id), 'function')
  redis.call('ZREM', k('dls'), member)
  if fn then redis.call('ZREM', k('dls', fn), member) end
  redis.call('UNLINK', k('dl', id))
  dead = dead + 1
end
return {tasks, seen, dead}
"""

SCRIPTS: dict[str, str] = {
    name: _HELPERS + body
    for name, body in {
        "submit": _SUBMIT,
        "claim": _CLAIM,
        "extend": _EXTEND,
        "settle": _SETTLE,
        "save_task": _SAVE_TASK,
        "stop": _STOP,
        "redrive": _REDRIVE,
        "figures": _FIGURES,
        "list": _LIST,
        "delete_function": _DELETE_FUNCTION,
        "purge": _PURGE,
    }.items()
}
