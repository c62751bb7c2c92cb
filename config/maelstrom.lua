-- config/maelstrom.lua - vsrhost as a Maelstrom node (vsrhost --maelstrom).
-- Maelstrom's init message says how many nodes there are and which one this
-- is; the addresses below are placeholders (messages travel through
-- Maelstrom's network), but the list must be at least as long as the
-- number of nodes. Memory storage: Maelstrom's lin-kv does not restart nodes.
return {
  cluster = 9,
  replicas = { "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:5" },
  clients  = { "127.0.0.1:11", "127.0.0.1:12", "127.0.0.1:13", "127.0.0.1:14", "127.0.0.1:15" },
  statemachine = "../statemachines/kv.lua",
  data_dir = "../data/maelstrom",
  durability = "memory",
  timeouts = { tick_ms = 10, heartbeat_ms = 50, primary_ms = 300,
               view_change_ms = 300, retry_ms = 100 },
  log_level = "info",
}
