#!lua
--[[
  transfer.lua: move stock between a hot campaign's stock shards, one shard at a time.

  A shard's stock left is cfg.stock (its share) + counters.moved - counters.issued, the
  same figure claim.lua decides by. A transfer is two calls, each atomic on its own shard
  (each shard is its own hash slot, so no call can span two):
    lend    on the donor:     moved -= amount, and the transfer is logged in the donor's
                              transfers hash (id -> recipient and amount) in the same step;
    credit  on the recipient: moved += amount, once per transfer id (the credited set);
  then the log entry is removed (HDEL, gateway/shards/stock.py). A transfer lent but not
  credited (a crash between the two) stays in the log; whoever finds it credits it again,
  harmlessly: the credited set makes a second credit a no-op. So stock is never created
  (a credit without its lend is impossible: the amount comes from the log) and never lost
  (a logged lend is always finished).

  Input:
    KEYS[1]  cfg        hash   the shard's copy of the published campaign (stock: its share)
    KEYS[2]  counters   hash   issued, moved (borrowed - lent), received (credited in total)
    KEYS[3]  transfers  hash   transfer id -> "<recipient shard>\t<amount>", lent, unsettled
    KEYS[4]  credited   set    ids of transfers credited to this shard
    ARGV[1]  operation: lend | credit | peek
    lend:    ARGV[2] transfer id, ARGV[3] recipient shard, ARGV[4] amount wanted (>= 1)
             lends min(wanted, stock left); a repeated id lends nothing more and answers
             what it lent the first time
    credit:  ARGV[2] transfer id, ARGV[3] amount (>= 1)
    peek:    nothing more; writes nothing

  Output: { amount, left, pending, received, share }
    amount   lent (lend), credited now (credit: 0 when already credited), 0 (peek)
    left     the shard's stock left after the call
    pending  entries in the shard's transfer log (lent, not yet settled)
    received stock credited to this shard in total (only grows)
    share    cfg.stock
  A malformed call is refused with an error before anything is written.
]]

local op = ARGV[1]
local function malformed()
  return redis.error_reply('ERR transfer.lua: malformed call')
end
if #KEYS ~= 4 then return malformed() end

local share = tonumber(redis.call('HGET', KEYS[1], 'stock')) or 0
local counts = redis.call('HMGET', KEYS[2], 'issued', 'moved', 'received')
local issued, moved = tonumber(counts[1]) or 0, tonumber(counts[2]) or 0
local received = tonumber(counts[3]) or 0
local amount = 0

if op == 'lend' then
  local tid, wanted = ARGV[2], tonumber(ARGV[4])
  if #ARGV ~= 4 or not tid or tid == '' or not tonumber(ARGV[3]) or not wanted
      or wanted < 1 then
    return malformed()
  end
  local logged = redis.call('HGET', KEYS[3], tid)
  if logged then
    amount = tonumber(string.match(logged, '\t(%d+)$'))
  else
    amount = math.min(wanted, math.max(share + moved - issued, 0))
    if amount > 0 then
      moved = redis.call('HINCRBY', KEYS[2], 'moved', -amount)
      redis.call('HSET', KEYS[3], tid, ARGV[3] .. '\t' .. amount)
    end
  end
elseif op == 'credit' then
  local tid, given = ARGV[2], tonumber(ARGV[3])
  if #ARGV ~= 3 or not tid or tid == '' or not given or given < 1 then return malformed() end
  if redis.call('SADD', KEYS[4], tid) == 1 then
    amount = given
    moved = redis.call('HINCRBY', KEYS[2], 'moved', given)
    received = redis.call('HINCRBY', KEYS[2], 'received', given)
  end
elseif op ~= 'peek' or #ARGV ~= 1 then
  return malformed()
end

return { amount, math.max(share + moved - issued, 0), redis.call('HLEN', KEYS[3]), received,
  share }
