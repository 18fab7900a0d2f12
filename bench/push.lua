-- wrk script: POST Webcom status documents with unique id_sms values.
--
--   wrk -t2 -c32 -d10s -s bench/push.lua http://127.0.0.1:PORT/webhook -- STATES RUN
--
-- STATES: <state> elements per document (default: env STATES, else 1).
-- RUN:    a run number (0..89999, default: env RUN, else 0) so that ids never
--         repeat across runs against the same database.
-- id_sms = RUN * 1e11 + thread * 1e9 + per-thread counter: unique across
-- threads and runs (up to 1e9 states per thread and run, 100 threads), and
-- below 2^53, so exact in a Lua number.
-- done() prints one line: "WRK_JSON {...}" with rps, p50/p99 (ms), the count
-- of non-200 answers and of ids echoed back in <id_sms> tags.

local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

-- A realistic mix: mostly delivered, some read on Viber, failures, pending.
-- Each entry: element text, sms attribute, viber attribute, empty time?
local MIX = {
  {"deliver", "deliver", nil, false}, {"deliver", "deliver", nil, false},
  {"deliver", "deliver", nil, false}, {"deliver", "deliver", nil, false},
  {"deliver", "deliver", nil, false}, {"deliver", "deliver", nil, false},
  {"deliver", "deliver", nil, false}, {"deliver", "deliver", nil, false},
  {"read", "expired", "read", false}, {"read", nil, "read", false},
  {"deliver", nil, "deliver", false}, {"not_deliver", "not_deliver", nil, false},
  {"not_deliver", "not_deliver", nil, false}, {"expired", "expired", nil, false},
  {"expired", "expired", nil, false}, {"send", "send", nil, true},
  {"send", "send", nil, true}, {"partly_deliver", "partly_deliver", nil, false},
  {"deliver", "deliver", "deliver", false}, {"deliver", "deliver", nil, false},
}

-- Globals, not locals: done() reads them from each thread with thread:get().
states_per_doc, non200, acked, answered = 1, 0, 0, 0
local base, seq = 0, 0

function init(args)
  states_per_doc = tonumber(args[1] or os.getenv("STATES") or "1")
  local run = tonumber(args[2] or os.getenv("RUN") or "0")
  base = run * 1e11 + tid * 1e9
end

local function state_xml(id, now, kind)
  local text, sms, viber, pending = kind[1], kind[2], kind[3], kind[4]
  local parts = {'  <state id_sms="', string.format("%d", id), '" time="',
                 pending and "" or now, '"'}
  if sms then table.insert(parts, ' sms="' .. sms .. '"') end
  if viber then table.insert(parts, ' viber="' .. viber .. '"') end
  table.insert(parts, ">" .. text .. "</state>\n")
  return table.concat(parts)
end

local HEAD = '<?xml version="1.0" encoding="utf-8" ?>\n<response>\n'
local HEADERS = {["Content-Type"] = "application/xml; charset=utf-8"}

function request()
  local now = os.date("%Y-%m-%d %H:%M:%S")
  local doc = {HEAD}
  for _ = 1, states_per_doc do
    seq = seq + 1
    table.insert(doc, state_xml(base + seq, now, MIX[seq % #MIX + 1]))
  end
  table.insert(doc, "</response>\n")
  return wrk.format("POST", nil, HEADERS, table.concat(doc))
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    return
  end
  answered = answered + 1
  local pos = string.find(body, "</id_sms>", 1, true)
  while pos do
    acked = acked + 1
    pos = string.find(body, "</id_sms>", pos + 9, true)
  end
end

local function total(name)
  local sum = 0
  for _, thread in ipairs(threads) do sum = sum + thread:get(name) end
  return sum
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.3f, ' ..
    '"p99_ms": %.3f, "states_per_doc": %d, "answered_200": %d, "non200": %d, ' ..
    '"acked": %d, "socket_errors": %d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    threads[1]:get("states_per_doc"), total("answered"), total("non200"), total("acked"),
    e.connect + e.read + e.write + e.timeout))
end
