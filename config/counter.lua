-- config/counter.lua - three replicas hosting statemachines/counter.lua
-- (plain Lua state with snapshot/restore hooks), on ports apart from kv's.
return {
  cluster = 2,
  replicas = { "127.0.0.1:7011", "127.0.0.1:7012", "127.0.0.1:7013" },
  clients  = { "127.0.0.1:7111", "127.0.0.1:7112", "127.0.0.1:7113" },
  metrics  = { "127.0.0.1:9111", "127.0.0.1:9112", "127.0.0.1:9113" },
  statemachine = "../statemachines/counter.lua",
  data_dir = "../data/counter",
  durability = "durable",  -- fsync; "memory" keeps nothing (tests, benchmarks: unsafe)
  log_level = "info",
}
