-- pipeline.lua — wrk sends DEPTH requests back to back on a connection
-- before reading their responses (HTTP/1.1 pipelining), so the client's
-- cost per request falls about DEPTH times and the proxy, not wrk, is
-- what limits req/s. Usage: wrk -s pipeline.lua URL -- DEPTH
local depth = 1
local batch

function init(args)
    depth = tonumber(args[1]) or 1
    local one = wrk.format(nil, nil)
    batch = string.rep(one, depth)
end

function request()
    return batch
end
