-- counter.lua - named counters kept in plain Lua state, with snapshot/restore hooks.
--
-- The example of the second style: state in an ordinary Lua table instead
-- of vsr.store. The host then keeps operations atomic by rolling back to a
-- base snapshot and replaying (slower on errors than the store, and
-- snapshot/restore must carry every bit of state).
--   {op = "add", name = N, delta = D}          -> {value = V}
--   {op = "add_many", names = {N...}, delta = D} -> {values = {V...}}  (all or nothing)
--   {op = "get", name = N}                     -> {value = V}  (0 when never set)
--   {op = "reset", name = N}                   -> {value = 0}
--   {op = "list"}                              -> {{name = N, value = V}, ...} in name order
-- Errors: 12 malformed request, 22 overflow (the counter is unchanged).
local counter = {}

counter.MALFORMED = 12
counter.OVERFLOW = 22

local values = {} -- name -> integer
local updates = 0 -- operations that changed something

local function check_name(name)
  if type(name) ~= "string" or name == "" then
    vsr.fail(counter.MALFORMED, "name must be a non-empty string")
  end
end

local function add(name, delta)
  check_name(name)
  local v = values[name] or 0
  if (delta > 0 and v > math.maxinteger - delta) or (delta < 0 and v < math.mininteger - delta) then
    vsr.fail(counter.OVERFLOW, "counter " .. name .. " would overflow")
  end
  values[name] = v + delta
  return v + delta
end

local handlers = {}

function handlers.add(op)
  if math.type(op.delta) ~= "integer" then
    vsr.fail(counter.MALFORMED, "delta must be an integer")
  end
  updates = updates + 1
  return {value = add(op.name, op.delta)}
end

function handlers.add_many(op)
  if type(op.names) ~= "table" or math.type(op.delta) ~= "integer" then
    vsr.fail(counter.MALFORMED, "add_many needs names (an array) and an integer delta")
  end
  local out = {}
  for i, name in ipairs(op.names) do
    -- a bad name halfway raises: the host undoes the earlier additions
    out[i] = add(name, op.delta)
  end
  updates = updates + 1
  return {values = out}
end

function handlers.get(op)
  check_name(op.name)
  return {value = values[op.name] or 0}
end

function handlers.reset(op)
  check_name(op.name)
  values[op.name] = nil
  updates = updates + 1
  return {value = 0}
end

function handlers.list()
  local out = {}
  for name, v in vsr.sorted_pairs(values) do
    out[#out + 1] = {name = name, value = v}
  end
  return out
end

local function dispatch(op)
  local h = type(op) == "table" and handlers[op.op]
  if not h then
    vsr.fail(counter.MALFORMED, "unknown operation (add, add_many, get, reset, list)")
  end
  return h(op)
end

function counter.apply(op, ctx)
  return dispatch(op)
end

function counter.query(op, ctx)
  if type(op) ~= "table" or (op.op ~= "get" and op.op ~= "list") then
    vsr.fail(counter.MALFORMED, "only get and list can run as a query")
  end
  return dispatch(op)
end

function counter.snapshot()
  return {values = vsr.map(values), updates = updates}
end

function counter.restore(s)
  values = {}
  for name, v in pairs(s.values) do
    values[name] = v
  end
  updates = s.updates
end

function counter.examples()
  local ops = {}
  local names = {"a", "b", "c", "d"}
  for i = 1, 40 do
    local r = math.random(1, 5)
    if r == 1 then
      ops[i] = {op = "list"}
    elseif r == 2 then
      ops[i] = {op = "add_many", names = {"a", names[math.random(1, 4)], i % 7 == 0 and 42 or "b"},
                delta = 1}
    elseif r == 3 then
      ops[i] = {op = "reset", name = names[math.random(1, 4)]}
    else
      ops[i] = {op = "add", name = names[math.random(1, 4)], delta = math.random(-5, 5)}
    end
  end
  return ops
end

return counter
