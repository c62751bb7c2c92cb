-- codec_spec.lua - msgpack <-> Lua conversion as the host does it: lossless and canonical.
local host = require "vsrhost"

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function roundtrip(v)
  return host.decode(host.encode(v))
end

describe("msgpack codec", function()
  it("keeps integers integers and floats floats", function()
    assert.equal("integer", math.type(roundtrip(3)))
    assert.equal("float", math.type(roundtrip(3.0)))
    assert.equal(math.maxinteger, roundtrip(math.maxinteger))
    assert.equal(math.mininteger, roundtrip(math.mininteger))
    assert.equal(0.1, roundtrip(0.1))
    assert.equal("cb3ff0000000000000", hex(host.encode(1.0)))
    assert.equal("01", hex(host.encode(1)))
    assert.equal("ff", hex(host.encode(-1)))
    assert.equal("cd0100", hex(host.encode(256)))
  end)

  it("round-trips nil, booleans, strings with zero bytes, nested tables", function()
    assert.is_nil(roundtrip(nil))
    assert.is_true(roundtrip(true))
    assert.is_false(roundtrip(false))
    assert.equal("a\0b", roundtrip("a\0b"))
    local v = {list = {1, "two", {three = 3}}, [5] = false, [true] = "yes", [1.5] = "float key"}
    assert.same(v, roundtrip(v))
  end)

  it("encodes maps with keys in canonical order", function()
    assert.equal(hex(host.encode({b = 1, a = 2})), hex(host.encode({a = 2, b = 1})))
    assert.equal("82a16102a16201", hex(host.encode({b = 1, a = 2})))
  end)

  it("orders mixed keys: booleans, numbers, strings", function()
    local bytes = host.encode({s = 1, [10] = 2, [-1] = 3, [true] = 4, [2.5] = 5})
    -- c3 (true) first, then -1 (ff), 2.5 (cb...), 10 (0a), then "s" (a173)
    local h = hex(bytes)
    local pos = {(h:find("c304")), (h:find("ff03")), (h:find("cb4004")), (h:find("0a02")),
      (h:find("a17301"))}
    assert.equal(5, #pos)
    for i = 2, #pos do
      assert.is_true(pos[i] > pos[i - 1])
    end
  end)

  it("treats the empty table as an array unless marked as a map", function()
    assert.equal("90", hex(host.encode({})))
    assert.equal("80", hex(host.encode(setmetatable({}, host.map_mt))))
    assert.equal("80", hex(host.encode(host.decode("\x80")))) -- an empty map stays a map
    assert.equal("90", hex(host.encode(host.decode("\x90"))))
  end)

  it("keeps nil inside decoded arrays (not at the end)", function()
    local t = host.decode("\x93\x01\xc0\x03")
    assert.equal(1, t[1])
    assert.is_nil(t[2])
    assert.equal(3, t[3])
    assert.equal("9301c003", hex(host.encode(t)))
  end)

  it("encodes an array in index order however its keys were inserted", function()
    -- the encoder takes small arrays' values from one traversal, whose
    -- order is the table's, not the indexes'
    local back = {}
    for i = 40, 1, -1 do back[i] = "v" .. i end
    local fwd = {}
    for i = 1, 40 do fwd[i] = "v" .. i end
    assert.equal(hex(host.encode(fwd)), hex(host.encode(back)))
    local small = {}
    small[3], small[1], small[2] = "c", "a", "b"
    assert.equal("93a161a162a163", hex(host.encode(small)))
    assert.equal(hex(host.encode({"a", "b", "c"})), hex(host.encode(small)))
    assert.same({"a", "b", "c"}, roundtrip(small))
    -- indexes 1..7 in the hash part of a table that held 8 string keys:
    -- traversed from 7 (Lua 5.4 puts integer k at node k % 7)
    local t = {a = 1, b = 2, c = 3, d = 4, e = 5, f = 6, g = 7, h = 8}
    for _, k in ipairs({"a", "b", "c", "d", "e", "f", "g", "h"}) do t[k] = nil end
    for i = 1, 7 do t[i] = "v" .. i end
    assert.are_not.equal(1, next(t)) -- the case this test is for
    assert.equal(hex(host.encode({"v1", "v2", "v3", "v4", "v5", "v6", "v7"})), hex(host.encode(t)))
  end)

  it("encodes a table with holes as a map unless marked as an array", function()
    assert.equal("820101" .. "0303", hex(host.encode({[1] = 1, [3] = 3})))
    assert.equal("9301c003", hex(host.encode(setmetatable({[1] = 1, [3] = 3}, host.array_mt))))
  end)

  it("refuses values msgpack cannot carry", function()
    assert.has_error(function() host.encode(print) end)
    assert.has_error(function() host.encode({f = function() end}) end)
    local cyc = {}
    cyc.self = cyc
    assert.has_error(function() host.encode(cyc) end, "encode: value nested deeper than 64 levels (or a cycle)")
  end)

  it("refuses malformed or unsupported msgpack with a reason", function()
    local v, err = host.decode("\xcf\xff\xff\xff\xff\xff\xff\xff\xff")
    assert.is_nil(v)
    assert.matches("does not fit a Lua integer", err)
    v, err = host.decode("\xd4\x01\x02")
    assert.matches("ext types", err)
    v, err = host.decode("\x92\x01")
    assert.matches("malformed msgpack at byte 1", err)
    v, err = host.decode("\xa5ab")
    assert.matches("string runs past the end", err)
    v, err = host.decode("\x01\x02")
    assert.matches("trailing bytes", err)
    v, err = host.decode("\xdd\xff\xff\xff\xff")
    assert.matches("larger than the input", err)
    v, err = host.decode("\x81\xc0\x01")
    assert.matches("map key is nil", err)
    v, err = host.decode(string.rep("\x91", 100) .. "\x01")
    assert.matches("deeper than 64", err)
  end)

  it("round-trips random values and re-encodes them to the same bytes", function()
    local seed = tonumber(os.getenv("SEED") or "") or os.time()
    print("codec random values seed: " .. seed .. " (rerun with SEED=" .. seed .. ")")
    math.randomseed(seed)
    local function value(depth)
      local r = math.random(1, depth > 3 and 6 or 8)
      if r == 1 then return math.random(math.mininteger, math.maxinteger)
      elseif r == 2 then return math.random(-100, 100)
      elseif r == 3 then return (math.random() - 0.5) * 10 ^ math.random(-5, 5)
      elseif r == 4 then
        local n = math.random(0, 40)
        local b = {}
        for i = 1, n do b[i] = string.char(math.random(0, 255)) end
        return table.concat(b)
      elseif r == 5 then return math.random(1, 2) == 1
      elseif r == 6 then return "s" .. math.random(1, 1000)
      elseif r == 7 then
        local t = {}
        for i = 1, math.random(1, 6) do t[i] = value(depth + 1) end
        return t
      else
        local t = {}
        for _ = 1, math.random(1, 6) do t["k" .. math.random(1, 50)] = value(depth + 1) end
        t[math.random(100, 200)] = value(depth + 1)
        return t
      end
    end
    for i = 1, 500 do
      local v = value(0)
      local bytes = host.encode(v)
      local back = host.decode(bytes)
      assert.same(v, back, "value " .. i .. " (seed " .. seed .. ")")
      assert.equal(bytes, host.encode(back), "value " .. i .. " (seed " .. seed .. ")")
    end
  end)

  it("decodes float32 and bin as float and string", function()
    assert.equal(1.5, host.decode("\xca\x3f\xc0\x00\x00"))
    assert.equal("float", math.type(host.decode("\xca\x3f\xc0\x00\x00")))
    assert.equal("ab", host.decode("\xc4\x02ab"))
  end)
end)
