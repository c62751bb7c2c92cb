-- queue.lua - named work queues: enqueue, dequeue, ack, redelivery after a timeout.
--
--   {op = "enqueue", queue = Q, item = V}          -> {id = I}
--   {op = "dequeue", queue = Q [, visibility_ms = T]}
--       -> {id = I, item = V, deliveries = D} or nil when nothing is ready
--   {op = "ack", queue = Q, id = I}                -> {acked = true}
--   {op = "stats", queue = Q}                      -> {ready = R, in_flight = F}
--   {op = "peek", queue = Q}
--       -> {id = I, item = V, deliveries = D} of the message the next dequeue
--          would deliver (unchanged), or nil; read-only, so it runs as a query
-- A dequeued message is hidden for visibility_ms (default 30000); if it is
-- not acked by then (ctx.timestamp, the primary's clock carried in the
-- log) the next dequeue delivers it again with deliveries + 1. Messages are
-- delivered oldest first. Errors: 12 malformed, 20 unknown message id.
local store = vsr.store

local queue = {}

queue.MALFORMED = 12
queue.UNKNOWN_ID = 20
queue.VISIBILITY_MS_DEFAULT = 30000
-- A dequeue looks at this many in-flight messages at most before giving
-- up, which bounds its cost (and keeps it well inside the budget).
queue.SCAN_MAX = 1000

local NS_PER_MS = 1000000

local function prefix(op)
  local q = op.queue
  if type(q) ~= "string" or q == "" then
    vsr.fail(queue.MALFORMED, "queue must be a non-empty string")
  end
  -- length-prefixed, so no queue name can run into another's keys
  return "q/" .. #q .. ":" .. q .. "/"
end

local function msg_key(p, id)
  return p .. "m/" .. string.format("%020d", id)
end

-- The first message ready at `now`: its key and value, or nil.
local function first_ready(p, now)
  local keys, msgs = store.scan(p .. "m/", p .. "m/~", queue.SCAN_MAX)
  for i, k in ipairs(keys) do
    if msgs[i].deadline <= now then
      return k, msgs[i]
    end
  end
  return nil
end

local handlers = {}

function handlers.enqueue(op)
  local p = prefix(op)
  if op.item == nil then
    vsr.fail(queue.MALFORMED, "enqueue needs an item")
  end
  local id = (store.get(p .. "next") or 0) + 1
  store.put(p .. "next", id)
  store.put(msg_key(p, id), {item = op.item, deliveries = 0, deadline = 0})
  return {id = id}
end

function handlers.dequeue(op, ctx)
  local p = prefix(op)
  local vis = op.visibility_ms or queue.VISIBILITY_MS_DEFAULT
  if math.type(vis) ~= "integer" or vis < 1 then
    vsr.fail(queue.MALFORMED, "visibility_ms must be a positive integer")
  end
  local now = ctx.timestamp
  local k, m = first_ready(p, now)
  if not k then
    return nil
  end
  m.deliveries = m.deliveries + 1
  m.deadline = now + vis * NS_PER_MS
  store.put(k, m)
  return {id = tonumber(string.sub(k, #p + 3)), item = m.item, deliveries = m.deliveries}
end

function handlers.ack(op)
  local p = prefix(op)
  if math.type(op.id) ~= "integer" then
    vsr.fail(queue.MALFORMED, "id must be an integer")
  end
  local k = msg_key(p, op.id)
  if not store.has(k) then
    vsr.fail(queue.UNKNOWN_ID, "no message " .. op.id .. " in queue " .. op.queue)
  end
  store.delete(k)
  return {acked = true}
end

function handlers.peek(op, ctx)
  local p = prefix(op)
  local k, m = first_ready(p, ctx.timestamp)
  if not k then
    return nil
  end
  return {id = tonumber(string.sub(k, #p + 3)), item = m.item, deliveries = m.deliveries}
end

function handlers.stats(op, ctx)
  local p = prefix(op)
  local ready, in_flight = 0, 0
  for _, m in store.pairs(p .. "m/", p .. "m/~") do
    if m.deadline <= ctx.timestamp then
      ready = ready + 1
    else
      in_flight = in_flight + 1
    end
  end
  return {ready = ready, in_flight = in_flight}
end

local function dispatch(op, ctx)
  local h = type(op) == "table" and handlers[op.op]
  if not h then
    vsr.fail(queue.MALFORMED, "unknown operation (enqueue, dequeue, ack, stats, peek)")
  end
  return h(op, ctx)
end

queue.apply = dispatch

function queue.query(op, ctx)
  if type(op) ~= "table" or (op.op ~= "stats" and op.op ~= "peek") then
    vsr.fail(queue.MALFORMED, "only stats and peek can run as a query")
  end
  return dispatch(op, ctx)
end

function queue.examples()
  local ops = {}
  for i = 1, 60 do
    local q = "q" .. math.random(1, 2)
    local r = math.random(1, 4)
    if r == 1 then
      ops[i] = {op = "enqueue", queue = q, item = {n = i}}
    elseif r == 2 then
      ops[i] = {op = "dequeue", queue = q, visibility_ms = math.random(1, 5)}
    elseif r == 3 then
      ops[i] = {op = "ack", queue = q, id = math.random(1, 10)}
    else
      ops[i] = {op = "enqueue", queue = q, item = "job" .. i}
    end
  end
  return ops
end

return queue
