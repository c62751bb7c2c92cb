-- vsr/testkit.lua - test kit for state-machine specs (busted), on the host's own C code.
--
--   local testkit = require "vsr.testkit"
--   local sm = testkit.load("statemachines/kv.lua")
--   local reply = sm:ok({op = "put", key = "a", value = 1})      -- must succeed
--   local code, msg = sm:fails({op = "get", key = "zz"})         -- must fail
--   sm:roundtrip()                  -- snapshot -> restore -> same state
--   testkit.assert_deterministic("statemachines/kv.lua", ops)
--
-- It needs the `vsrhost` C module (busted --cpath=build/lua/?.so), which
-- embeds the sandbox, budgets, msgpack conversion, store and snapshots of
-- vsrhost itself: an operation goes through exactly what it goes through in
-- a replica, msgpack on the way in and out included.
local host = require "vsrhost"

local testkit = {}

testkit.host = host

-- Splits an error reply "<code>: <message>" (raised with vsr.fail) into its
-- code and message; other errors give nil and the whole text.
function testkit.error_code(text)
  local code, msg = string.match(text, "^(%d+): (.*)$")
  if code then
    return tonumber(code), msg
  end
  return nil, text
end

-- Raises unless text matches the Lua pattern, or one of the array of them.
function testkit.assert_matches_any(text, patterns)
  patterns = type(patterns) == "table" and patterns or {patterns}
  for _, p in ipairs(patterns) do
    if string.find(text, p) then
      return
    end
  end
  error("unexpected error: " .. text, 2)
end

local SM = {}
SM.__index = SM

-- Loads a state machine. opts: dedup, lua_root, instructions, memory,
-- check_seed, log_level (0 debug .. 3 error).
function testkit.load(path, opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts) do
    o[k] = v
  end
  o.statemachine = path
  local sm, err = host.open(o)
  if not sm then
    error(err, 2)
  end
  return setmetatable({sm = sm, path = path, opts = opts}, SM)
end

-- Returns ok, reply (decoded) or ok == false, error text.
function SM:apply(op, ctx)
  return self.sm:apply(op, ctx)
end

-- Applies op, raising unless it succeeds; returns the reply.
function SM:ok(op, ctx)
  local ok, reply = self.sm:apply(op, ctx)
  if not ok then
    error("expected success, got error: " .. tostring(reply), 2)
  end
  return reply
end

-- Applies op, raising unless it fails; returns code (or nil), message.
function SM:fails(op, ctx)
  local ok, reply = self.sm:apply(op, ctx)
  if ok then
    error("expected an error, got a reply", 2)
  end
  return testkit.error_code(reply)
end

function SM:query(op)
  return self.sm:query(op)
end

function SM:snapshot()
  local s, err = self.sm:snapshot()
  if not s then
    error("snapshot failed: " .. tostring(err), 2)
  end
  return s
end

function SM:restore(bytes)
  local ok, err = self.sm:restore(bytes)
  if not ok then
    error("restore failed: " .. tostring(err), 2)
  end
  return true
end

function SM:digest()
  return self.sm:digest()
end

function SM:stats()
  return self.sm:stats()
end

-- nil, or why the state machine stopped (a failure the host cannot undo
-- identically everywhere: the replica would stop).
function SM:failure()
  return self.sm:failure()
end

function SM:logs(clear)
  return self.sm:logs(clear)
end

function SM:examples(seed)
  return self.sm:examples(seed)
end

function SM:close()
  self.sm:close()
end

-- Snapshot, restore into a fresh instance, and check that the restored
-- state snapshots to the same bytes and digest, and that it BEHAVES the
-- same: each probe operation (default: the script's examples) is applied
-- to this instance and to the restored one, and the replies must agree
-- (state hidden from snapshot(), such as a module upvalue or the length
-- of an array with holes, shows here). The probes change this instance's
-- state as well. Returns the restored instance.
function SM:roundtrip(probes)
  local snap = self:snapshot()
  local other = testkit.load(self.path, self.opts)
  other:restore(snap)
  local again = other:snapshot()
  if again ~= snap then
    error("restored state differs from the snapshotted one: snapshot() after restore() gives "
      .. #again .. " bytes instead of " .. #snap, 2)
  end
  if other:digest() ~= self:digest() then
    error("restored state has a different digest", 2)
  end
  probes = probes or self.sm:examples(1)
  for i, op in ipairs(probes) do
    local ctx = {op = 1000000 + i, seed = i}
    local ok1, r1 = self.sm:apply(op, ctx)
    local ok2, r2 = other.sm:apply(op, ctx)
    local e1, e2 = testkit.encode(r1), testkit.encode(r2)
    if ok1 ~= ok2 or e1 ~= e2 then
      error(string.format("restored state behaves differently: probe %d gave %s %s here and "
        .. "%s %s in the restored instance; snapshot()/restore() miss state apply() uses",
        i, ok1 and "ok" or "error", tostring(r1), ok2 and "ok" or "error", tostring(r2)), 2)
    end
  end
  return other
end

-- The determinism check (the same C code as `vsrhost check`): for each of
-- opts.seeds seeds (default 20, from opts.seed or 1) runs the ops (default:
-- the script's examples, generated per seed) in two independently seeded
-- states, compares replies and state digests, and restores a snapshot into
-- a fresh instance at a point drawn from the seed, comparing its replies
-- from then on with the replayed instance's (state hidden from snapshot()
-- shows as different behaviour). Fails when every operation fails, or when
-- there are none unless opts.allow_empty. Returns ok, report.
function testkit.check_determinism(path, ops, opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts) do
    o[k] = v
  end
  o.statemachine = path
  return host.selfcheck(o, ops, opts.seed or 1, opts.seeds or 20, opts.allow_empty)
end

function testkit.assert_deterministic(path, ops, opts)
  local ok, report = testkit.check_determinism(path, ops, opts)
  if not ok then
    error("determinism check failed for " .. path .. ":\n" .. report, 2)
  end
  return report
end

-- Encodes / decodes msgpack exactly as the host does.
testkit.encode = host.encode
testkit.decode = host.decode

return testkit
