-- pattern_spec.lua - the sandbox's metered pattern functions (src/luahost/vsrh_pattern.c)
-- give the same results and the same errors as Lua's own, on generated cases.
local testkit = require "vsr.testkit"

local SEED = tonumber(os.getenv("PATTERN_SEED") or "") or 20261204
local CASES = tonumber(os.getenv("PATTERN_CASES") or "") or 4000

local pieces = {
  "a", "b", "%a", "%d", "%s", "%w", "%A", "%S", "%p", "%x", "%l", "%u", "%c", "%g",
  ".", "[ab]", "[^a]", "[a-c]", "[%d]", "[]]", "[^]a]", "[a-]", "%%", "%.", "%]",
  "*", "+", "-", "?", "(", ")", "()", "%1", "%2", "%b()", "%bab", "%f[%a]", "%f[%s]",
  "^", "$", "x", " ", "%", "[", "%b", "%f", "%0", "%z",
}
local subject_chars = {"a", "b", "c", "x", " ", "1", "2", "(", ")", ".", "%", "]", "\0", "A"}

local rng_state = SEED
local function rnd(n)
  -- a small LCG, so the cases are the same on every machine for a seed
  rng_state = (rng_state * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
  return (rng_state >> 33) % n + 1
end

local function gen_pattern()
  local out = {}
  for _ = 1, rnd(6) do out[#out + 1] = pieces[rnd(#pieces)] end
  return table.concat(out)
end

local function gen_subject()
  local out = {}
  for _ = 1, rnd(12) - 1 do out[#out + 1] = subject_chars[rnd(#subject_chars)] end
  return table.concat(out)
end

-- The same fixture, run by plain Lua: Lua's own pattern functions.
local native = dofile("spec/fixtures/patterns.lua").apply

local function gen_op()
  local fns = {"find", "match", "gmatch", "gsub"}
  local op = {fn = fns[rnd(4)], s = gen_subject(), p = gen_pattern()}
  if rnd(3) == 1 then op.init = rnd(10) - 4 end
  if op.fn == "find" and rnd(4) == 1 then op.plain = true end
  if op.fn == "gsub" then
    local k = rnd(4)
    if k == 1 then op.repl = "<%0>"
    elseif k == 2 then op.repl = "%1-%%"
    elseif k == 3 then op.repl = {a = "A", b = false, x = 7}
    else op.repl_kind = "fn"; op.repl = ({"upper", "keep", "no"})[rnd(3)] end
    if rnd(3) == 1 then op.max = rnd(4) - 1 end
  end
  return op
end

-- msgpack has no "nil in an array" beyond n: compare as encoded values
local function normalise(r)
  local out = {ok = r.ok, n = r.n}
  for i = 1, r.n do
    local v = r[i]
    out[i] = v == nil and "<nil>" or v
  end
  if not r.ok and type(out[1]) == "string" then
    out[1] = out[1]:gsub("^[^:]*:%d+: ", "") -- the calling chunk's name and line
  end
  return out
end

describe("metered pattern functions", function()
  it("agree with Lua's own on " .. CASES .. " generated cases (seed " .. SEED .. ")", function()
    local sm = testkit.load("spec/fixtures/patterns.lua")
    local errors_seen, refused = 0, 0
    for i = 1, CASES do
      local op = gen_op()
      local want = normalise(native(op))
      local ok, got = sm:apply(op)
      if not ok then
        -- only the budget may stop a case (a pattern of ~11^6 steps)
        assert.matches("budget exhausted", got, 1, false, "case " .. i)
        refused = refused + 1
      else
        got = normalise(got)
      end
      if not want.ok then errors_seen = errors_seen + 1 end
      if ok and testkit.encode(got) ~= testkit.encode(want) then
        error(string.format("case %d (seed %d) differs: %s(%q, %q, init %s)\n  lua:     %s\n  sandbox: %s",
          i, SEED, op.fn, op.s, op.p, tostring(op.init),
          (want.ok and "" or "error ") .. tostring(want[1]) .. " / " .. tostring(want[2]),
          (got.ok and "" or "error ") .. tostring(got[1]) .. " / " .. tostring(got[2])))
      end
    end
    print(string.format("\n  %d cases, %d of them errors in both, %d refused by the budget",
      CASES, errors_seen, refused))
    assert.is_true(refused < CASES / 100)
    sm:close()
  end)

  it("keeps Lua's limits: 32 captures, 200 levels of matching", function()
    local sm = testkit.load("spec/fixtures/patterns.lua")
    local r = sm:ok({fn = "match", s = ("a"):rep(40), p = ("(a)"):rep(33)})
    assert.is_false(r.ok)
    assert.matches("too many captures", r[1])
    r = sm:ok({fn = "match", s = ("a"):rep(300), p = ("a?"):rep(250)})
    assert.same(native({fn = "match", s = ("a"):rep(300), p = ("a?"):rep(250)}).ok, r.ok)
  end)
end)
