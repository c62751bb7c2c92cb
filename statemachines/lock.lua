-- lock.lua - named locks with leases and fencing tokens.
--
-- Time is ctx.timestamp, chosen by the primary and carried in the log (ns),
-- never a local clock: every replica decides expiry identically.
--   {op = "acquire", name = N, owner = O, lease_ms = L}
--       -> {token = T, expires = E}   granted, or renewed when O holds it
--   {op = "release", name = N, owner = O, token = T} -> {released = true}
--   {op = "holder", name = N}  -> {owner = O, token = T, expires = E} or nil
--   {op = "validate", name = N, token = T} -> {valid = true|false}
-- Fencing: tokens of one lock only grow, even across releases and expiry,
-- so a resource that remembers the highest token it saw rejects a stale
-- holder whose lease ran out.
-- Errors: 12 malformed, 40 held by another owner, 41 not the holder.
local store = vsr.store

local lock = {}

lock.MALFORMED = 12
lock.HELD = 40
lock.NOT_HOLDER = 41
lock.LEASE_MS_MAX = 3600 * 1000

local NS_PER_MS = 1000000

local function name_of(op)
  if type(op.name) ~= "string" or op.name == "" then
    vsr.fail(lock.MALFORMED, "name must be a non-empty string")
  end
  return op.name
end

local function owner_of(op)
  if type(op.owner) ~= "string" or op.owner == "" then
    vsr.fail(lock.MALFORMED, "owner must be a non-empty string")
  end
  return op.owner
end

-- The current holder, or nil when free or expired at `now`.
local function holder(name, now)
  local h = store.get("lock/" .. name)
  if h ~= nil and h.expires > now then
    return h
  end
  return nil
end

local handlers = {}

function handlers.acquire(op, ctx)
  local name, owner = name_of(op), owner_of(op)
  local lease = op.lease_ms
  if math.type(lease) ~= "integer" or lease < 1 or lease > lock.LEASE_MS_MAX then
    vsr.fail(lock.MALFORMED, "lease_ms must be an integer from 1 to " .. lock.LEASE_MS_MAX)
  end
  local now = ctx.timestamp
  local expires = now + lease * NS_PER_MS
  local h = holder(name, now)
  if h ~= nil and h.owner ~= owner then
    vsr.fail(lock.HELD, string.format("lock %q is held by %q (token %d) for %d ms more",
      name, h.owner, h.token, (h.expires - now) // NS_PER_MS))
  end
  local token
  if h ~= nil then
    token = h.token -- renewal keeps the token
  else
    token = (store.get("token/" .. name) or 0) + 1
    store.put("token/" .. name, token)
  end
  store.put("lock/" .. name, {owner = owner, token = token, expires = expires})
  return {token = token, expires = expires}
end

function handlers.release(op, ctx)
  local name, owner = name_of(op), owner_of(op)
  local h = holder(name, ctx.timestamp)
  if h == nil or h.owner ~= owner or h.token ~= op.token then
    vsr.fail(lock.NOT_HOLDER, string.format("%q does not hold lock %q with token %s",
      owner, name, tostring(op.token)))
  end
  store.delete("lock/" .. name)
  return {released = true}
end

function handlers.holder(op, ctx)
  local h = holder(name_of(op), ctx.timestamp)
  if h == nil then
    return nil
  end
  return {owner = h.owner, token = h.token, expires = h.expires}
end

function handlers.validate(op, ctx)
  local h = holder(name_of(op), ctx.timestamp)
  return {valid = h ~= nil and h.token == op.token}
end

local function dispatch(op, ctx)
  local h = type(op) == "table" and handlers[op.op]
  if not h then
    vsr.fail(lock.MALFORMED, "unknown operation (acquire, release, holder, validate)")
  end
  return h(op, ctx)
end

lock.apply = dispatch

function lock.query(op, ctx)
  if type(op) ~= "table" or (op.op ~= "holder" and op.op ~= "validate") then
    vsr.fail(lock.MALFORMED, "only holder and validate can run as a query")
  end
  return dispatch(op, ctx)
end

function lock.examples()
  local ops = {}
  local owners = {"alice", "bob", "carol"}
  for i = 1, 50 do
    local name = "L" .. math.random(1, 3)
    local owner = owners[math.random(1, 3)]
    local r = math.random(1, 4)
    if r == 1 then
      ops[i] = {op = "release", name = name, owner = owner, token = math.random(1, 5)}
    elseif r == 2 then
      ops[i] = {op = "holder", name = name}
    else
      ops[i] = {op = "acquire", name = name, owner = owner, lease_ms = math.random(1, 20)}
    end
  end
  return ops
end

return lock
