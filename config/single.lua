-- config/single.lua - one replica (no fault tolerance) hosting kv.lua:
-- the quickest way to try a state machine by hand.
return {
  cluster = 3,
  replicas = { "127.0.0.1:7021" },
  clients  = { "127.0.0.1:7121" },
  metrics  = { "127.0.0.1:9121" },
  statemachine = "../statemachines/kv.lua",
  data_dir = "../data/single",
  durability = "durable",  -- fsync; "memory" keeps nothing (tests, benchmarks: unsafe)
  log_level = "info",
}
