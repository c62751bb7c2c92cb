-- vsr/dedup/fifo.lua - dedup policy: evict the session registered first,
-- however active it is. It keeps its own count of commits per session to
-- prefer, among sessions registered at the same op, the least active one;
-- that count is part of the snapshot.
local policy = {}

local commits = {} -- session id -> operations committed since registration

function policy.commit(ctx)
  if ctx.session ~= 0 then
    commits[ctx.session] = (commits[ctx.session] or 0) + 1
  end
end

function policy.evict(sessions)
  local best = sessions[1]
  for i = 2, #sessions do
    local s = sessions[i]
    if s.registered_op < best.registered_op
      or (s.registered_op == best.registered_op
          and (commits[s.session] or 0) < (commits[best.session] or 0)) then
      best = s
    end
  end
  commits[best.session] = nil
  return best.session
end

function policy.snapshot()
  return commits
end

function policy.restore(state)
  commits = {}
  for session, n in pairs(state) do
    commits[session] = n
  end
end

return policy
