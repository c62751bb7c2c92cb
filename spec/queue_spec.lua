-- queue_spec.lua - statemachines/queue.lua: FIFO delivery, ack, redelivery after the visibility timeout.
local testkit = require "vsr.testkit"

local PATH = "statemachines/queue.lua"
local MS = 1000000

describe("queue.lua", function()
  local sm, n
  before_each(function()
    sm = testkit.load(PATH)
    n = 0
  end)
  local function at(t, o)
    n = n + 1
    local ok, r = sm:apply(o, {op = n, timestamp = t * MS})
    assert(ok, r)
    return r
  end

  it("delivers oldest first", function()
    at(0, {op = "enqueue", queue = "q", item = "a"})
    at(0, {op = "enqueue", queue = "q", item = "b"})
    assert.same({id = 1, item = "a", deliveries = 1}, at(1, {op = "dequeue", queue = "q"}))
    assert.same({id = 2, item = "b", deliveries = 1}, at(1, {op = "dequeue", queue = "q"}))
    assert.is_nil(at(1, {op = "dequeue", queue = "q"}))
  end)

  it("peeks at the next message without taking it, also as a query", function()
    at(0, {op = "enqueue", queue = "q", item = "a"})
    at(0, {op = "enqueue", queue = "q", item = "b"})
    assert.same({id = 1, item = "a", deliveries = 0}, at(1, {op = "peek", queue = "q"}))
    local ok, r = sm:query({op = "peek", queue = "q"})
    assert.is_true(ok)
    assert.same({id = 1, item = "a", deliveries = 0}, r)
    assert.same({id = 1, item = "a", deliveries = 1}, at(2, {op = "dequeue", queue = "q"}))
    -- the query sees the state as of the last applied op (timestamp 2 ms)
    ok, r = sm:query({op = "peek", queue = "q"})
    assert.is_true(ok)
    assert.same({id = 2, item = "b", deliveries = 0}, r)
    ok, r = sm:query({op = "stats", queue = "q"})
    assert.is_true(ok)
    assert.same({ready = 1, in_flight = 1}, r)
    -- writes are refused as a query, and change nothing
    local before = sm:digest()
    local ok2, err = sm:query({op = "dequeue", queue = "q"})
    assert.is_false(ok2)
    assert.equal(12, (testkit.error_code(err)))
    assert.equal(before, sm:digest())
    at(3, {op = "dequeue", queue = "q"})
    assert.is_nil(select(2, sm:query({op = "peek", queue = "q"})))
  end)

  it("redelivers an unacked message after the visibility timeout", function()
    at(0, {op = "enqueue", queue = "q", item = {job = 1}})
    assert.equal(1, at(10, {op = "dequeue", queue = "q", visibility_ms = 100}).deliveries)
    assert.is_nil(at(109, {op = "dequeue", queue = "q", visibility_ms = 100}))
    local again = at(110, {op = "dequeue", queue = "q", visibility_ms = 100})
    assert.same({id = 1, item = {job = 1}, deliveries = 2}, again)
  end)

  it("does not redeliver an acked message", function()
    at(0, {op = "enqueue", queue = "q", item = "x"})
    local m = at(1, {op = "dequeue", queue = "q", visibility_ms = 5})
    assert.same({acked = true}, at(2, {op = "ack", queue = "q", id = m.id}))
    assert.is_nil(at(100, {op = "dequeue", queue = "q"}))
    local ok, err = sm:apply({op = "ack", queue = "q", id = m.id}, {op = 99, timestamp = 0})
    assert.is_false(ok)
    assert.equal(20, (testkit.error_code(err)))
  end)

  it("keeps queues apart, even with names that share a prefix", function()
    at(0, {op = "enqueue", queue = "a", item = 1})
    at(0, {op = "enqueue", queue = "a/m", item = 2})
    assert.equal(1, at(1, {op = "dequeue", queue = "a"}).item)
    assert.is_nil(at(1, {op = "dequeue", queue = "a"}))
    assert.equal(2, at(1, {op = "dequeue", queue = "a/m"}).item)
  end)

  it("reports ready and in-flight counts", function()
    for i = 1, 3 do
      at(0, {op = "enqueue", queue = "q", item = i})
    end
    at(1, {op = "dequeue", queue = "q", visibility_ms = 50})
    assert.same({ready = 2, in_flight = 1}, at(2, {op = "stats", queue = "q"}))
    assert.same({ready = 3, in_flight = 0}, at(60, {op = "stats", queue = "q"}))
  end)

  it("round-trips and is deterministic", function()
    at(0, {op = "enqueue", queue = "q", item = "x"})
    at(1, {op = "dequeue", queue = "q"})
    sm:roundtrip()
    testkit.assert_deterministic(PATH)
  end)
end)
