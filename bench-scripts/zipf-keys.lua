-- zipf-keys.lua — wrk script: GET /obj/K with K drawn from Zipf(ALPHA) over
-- 1..KEYS (rank K is key K), a fixed seed per thread, and a fixed number of
-- responses per thread, after which the thread stops.
--
--   wrk -t2 -c64 -d120s -s zipf-keys.lua URL -- KEYS ALPHA PER_THREAD SEED_BASE [DONE]
--
-- Thread i (1-based, in wrk's setup order) seeds its generator with
-- SEED_BASE + i, so `-t2 -- ... 0` draws the same two key sequences as two
-- `-t1` runs with SEED_BASE 0 and 1. A stopped thread leaves wrk waiting
-- out -d, so with DONE each thread also creates the file DONE.SEED when it
-- stops; the caller then sends wrk SIGINT, which ends the run and prints
-- the summary with the real elapsed time. At the end it prints one line:
--   zipf: requests=N hits=H other=O
-- hits: responses whose Cache-Status says "hit"; other: non-200 responses.

local threads = {}
local next_id = 0

function setup(thread)
    next_id = next_id + 1
    thread:set("id", next_id)
    table.insert(threads, thread)
end

local cdf, keys, limit, seed, done_file
-- Globals, so that done() can read them with thread:get().
done_count, hits, other = 0, 0, 0

function init(args)
    keys = tonumber(args[1]) or 20000
    local alpha = tonumber(args[2]) or 1.0
    limit = tonumber(args[3]) or 100000
    local seed_base = tonumber(args[4]) or 0
    cdf = {}
    local sum = 0
    for k = 1, keys do
        sum = sum + 1 / k ^ alpha
        cdf[k] = sum
    end
    for k = 1, keys do
        cdf[k] = cdf[k] / sum
    end
    done_file = args[5]
    seed = seed_base + id
    math.randomseed(seed)
end

local function draw()
    local u = math.random()
    local lo, hi = 1, keys
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if cdf[mid] < u then lo = mid + 1 else hi = mid end
    end
    return lo
end

function request()
    return wrk.format("GET", "/obj/" .. draw())
end

function response(status, headers, body)
    done_count = done_count + 1
    if status ~= 200 then
        other = other + 1
    end
    local cs = headers["Cache-Status"] or headers["cache-status"]
    if cs and cs:find("; hit", 1, true) then
        hits = hits + 1
    end
    if done_count == limit then
        wrk.thread:stop()
        if done_file then
            io.open(done_file .. "." .. seed, "w"):close()
        end
    end
end

function done(summary, latency, requests)
    local n, h, o = 0, 0, 0
    for _, t in ipairs(threads) do
        n = n + t:get("done_count")
        h = h + t:get("hits")
        o = o + t:get("other")
    end
    io.write(string.format("zipf: requests=%d hits=%d other=%d\n", n, h, o))
end
