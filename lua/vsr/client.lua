-- lua/vsr/client.lua - a Lua client of a vsrhost cluster, over the vsrclient C module.
--
--   local client = require "vsr.client"
--   local c = assert(client.connect("config/kv.lua"))     -- or {cluster=, addresses=}
--   local reply, err, outcome = c:put("k", "v")
--   -- outcome: "done" (err is nil; reply may be nil), "failed" (certainly
--   -- not applied) or "unknown" (may have been applied). Never a guess.
--   -- A state machine's error adds a fourth value: "refused" (vsr.fail) or
--   -- "script error" (a runtime error or spent budget in the script).
--   c:get("k"); c:cas("k", "v", "w"); c:delete("k"); c:call({ "get", "k" })
--   -- get reads outside the log (linearizable); c:get("k", { mode = "stale" })
--   -- asks any replica, c:get("k", { via_log = true }) goes through the log.
--   -- c:query(op [, mode]) runs any read-only operation through the state
--   -- machine's query hook; a fourth value { op = N, mode = M } says what
--   -- the answer reflects.
--   for _, r in ipairs(c:status()) do print(r.replica, r.status, r.view) end
--   c:close()
--
-- The kv operations are built by M.ops only, so a change of the kv state
-- machine's operation shape is a change of that table only.

local vsrclient = require "vsrclient"

local M = {}

-- Reads the client addresses and cluster id from a config file. The file is
-- a Lua chunk returning a table; it runs in an empty environment, as data.
function M.load_config(path)
	local chunk, err = loadfile(path, "t", {})
	if not chunk then
		return nil, err
	end
	local ok, cfg = pcall(chunk)
	if not ok then
		return nil, path .. ": " .. tostring(cfg)
	end
	if type(cfg) ~= "table" then
		return nil, path .. ": expected the file to return a table"
	end
	if math.type(cfg.cluster) ~= "integer" then
		return nil, path .. ": cluster: expected an integer"
	end
	if type(cfg.clients) ~= "table" or #cfg.clients == 0 then
		return nil, path .. ": clients: expected a list of \"host:port\""
	end
	local addresses = {}
	for i, a in ipairs(cfg.clients) do
		if type(a) ~= "string" then
			return nil, ("%s: clients[%d]: expected \"host:port\""):format(path, i)
		end
		addresses[i] = a
	end
	local key_file
	if cfg.auth ~= nil then
		if type(cfg.auth) ~= "table" then
			return nil, path .. ": auth: expected a table"
		end
		key_file = cfg.auth.client_key
		if key_file ~= nil and type(key_file) ~= "string" then
			return nil, path .. ": auth.client_key: expected a path"
		end
		-- Relative to the config file, as vsrhost resolves it.
		if key_file ~= nil and key_file:sub(1, 1) ~= "/" then
			local dir = path:match("^(.*)/[^/]*$") or "."
			key_file = dir .. "/" .. key_file
		end
	end
	return { cluster = cfg.cluster, addresses = addresses, key_file = key_file }
end

-- Operations of the kv state machine (statemachines/kv.lua). Replies:
-- put/cas/delete -> {version = N}; get -> {value = V, version = N}. A missing
-- key or a failed cas is refused by the state machine: outcome "failed",
-- err "20: ..." (no such key) or "22: ..." (precondition failed).
M.ops = {
	put = function(key, value) return { op = "put", key = key, value = value } end,
	get = function(key) return { op = "get", key = key } end,
	cas = function(key, from, to) return { op = "cas", key = key, from = from, to = to } end,
	delete = function(key) return { op = "delete", key = key } end,
}

local Client = {}
Client.__index = Client

-- Applies any state-machine operation: returns reply, err, outcome [, kind]
-- (kind "refused" or "script error" when the state machine raised).
function Client:call(op)
	return self.c:call(op)
end

function Client:put(key, value) return self.c:call(M.ops.put(key, value)) end
-- Read-only: a query outside the log (mode "linearizable", "lease" or
-- "stale"), or through the log with { via_log = true }.
function Client:query(op, mode)
	return self.c:query(op, mode)
end

function Client:get(key, opts)
	if opts and opts.via_log then
		return self.c:call(M.ops.get(key))
	end
	return self.c:query(M.ops.get(key), opts and opts.mode)
end
function Client:cas(key, from, to) return self.c:call(M.ops.cas(key, from, to)) end
function Client:delete(key) return self.c:call(M.ops.delete(key)) end

-- One table per replica, in config order: replica, status, view, op,
-- commit, primary (replica and primary numbered from 1, like vsrhost
-- --replica), or error when it did not answer within timeout_ms.
function Client:status(timeout_ms)
	return self.c:status(timeout_ms)
end

-- Changes attempt_ms / call_ms for the calls that follow.
function Client:set_timeouts(t)
	self.c:set_timeouts(t)
end

function Client:session()
	return self.c:session()
end

function Client:close()
	self.c:close()
end

-- target: a config path, or { cluster = N, addresses = { "host:port", ... },
-- key_file = path (optional: the cluster's auth.client_key) }.
-- opts: attempt_ms, call_ms (see docs/clients.md).
function M.connect(target, opts)
	local where = target
	if type(target) == "string" then
		local err
		where, err = M.load_config(target)
		if not where then
			return nil, err
		end
	end
	opts = opts or {}
	local ok, c = pcall(vsrclient.connect, {
		cluster = where.cluster,
		addresses = where.addresses,
		key_file = where.key_file,
		attempt_ms = opts.attempt_ms,
		call_ms = opts.call_ms,
	})
	if not ok then
		return nil, c
	end
	return setmetatable({ c = c }, Client)
end

return M
