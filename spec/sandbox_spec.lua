-- sandbox_spec.lua - escape attempts are refused with a clear error and the host stays healthy.
local testkit = require "vsr.testkit"

local EVIL = "spec/fixtures/evil.lua"

-- Each attempt: Lua source run inside apply(), and a pattern the error must match.
local attempts = {
  {"io.open", [[return io.open("/etc/passwd")]], "global 'io' is not available"},
  {"os.execute", [[return os.execute("true")]], "global 'os' is not available"},
  {"require \"os\"", [[return require("os")]], "module 'os' not found: the sandbox only loads"},
  {"require a path", [[return require("../../etc/passwd")]], "invalid module name"},
  {"package.loadlib", [[return package.loadlib("libc.so.6", "system")]],
   "global 'package' is not available"},
  {"load of a bytecode string", [[
     local f, err = load("\27Lua\84\0\25\147\13\10\26\10\4\8\8\120\86")
     error(err, 0)]], "attempt to load a binary chunk"},
  {"load in binary mode", [[return load("return 1", "x", "b")]], "binary chunks are not allowed"},
  {"string.dump", [[return string.dump(function() end)]], "field 'dump'"},
  {"string.dump through a string value", [[return ("").dump(print)]], "field 'dump'"},
  {"debug.sethook", [[debug.sethook(); return 1]], "global 'debug' is not available"},
  {"changing the string metatable", [[getmetatable("").__index = {}; return 1]],
   "attempt to index a boolean value"},
  {"replacing a string library function", [[string.rep = nil; return 1]],
   "library tables are read%-only"},
  {"infinite loop", [[while true do end]], "instruction budget exhausted"},
  {"infinite loop inside pcall", [[
     local n = 0
     while true do pcall(function() while true do end end); n = n + 1 end]],
   "instruction budget exhausted"},
  {"catching the budget error with xpcall", [[
     xpcall(function() while true do end end, function() return "caught" end)
     return "escaped"]], "instruction budget exhausted"},
  -- memory is charged as gas (bytes created), so an operation's outcome
  -- never depends on the heap; the hard cap is only a last line
  {"memory bomb", [[
     local t = {}
     for i = 1, 1e9 do t[i] = string.rep("x", 4096) .. i end]], "instruction budget exhausted"},
  {"memory bomb in one call", [[return string.rep("x", 1 << 30)]], "instruction budget exhausted"},
  {"memory bomb caught with pcall", [[
     pcall(function() local t = {} for i = 1, 1e9 do t[i] = {i} end end)
     return "escaped"]], "instruction budget exhausted"},
  -- the Lua stack limit or the memory budget, whichever comes first
  {"deep recursion", [[local function f(n) return f(n + 1) + 1 end return f(1)]],
   {"stack overflow", "instruction budget exhausted"}},
  {"deep recursion through pcall", [[
     local function f() local ok, e = pcall(f); error(e, 0) end
     f()]],
   {"stack overflow", "memory budget exhausted", "error in error handling"}},
  {"error object that is a table", [[
     error(setmetatable({}, {__tostring = function() while true do end end}))]],
   "error object is a table value"},
  {"collectgarbage", [[return collectgarbage("count")]], "global 'collectgarbage' is not available"},
  {"math.randomseed", [[math.randomseed(42)]], "math.randomseed is not available"},
  {"finalizers", [[setmetatable({}, {__gc = function() end})]], "__gc is not allowed"},
  {"weak tables", [[setmetatable({}, {__mode = "k"})]], "__mode is not allowed"},
  {"addresses through %p", [[return string.format("%p", {})]], "%%p shows an address"},
  {"weakening the array marker", [[vsr.array_mt.__mode = "v"]], "read%-only"},
  {"weakening the array marker with rawset", [[rawset(vsr.array_mt, "__mode", "v")]],
   "belongs to the host"},
  {"replacing a store function with rawset", [[rawset(vsr.store, "get", print)]],
   "belongs to the host"},
  {"keeping hidden state in ctx", [[local ctx = ...; ctx.hidden = 1]], "ctx is read%-only"},
  {"keeping hidden state in ctx with rawset", [[local ctx = ...; rawset(ctx, "hidden", 1)]],
   "belongs to the host"},
  {"dofile", [[return dofile("/etc/passwd")]], "global 'dofile' is not available"},
  {"coroutines", [[return coroutine.create(print)]], "global 'coroutine' is not available"},
}

describe("sandbox", function()
  local sm
  setup(function()
    -- the default budgets: the bombs must be stopped by gas, deterministically,
    -- never by the hard memory cap (whose verdict depends on the heap)
    sm = testkit.load(EVIL)
  end)

  for _, a in ipairs(attempts) do
    it("refuses: " .. a[1], function()
      local before = sm:digest()
      local code, msg = sm:fails({code = a[2]})
      assert.is_nil(code)
      testkit.assert_matches_any(msg, a[3])
      -- still healthy: same state, answers, memory back under the budget
      assert.equal(before, sm:digest())
      assert.equal(2, sm:ok({code = "return 1 + 1"}))
      assert.is_true(sm:stats().memory_bytes < 64 * 1024 * 1024)
      assert.is_nil(sm:failure())
    end)
  end

  it("counts spent budgets, and never reached the hard memory cap", function()
    local st = sm:stats()
    assert.is_true(st.budget_exhausted >= 6)
    assert.equal(0, st.memory_exhausted)
    assert.is_nil(sm:failure())
  end)

  it("stops the state machine (not the op) at the hard memory cap", function()
    -- state that grows op by op past the cap: the cap's verdict depends on
    -- the heap, so it stops the replica instead of failing one op
    local small = testkit.load("spec/fixtures/grow.lua", {memory = 8 * 1024 * 1024})
    local stopped
    for i = 1, 200 do
      local ok, msg = small:apply({n = 200})
      if not ok then stopped = msg break end
    end
    assert.is_truthy(stopped)
    assert.matches("hard cap", small:failure() or "")
    local ok, msg = small:apply({code = "return 1"})
    assert.is_false(ok)
    assert.matches("state machine stopped", msg)
    small:close()
  end)

  it("stops at exactly the same instruction on every instance", function()
    -- the smallest budget that lets this operation finish, found on one
    -- instance, is the same on instances whose pairs() orders differ
    local code = {code = [[
      local t, n = {}, 0
      for i = 1, 200 do t["k" .. i] = i end
      for _, v in pairs(t) do n = n + v end
      return n]]}
    local function finishes(budget, seed)
      local sm = testkit.load(EVIL, {instructions = budget, check_seed = seed})
      local ok = sm:apply(code)
      sm:close()
      return ok
    end
    local lo, hi = 1000, 100000 -- lo fails, hi finishes
    assert.is_false(finishes(lo, 1))
    assert.is_true(finishes(hi, 1))
    while hi - lo > 1 do
      local mid = (lo + hi) // 2
      if finishes(mid, 1) then hi = mid else lo = mid end
    end
    for seed = 2, 4 do
      assert.is_true(finishes(hi, seed), "seed " .. seed)
      assert.is_false(finishes(hi - 1, seed), "seed " .. seed)
    end
  end)

  it("has no addresses in tostring", function()
    assert.equal("table", sm:ok({code = "return tostring({})"}))
    assert.equal("function", sm:ok({code = "return string.format('%s', print)"}))
  end)

  it("gives a deterministic math.random per operation", function()
    local a = testkit.load(EVIL)
    local b = testkit.load(EVIL)
    local code = {code = "return {math.random(1, 1000000), math.random()}"}
    local ctx = {op = 7, seed = 99}
    assert.same(a:ok(code, ctx), b:ok(code, ctx))
    assert.is_not.same(a:ok(code, {op = 8, seed = 100}), a:ok(code, {op = 9, seed = 101}))
  end)

  it("sorts stably with table.sort, even with ties over 100 elements", function()
    local r = sm:ok({code = [[
      local t = {}
      for i = 1, 300 do t[i] = {k = i % 3, i = i} end
      table.sort(t, function(x, y) return x.k < y.k end)
      local out = {}
      for i = 1, 5 do out[i] = t[i].i end
      return out]]})
    assert.same({3, 6, 9, 12, 15}, r)
  end)

  it("reports undefined globals instead of reading nil", function()
    local _, msg = sm:fails({code = "return undefined_thing"})
    assert.matches("undefined global 'undefined_thing'", msg)
  end)

  it("routes print and warn to the host's log", function()
    sm:logs(true)
    sm:ok({code = "print('hello', 42); warn('careful'); return 0"})
    local logs = table.concat(sm:logs(), "\n")
    assert.matches("info: print: hello\t42", logs)
    assert.matches("warn: warn: careful", logs)
  end)
end)
