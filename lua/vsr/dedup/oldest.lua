-- vsr/dedup/oldest.lua - default dedup policy: evict the session idle the longest.
--
-- The core keeps the client table (session -> last request and its reply)
-- and asks this policy which session to drop when the table is full
-- (limits.clients sessions). `sessions` is an array sorted by session id;
-- each entry has session, request, last_op (op of the last committed
-- request) and registered_op. Return the session id to evict.
-- The choice must depend only on these values: every replica evicts the
-- same session. This policy is stateless, so it has no snapshot/restore.
local policy = {}

function policy.evict(sessions)
  local best = sessions[1]
  for i = 2, #sessions do
    local s = sessions[i]
    -- strictly older wins; on ties the earlier entry (lower id) stays chosen
    if s.last_op < best.last_op then
      best = s
    end
  end
  return best.session
end

return policy
