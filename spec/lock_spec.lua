-- lock_spec.lua - statemachines/lock.lua: leases on the primary's timestamp, fencing tokens.
local testkit = require "vsr.testkit"

local PATH = "statemachines/lock.lua"
local MS = 1000000 -- ns

describe("lock.lua", function()
  local sm, op
  before_each(function()
    sm = testkit.load(PATH)
    op = 0
  end)
  -- applies at time t (ms)
  local function at(t, o)
    op = op + 1
    return sm:apply(o, {op = op, timestamp = t * MS})
  end

  it("grants a free lock with token 1 and refuses another owner", function()
    local ok, r = at(1000, {op = "acquire", name = "L", owner = "a", lease_ms = 100})
    assert.is_true(ok)
    assert.same({token = 1, expires = 1100 * MS}, r)
    local ok2, err = at(1050, {op = "acquire", name = "L", owner = "b", lease_ms = 100})
    assert.is_false(ok2)
    assert.equal(40, (testkit.error_code(err)))
  end)

  it("answers holder as a query, and refuses writes there", function()
    at(1000, {op = "acquire", name = "L", owner = "a", lease_ms = 100})
    local ok, r = sm:query({op = "holder", name = "L"})
    assert.is_true(ok)
    assert.same({owner = "a", token = 1, expires = 1100 * MS}, r)
    local before = sm:digest()
    local ok2, err = sm:query({op = "acquire", name = "L", owner = "b", lease_ms = 100})
    assert.is_false(ok2)
    assert.equal(12, (testkit.error_code(err)))
    assert.equal(before, sm:digest())
    -- as of the last applied op: expired once an op at a later time applied
    at(1200, {op = "holder", name = "other"})
    assert.is_nil(select(2, sm:query({op = "holder", name = "L"})))
  end)

  it("renews for the holder and keeps the token", function()
    at(0, {op = "acquire", name = "L", owner = "a", lease_ms = 100})
    local _, r = at(50, {op = "acquire", name = "L", owner = "a", lease_ms = 100})
    assert.same({token = 1, expires = 150 * MS}, r)
  end)

  it("expires by the log's timestamp and hands out a larger token", function()
    at(0, {op = "acquire", name = "L", owner = "a", lease_ms = 100})
    local ok, r = at(100, {op = "acquire", name = "L", owner = "b", lease_ms = 100})
    assert.is_true(ok)
    assert.equal(2, r.token)
    -- the stale holder's token no longer validates; the new one does
    assert.same({valid = false}, select(2, at(120, {op = "validate", name = "L", token = 1})))
    assert.same({valid = true}, select(2, at(120, {op = "validate", name = "L", token = 2})))
  end)

  it("releases only for the holder with its token", function()
    at(0, {op = "acquire", name = "L", owner = "a", lease_ms = 100})
    local ok, err = at(10, {op = "release", name = "L", owner = "b", token = 1})
    assert.is_false(ok)
    assert.equal(41, (testkit.error_code(err)))
    assert.is_false((at(10, {op = "release", name = "L", owner = "a", token = 9})))
    assert.is_true((at(10, {op = "release", name = "L", owner = "a", token = 1})))
    assert.is_nil(select(2, at(11, {op = "holder", name = "L"})))
    -- tokens keep growing after a release
    assert.equal(2, select(2, at(12, {op = "acquire", name = "L", owner = "c", lease_ms = 5})).token)
  end)

  it("cannot release an expired lease", function()
    at(0, {op = "acquire", name = "L", owner = "a", lease_ms = 10})
    assert.is_false((at(20, {op = "release", name = "L", owner = "a", token = 1})))
  end)

  it("validates arguments", function()
    assert.equal(12, (testkit.error_code(select(2, at(0, {op = "acquire", name = "L", owner = "a"})))))
    assert.equal(12, (testkit.error_code(select(2, at(0, {op = "acquire", name = "", owner = "a", lease_ms = 1})))))
    assert.equal(12, (testkit.error_code(select(2, at(0, {op = "steal", name = "L"})))))
  end)

  it("never reads a local clock: the same log gives the same answers later", function()
    local a = testkit.load(PATH)
    local b = testkit.load(PATH)
    local ops = {
      {op = "acquire", name = "L", owner = "a", lease_ms = 50},
      {op = "acquire", name = "L", owner = "b", lease_ms = 50},
      {op = "holder", name = "L"},
    }
    for i, o in ipairs(ops) do
      assert.same({a:apply(o, {op = i, timestamp = i * 40 * MS})},
                  {b:apply(o, {op = i, timestamp = i * 40 * MS})})
    end
  end)

  it("round-trips and is deterministic", function()
    at(0, {op = "acquire", name = "L", owner = "a", lease_ms = 100})
    sm:roundtrip()
    testkit.assert_deterministic(PATH)
  end)
end)
