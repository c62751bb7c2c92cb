-- config_spec.lua - the shipped configs load; malformed ones are rejected naming file, key and expectation.
local host = require "vsrhost"

local DIR = "spec/fixtures/config/"

-- file -> the message after "<path>: "
local malformed = {
  replica_not_string = 'replicas%[2%]: expected "host:port" %(port 1%-65535%), got 42',
  bad_port = 'replicas%[1%]: expected "host:port" %(port 1%-65535%), got "127.0.0.1:99999"',
  bad_host = 'replicas%[1%]: expected "host:port" %(port 1%-65535%), got "local host:7001"',
  unknown_key = 'replica: unknown key %(did you mean "replicas"%?',
  unknown_nested_key = 'timeouts.tick: unknown key %(did you mean "tick_ms"%?',
  missing_cluster = "cluster: expected an integer from 0 to %d+, got nothing %(the key is required%)",
  float_cluster = "cluster: expected an integer from 0 to %d+, got 1.5",
  clients_count = "clients: expected one address per replica %(3%), got 2",
  duplicate_address = "clients%[1%]: expected a distinct address, but 127.0.0.1:7001 is also replicas%[1%]",
  bad_durability = 'durability: expected "memory" or "durable", got "disk"',
  bad_log_level = 'log_level: expected "debug", "info", "warn" or "error", got 3',
  bad_log_format = 'log_format: expected "text" or "json", got "xml"',
  timeouts_relation = "timeouts.primary_ms: expected more than timeouts.heartbeat_ms %(500%)",
  limits_range = "limits.pipeline: expected an integer from 1 to 64, got 1000",
  too_many_replicas = "replicas: expected 1 to 9 addresses, got 10",
  metrics_not_list = 'metrics: expected a list of "host:port" strings, got "127.0.0.1:9101"',
  missing_statemachine = 'statemachine: expected a readable Lua file, but ".-nope.lua": No such file',
  not_a_table = "expected the file to return a table .-, got 42",
  syntax_error = "^spec/fixtures/config/syntax_error.lua:%d+: '}' expected",
  reads_env = "^spec/fixtures/config/reads_env.lua:2: global 'os' is not available in the sandbox",
  infinite_loop = "instruction budget exhausted",
}

describe("configuration", function()
  it("loads the shipped configurations", function()
    local kv = assert(host.config("config/kv.lua"))
    assert.equal(1, kv.cluster)
    assert.same({"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}, kv.replicas)
    assert.same({"127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"}, kv.clients)
    assert.same({"127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103"}, kv.metrics)
    assert.equal("statemachines/kv.lua", kv.statemachine)
    assert.equal("durable", kv.durability)
    assert.equal(1000000, kv.instructions_max)
    local single = assert(host.config("config/single.lua"))
    assert.equal(1, #single.replicas)
    local counter = assert(host.config("config/counter.lua"))
    assert.matches("counter.lua$", counter.statemachine)
  end)

  it("makes a config without a durability key durable", function()
    local c = assert(host.config(DIR .. "no_durability.lua"))
    assert.equal("durable", c.durability)
  end)

  it("fills defaults for optional sections", function()
    local c = assert(host.config("config/single.lua"))
    assert.equal(10, c.tick_ms)
    assert.equal(16, c.pipeline_max)
    assert.equal(1024, c.clients_max)
    assert.equal(268435456, c.memory_bytes_max)
  end)

  local names = {}
  for name in pairs(malformed) do
    names[#names + 1] = name
  end
  table.sort(names)
  assert(#names >= 10)
  for _, name in ipairs(names) do
    it("rejects " .. name, function()
      local path = DIR .. name .. ".lua"
      local c, err = host.config(path)
      assert.is_nil(c)
      assert.equal(path, err:sub(1, #path), "the message names the file: " .. err)
      assert.matches(malformed[name], err)
    end)
  end

  it("reports a missing file", function()
    local c, err = host.config(DIR .. "absent.lua")
    assert.is_nil(c)
    assert.matches("absent.lua: cannot open: No such file", err)
  end)
end)
