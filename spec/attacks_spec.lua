-- attacks_spec.lua - issue #9: hostile operations are refused with a clear error in bounded work.
--
-- Each attack runs inside apply() of spec/fixtures/evil.lua under the
-- DEFAULT budgets (1,000,000 units of gas, 256 MiB hard memory cap). Before
-- the cost model each of the "hangs" below ran for seconds to hours inside
-- one C call. The CPU time each refusal took is printed (a figure for the
-- notes, not an assertion: the ctest timeout is the bound in the suite).
local testkit = require "vsr.testkit"

local EVIL = "spec/fixtures/evil.lua"

local MB = 1024 * 1024

-- {name, code, pattern(s) the error must match}
local attacks = {
  {"string.rep of an empty string, maxinteger times",
   [[return string.rep("", math.maxinteger)]], "budget exhausted"},
  {"string.rep of 2^26 bytes in a loop",
   [[for i = 1, 1000 do local s = string.rep("x", 1 << 26) end]], "budget exhausted"},
  {"string.rep with a separator",
   [[return ("x"):rep(1 << 40, ",")]], "budget exhausted"},
  {"table.move over 2^63 slots",
   [[return table.move({}, 1, math.maxinteger - 1, 2, {})]], "budget exhausted"},
  {"table.move with C functions as metamethods",
   [[local mt = {__index = rawequal, __newindex = rawequal}
     local a, b = setmetatable({}, mt), setmetatable({}, mt)
     return table.move(a, 1, math.maxinteger - 1, 2, b)]], "budget exhausted"},
  {"table.unpack of a huge range",
   [[return table.unpack({}, 1, 1 << 40)]], "budget exhausted"},
  {"table.concat of a huge range",
   [[return table.concat(setmetatable({}, {__index = function() return "" end}), "", 1, 1 << 40)]],
   "budget exhausted"},
  {"table.concat of many references to one large string",
   [[local s = ("x"):rep(1 << 19)
     local t = {}
     for i = 1, 4000 do t[i] = s end
     return #table.concat(t)]], {"budget exhausted", "limit of %d+ bytes per string"}},
  {"exponential pattern backtracking",
   [[return (("a"):rep(60)):find(("a*"):rep(6) .. "b")]], "budget exhausted"},
  {"the trim idiom on 1 MiB of spaces",
   [[return ("x" .. (" "):rep((1 << 20) - 2) .. "x"):match("^%s*(.-)%s*$")]], "budget exhausted"},
  {"gsub with a quadratic pattern",
   [[return (("a"):rep(50000)):gsub("a-b", "")]], "budget exhausted"},
  {"gmatch with a quadratic pattern",
   [[local n = 0
     for m in (("a"):rep(50000)):gmatch("a-b") do n = n + 1 end
     return n]], "budget exhausted"},
  {"doubling a string with ..",
   [[local s = "x"
     for i = 1, 40 do s = s .. s end
     return #s]], {"budget exhausted", "string too long"}},
  {"== on two long strings in a loop",
   [[local a = ("x"):rep(1 << 20)
     local b = ("x"):rep((1 << 20) - 1) .. "x"
     local n = 0
     while true do if a == b then n = n + 1 end end]], "budget exhausted"},
  {"table.sort of many references to one large string",
   [[local s = ("x"):rep(1 << 19)
     local t = {}
     for i = 1, 20000 do t[i] = s end
     table.sort(t)]], "budget exhausted"},
  {"load of an 18 MB chunk",
   [[local chunk = ("local a = 1\n"):rep(80000)
     for i = 1, 20 do load(chunk) end]], "budget exhausted"},
  {"vsr.sorted_keys over 200k keys, many times",
   [[local t = {}
     for i = 1, 200000 do t[i] = i end
     for i = 1, 100 do vsr.sorted_keys(t) end]], "budget exhausted"},
  {"string.format with a huge width of arguments",
   [[local s = ("x"):rep(1 << 19)
     for i = 1, 1000 do string.format("%s%s%s%s", s, s, s, s) end]],
   {"budget exhausted", "string too long"}},
  {"string.byte of a whole long string",
   [[local s = ("x"):rep(1 << 20)
     for i = 1, 100 do local t = {s:byte(1, -1)} end]], {"budget exhausted", "string slice too long", "stack overflow"}},
  {"a reply of many references to one big table",
   [[local big = {}
     for i = 1, 100000 do big[i] = i end
     local r = {}
     for i = 1, 2048 do r[i] = big end
     return r]], {"budget exhausted", "encoded value exceeds"}},
  {"a reply nested 65 deep",
   [[local t = {}
     for i = 1, 64 do t = {t} end
     return t]], "nested deeper than 64"},
  {"a string longer than the sandbox's limit",
   [[return #(("x"):rep(1 << 20) .. "y")]], "string too long"},
  {"a weak table made by setting __mode after setmetatable",
   [[local mt = {}
     local t = setmetatable({}, mt)
     mt.__mode = "k"
     return 1]], "weak tables are not allowed"},
  {"a chain of 2000 __index tables walked in a loop",
   [[local t = {}
     for i = 1, 1990 do t = setmetatable({}, {__index = t}) end
     local x
     while true do x = t.missing end]], "a chain of more than 32 __index"},
  {"next() over table keys (address order)",
   [[local t = {[{}] = 1, [{}] = 2}
     return next(t)]], "order differs between replicas"},
  {"pairs() over table keys (address order)",
   [[local t = {[{}] = 1, [print] = 2}
     for k in pairs(t) do end]], "order differs between replicas"},
}

describe("attacks (issue #9)", function()
  local sm
  setup(function()
    sm = testkit.load(EVIL)
  end)
  teardown(function()
    sm:close()
  end)

  for _, a in ipairs(attacks) do
    it("refuses: " .. a[1], function()
      local before = sm:digest()
      local t0 = os.clock()
      local code, msg = sm:fails({code = a[2]})
      local cpu_ms = (os.clock() - t0) * 1000
      print(string.format("\n  %-60s %8.1f ms of CPU", a[1], cpu_ms))
      assert.is_nil(code)
      testkit.assert_matches_any(msg, a[3])
      -- the host is healthy and the state unchanged
      assert.is_nil(sm:failure())
      assert.equal(before, sm:digest())
      assert.equal(2, sm:ok({code = "return 1 + 1"}))
    end)
  end

  it("reports a runtime error as a script error, distinct from a vsr.fail refusal", function()
    local ok, msg, kind = sm:apply({code = "local t = nil; return t.x"})
    assert.is_false(ok)
    assert.equal("script error", kind)
    ok, msg, kind = sm:apply({code = "vsr.fail(7, 'no')"})
    assert.is_false(ok)
    assert.equal("7: no", msg)
    assert.equal("refused", kind)
    ok, msg, kind = sm:apply({code = "while true do end"})
    assert.equal("script error", kind)
    sm:logs(true)
    sm:apply({code = "error('boom')"})
    assert.matches("warn: evil.lua: op %d+ %(session %d+, request %d+%): script error: attempt:1: boom",
      table.concat(sm:logs(), "\n"))
  end)

  it("spends exactly the same budget on instances with different heap histories", function()
    -- the smallest budget that lets an operation finish (it makes long
    -- strings, string keys, a sort, a store write and a reply) is the same
    -- on a fresh instance and on one whose heap holds the garbage and the
    -- differently grown tables of earlier operations (which run, or fail,
    -- under the same budget: either way they leave garbage behind)
    local op = {code = [[
      local t = {}
      for i = 1, 300 do t["key" .. (i * 7919 % 300)] = ("v"):rep(i) .. i end
      local out = {}
      for k, v in pairs(t) do out[#out + 1] = k .. #v end
      table.sort(out)
      vsr.store.put("last", table.concat(out, ",", 1, 20))
      return {#out, (table.concat(out, ",")):gsub("key", "")}]]}
    local history = {code = [[
      local t = {}
      for i = 1, 3000 do t["k" .. i] = ("y"):rep(i % 200) end
      for i = 1, 3000, 2 do t["k" .. i] = nil end
      return 1]]}
    local function finishes(budget, with_history)
      local sm = testkit.load(EVIL, {instructions = budget})
      if with_history then
        for _ = 1, 3 do sm:apply(history) end
      end
      local ok = sm:apply(op)
      sm:close()
      return ok
    end
    local function threshold(with_history)
      local lo, hi = 1000, 2000000
      assert.is_false(finishes(lo, with_history))
      assert.is_true(finishes(hi, with_history))
      while hi - lo > 1 do
        local mid = (lo + hi) // 2
        if finishes(mid, with_history) then hi = mid else lo = mid end
      end
      return hi
    end
    local fresh, used = threshold(false), threshold(true)
    print("\n  the operation needs exactly " .. fresh .. " units, with or without history: " .. used)
    assert.equal(fresh, used)
  end)

  it("visits keys in canonical order with pairs and next", function()
    local r = sm:ok({code = [[
      local t = {}
      for _, k in ipairs({"theta", "delta", 3, "alpha", 1.5, true, 2}) do t[k] = 1 end
      local out = {}
      for k in pairs(t) do out[#out + 1] = tostring(k) end
      local k, n = next(t), {}
      while k ~= nil do n[#n + 1] = tostring(k); k = next(t, k) end
      return {table.concat(out, " "), table.concat(n, " ")}]]})
    assert.equal("true 1.5 2 3 alpha delta theta", r[1])
    assert.equal(r[1], r[2])
  end)

  it("leaves an array unchanged when a sort's comparator raises midway", function()
    local r = sm:ok({code = [[
      local t = {}
      for i = 1, 10 do t[i] = 11 - i end
      local calls = 0
      pcall(table.sort, t, function(a, b)
        calls = calls + 1
        if calls == 12 then error("midway") end
        return a < b
      end)
      return t]]})
    assert.same({10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, r)
  end)

  it("prints no addresses to the log", function()
    sm:logs(true)
    sm:ok({code = "print({}, print, setmetatable({}, {})); return 0"})
    local logs = table.concat(sm:logs(), "\n")
    assert.matches("print: table\tfunction\ttable", logs)
    assert.is_nil(logs:find("0x%x+"))
  end)

  it("accepts a reply nested exactly 64 deep", function()
    local r = sm:ok({code = "local t = {} for i = 1, 63 do t = {t} end return t"})
    assert.is_table(r)
  end)
end)

describe("plain-state attacks (issue #9)", function()
  it("rolls back a malformed op on counter.lua with 400k counters (restore has its own budget)",
    function()
      local sm = testkit.load("statemachines/counter.lua")
      for chunk = 0, 19 do
        local names = {}
        for i = 1, 20000 do names[i] = "c" .. (chunk * 20000 + i) end
        sm:ok({op = "add_many", names = names, delta = 1})
      end
      local before = sm:digest()
      local code = sm:fails({op = "add_many", names = {"a", "b", 7}, delta = 1})
      assert.equal(12, code)
      assert.is_nil(sm:failure())
      assert.equal(before, sm:digest())
      assert.same({value = 1}, sm:ok({op = "get", name = "c399999"}))
      sm:close()
    end)

  it("stops (never aborts) when snapshot() starts failing", function()
    local sm = testkit.load("spec/fixtures/failing_snapshot.lua")
    for i = 1, 300 do
      local ok = sm:apply({v = i})
      if not ok then break end
    end
    assert.matches("snapshot%(%) failed", sm:failure() or "")
    local ok, msg = sm:apply({v = 1})
    assert.is_false(ok)
    assert.matches("state machine stopped", msg)
    sm:close()
  end)

  it("stops (never aborts) when a replay after a rollback fails", function()
    local sm = testkit.load("spec/fixtures/replay_differs.lua")
    assert.is_true((sm:apply({op = "set"})))
    assert.is_false((sm:apply({op = "bad"})))
    assert.matches("not deterministic", sm:failure() or "")
    sm:close()
  end)

  it("meters the snapshot encoder: one 1 MiB string referenced many times", function()
    local sm = testkit.load("spec/fixtures/shared_string.lua", {memory = 64 * MB})
    for i = 1, 40 do
      if not sm:apply({n = 400}) then break end
    end
    -- either refused per op or the snapshot fails under its own budget:
    -- never an allocation far beyond the cap, never an abort
    local ok, err = sm.sm:snapshot()
    assert.is_true(ok == nil or type(ok) == "string")
    if not ok then
      assert.is_truthy(tostring(err):find("budget exhausted") or
                       tostring(err):find("encoded value exceeds"))
    end
    sm:close()
  end)
end)
