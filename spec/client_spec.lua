-- spec/client_spec.lua - the Lua client (vsr.client over the vsrclient C module) against real vsrhost clusters.
--
-- Starts a 1-replica and a 3-replica cluster on loopback (ports the kernel
-- chose, from BUILD/vsr_free_ports, so that concurrent runs never collide),
-- one vsrhost process per replica, drives
-- them through the client, kills replicas, and stops every process it
-- started in teardown, whether the tests passed or not. Waits are polls of
-- an observable event (a status answer, a process gone) against a deadline.
--
-- Run from the source root: lua5.4 /usr/bin/busted --cpath=BUILD/lua/?.so
--   --lpath=lua/?.lua spec/client_spec.lua   (VSR_BUILD=BUILD)

local client = require "vsr.client"

local build = os.getenv("VSR_BUILD") or "build"
local vsrhost = build .. "/vsrhost"
local function sh(cmd)
	local p = assert(io.popen(cmd, "r"))
	local out = p:read("a")
	p:close()
	return out
end

-- The source root: busted runs from it (PWD may be stale under ctest).
local root = sh("pwd"):gsub("%s+$", "")

local function now_s()
	-- os.clock is CPU time; the shell's date gives wall time in ns.
	return tonumber(sh("date +%s%N")) / 1e9
end

local function pause()
	-- Poll interval between two observations (not a synchronisation).
	os.execute("sleep 0.05")
end

local function alive(pid)
	return os.execute(("kill -0 %d 2>/dev/null"):format(pid)) == true
end

-- n distinct free loopback ports, chosen by the kernel (bind to port 0).
local function free_ports(n)
	local out = sh(("%s/vsr_free_ports %d"):format(build, n))
	local ports = {}
	for p in out:gmatch("%d+") do ports[#ports + 1] = tonumber(p) end
	assert(#ports == n, "vsr_free_ports gave no ports (build it: it is in " .. build .. ")")
	return ports
end

-- A cluster of n replicas on 2n free ports; its cluster id from the first.
local function make_cluster(name, n)
	local dir = sh("mktemp -d /tmp/vsr-client-spec-" .. name .. "-XXXXXX"):gsub("%s+$", "")
	local ports = free_ports(2 * n)
	local replicas, clients = {}, {}
	for i = 1, n do
		replicas[i] = ('"127.0.0.1:%d"'):format(ports[i])
		clients[i] = ('"127.0.0.1:%d"'):format(ports[n + i])
	end
	local config = dir .. "/cluster.lua"
	local f = assert(io.open(config, "w"))
	f:write(("return {\n  cluster = %d,\n  replicas = { %s },\n  clients = { %s },\n")
		:format(ports[1], table.concat(replicas, ", "), table.concat(clients, ", ")))
	f:write(('  statemachine = "%s/statemachines/kv.lua",\n'):format(root))
	f:write(('  data_dir = "%s/data",\n  durability = "memory",\n  log_level = "info",\n}\n')
		:format(dir))
	f:close()
	return { dir = dir, config = config, n = n, pids = {} }
end

-- i is the 0-based member index (as in status); vsrhost numbers from 1.
local function start_replica(cl, i)
	local cmd = ("%s %s --replica %d >>%s/replica-%d.log 2>&1 & echo $!")
		:format(vsrhost, cl.config, i + 1, cl.dir, i)
	cl.pids[i] = assert(tonumber(sh(cmd)), "could not start vsrhost")
end

local function kill_replica(cl, i, signal)
	local pid = cl.pids[i]
	if not pid then return end
	os.execute(("kill -%s %d 2>/dev/null"):format(signal or "KILL", pid))
	local deadline = now_s() + 10
	while alive(pid) and now_s() < deadline do pause() end
	if alive(pid) then os.execute(("kill -KILL %d 2>/dev/null"):format(pid)) end
	cl.pids[i] = nil
end

local function stop_cluster(cl)
	if not cl then return end
	for i = 0, cl.n - 1 do kill_replica(cl, i, "TERM") end
	os.execute(("rm -rf '%s'"):format(cl.dir))
end

local function logs(cl)
	return sh(("tail -n 20 %s/replica-*.log 2>/dev/null"):format(cl.dir))
end

-- Polls status until `want(replicas)` holds, or a replica process of `cl`
-- died; returns the last status.
local function wait_status(cl, c, want, seconds)
	local deadline = now_s() + (seconds or 20)
	local st
	repeat
		st = c:status(500)
		if want(st) then return st end
		for _, pid in pairs(cl.pids) do
			if not alive(pid) then return st end
		end
		pause()
	until now_s() > deadline
	return st
end

local function check_prerequisites()
	local f = io.open(vsrhost)
	assert(f, vsrhost .. " is missing: build vsrhost first (VSR_BUILD names the build folder)")
	f:close()
	f = io.open(root .. "/statemachines/kv.lua")
	assert(f, "statemachines/kv.lua is missing (run busted from the source root)")
	f:close()
end

local function normal_with_primary(count)
	return function(st)
		local normal, primary = 0, nil
		for _, r in ipairs(st) do
			if r.status == "normal" then
				normal = normal + 1
				if r.primary == r.replica then primary = r.replica end
			end
		end
		return normal >= count and primary ~= nil
	end
end

-- A cluster of n replicas, all started, a client connected, every replica
-- normal with a primary; returns the cluster and the client. On failure
-- nothing it started is left running.
local function start_cluster(name, n, call_ms)
	check_prerequisites()
	local cl = make_cluster(name, n)
	for i = 0, n - 1 do start_replica(cl, i) end
	local c, err = client.connect(cl.config, { attempt_ms = 500, call_ms = call_ms })
	local st = c and wait_status(cl, c, normal_with_primary(n))
	if not (st and normal_with_primary(n)(st)) then
		local why = (err or "the cluster did not start") .. ":\n" .. logs(cl)
		if c then c:close() end
		stop_cluster(cl)
		error(why)
	end
	return cl, c
end

describe("vsr.client", function()
	it("reports failed, never unknown, when no replica can be reached", function()
		-- A port nothing listens on: free a moment ago, and nothing here binds it.
		local nobody = ("127.0.0.1:%d"):format(free_ports(1)[1])
		local c = assert(client.connect({ cluster = 1, addresses = { nobody } },
			{ attempt_ms = 100, call_ms = 300 }))
		local reply, err, outcome = c:put("k", "v")
		assert.is_nil(reply)
		assert.equals("failed", outcome)
		assert.matches("could not register", err)
		c:close()
	end)

	it("refuses a config without client addresses with a clear message", function()
		local path = os.tmpname()
		local f = assert(io.open(path, "w"))
		f:write("return { cluster = 1 }")
		f:close()
		local c, err = client.connect(path)
		os.remove(path)
		assert.is_nil(c)
		assert.matches("clients: expected", err)
	end)
end)

describe("vsr.client on a 1-replica cluster", function()
	local cl, c

	setup(function()
		cl, c = start_cluster("one", 1, 5000)
	end)

	teardown(function()
		if c then c:close() end
		stop_cluster(cl)
	end)

	it("puts, gets, compares-and-sets and deletes", function()
		local r, err, outcome = c:put("alpha", "one")
		assert.equals("done", outcome, err)
		assert.is_nil(err)
		assert.equals(1, r.version)
		local v
		v, err, outcome = c:get("alpha")
		assert.equals("done", outcome, err)
		assert.same({ value = "one", version = 1 }, v)
		r, err, outcome = c:cas("alpha", "one", "two")
		assert.equals("done", outcome, err)
		assert.equals(2, r.version)
		v = c:get("alpha")
		assert.equals("two", v.value)
		-- A cas whose precondition fails is refused by the state machine:
		-- certainly not applied.
		r, err, outcome = c:cas("alpha", "one", "three")
		assert.is_nil(r)
		assert.equals("failed", outcome)
		assert.matches("^22:", err)
		_, err, outcome = c:delete("alpha")
		assert.equals("done", outcome, err)
		v, err, outcome = c:get("alpha")
		assert.is_nil(v)
		assert.equals("failed", outcome)
		assert.matches("^20:", err)
		assert.is_true(c:session() > 0)
	end)

	it("numbers requests within one session and keeps going", function()
		local session = c:session()
		for i = 1, 50 do
			local _, err, outcome = c:put("n" .. i, tostring(i))
			assert.equals("done", outcome, err)
		end
		assert.equals(session, c:session())
		local v = c:get("n50")
		assert.equals("50", v.value)
	end)

	it("passes any Lua value through a generic call", function()
		local value = { list = { 1, 2.5, "three" }, flag = true, nested = { a = { b = "c" } } }
		local _, err, outcome = c:call({ op = "put", key = 7, value = value })
		assert.equals("done", outcome, err)
		local v
		v, err, outcome = c:call({ op = "get", key = 7 })
		assert.equals("done", outcome, err)
		assert.same(value, v.value)
		-- A malformed operation is refused by the state machine.
		v, err, outcome = c:call({ "not", "a", "map" })
		assert.is_nil(v)
		assert.equals("failed", outcome)
		assert.matches("^12:", err)
	end)

	it("reads outside the log, and says what the answer reflects", function()
		local _, err, outcome = c:put("r1", "x")
		assert.equals("done", outcome, err)
		local before = c:status(1000)[1].op
		local v, info
		v, err, outcome, info = c:get("r1")
		assert.equals("done", outcome, err)
		assert.equals("x", v.value)
		assert.equals("linearizable", info.mode)
		assert.equals(before, info.op)
		v, err, outcome, info = c:get("r1", { mode = "stale" })
		assert.equals("done", outcome, err)
		assert.equals("x", v.value)
		assert.equals("stale", info.mode)
		-- a lease read without a configured drift bound is linearizable
		v, err, outcome, info = c:query({ op = "get", key = "r1" }, "lease")
		assert.equals("done", outcome, err)
		assert.equals("linearizable", info.mode)
		-- no read went through the log
		assert.equals(before, c:status(1000)[1].op)
		-- a write as a query is refused by the state machine, and changes nothing
		v, err, outcome = c:query({ op = "put", key = "r1", value = "y" })
		assert.is_nil(v)
		assert.equals("failed", outcome)
		assert.matches("^12:", err)
		assert.equals("x", c:get("r1").value)
		assert.equals("x", c:get("r1", { via_log = true }).value)
	end)

	it("reports status of the replica", function()
		local st = c:status(1000)
		assert.equals(1, #st)
		assert.equals("normal", st[1].status)
		assert.equals(1, st[1].replica)
		assert.equals(1, st[1].primary)
		assert.is_true(st[1].commit >= 1)
		-- its configuration fingerprint, from its HELLO (a replica always sends one)
		assert.is_true(math.type(st[1].config) == "integer" and st[1].config ~= 0)
	end)

	it("says failed once the only replica is gone and nothing was sent", function()
		local other = assert(client.connect(cl.config, { attempt_ms = 100, call_ms = 400 }))
		kill_replica(cl, 0)
		local reply, err, outcome = other:put("late", "x")
		assert.is_nil(reply)
		assert.equals("failed", outcome)
		assert.is_string(err)
		other:close()
	end)
end)

describe("vsr.client on a 3-replica cluster", function()
	local cl, c

	setup(function()
		cl, c = start_cluster("three", 3, 10000)
	end)

	teardown(function()
		if c then c:close() end
		stop_cluster(cl)
	end)

	it("writes through the primary and reads the value back", function()
		-- one configuration file: one fingerprint on every replica
		local st = c:status(1000)
		for i = 2, #st do assert.equals(st[1].config, st[i].config) end
		local _, err, outcome = c:put("k", "v1")
		assert.equals("done", outcome, err)
		local v = c:get("k")
		assert.equals("v1", v.value)
	end)

	it("finds the new primary after the primary dies, keeping acknowledged writes", function()
		local st = c:status(1000)
		local primary
		for _, r in ipairs(st) do
			if r.status == "normal" and r.primary == r.replica then primary = r.replica end
		end
		assert.is_not_nil(primary)
		kill_replica(cl, primary - 1) -- status numbers from 1, pids from 0
		local _, err, outcome = c:put("after", "failover")
		assert.equals("done", outcome, err)
		local v = c:get("k")
		assert.equals("v1", v.value)
		st = c:status(1000)
		for _, r in ipairs(st) do
			if r.status == "normal" then
				assert.are_not.equal(primary, r.primary)
			end
		end
	end)

	it("says unknown when a request reached a primary that cannot commit it", function()
		-- Keep only the primary: it accepts the request but, without a
		-- quorum, can never commit it, so the request may still commit later.
		-- The backups are stopped at once (SIGSTOP) and the request sent
		-- right away: a primary that hears no quorum for two primary
		-- timeouts abdicates and refuses requests (a definite answer).
		local st = c:status(1000)
		local primary
		for _, r in ipairs(st) do
			if r.status == "normal" and r.primary == r.replica then primary = r.replica end
		end
		assert.is_not_nil(primary)
		for i = 0, 2 do
			if i ~= primary - 1 and cl.pids[i] then
				os.execute(("kill -STOP %d 2>/dev/null"):format(cl.pids[i]))
			end
		end
		-- Registering needs a quorum too: use the session registered before.
		c:set_timeouts({ attempt_ms = 300, call_ms = 1500 })
		local reply, err, outcome = c:put("lost", "maybe")
		assert.is_nil(reply)
		assert.equals("unknown", outcome, err)
		assert.matches("may have been applied", err)
		-- A new session cannot even register: nothing was sent, so failed.
		local other = assert(client.connect(cl.config, { attempt_ms = 300, call_ms = 1000 }))
		reply, err, outcome = other:put("never", "x")
		assert.is_nil(reply)
		assert.equals("failed", outcome, err)
		other:close()
		for i = 0, 2 do
			if i ~= primary - 1 then kill_replica(cl, i) end
		end
	end)
end)
