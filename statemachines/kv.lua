-- kv.lua - replicated key-value store with versions and compare-and-set.
--
-- Operations (msgpack maps):
--   {op = "get",    key = K}                    -> {value = V, version = N}
--   {op = "put",    key = K, value = V [, version = N]} -> {version = N'}
--   {op = "delete", key = K [, version = N]}    -> {version = N}  (the deleted one)
--   {op = "cas",    key = K, from = V1, to = V2} -> {version = N'}
-- and the names of Jepsen's lin-kv workload: read = get, write = put.
-- K is a string or an integer; V any msgpack value but nil. Every key has a
-- version, 1 on creation, +1 on each write. A `version` in put/delete is a
-- precondition: the write happens only if the key is at that version
-- (0 means "must not exist").
--
-- Errors, raised with vsr.fail and seen by clients as "<code>: <message>",
-- use lin-kv's codes, so a missing key and a failed precondition are
-- distinct:
--   20 key does not exist    (get, delete, cas on a missing key)
--   22 precondition failed   (cas value or version mismatch)
--   12 malformed request
-- All state lives in vsr.store, so an operation that fails leaves nothing
-- behind and snapshots need no code here. A record is stored as the array
-- {value, version}: cheaper to encode and decode than a map.
local store = vsr.store
local get, put, delete = store.get, store.put, store.delete
local math_type, type = math.type, type

local kv = {}

kv.KEY_DOES_NOT_EXIST = 20
kv.PRECONDITION_FAILED = 22
kv.MALFORMED = 12

local function malformed(msg)
  vsr.fail(kv.MALFORMED, msg)
end

-- Store key for a kv key: the type is part of it, so 1 and "1" differ.
local function skey(k)
  if type(k) == "string" then
    return "s" .. k
  end
  local t = math_type(k)
  if t == "integer" then
    return "i" .. k
  end
  malformed("key must be a string or an integer, got " .. (t or type(k)))
end

local function show(v)
  if type(v) == "string" then
    return string.format("%q", v)
  end
  return tostring(v)
end

-- Deep equality over msgpack values (cas compares values, not identities).
local function equal(a, b)
  if a == b then
    return true
  end
  if type(a) ~= "table" or type(b) ~= "table" then
    return false
  end
  for k, v in pairs(a) do
    if not equal(v, b[k]) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

local function check_version(cur, want, key)
  if want == nil then
    return
  end
  if math_type(want) ~= "integer" or want < 0 then
    malformed("version must be a non-negative integer")
  end
  local have = cur and cur[2] or 0
  if have ~= want then
    vsr.fail(kv.PRECONDITION_FAILED, string.format("key %s is at version %d, not %d",
      show(key), have, want))
  end
end

local handlers = {}

function handlers.get(op)
  local cur = get(skey(op.key))
  if cur == nil then
    vsr.fail(kv.KEY_DOES_NOT_EXIST, "key " .. show(op.key) .. " does not exist")
  end
  return {value = cur[1], version = cur[2]}
end

function handlers.put(op)
  local k = skey(op.key)
  if op.value == nil then
    malformed("put needs a value")
  end
  local cur = get(k)
  check_version(cur, op.version, op.key)
  local version = (cur and cur[2] or 0) + 1
  put(k, {op.value, version})
  return {version = version}
end

function handlers.delete(op)
  local k = skey(op.key)
  local cur = get(k)
  if cur == nil then
    vsr.fail(kv.KEY_DOES_NOT_EXIST, "key " .. show(op.key) .. " does not exist")
  end
  check_version(cur, op.version, op.key)
  delete(k)
  return {version = cur[2]}
end

function handlers.cas(op)
  local k = skey(op.key)
  if op.to == nil then
    malformed("cas needs `to`")
  end
  local cur = get(k)
  if cur == nil then
    vsr.fail(kv.KEY_DOES_NOT_EXIST, "key " .. show(op.key) .. " does not exist")
  end
  if not equal(cur[1], op.from) then
    vsr.fail(kv.PRECONDITION_FAILED, string.format("expected %s, found %s",
      show(op.from), show(cur[1])))
  end
  local version = cur[2] + 1
  put(k, {op.to, version})
  return {version = version}
end

handlers.read = handlers.get
handlers.write = handlers.put

local readonly = {get = true, read = true}

local function dispatch(op)
  if type(op) ~= "table" then
    malformed("an operation is a map with an `op` field")
  end
  local h = handlers[op.op]
  if h == nil then
    malformed("unknown op " .. show(op.op) .. " (get, put, delete, cas, read, write)")
  end
  return h(op)
end

-- apply is dispatch itself: one call less on the hot path
kv.apply = dispatch

function kv.query(op, ctx)
  if type(op) ~= "table" or not readonly[op.op] then
    malformed("only get/read can run as a query")
  end
  return dispatch(op)
end

-- Operations for the determinism self-check (vsrhost check, the test kit).
function kv.examples()
  local ops = {}
  for i = 1, 60 do
    local key = "k" .. math.random(1, 8)
    local r = math.random(1, 6)
    if r == 1 then
      ops[#ops + 1] = {op = "get", key = key}
    elseif r == 2 then
      ops[#ops + 1] = {op = "cas", key = key, from = i - 1, to = i}
    elseif r == 3 then
      ops[#ops + 1] = {op = "delete", key = key}
    elseif r == 4 then
      ops[#ops + 1] = {op = "write", key = math.random(1, 4), value = {n = i, tag = "x"}}
    else
      ops[#ops + 1] = {op = "put", key = key, value = i}
    end
  end
  return ops
end

return kv
