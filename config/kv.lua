-- config/kv.lua - three replicas on this machine hosting statemachines/kv.lua.
-- Paths are relative to this file. See docs/config.md for every key.
return {
  cluster = 1,
  replicas = { "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003" },
  clients  = { "127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103" },
  metrics  = { "127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103" },
  statemachine = "../statemachines/kv.lua",
  dedup = "../lua/vsr/dedup/oldest.lua",
  data_dir = "../data/kv",
  durability = "durable",  -- fsync; "memory" keeps nothing (tests, benchmarks: unsafe)
  timeouts = { tick_ms = 10, heartbeat_ms = 50, primary_ms = 300,
               view_change_ms = 300, retry_ms = 100 },
  limits = { pipeline = 16, batch_requests = 256, clients = 1024,
             message_bytes = 16 * 1024 * 1024, checkpoint_interval = 4096,
             instructions = 1000000, memory_bytes = 256 * 1024 * 1024 },
  log_level = "info",
}
