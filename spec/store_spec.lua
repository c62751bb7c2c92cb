-- store_spec.lua - vsr.store: buffered writes, ordered scans, copies, read-only queries.
local testkit = require "vsr.testkit"

local NIL = {} -- what a nil result looks like after encoding (an empty map)

describe("vsr.store", function()
  local sm
  before_each(function()
    sm = testkit.load("spec/fixtures/storeops.lua")
  end)

  it("sees its own buffered writes inside one operation", function()
    local r = sm:ok({{"put", "a", 1}, {"get", "a"}, {"delete", "a"}, {"get", "a"}, {"has", "a"}})
    assert.same({NIL, 1, NIL, NIL, false}, r)
  end)

  it("drops every write of a failed operation", function()
    sm:ok({{"put", "a", 1}})
    local d = sm:digest()
    sm:fails({{"put", "a", 2}, {"put", "b", 3}, {"delete", "a"}, {"fail"}})
    assert.equal(d, sm:digest())
    assert.same({1, NIL, 1}, sm:ok({{"get", "a"}, {"get", "b"}, {"count"}}))
  end)

  it("scans in byte order, merging buffered writes and deletes", function()
    sm:ok({{"put", "b", 2}, {"put", "d", 4}, {"put", "a", 1}, {"put", "\255", 9}, {"put", "B", 0}})
    local r = sm:ok({{"put", "c", 3}, {"delete", "d"}, {"scan"}})[3]
    assert.same({"B", "a", "b", "c", "\255"}, r.keys)
    assert.same({0, 1, 2, 3, 9}, r.values)
    r = sm:ok({{"scan", "a", "c"}, {"scan", "b", nil, 1}, {"scan", "x", "y"}})
    assert.same({"a", "b", "c"}, r[1].keys)
    assert.same({"b"}, r[2].keys)
    assert.same({}, r[3].keys)
  end)

  it("iterates with store.pairs", function()
    sm:ok({{"put", "k2", "two"}, {"put", "k1", "one"}, {"put", "z", "last"}})
    assert.same({"k1=one", "k2=two"}, sm:ok({{"pairs", "k", "k~"}})[1])
  end)

  it("counts keys, buffered ones included", function()
    sm:ok({{"put", "a", 1}, {"put", "b", 1}})
    assert.same({2, NIL, 3, NIL, 2}, sm:ok({{"count"}, {"put", "c", 1}, {"count"}, {"delete", "a"}, {"count"}}))
  end)

  it("hands out copies: changing a value read does not change the store", function()
    sm:ok({{"put", "t", {x = 1}}})
    assert.same({{x = 1}}, sm:ok({{"mutate", "t"}}))
  end)

  it("is read-only in query", function()
    sm:ok({{"put", "a", 1}})
    local ok, err = sm:query({{"put", "a", 2}})
    assert.is_false(ok)
    assert.matches("read%-only in query", err)
    assert.same({1}, select(2, sm:query({{"get", "a"}})))
  end)

  it("refuses non-string keys and nil values with a clear error", function()
    local _, msg = sm:fails({{"put", 1, "x"}})
    assert.matches("key must be a string, got number", msg)
    _, msg = sm:fails({{"put", "k"}})
    assert.matches("value is nil", msg)
  end)

  it("survives snapshot/restore with binary keys and nested values", function()
    sm:ok({{"put", "\0bin\1", {1, {2, {3}}}}, {"put", "plain", "v"}})
    local other = sm:roundtrip()
    assert.same({{1, {2, {3}}}}, other:ok({{"get", "\0bin\1"}}))
  end)
end)
