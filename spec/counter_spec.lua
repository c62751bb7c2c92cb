-- counter_spec.lua - statemachines/counter.lua: plain Lua state, atomic through host rollback.
local testkit = require "vsr.testkit"

local PATH = "statemachines/counter.lua"

describe("counter.lua", function()
  local sm
  before_each(function()
    sm = testkit.load(PATH)
  end)

  it("adds, gets and resets", function()
    assert.same({value = 5}, sm:ok({op = "add", name = "a", delta = 5}))
    assert.same({value = 3}, sm:ok({op = "add", name = "a", delta = -2}))
    assert.same({value = 3}, sm:ok({op = "get", name = "a"}))
    assert.same({value = 0}, sm:ok({op = "get", name = "never"}))
    assert.same({value = 0}, sm:ok({op = "reset", name = "a"}))
    assert.same({value = 0}, sm:ok({op = "get", name = "a"}))
  end)

  it("lists counters in name order", function()
    for _, n in ipairs({"zeta", "alpha", "mid", "beta"}) do
      sm:ok({op = "add", name = n, delta = #n})
    end
    local names = {}
    for i, e in ipairs(sm:ok({op = "list"})) do
      names[i] = e.name
    end
    assert.same({"alpha", "beta", "mid", "zeta"}, names)
  end)

  it("add_many is all or nothing", function()
    sm:ok({op = "add", name = "a", delta = 1})
    local before = sm:digest()
    local code = sm:fails({op = "add_many", names = {"a", "b", 42}, delta = 10})
    assert.equal(12, code)
    assert.equal(before, sm:digest())
    assert.same({value = 1}, sm:ok({op = "get", name = "a"}))
    assert.same({value = 0}, sm:ok({op = "get", name = "b"}))
    assert.same({values = {11, 10}}, sm:ok({op = "add_many", names = {"a", "b"}, delta = 10}))
  end)

  it("refuses to overflow and keeps the counter", function()
    sm:ok({op = "add", name = "big", delta = math.maxinteger})
    assert.equal(22, (sm:fails({op = "add", name = "big", delta = 1})))
    assert.same({value = math.maxinteger}, sm:ok({op = "get", name = "big"}))
  end)

  it("rolls back after many operations (replay beyond one base snapshot)", function()
    for i = 1, 600 do
      sm:ok({op = "add", name = "n" .. (i % 10), delta = i})
    end
    local before = sm:digest()
    sm:fails({op = "add_many", names = {"n1", "n2", false}, delta = 1})
    assert.equal(before, sm:digest())
    assert.equal(1, sm:stats().rollbacks)
  end)

  it("round-trips through snapshot/restore", function()
    sm:ok({op = "add", name = "x", delta = 7})
    local other = sm:roundtrip()
    assert.same({value = 7}, other:ok({op = "get", name = "x"}))
  end)

  it("answers queries without changing state", function()
    sm:ok({op = "add", name = "q", delta = 2})
    local ok, r = sm:query({op = "get", name = "q"})
    assert.is_true(ok)
    assert.same({value = 2}, r)
    assert.is_false((sm:query({op = "add", name = "q", delta = 1})))
  end)

  it("is deterministic", function()
    testkit.assert_deterministic(PATH)
  end)
end)
