-- dedup_spec.lua - dedup policies in Lua: deterministic choice, state in the snapshot, safe fallback.
local testkit = require "vsr.testkit"

local KV = "statemachines/kv.lua"

local function sessions(list)
  local out = {}
  for i, s in ipairs(list) do
    out[i] = {session = s[1], request = s[2] or 1, last_op = s[3], registered_op = s[4] or 0}
  end
  return out
end

describe("dedup policy", function()
  it("defaults to evicting the oldest last_op, ties to the lowest id", function()
    local sm = testkit.load(KV)
    -- {session, request, last_op, registered_op}, sorted by session
    assert.equal(2, sm.sm:evict(sessions({{1, 1, 50}, {2, 1, 10}, {3, 1, 30}})))
    assert.equal(1, sm.sm:evict(sessions({{4, 1, 10}, {7, 1, 10}, {9, 1, 30}})))
  end)

  it("fifo evicts the earliest registered and keeps its counts in the snapshot", function()
    local sm = testkit.load(KV, {dedup = "lua/vsr/dedup/fifo.lua"})
    -- sessions 1 and 2 registered at the same op; 2 has committed more
    sm:ok({op = "put", key = "a", value = 1}, {session = 2, request = 1})
    sm:ok({op = "put", key = "a", value = 2}, {session = 2, request = 2})
    sm:ok({op = "put", key = "a", value = 3}, {session = 1, request = 1})
    local list = sessions({{1, 1, 3, 5}, {2, 2, 2, 5}, {3, 1, 1, 9}})
    assert.equal(1, sm.sm:evict(list))
    -- the counts travel with the snapshot: a restored replica decides the same
    sm:ok({op = "put", key = "b", value = 1}, {session = 2, request = 3})
    local other = sm:roundtrip()
    local list2 = sessions({{2, 3, 4, 5}, {4, 1, 4, 5}})
    assert.equal(sm.sm:evict(list2), other.sm:evict(list2))
    assert.equal(2, other.sm:evict(list2)) -- session 4 has fewer commits (0)
  end)

  it("keeps the policy's state through a plain-state rollback", function()
    local sm = testkit.load("statemachines/counter.lua", {dedup = "lua/vsr/dedup/fifo.lua"})
    for i = 1, 3 do
      sm:ok({op = "add", name = "a", delta = 1}, {session = 5, request = i})
    end
    -- fails and is rolled back; its commit still counts for session 6
    sm:fails({op = "add_many", names = {"a", 1}, delta = 1}, {session = 6, request = 1})
    assert.equal(1, sm:stats().rollbacks)
    -- same registration op: the less active session (6, one commit) goes
    assert.equal(2, sm.sm:evict(sessions({{5, 3, 3, 1}, {6, 1, 4, 1}})))
  end)

  it("falls back to the built-in rule when the policy misbehaves, and says so", function()
    local sm = testkit.load(KV, {dedup = "spec/fixtures/bad_policy.lua"})
    assert.equal(2, sm.sm:evict(sessions({{1, 1, 50}, {2, 1, 10}})))
    local logs = table.concat(sm:logs(), "\n")
    assert.matches("dedup policy failed, evicting by the built%-in rule", logs)
    assert.matches("999999, which is not a session in the table", logs)
  end)

  it("a policy using pairs() chooses alike everywhere (canonical key order)", function()
    local ok, report = testkit.check_determinism("statemachines/kv.lua", nil,
      {dedup = "spec/fixtures/pairs_policy.lua"})
    assert.is_true(ok, report)
    assert.is_true((testkit.check_determinism("statemachines/kv.lua", nil,
      {dedup = "lua/vsr/dedup/fifo.lua"})))
  end)

  it("runs under the budget like any script", function()
    local many = {}
    for i = 1, 65536 do
      many[i] = {session = i, request = 1, last_op = 100000 - i, registered_op = 0}
    end
    local sm = testkit.load(KV)
    assert.equal(65536, sm.sm:evict(many))
  end)
end)
