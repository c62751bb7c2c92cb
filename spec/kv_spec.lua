-- kv_spec.lua - statemachines/kv.lua through the host: versions, lin-kv semantics, errors.
local testkit = require "vsr.testkit"

local PATH = "statemachines/kv.lua"

describe("kv.lua", function()
  local sm
  before_each(function()
    sm = testkit.load(PATH)
  end)

  it("puts and gets with versions starting at 1", function()
    assert.same({version = 1}, sm:ok({op = "put", key = "a", value = "x"}))
    assert.same({version = 2}, sm:ok({op = "put", key = "a", value = {1, 2, 3}}))
    assert.same({value = {1, 2, 3}, version = 2}, sm:ok({op = "get", key = "a"}))
  end)

  it("keeps integer and string keys apart", function()
    sm:ok({op = "write", key = 1, value = "int"})
    sm:ok({op = "write", key = "1", value = "str"})
    assert.same("int", sm:ok({op = "read", key = 1}).value)
    assert.same("str", sm:ok({op = "read", key = "1"}).value)
  end)

  it("reports a missing key as error 20", function()
    local code, msg = sm:fails({op = "get", key = "nope"})
    assert.equal(20, code)
    assert.matches("does not exist", msg)
    assert.equal(20, (sm:fails({op = "cas", key = "nope", from = 1, to = 2})))
    assert.equal(20, (sm:fails({op = "delete", key = "nope"})))
  end)

  it("cas succeeds only from the current value, else error 22", function()
    sm:ok({op = "write", key = "c", value = 1})
    local code, msg = sm:fails({op = "cas", key = "c", from = 2, to = 3})
    assert.equal(22, code)
    assert.matches("expected 2, found 1", msg)
    assert.same({version = 2}, sm:ok({op = "cas", key = "c", from = 1, to = 3}))
    assert.equal(3, sm:ok({op = "read", key = "c"}).value)
  end)

  it("cas compares table values deeply", function()
    sm:ok({op = "put", key = "t", value = {a = 1, b = {2, 3}}})
    sm:ok({op = "cas", key = "t", from = {b = {2, 3}, a = 1}, to = "done"})
    assert.equal("done", sm:ok({op = "get", key = "t"}).value)
  end)

  it("version preconditions on put and delete", function()
    assert.equal(22, (sm:fails({op = "put", key = "v", value = 1, version = 3})))
    sm:ok({op = "put", key = "v", value = 1, version = 0}) -- 0: must not exist
    assert.equal(22, (sm:fails({op = "put", key = "v", value = 2, version = 0})))
    sm:ok({op = "put", key = "v", value = 2, version = 1})
    assert.equal(22, (sm:fails({op = "delete", key = "v", version = 1})))
    assert.same({version = 2}, sm:ok({op = "delete", key = "v", version = 2}))
    assert.equal(20, (sm:fails({op = "get", key = "v"})))
  end)

  it("a failed operation changes nothing", function()
    sm:ok({op = "put", key = "a", value = 1})
    local before = sm:digest()
    sm:fails({op = "cas", key = "a", from = 9, to = 10})
    sm:fails({op = "put", key = "a", value = 5, version = 7})
    sm:fails({op = "frobnicate"})
    assert.equal(before, sm:digest())
  end)

  it("rejects malformed operations with error 12", function()
    assert.equal(12, (sm:fails({op = "put", key = {}, value = 1})))
    assert.equal(12, (sm:fails({op = "put", key = "k"})))
    assert.equal(12, (sm:fails({op = "bogus"})))
    assert.equal(12, (sm:fails("not a map")))
  end)

  it("answers get as a local query, and refuses writes there", function()
    sm:ok({op = "put", key = "q", value = 7})
    local ok, r = sm:query({op = "get", key = "q"})
    assert.is_true(ok)
    assert.equal(7, r.value)
    local ok2, err = sm:query({op = "put", key = "q", value = 8})
    assert.is_false(ok2)
    assert.matches("^12: ", err)
    assert.equal(7, sm:ok({op = "get", key = "q"}).value)
  end)

  it("survives a snapshot/restore round trip", function()
    for i = 1, 50 do
      sm:ok({op = "put", key = "k" .. i, value = i})
    end
    local other = sm:roundtrip()
    assert.same({value = 17, version = 1}, other:ok({op = "get", key = "k17"}))
  end)

  it("agrees with a simple model on a random history", function()
    local seed = tonumber(os.getenv("SEED") or "") or os.time()
    print("kv model history seed: " .. seed .. " (rerun with SEED=" .. seed .. ")")
    math.randomseed(seed)
    local model = {} -- key -> {value, version}
    for i = 1, 2000 do
      local key = "k" .. math.random(1, 20)
      local r = math.random(1, 5)
      local op
      if r == 1 then
        op = {op = "get", key = key}
      elseif r == 2 then
        op = {op = "put", key = key, value = i}
      elseif r == 3 then
        op = {op = "delete", key = key}
      else
        op = {op = "cas", key = key, from = math.random(1, i), to = i}
        if math.random(1, 3) == 1 and model[key] then
          op.from = model[key][1] -- often the right value
        end
      end
      local ok, reply = sm:apply(op)
      local cur = model[key]
      local expect_ok, expect
      if op.op == "get" then
        expect_ok = cur ~= nil
        expect = cur and {value = cur[1], version = cur[2]}
      elseif op.op == "put" then
        expect_ok = true
        model[key] = {op.value, (cur and cur[2] or 0) + 1}
        expect = {version = model[key][2]}
      elseif op.op == "delete" then
        expect_ok = cur ~= nil
        expect = cur and {version = cur[2]}
        model[key] = nil
      else
        expect_ok = cur ~= nil and cur[1] == op.from
        if expect_ok then
          model[key] = {op.to, cur[2] + 1}
          expect = {version = model[key][2]}
        end
      end
      assert.equal(expect_ok, ok, "op " .. i .. " (seed " .. seed .. ")")
      if ok then
        assert.same(expect, reply, "op " .. i .. " (seed " .. seed .. ")")
      else
        local code = testkit.error_code(reply)
        assert.equal((cur == nil) and 20 or 22, code, "op " .. i .. " (seed " .. seed .. ")")
      end
    end
  end)

  it("passes the determinism check on its examples and on a fixed history", function()
    testkit.assert_deterministic(PATH)
    local ops = {}
    for i = 1, 40 do
      ops[#ops + 1] = {op = "put", key = "k" .. (i % 5), value = i}
      ops[#ops + 1] = {op = "cas", key = "k" .. (i % 5), from = i, to = -i}
    end
    testkit.assert_deterministic(PATH, ops)
  end)
end)
