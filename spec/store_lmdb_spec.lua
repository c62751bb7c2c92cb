-- store_lmdb_spec.lua - vsr.store on LMDB: the same answers and digest as the
-- table store, checkpoints taken as commits and served in chunks from a read
-- transaction, installs that change nothing unless they succeed, and a
-- restart that finds the last checkpoint (never the writes after it).
local testkit = require "vsr.testkit"
local host = testkit.host

local OPS = "spec/fixtures/storeops.lua"
local KV = "statemachines/kv.lua"

local function open(path, opts)
  opts = opts or {}
  opts.statemachine = path
  local sm, err = host.open(opts)
  assert(sm, err)
  return sm
end

local function ok(sm, op, ctx)
  local good, reply = sm:apply(op, ctx)
  assert(good, reply)
  return reply
end

-- Every byte of checkpoint cp, fetched from `from` in chunks of `size`,
-- written to `to` in the order `order` gives (duplicates allowed).
local function transfer(from, to, cp, size, order)
  local chunks = {}
  for off = 0, cp.size - 1, size do
    chunks[#chunks + 1] = off
  end
  for _, i in ipairs(order and order(#chunks) or {}) do
    local off = chunks[i]
    assert.is_true(to:checkpoint_write(cp, off, assert(from:checkpoint_read(cp, off, size))))
  end
  if not order then
    for _, off in ipairs(chunks) do
      assert.is_true(to:checkpoint_write(cp, off, assert(from:checkpoint_read(cp, off, size))))
    end
  end
end

local function reversed_twice(n)
  local o = {}
  for i = n, 1, -1 do o[#o + 1] = i end
  for i = n, 1, -2 do o[#o + 1] = i end
  return o
end

local function fill(sm, n, prefix)
  for i = 1, n, 50 do
    local op = {}
    for k = i, math.min(n, i + 49) do
      op[#op + 1] = {"put", string.format("%s%05d", prefix or "k", k), {k, string.rep("v", k % 13)}}
    end
    ok(sm, op)
  end
end

describe("vsr.store on LMDB", function()
  it("is used by state machines whose whole state is in the store", function()
    assert.equal("lmdb", open(KV):store_backend())
    assert.equal("lmdb", open(OPS):store_backend())
    assert.equal("table", open("statemachines/counter.lua"):store_backend())
    assert.equal("table", open(KV, {store = "table"}):store_backend())
  end)

  it("answers and digests exactly as the table store", function()
    local a, b = open(OPS), open(OPS, {store = "table"})
    local script = {
      {{"put", "b", 2}, {"put", "d", 4}, {"put", "a", 1}, {"put", "\255", 9}, {"put", "B", 0}},
      {{"put", "c", 3}, {"delete", "d"}, {"scan"}, {"count"}},
      {{"scan", "a", "c"}, {"scan", "b", nil, 1}, {"scan", "x", "y"}, {"scan", nil, nil, 0}},
      {{"delete", "a"}, {"put", "a2", 5}, {"scan", "a", nil, 2}, {"pairs", "a", "b"}},
      {{"put", "b", "again"}, {"get", "b"}, {"has", "zz"}, {"count"}},
    }
    for _, op in ipairs(script) do
      assert.same(ok(b, op), ok(a, op))
      assert.equal(b:digest(), a:digest())
    end
    fill(a, 300)
    fill(b, 300)
    assert.equal(b:digest(), a:digest())
    assert.same(ok(b, {{"scan", "k00100", "k00120", 7}}), ok(a, {{"scan", "k00100", "k00120", 7}}))
    -- snapshots (vsrhost check, the test kit) are the same bytes
    assert.equal(b:snapshot(), a:snapshot())
  end)

  it("writes a key the operation read (the commit reuses the read's position) as the table store", function()
    -- The commit skips the B-tree search when LMDB's write cursor is still
    -- on the key being written: reads of the same key, of another, of a
    -- missing one, a failed operation between, deletes and size changes.
    local a, b = open(OPS), open(OPS, {store = "table"})
    local script = {
      {{"put", "b", 2}, {"put", "c", 3}, {"put", "d", string.rep("d", 3000)}},
      {{"get", "b"}, {"put", "b", "a longer value than before"}},
      {{"get", "b"}, {"put", "b", 1}},
      {{"get", "c"}, {"delete", "c"}, {"get", "c"}},
      {{"get", "zz"}, {"put", "zz", 1}},
      {{"get", "b"}, {"put", "a", "not b"}},
      {{"get", "d"}, {"put", "d", string.rep("e", 5000)}, {"get", "d"}},
      {{"get", "d"}, {"put", "d", "short"}},
      {{"get", "b"}, {"delete", "b"}, {"put", "b", 3}, {"get", "b"}},
      {{"get", "zz"}, {"put", "zz", 2}, {"fail"}},
      {{"get", "zz"}, {"put", "zz", 3}, {"get", "a"}, {"put", "a", 4}},
      {{"has", "a"}, {"delete", "a"}, {"count"}},
      {{"get", "b"}, {"delete", "b"}},
      {{"get", "b"}, {"put", "b", 5}},
    }
    for i, op in ipairs(script) do
      local ga, ra = a:apply(op)
      local gb, rb = b:apply(op)
      assert.equal(gb, ga, "op " .. i)
      assert.same(rb, ra, "op " .. i)
      assert.equal(b:digest(), a:digest(), "op " .. i)
    end
    assert.same(ok(b, {{"scan"}, {"count"}}), ok(a, {{"scan"}, {"count"}}))
    assert.equal(b:snapshot(), a:snapshot())
  end)

  it("takes a checkpoint that another replica installs from chunks in any order", function()
    local a, b = open(KV), open(KV)
    for i = 1, 400 do
      ok(a, {op = "put", key = "key" .. i, value = string.rep("x", i % 37)})
    end
    local cp = a:checkpoint_take(400, "client table at 400")
    assert.is_true(cp.size > 400 * 10)
    transfer(a, b, cp, 97, reversed_twice)
    local good, meta = b:checkpoint_install(cp)
    assert.is_true(good, meta)
    assert.equal("client table at 400", meta)
    assert.equal(a:digest(), b:digest())
    assert.same(ok(a, {op = "get", key = "key77"}), ok(b, {op = "get", key = "key77"}))
    -- the installed checkpoint is served again, byte for byte
    assert.equal(a:checkpoint_read(cp, 0, cp.size), b:checkpoint_read(cp, 0, cp.size))
  end)

  it("keeps the previous checkpoint readable while writes go on, not the one before", function()
    local a = open(OPS)
    fill(a, 200)
    local c1 = a:checkpoint_take(10, "m1")
    local image1 = a:checkpoint_read(c1, 0, c1.size)
    fill(a, 50, "later")
    local c2 = a:checkpoint_take(20, "m2")
    assert.is_true(c2.size > c1.size)
    -- c1 is served from its read transaction: unchanged by later writes
    assert.equal(image1, a:checkpoint_read(c1, 0, c1.size))
    assert.equal(image1:sub(1001, 1500), a:checkpoint_read(c1, 1000, 500))
    fill(a, 10, "last")
    a:checkpoint_take(30, "m3")
    assert.is_nil(a:checkpoint_read(c1, 0, 10))
    assert.truthy(a:checkpoint_read(c2, 0, 10))
  end)

  it("refuses a damaged image and changes nothing", function()
    local a, b = open(KV), open(KV)
    for i = 1, 100 do ok(a, {op = "put", key = "a" .. i, value = i}) end
    ok(b, {op = "put", key = "mine", value = 1})
    local before = b:digest()
    local cp = a:checkpoint_take(100, "m")
    transfer(a, b, cp, 64)
    local byte = a:checkpoint_read(cp, cp.size - 3, 1)
    b:checkpoint_write(cp, cp.size - 3, string.char((byte:byte() + 1) % 256))
    local good, why = b:checkpoint_install(cp)
    assert.is_false(good)
    assert.equal("corrupt durable state", why)
    assert.equal(before, b:digest())
    assert.same({value = 1, version = 1}, ok(b, {op = "get", key = "mine"}))
    -- the good bytes again: now it installs
    transfer(a, b, cp, 64)
    assert.is_true((b:checkpoint_install(cp)))
    assert.equal(a:digest(), b:digest())
  end)

  it("changes nothing when the core refuses the checkpoint's client table", function()
    local a, b = open(KV), open(KV)
    for i = 1, 50 do ok(a, {op = "put", key = "a" .. i, value = i}) end
    ok(b, {op = "put", key = "mine", value = 1})
    local before = b:digest()
    local cp = a:checkpoint_take(50, "m")
    transfer(a, b, cp, 128)
    assert.is_false((b:checkpoint_install(cp, true)))
    assert.equal(before, b:digest())
    assert.same({value = 1, version = 1}, ok(b, {op = "get", key = "mine"}))
  end)

  it("changes nothing when restoring the checkpoint's other state fails", function()
    local opts = {dedup = "spec/fixtures/failing_policy.lua"}
    local a, b = open(KV, opts), open(KV, opts)
    ok(a, {op = "put", key = "poison", value = 1}, {session = 666, request = 1})
    ok(b, {op = "put", key = "mine", value = 1})
    local before = b:digest()
    local cp = a:checkpoint_take(1, "m")
    transfer(a, b, cp, 256)
    local good, why = b:checkpoint_install(cp)
    assert.is_false(good)
    assert.equal("state machine failed", why)
    assert.equal(before, b:digest())
    assert.same({value = 1, version = 1}, ok(b, {op = "get", key = "mine"}))
  end)

  it("restarts at its last checkpoint: later writes are not there to be applied twice", function()
    local dir = os.tmpname()
    os.remove(dir)
    local a = open(KV, {store_dir = dir, store_sync = true})
    for i = 1, 30 do ok(a, {op = "put", key = "k" .. i, value = i}) end
    local cp = a:checkpoint_take(30, "table at 30")
    local at_checkpoint = a:digest()
    for i = 1, 5 do ok(a, {op = "put", key = "k" .. i, value = -i}) end
    assert.are_not.equal(at_checkpoint, a:digest())
    a:close() -- a crash: the write transaction is never committed
    local b = open(KV, {store_dir = dir, store_sync = true})
    local got, meta = b:checkpoint_open()
    assert.same(cp, got)
    assert.equal("table at 30", meta)
    assert.equal(at_checkpoint, b:digest())
    assert.same({value = 1, version = 1}, ok(b, {op = "get", key = "k1"}))
    b:close()
    -- not durable: a store opened without sync starts empty
    local c = open(KV, {store_dir = dir})
    assert.equal(0, (c:checkpoint_open()).op)
    c:close()
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
