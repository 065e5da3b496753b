"""The Lua scripts of the stream that carries pushes and is the recovery log (see `broker`).

Each entry's size is stored with it (field `s`) and summed in a counter key, so that the log is bounded in
bytes as well as in entries without reading it.
"""

# KEYS: stream, byte counter. ARGV: payload, most entries, most bytes. Returns the new entry's id.
ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[2], 0) end
local size = #ARGV[1]
local id = redis.call('XADD', KEYS[1], '*', 'p', ARGV[1], 's', size)
local held = redis.call('INCRBY', KEYS[2], size)
local length = redis.call('XLEN', KEYS[1])
local most, bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
while length > 1 and (length > most or held > bytes) do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  local fields, gone = oldest[2], 0
  for i = 1, #fields, 2 do
    if fields[i] == 's' then gone = tonumber(fields[i + 1]) or 0 end
  end
  redis.call('XDEL', KEYS[1], oldest[1])
  held = redis.call('DECRBY', KEYS[2], gone)
  length = length - 1
end
return id
"""

# KEYS: stream, byte counter. ARGV: the first id to keep, most entries to delete. Returns how many it deleted.
TRIM_OLD = """
local old = redis.call('XRANGE', KEYS[1], '-', '(' .. ARGV[1], 'COUNT', tonumber(ARGV[2]))
for _, entry in ipairs(old) do
  local fields, gone = entry[2], 0
  for i = 1, #fields, 2 do
    if fields[i] == 's' then gone = tonumber(fields[i + 1]) or 0 end
  end
  redis.call('XDEL', KEYS[1], entry[1])
  redis.call('DECRBY', KEYS[2], gone)
end
return #old
"""
TRIM_BATCH = 1000  # entries deleted by one script call: Redis is not held long by any one
